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

Connections: the PSA's (`psa_default`, or `kantata_default` when `BACKBONE_PSA_CONN_ID` says so), the CRM's
(`hubspot_default`, or `salesforce_default` when `BACKBONE_CRM_CONN_ID` says so), the accounting system's
(`quickbooks_default`, or `xero_default` when `BACKBONE_ACCOUNTING_CONN_ID` says so), `accounting_warehouse`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Asset, dag, task

from backbone.flows.invoicing_tasks import invoice_tasks
from backbone.schedules import TIME_EXPORT_ASSET, dag_arguments
from backbone.settings import load_settings

FLOW = "invoices_month_end_to_accounting"
SETTINGS = load_settings()


@dag(
    doc_md=__doc__,
    tags=["psa", "accounting", "quickbooks", "finance", "invoicing"],
    **dag_arguments(FLOW, SETTINGS.company_timezone, retry_delay=timedelta(minutes=10)),
)
def invoices_month_end_to_accounting() -> None:
    @task(multiple_outputs=False, inlets=[Asset(TIME_EXPORT_ASSET)])
    def wait_for_time_export(**context) -> bool:
        """The month's time first: every week of the month exported, up to the week holding its last
        day. Until then the task is rescheduled (no worker held); after five days it fails and alerts."""
        from backbone.flows.runtime import wait_for_month_time

        return wait_for_month_time(FLOW, context)

    invoice_tasks(FLOW, period_of=billing_month)(wait_for_time_export())


def billing_month(run: object, timezone: str) -> str:
    """The one calendar month this run's interval is (checked; any other interval is refused)."""
    from backbone.flows.invoicing import billing_period

    return billing_period(run, timezone)  # type: ignore[arg-type]


invoices_month_end_to_accounting()
