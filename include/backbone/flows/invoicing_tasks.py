"""The invoice tasks both invoicing DAGs share: check → load → post → record.

Month-end (``invoices_month_end_to_accounting``) judges one billing month; the daily run
(``invoices_to_accounting``) judges invoices of any month, each against its own. Only what they
extract differs, so the rest is defined once here and wired by each DAG file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow.sdk import task

if TYPE_CHECKING:
    from backbone.warehouse.ops import RunRef


def invoice_tasks(flow: str, period_of: Callable[[RunRef, str], str | None]) -> Callable[[Any], None]:
    """The tasks after extraction, for ``flow``; ``period_of(run, timezone)`` names the billing month
    every invoice is judged against, or None for each invoice's own. Returns a function that wires
    them after the extract task's result."""

    @task
    def check_invoices(extracted: dict[str, int], **context: Any) -> dict[str, int]:
        from backbone.flows import invoicing
        from backbone.flows.runtime import run_ref
        from backbone.settings import load_settings
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        run = run_ref(flow, context)
        return invoicing.check_invoices(
            engine_for(settings.accounting_warehouse_conn_id), run, period=period_of(run, settings.company_timezone)
        )

    @task
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

    @task
    def post_invoices(loaded: dict[str, int], **context: Any) -> dict[str, int]:
        from backbone.flows import invoicing
        from backbone.flows.runtime import continue_after_quota, run_ref
        from backbone.hooks.vendors import accounting_hook
        from backbone.settings import load_settings
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        run, warehouse = run_ref(flow, context), engine_for(settings.accounting_warehouse_conn_id)
        with continue_after_quota(run, warehouse, pending=lambda: invoicing.pending_invoices(warehouse)):
            return invoicing.post_invoices(accounting_hook(settings.accounting_conn_id), warehouse, run)

    @task(trigger_rule="all_done", retries=0)
    def record_run(**context: Any) -> dict[str, object]:
        from backbone.flows.runtime import finish_flow_run
        from backbone.settings import load_settings

        return finish_flow_run(flow, load_settings().accounting_warehouse_conn_id, last_task_id="post_invoices", context=context)

    def wire(extracted: Any) -> None:
        post_invoices(load_invoices(check_invoices(extracted))) >> record_run()

    return wire
