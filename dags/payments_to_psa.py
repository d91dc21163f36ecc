"""
### Payments back: accounting balances → invoice status in the PSA

Daily at 06:00 company time. `sync_payments` reads the payments accounting changed since the
interval start (minus `BACKBONE_PAYMENTS_OVERLAP_HOURS`) and the balance of every posted invoice
not yet paid or voided, derives the status (open, partially paid, paid, overdue, voided), writes
it to `acct.invoice` and `psa.invoice_status`, and tells the PSA where it changed. Repeating a run
changes nothing. `record_run` closes the run record (always runs).

Connections: the accounting system's (`quickbooks_default`, or `xero_default` when
`BACKBONE_ACCOUNTING_CONN_ID` says so), the PSA's (`psa_default` or `kantata_default`),
`accounting_warehouse`, `psa_warehouse`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

from backbone.schedules import dag_arguments
from backbone.settings import load_settings

FLOW = "payments_to_psa"
SETTINGS = load_settings()


@dag(
    doc_md=__doc__,
    tags=["accounting", "psa", "quickbooks", "finance"],
    **dag_arguments(FLOW, SETTINGS.company_timezone, retry_delay=timedelta(minutes=5)),
)
def payments_to_psa() -> None:
    @task(multiple_outputs=False)
    def sync_payments(**context) -> dict[str, int]:
        from backbone.flows import payments
        from backbone.flows.runtime import open_flow_run
        from backbone.hooks.vendors import accounting_hook, psa_hook
        from backbone.pilot import is_pilot
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        run, warehouse = open_flow_run(FLOW, settings.accounting_warehouse_conn_id, context)
        return payments.sync_payments(
            accounting_hook(settings.accounting_conn_id),
            psa_hook(settings.psa_conn_id),
            warehouse,
            engine_for(settings.psa_warehouse_conn_id),
            run,
            overlap=timedelta(hours=settings.payments_overlap_hours),
            company_timezone=settings.company_timezone,
            pilot=is_pilot(FLOW),
        )

    @task(multiple_outputs=False, trigger_rule="all_done", retries=0)
    def record_run(**context) -> dict[str, object]:
        from backbone.flows.runtime import finish_flow_run

        return finish_flow_run(
            FLOW, load_settings().accounting_warehouse_conn_id, last_task_id="sync_payments", context=context, expects_verdicts=False
        )

    sync_payments() >> record_run()


payments_to_psa()
