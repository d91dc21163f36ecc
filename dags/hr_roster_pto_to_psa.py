"""
### HR roster, skills and time off → the PSA

Daily at 05:00 company time (`BACKBONE_COMPANY_TIMEZONE`), so planners start the day with the
PSA agreeing with the HR system.

1. `extract_roster` — BambooHR employees changed since the interval start (minus an overlap), or
   all of them when no full snapshot succeeded in the last `BACKBONE_HR_FULL_SNAPSHOT_EVERY_DAYS`
   (so a deleted or terminated person is never missed); job, status, skill and certification
   tables; time-off requests whose leave falls in [today − 30 days, today + 120 days].
2. `validate_roster` — the dictionary's `person`, `skill`, `certification` and `time_off_day`
   suites plus flow rules (end not before start, employee in the roster, one content per id).
3. `load_roster` — the PSA warehouse's `hr` schema in one transaction: people (current state),
   `person_history` (effective-dated roles, departments and employment status), departments,
   skills, certifications, approved time off per person-day (the window replaced, so a cancelled
   request loses its days), public holidays and `hr.capacity` for the next 12 ISO weeks.
4. `push_to_psa` — changed people (new hires, role changes, leavers, skills) and changed time off,
   keyed by the HR id (idempotent).
5. `record_run` — the run record, with certifications expiring within 30 days (always runs).

Connections: `bamboohr_default`, the PSA's (`psa_default`, or `kantata_default` when `BACKBONE_PSA_CONN_ID` says so), `psa_warehouse`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

from backbone.schedules import dag_arguments
from backbone.settings import load_settings

FLOW = "hr_roster_pto_to_psa"
SETTINGS = load_settings()


def _window(context):  # noqa: ANN001, ANN202 - task-context helper
    from backbone.flows.roster import Window
    from backbone.flows.runtime import run_ref

    settings = load_settings()
    run = run_ref(FLOW, context)
    return run, Window.of(
        run, settings.company_timezone, days_back=settings.hr_time_off_days_back, days_ahead=settings.hr_time_off_days_ahead
    )


@dag(
    doc_md=__doc__,
    tags=["hr", "psa", "bamboohr"],
    **dag_arguments(FLOW, SETTINGS.company_timezone, retry_delay=timedelta(minutes=5)),
)
def hr_roster_pto_to_psa() -> None:
    @task(multiple_outputs=False)
    def extract_roster(**context) -> dict[str, int]:
        from backbone.flows import roster
        from backbone.flows.runtime import open_flow_run
        from backbone.hooks.bamboohr import BambooHRHook

        settings = load_settings()
        run, warehouse = open_flow_run(FLOW, settings.psa_warehouse_conn_id, context)
        _, window = _window(context)
        full = roster.full_snapshot_due(warehouse, run, every_days=settings.hr_full_snapshot_every_days)
        return roster.extract_roster(
            BambooHRHook(settings.hr_conn_id),
            warehouse,
            run,
            full=full,
            overlap=timedelta(minutes=settings.hr_change_overlap_minutes),
            window=window,
        )

    @task(multiple_outputs=False)
    def validate_roster(extracted: dict[str, int], **context) -> dict[str, int]:
        from backbone.flows import roster
        from backbone.hooks.bamboohr import BambooHRHook
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        run, _ = _window(context)
        return roster.validate_roster(engine_for(settings.psa_warehouse_conn_id), run, BambooHRHook(settings.hr_conn_id).records)

    @task(multiple_outputs=False)
    def load_roster(validated: dict[str, int], **context) -> dict[str, int]:
        from backbone.flows import roster
        from backbone.hooks.bamboohr import BambooHRHook
        from backbone.pilot import is_pilot, pilot_roster
        from backbone.warehouse.db import engine_for
        from backbone.warehouse.ops import read_run

        settings = load_settings()
        run, window = _window(context)
        warehouse = engine_for(settings.psa_warehouse_conn_id)
        if is_pilot(FLOW):  # the HR warehouse's changes decide what is pushed: a pilot keeps them for the next real run
            return pilot_roster(warehouse, run)
        full = ((read_run(warehouse, run) or {}).get("details") or {}).get("snapshot") == "full"
        records = BambooHRHook(settings.hr_conn_id).records
        return roster.load_roster(warehouse, run, records, full=full, window=window, country=settings.company_country)

    @task(multiple_outputs=False)
    def push_to_psa(loaded: dict[str, int], **context) -> dict[str, int]:
        from backbone.flows import roster
        from backbone.hooks.vendors import psa_hook
        from backbone.pilot import is_pilot
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        run, window = _window(context)
        if is_pilot(FLOW):
            return {"pilot": 1}
        return roster.push_to_psa(psa_hook(settings.psa_conn_id), engine_for(settings.psa_warehouse_conn_id), run, window=window)

    @task(multiple_outputs=False, trigger_rule="all_done", retries=0)
    def record_run(**context) -> dict[str, object]:
        from backbone.flows.runtime import finish_flow_run

        return finish_flow_run(FLOW, load_settings().psa_warehouse_conn_id, last_task_id="push_to_psa", context=context)

    push_to_psa(load_roster(validate_roster(extract_roster()))) >> record_run()


hr_roster_pto_to_psa()
