"""
### Invoices follow approval: postable PSA invoices of any month → accounting, daily, exactly once

Runs every morning for the day before. An invoice goes out when it becomes postable under the
invoice-timing policy (`BACKBONE_INVOICE_TIMING`): as soon as the PM approves it in the PSA
(`on_pm_approval`, the default) or once finance has released it there (`after_finance_approval`),
whatever month it bills. So October's invoices approved on 3 November are posted on 4 November, not
never. Month-end (`invoices_month_end_to_accounting`) stays the month's run by billing month; both
share one outbox, so an invoice is posted once whichever run sees it first.

1. `extract_invoices` — invoices approved (or released) in the interval, voids in it, the held
   invoices of earlier runs whose cause may have been fixed (a mapping or customer added, the
   month's last time exported, a contract value corrected), and the CRM deals that bound fixed fees.
2. `check_invoices` — the month-end checks, each invoice against its own billing month.
3. `load_invoices` — the outbox; an invoice that passes now closes its earlier holds.
4. `post_invoices` — as month-end: look the number up, else create with a deterministic key.
5. `record_run` — invoices, held, posted, amount per currency (always runs).

Connections: as month-end: `psa_default`, the CRM's, the accounting system's, `accounting_warehouse`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from backbone.flows.invoicing_tasks import invoice_tasks
from backbone.schedules import timetable
from backbone.settings import load_settings

FLOW = "invoices_to_accounting"
SETTINGS = load_settings()


@dag(
    dag_id=FLOW,
    doc_md=__doc__,
    schedule=timetable(FLOW, SETTINGS.company_timezone),
    start_date=pendulum.datetime(2026, 1, 1, tz=SETTINGS.company_timezone),
    catchup=False,
    max_active_runs=1,
    tags=["psa", "accounting", "quickbooks", "finance", "invoicing"],
    default_args={"owner": "data-engineering", "retries": 3, "retry_delay": timedelta(minutes=10), "retry_exponential_backoff": True},
)
def invoices_to_accounting() -> None:
    @task
    def extract_invoices(**context) -> dict[str, int]:
        from backbone.flows import invoicing
        from backbone.flows.runtime import open_flow_run
        from backbone.hooks.psa import PsaHook
        from backbone.hooks.vendors import accounting_hook, crm_hook

        settings = load_settings()
        run, warehouse = open_flow_run(FLOW, settings.accounting_warehouse_conn_id, context)
        return invoicing.extract_invoices(
            PsaHook(settings.psa_conn_id),
            accounting_hook(settings.accounting_conn_id),
            crm_hook(settings.crm_conn_id),
            warehouse,
            run,
            period=None,
            timing=settings.invoice_timing,
        )

    invoice_tasks(FLOW, period_of=lambda run, timezone: None)(extract_invoices())


invoices_to_accounting()
