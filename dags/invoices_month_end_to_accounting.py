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
from airflow.sdk import Asset, PokeReturnValue, dag, task

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
    @task.sensor(
        poke_interval=SETTINGS.month_end_wait_poke_seconds,
        timeout=timedelta(days=5).total_seconds(),
        mode="reschedule",
        inlets=[Asset(TIME_EXPORT_ASSET)],
    )
    def wait_for_time_export(**context) -> PokeReturnValue:
        """The month's time first: every week of the month exported, up to the week holding its last day."""
        from backbone.flows.runtime import run_ref, time_export_complete
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        if not settings.month_end_waits_for_time_export:
            return PokeReturnValue(is_done=True)
        run = run_ref(FLOW, context)
        engine = engine_for(settings.accounting_warehouse_conn_id)
        return PokeReturnValue(is_done=time_export_complete(engine, run.interval_start, run.interval_end, settings.company_timezone))

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

    @task
    def check_invoices(extracted: dict[str, int], **context) -> dict[str, int]:
        from backbone.flows import invoicing
        from backbone.flows.runtime import run_ref
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        run = run_ref(FLOW, context)
        return invoicing.check_invoices(
            engine_for(settings.accounting_warehouse_conn_id), run, period=invoicing.billing_period(run, settings.company_timezone)
        )

    @task
    def load_invoices(checked: dict[str, int], **context) -> dict[str, int]:
        from backbone.flows import invoicing
        from backbone.flows.runtime import run_ref
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        run = run_ref(FLOW, context)
        return invoicing.load_invoices(
            engine_for(settings.accounting_warehouse_conn_id), run, period=invoicing.billing_period(run, settings.company_timezone)
        )

    @task
    def post_invoices(loaded: dict[str, int], **context) -> dict[str, int]:
        from backbone.flows import invoicing
        from backbone.flows.runtime import continue_after_quota, run_ref
        from backbone.hooks.vendors import accounting_hook
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        run, warehouse = run_ref(FLOW, context), engine_for(settings.accounting_warehouse_conn_id)
        with continue_after_quota(run, warehouse, pending=lambda: invoicing.pending_invoices(warehouse)):
            return invoicing.post_invoices(accounting_hook(settings.accounting_conn_id), warehouse, run)

    @task(trigger_rule="all_done", retries=0)
    def record_run(**context) -> dict[str, object]:
        from backbone.flows.runtime import finish_flow_run

        return finish_flow_run(FLOW, load_settings().accounting_warehouse_conn_id, last_task_id="post_invoices", context=context)

    post_invoices(load_invoices(check_invoices(extract_invoices(wait_for_time_export())))) >> record_run()


invoices_month_end_to_accounting()
