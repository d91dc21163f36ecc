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

Connections: as month-end: the PSA's (`psa_default` or `kantata_default`), the CRM's, the accounting system's, `accounting_warehouse`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag

from backbone.flows.invoicing_tasks import invoice_tasks
from backbone.schedules import dag_arguments
from backbone.settings import load_settings

FLOW = "invoices_to_accounting"
SETTINGS = load_settings()


@dag(
    doc_md=__doc__,
    tags=["psa", "accounting", "quickbooks", "finance", "invoicing"],
    **dag_arguments(FLOW, SETTINGS.company_timezone, retry_delay=timedelta(minutes=10)),
)
def invoices_to_accounting() -> None:
    invoice_tasks(FLOW, period_of=lambda run, timezone: None)()


invoices_to_accounting()
