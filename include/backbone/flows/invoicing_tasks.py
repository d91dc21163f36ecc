"""The invoice tasks both invoicing DAGs share: extract → check → load → post → record.

Month-end (``invoices_month_end_to_accounting``) judges one billing month; the daily run
(``invoices_to_accounting``) reads invoices of any month by when they became postable and judges
each against its own. Only that differs, so the tasks are defined once here and wired by each DAG file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow.sdk import task

if TYPE_CHECKING:
    from backbone.warehouse.ops import RunRef


def invoice_tasks(flow: str, period_of: Callable[[RunRef, str], str | None]) -> Callable[[Any], None]:
    """extract → check → load → post → record for ``flow``; ``period_of(run, timezone)`` names the
    billing month the run reads and judges against, or None for invoices of any month by when they
    became postable (each judged against its own month). Returns a function that wires the tasks
    after an upstream task's result (or at the start, given None)."""

    @task(multiple_outputs=False)
    def extract_invoices(ready: Any = None, **context: Any) -> dict[str, int]:
        from backbone.flows import invoicing
        from backbone.flows.runtime import open_flow_run
        from backbone.hooks.vendors import accounting_hook, crm_hook, psa_hook
        from backbone.settings import load_settings

        settings = load_settings()
        run, warehouse = open_flow_run(flow, settings.accounting_warehouse_conn_id, context)
        return invoicing.extract_invoices(
            psa_hook(settings.psa_conn_id),
            accounting_hook(settings.accounting_conn_id),
            crm_hook(settings.crm_conn_id),
            warehouse,
            run,
            period=period_of(run, settings.company_timezone),
            timing=settings.invoice_timing,
        )

    @task(multiple_outputs=False)
    def check_invoices(extracted: dict[str, int], **context: Any) -> dict[str, int]:
        from backbone.flows import invoicing
        from backbone.flows.runtime import run_ref
        from backbone.settings import load_settings
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        run = run_ref(flow, context)
        return invoicing.check_invoices(
            engine_for(settings.accounting_warehouse_conn_id),
            run,
            period=period_of(run, settings.company_timezone),
            company_timezone=settings.company_timezone,
        )

    @task(multiple_outputs=False)
    def load_invoices(checked: dict[str, int], **context: Any) -> dict[str, int]:
        from backbone.flows import invoicing
        from backbone.flows.runtime import run_ref
        from backbone.settings import load_settings
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        run = run_ref(flow, context)
        return invoicing.load_invoices(
            engine_for(settings.accounting_warehouse_conn_id), run, period=period_of(run, settings.company_timezone)
        )

    @task(multiple_outputs=False)
    def post_invoices(loaded: dict[str, int], **context: Any) -> dict[str, int]:
        from backbone import rollout
        from backbone.flows import invoicing
        from backbone.flows.runtime import continue_after_quota, run_ref
        from backbone.hooks.vendors import accounting_hook
        from backbone.pilot import is_pilot, pilot_invoices
        from backbone.settings import load_settings
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        run, warehouse = run_ref(flow, context), engine_for(settings.accounting_warehouse_conn_id)
        if is_pilot(flow):  # runs for real, sends nothing: what it would send is reported
            return pilot_invoices(warehouse, run)
        in_scope = rollout.invoice_condition(rollout.rollout_scope())
        with continue_after_quota(run, warehouse, pending=lambda: invoicing.pending_invoices(warehouse)):
            return invoicing.post_invoices(accounting_hook(settings.accounting_conn_id), warehouse, run, in_scope=in_scope)

    @task(multiple_outputs=False, trigger_rule="all_done", retries=0)
    def record_run(**context: Any) -> dict[str, object]:
        from backbone.flows.runtime import finish_flow_run
        from backbone.settings import load_settings

        return finish_flow_run(flow, load_settings().accounting_warehouse_conn_id, last_task_id="post_invoices", context=context)

    def wire(upstream: Any = None) -> None:
        extracted = extract_invoices(upstream) if upstream is not None else extract_invoices()
        post_invoices(load_invoices(check_invoices(extracted))) >> record_run()

    return wire
