"""
### Friday expense export: approved PSA expenses → accounting

Every Friday at 17:00 company time, beside the timesheet export, over the same weeks
**[previous Friday 17:00, this Friday 17:00)**: the expenses **approved** in that window.

1. `extract_expenses` — accounting reference lists refreshed (customers, suppliers, GL accounts,
   tax codes); approved expenses staged, and those the PSA withdrew (deleted or un-approved).
2. `validate_expenses` — the dictionary's `expense` suite plus flow rules: category mapped to a GL
   account and tax code (`accounting_mapping.yaml`, `expenses`), receipt above the threshold, an
   exchange rate for a foreign currency, a suspected duplicate, the person's supplier record and
   a billable expense's customer. Failures are exceptions for finance (`ops.quarantine`).
3. `load_expenses` — the outbox `acct.expense_export` gets one line per expense version (a bill
   when the person paid, a purchase when the company did) and a reversal per withdrawal.
4. `post_expenses` — pending lines become QuickBooks `Bill` / `Purchase` or Xero ACCPAY invoices /
   SPEND bank transactions, with their requestid / Idempotency-Key; a new version rewrites its
   earlier record, a withdrawal removes it.
5. `record_run` — the run record finance reads (always runs; fails the DAG run if a step failed).

Connections: the PSA's (`psa_default`; Kantata's expenses are not read yet), the accounting
system's (`quickbooks_default` or `xero_default`), `accounting_warehouse`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from backbone.schedules import dag_arguments
from backbone.settings import load_settings

FLOW = "expenses_weekly_to_accounting"
SETTINGS = load_settings()


@dag(
    doc_md=__doc__,
    tags=["psa", "accounting", "expenses", "finance"],
    **dag_arguments(
        FLOW,
        SETTINGS.company_timezone,
        retry_delay=timedelta(minutes=5),
        start=pendulum.datetime(2026, 1, 2, 17, tz=SETTINGS.company_timezone),
    ),
)
def expenses_weekly_to_accounting() -> None:
    @task(multiple_outputs=False)
    def extract_expenses(**context) -> dict[str, int]:
        from backbone.flows import expenses
        from backbone.flows.runtime import open_flow_run
        from backbone.hooks.vendors import accounting_hook, psa_hook

        settings = load_settings()
        run, warehouse = open_flow_run(FLOW, settings.accounting_warehouse_conn_id, context)
        return expenses.extract_expenses(
            psa_hook(settings.psa_conn_id), accounting_hook(settings.accounting_conn_id), warehouse, run, page_size=settings.psa_page_size
        )

    @task(multiple_outputs=False)
    def validate_expenses(extracted: dict[str, int], **context) -> dict[str, int]:
        from backbone.flows import expenses
        from backbone.flows.runtime import run_ref
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        return expenses.validate_expenses(
            engine_for(settings.accounting_warehouse_conn_id),
            run_ref(FLOW, context),
            company_timezone=settings.company_timezone,
            chunk_size=settings.chunk_size,
        )

    @task(multiple_outputs=False)
    def load_expenses(validated: dict[str, int], **context) -> dict[str, int]:
        from backbone.flows import expenses
        from backbone.flows.runtime import run_ref
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        return expenses.load_expenses(
            engine_for(settings.accounting_warehouse_conn_id), run_ref(FLOW, context), chunk_size=settings.chunk_size
        )

    @task(multiple_outputs=False)
    def post_expenses(loaded: dict[str, int], **context) -> dict[str, int]:
        from backbone.flows import expenses
        from backbone.flows.runtime import continue_after_quota, run_ref
        from backbone.hooks.vendors import accounting_hook
        from backbone.pilot import is_pilot, pilot_expense_export
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        run, warehouse = run_ref(FLOW, context), engine_for(settings.accounting_warehouse_conn_id)
        if is_pilot(FLOW):  # runs for real, sends nothing: what it would send is reported
            return pilot_expense_export(warehouse, run)
        with continue_after_quota(run, warehouse, pending=lambda: expenses.pending_lines(warehouse, run)):
            return expenses.post_expenses(
                accounting_hook(settings.accounting_conn_id), warehouse, run, concurrency=settings.qbo_max_concurrency
            )

    @task(multiple_outputs=False, trigger_rule="all_done", retries=0)
    def record_run(**context) -> dict[str, object]:
        from backbone.flows.runtime import finish_flow_run

        return finish_flow_run(FLOW, load_settings().accounting_warehouse_conn_id, last_task_id="post_expenses", context=context)

    post_expenses(load_expenses(validate_expenses(extract_expenses()))) >> record_run()


expenses_weekly_to_accounting()
