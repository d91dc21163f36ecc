"""
### Friday timesheet export: approved PSA time → accounting

Every Friday at 17:00 company time. Each run covers exactly **[previous Friday 17:00, this Friday
17:00)** in the company's zone (a data-interval timetable, so weeks neither gap nor overlap across
daylight-saving changes), and exports the time entries **approved** in that window:

1. `extract_time_entries` — accounting reference lists (customers, employees, vendors, items)
   refreshed; approved entries staged (an id and version sent twice with different content is kept
   as a conflict).
2. `validate_time_entries` — the dictionary's `time_entry` suite plus flow rules: hours in (0, 24]
   and ≤ 24 per person-day, work date not after the week, billing code / client / person mapped
   through `accounting_mapping.yaml`. Failures are exceptions for finance (`ops.quarantine`).
3. `load_time_entries` — the PSA warehouse mirrors the entries; the accounting warehouse's outbox
   `acct.time_export` gets one line per entry version (customer, item, GL code, hours, rate,
   amount, requestid), written before anything is posted and never rewritten.
4. `post_time_activities` — pending lines become QuickBooks `TimeActivity` objects or Xero
   Projects time entries with their requestid / Idempotency-Key (a retry returns the original,
   never a second); a new version updates the record its earlier version created.
5. `record_run` — the run record in the accounting warehouse: entries, hours, amount per currency,
   exceptions, posted (always runs; fails the DAG run if a step failed).

Connections: the PSA's (`psa_default`, or `kantata_default` when `BACKBONE_PSA_CONN_ID` says so),
the accounting system's (`quickbooks_default`, or `xero_default` when `BACKBONE_ACCOUNTING_CONN_ID` says so),
`psa_warehouse`, `accounting_warehouse`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, dag, task

from backbone.schedules import TIME_EXPORT_ASSET, dag_arguments
from backbone.settings import load_settings

FLOW = "timesheets_weekly_to_accounting"
SETTINGS = load_settings()


@dag(
    doc_md=__doc__,
    tags=["psa", "accounting", "quickbooks", "finance"],
    **dag_arguments(
        FLOW,
        SETTINGS.company_timezone,
        retry_delay=timedelta(minutes=5),
        start=pendulum.datetime(2026, 1, 2, 17, tz=SETTINGS.company_timezone),
    ),
)
def timesheets_weekly_to_accounting() -> None:
    @task(multiple_outputs=False)
    def extract_time_entries(**context) -> dict[str, int]:
        from backbone.flows import timesheets
        from backbone.flows.runtime import open_flow_run
        from backbone.hooks.vendors import accounting_hook, psa_hook

        settings = load_settings()
        run, warehouse = open_flow_run(FLOW, settings.accounting_warehouse_conn_id, context)
        return timesheets.extract_time_entries(
            psa_hook(settings.psa_conn_id), accounting_hook(settings.accounting_conn_id), warehouse, run, page_size=settings.psa_page_size
        )

    @task(multiple_outputs=False)
    def validate_time_entries(extracted: dict[str, int], **context) -> dict[str, int]:
        from backbone.flows import timesheets
        from backbone.flows.runtime import run_ref
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        return timesheets.validate_time_entries(
            engine_for(settings.accounting_warehouse_conn_id),
            run_ref(FLOW, context),
            company_timezone=settings.company_timezone,
            chunk_size=settings.chunk_size,
        )

    @task(multiple_outputs=False)
    def load_time_entries(validated: dict[str, int], **context) -> dict[str, int]:
        from backbone.flows import timesheets
        from backbone.flows.runtime import run_ref
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        return timesheets.load_time_entries(
            engine_for(settings.psa_warehouse_conn_id),
            engine_for(settings.accounting_warehouse_conn_id),
            run_ref(FLOW, context),
            chunk_size=settings.chunk_size,
        )

    @task(multiple_outputs=False)
    def post_time_activities(loaded: dict[str, int], **context) -> dict[str, int]:
        from backbone import rollout
        from backbone.flows import timesheets
        from backbone.flows.runtime import continue_after_quota, run_ref
        from backbone.hooks.vendors import accounting_hook
        from backbone.pilot import is_pilot, pilot_time_export
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        run, warehouse = run_ref(FLOW, context), engine_for(settings.accounting_warehouse_conn_id)
        if is_pilot(FLOW):  # runs for real, sends nothing: what it would send is reported
            return pilot_time_export(warehouse, run)
        in_scope = rollout.scope_for_time_export(engine_for(settings.psa_warehouse_conn_id))
        with continue_after_quota(run, warehouse, pending=lambda: timesheets.pending_lines(warehouse, run)):
            return timesheets.post_time_activities(
                accounting_hook(settings.accounting_conn_id), warehouse, run, concurrency=settings.qbo_max_concurrency, in_scope=in_scope
            )

    @task(multiple_outputs=False, trigger_rule="all_done", retries=0, outlets=[Asset(TIME_EXPORT_ASSET)])
    def record_run(**context) -> dict[str, object]:
        """Closes the run record; on success Airflow records an event of the time-export Asset (month-end's input)."""
        from backbone.flows.runtime import finish_flow_run

        summary = finish_flow_run(FLOW, load_settings().accounting_warehouse_conn_id, last_task_id="post_time_activities", context=context)
        context["outlet_events"][Asset(TIME_EXPORT_ASSET)].extra = {
            "interval_start": context["data_interval_start"].isoformat(),
            "interval_end": context["data_interval_end"].isoformat(),
        }
        return summary

    post_time_activities(load_time_entries(validate_time_entries(extract_time_entries()))) >> record_run()


timesheets_weekly_to_accounting()
