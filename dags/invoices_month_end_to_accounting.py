"""
### Month-end invoicing: PM-approved PSA invoices → accounting, exactly once

Runs when a calendar month closes in the company's time zone; its data interval is exactly that
month (midnight on the 1st to midnight on the next 1st, local time).

1. `extract_invoices` — the month's PSA invoices and credit notes (voids marked), the CRM deals
   that bound fixed fees, and accounting's customers / items / tax codes.
2. `check_invoices` — before anything is posted: lines and tax add up to the total; customer,
   items, tax code and currency mapped (`accounting_mapping.yaml`); a T&M invoice reconciles with
   the billable time exported for its project and month (hours to 0.01, amount to 0.01 a line);
   fixed fees billed to date stay within the deal's contract value; numbers are not reused.
   Every result lands in `acct.reconciliation`; a failing invoice is **held** with its reasons.
3. `load_invoices` — the outbox `acct.invoice` + `acct.invoice_line` (one transaction); posted
   invoices are never rewritten, only marked for void when the PSA voided them.
4. `post_invoices` — look the number up in accounting (`DocNumber`), else create the Invoice /
   CreditMemo with a deterministic requestid; void what the PSA voided.
5. `record_run` — invoices, held, posted, amount per currency (always runs).

Connections: `psa_default`, the CRM's (`hubspot_default`, or `salesforce_default` when `BACKBONE_CRM_CONN_ID` says so), the accounting
system's (`quickbooks_default`, or `xero_default` when `BACKBONE_ACCOUNTING_CONN_ID` says so), `accounting_warehouse`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, dag, task

from backbone.flows.invoicing_tasks import invoice_tasks
from backbone.schedules import TIME_EXPORT_ASSET, timetable
from backbone.settings import load_settings

FLOW = "invoices_month_end_to_accounting"
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
def invoices_month_end_to_accounting() -> None:
    @task(inlets=[Asset(TIME_EXPORT_ASSET)])
    def wait_for_time_export(**context) -> bool:
        """The month's time first: every week of the month exported, up to the week holding its last
        day. Until then the task is rescheduled (no worker held); after five days it fails and alerts."""
        from backbone.flows.runtime import wait_for_month_time

        return wait_for_month_time(FLOW, context)

    @task
    def extract_invoices(ready: bool, **context) -> dict[str, int]:
        from backbone.flows import invoicing
        from backbone.flows.runtime import open_flow_run
        from backbone.hooks.psa import PsaHook
        from backbone.hooks.vendors import accounting_hook, crm_hook

        settings = load_settings()
        run, warehouse = open_flow_run(FLOW, settings.accounting_warehouse_conn_id, context)
        period = invoicing.billing_period(run, settings.company_timezone)
        return invoicing.extract_invoices(
            PsaHook(settings.psa_conn_id),
            accounting_hook(settings.accounting_conn_id),
            crm_hook(settings.crm_conn_id),
            warehouse,
            run,
            period=period,
            timing=settings.invoice_timing,
        )

    invoice_tasks(FLOW, period_of=billing_month)(extract_invoices(wait_for_time_export()))


def billing_month(run: object, timezone: str) -> str:
    """The one calendar month this run's interval is (checked; any other interval is refused)."""
    from backbone.flows.invoicing import billing_period

    return billing_period(run, timezone)  # type: ignore[arg-type]


invoices_month_end_to_accounting()
