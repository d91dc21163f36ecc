"""
### Project actuals: each month's labour actuals per project → accounting, reconciled

One source of truth for budgets, `BACKBONE_BUDGET_SOURCE`: `psa` (default) — budgets live in the
PSA, so accounting gets the actuals as journals; `accounting` — budgets live in accounting, so the
month's project budgets are read into the PSA warehouse (`psa.project_budget`) and nothing is
sent. Runs when a calendar month closes in the company's time zone; its data interval is exactly
that month.

1. `wait_for_time_export` — the month's time first, as month-end invoicing waits for it.
2. `compute_actuals` — accounting's GL accounts refreshed; per project, the month's hours as the
   PSA warehouse knows them (`psa.time_entry`) beside those exported to accounting, the labour cost
   (hours × the standard cost rate of their billing code in the home currency, `cost_rates.yaml`)
   and the exported expenses, into `acct.project_actual`; a journal queued in `acct.actuals_journal`
   for each project whose labour cost differs from what its journals carry (the first one, or the
   difference after a late change). Hours without a cost rate are an exception for finance. With
   budgets in accounting: its project budgets for the month (QuickBooks `Budget` details by class,
   Xero tracking budgets) replace the month's `psa.project_budget` rows first; no journal is queued.
3. `post_journals` — each queued journal becomes a QuickBooks `JournalEntry` / Xero `ManualJournal`
   (debit the project's labour cost, credit the cost allocated to projects:
   `accounting_mapping.yaml` → `actuals`), looked up by its document number first, sent with its
   requestid / Idempotency-Key; then each project is marked reconciled or not, with the difference
   (with budgets in accounting: only the reconciliation of the two warehouses' hours).
4. `record_run` — the run record finance reads (always runs).

Connections: the accounting system's (`quickbooks_default`, or `xero_default` when
`BACKBONE_ACCOUNTING_CONN_ID` says so), `psa_warehouse`, `accounting_warehouse`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Asset, dag, task

from backbone.schedules import TIME_EXPORT_ASSET, dag_arguments
from backbone.settings import load_settings

FLOW = "project_actuals_to_accounting"
SETTINGS = load_settings()


@dag(
    doc_md=__doc__,
    tags=["psa", "accounting", "finance", "actuals"],
    **dag_arguments(FLOW, SETTINGS.company_timezone, retry_delay=timedelta(minutes=10)),
)
def project_actuals_to_accounting() -> None:
    @task(multiple_outputs=False, inlets=[Asset(TIME_EXPORT_ASSET)])
    def wait_for_time_export(**context) -> bool:
        """The month's time exported first (rescheduled, no worker held, until it is)."""
        from backbone.flows.runtime import wait_for_month_time

        return wait_for_month_time(FLOW, context)

    @task(multiple_outputs=False)
    def compute_actuals(ready: bool, **context) -> dict[str, int]:
        from backbone.flows import actuals
        from backbone.flows.invoicing import billing_period
        from backbone.flows.references import refresh_references
        from backbone.flows.runtime import open_flow_run
        from backbone.hooks.vendors import accounting_hook
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        run, warehouse = open_flow_run(FLOW, settings.accounting_warehouse_conn_id, context)
        accounting, psa_warehouse = accounting_hook(settings.accounting_conn_id), engine_for(settings.psa_warehouse_conn_id)
        period, budgets_in_psa = billing_period(run, settings.company_timezone), settings.budget_source == "psa"
        refresh_references(accounting, warehouse, run)
        if not budgets_in_psa:
            actuals.load_budgets(accounting, psa_warehouse, warehouse, run, period=period)
        return actuals.compute_actuals(psa_warehouse, warehouse, run, period=period, journals=budgets_in_psa)

    @task(multiple_outputs=False)
    def post_journals(computed: dict[str, int], **context) -> dict[str, int]:
        from backbone.flows import actuals
        from backbone.flows.invoicing import billing_period
        from backbone.flows.runtime import run_ref
        from backbone.hooks.vendors import accounting_hook
        from backbone.pilot import is_pilot, pilot_actuals
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        run, warehouse = run_ref(FLOW, context), engine_for(settings.accounting_warehouse_conn_id)
        period = billing_period(run, settings.company_timezone)
        if settings.budget_source == "accounting":  # accounting keeps budgets and actuals: nothing to send
            return actuals.reconcile_only(warehouse, run, period=period)
        if is_pilot(FLOW):  # runs for real, sends nothing: what it would send is reported
            return pilot_actuals(warehouse, run, period)
        return actuals.post_journals(accounting_hook(settings.accounting_conn_id), warehouse, run, period=period)

    @task(multiple_outputs=False, trigger_rule="all_done", retries=0)
    def record_run(**context) -> dict[str, object]:
        from backbone.flows.runtime import finish_flow_run

        return finish_flow_run(
            FLOW, load_settings().accounting_warehouse_conn_id, last_task_id="post_journals", context=context, expects_verdicts=False
        )

    post_journals(compute_actuals(wait_for_time_export())) >> record_run()


project_actuals_to_accounting()
