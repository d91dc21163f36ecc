"""Glue between Airflow's task context and the flows: run references and hooks, built in tasks."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from backbone.warehouse.ops import RunRef

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger(__name__)


def run_ref(flow: str, context: dict[str, Any]) -> RunRef:
    """The run as the flows see it: its data interval (the key of everything it writes)."""
    start: datetime | None = context.get("data_interval_start")
    end: datetime | None = context.get("data_interval_end")
    if start is None or end is None or start >= end:
        raise ValueError(
            f"{flow} needs a non-empty data interval (got {start} → {end}); "
            "schedule it with a data-interval timetable, not a plain cron trigger"
        )
    return RunRef(flow=flow, run_id=interval_key(start, end), interval_start=start, interval_end=end)


def open_flow_run(flow: str, warehouse_conn_id: str, context: dict[str, Any]) -> tuple[RunRef, Engine]:
    """Claim the interval and mark the run as running in its warehouse (first task of every flow).

    Two Airflow runs of the same interval (a manual trigger beside the scheduled run, logical
    dates a second apart) never interleave: the second stops here, before touching staging, with
    a clear message. Records of earlier runs of this flow left ``running`` by a kill are closed
    as ``failed`` with the reason.

    **Catch-up.** When intervals before this one have no successful run (Airflow was down, the DAG
    paused, a run failed), the run also covers them: it reads from the end of the last successful
    run (at most ``BACKBONE_CATCH_UP_MAX_DAYS`` back), records which intervals it caught up, and
    says so in an alert. So a missed Friday's approved time goes out with the next export, and
    the ledger's gaps close without anyone rerunning old intervals by hand.
    """
    from airflow.sdk import timezone
    from airflow.sdk.exceptions import AirflowFailException

    from backbone.warehouse.db import engine_for
    from backbone.warehouse.ops import FlowBusy, claim_interval, close_abandoned_runs, start_attempt

    run = run_ref(flow, context)
    engine = engine_for(warehouse_conn_id)
    me = context["run_id"]
    dag_id = context["dag"].dag_id

    def is_active(airflow_run_id: str) -> bool:
        return dag_run_is_active(dag_id, airflow_run_id)

    try:
        with engine.begin() as connection:
            claim = claim_interval(connection, run, me, is_active=is_active)
            run, caught_up = _catch_up(connection, run)
            details: dict[str, Any] = {"airflow_run_id": me, "triggered_by": triggered_by(context), **caught_up}
            if claim.previous_owner:
                details["previous_attempt"] = {"airflow_run_id": claim.previous_owner, "status": claim.previous_status}
            # When this attempt started, by the clock (bookkeeping, like finished_at): a run Airflow
            # created back-dated (``airflow dags test`` of a past interval) still shows its real start.
            start_attempt(connection, run, started_at=timezone.utcnow(), details=details)
            closed = close_abandoned_runs(connection, flow, except_run_id=run.run_id, is_active=is_active, at=timezone.utcnow())
    except FlowBusy as exc:
        raise AirflowFailException(str(exc)) from None
    if claim.previous_owner and claim.previous_status == "running":
        log.warning("took over %s from Airflow run %s, which ended without finishing it", run.run_id, claim.previous_owner)
    if closed:
        log.warning("closed %d abandoned run records of %s as failed: %s", len(closed), flow, closed)
    if caught_up.get("caught_up_intervals"):
        _announce_catch_up(run, caught_up)
    if caught_up.get("missed_intervals"):
        _announce_missed(run, caught_up["missed_intervals"])
    return run, engine


def triggered_by(context: dict[str, Any]) -> str:
    """Who or what started this Airflow run, as finance reads it: ``scheduled``, ``manual by
    alice``, ``backfill``, ``asset``. From the run's type and triggering user (Airflow ≥ 3.1)."""
    dag_run = context.get("dag_run")
    run_type = str(getattr(getattr(dag_run, "run_type", None), "value", getattr(dag_run, "run_type", "")) or "")
    if not run_type:
        run_type = str(context.get("run_id", "")).split("__", 1)[0]
    kind = {"asset_triggered": "asset", "asset_materialization": "asset"}.get(run_type, run_type or "unknown")
    user = getattr(dag_run, "triggering_user_name", None)
    return f"{kind} by {user}" if user and kind != "scheduled" else kind


def time_export_complete(
    engine: Engine, start: datetime, end: datetime, timezone: str, *, weekly: str = "timesheets_weekly_to_accounting"
) -> bool:
    """Has the weekly export (``weekly``: the time export, or the expense export on the same Friday
    weeks) succeeded for every week overlapping ``[start, end)``, up to the week holding its last
    day? (Month-end waits for this: time worked on the 30th and 31st is approved and exported by the
    first Friday after the month.) Catch-up runs count for the weeks they covered."""
    from backbone.schedules import uncovered, weeks_covering
    from backbone.warehouse.ops import flow_histories

    with engine.connect() as connection:
        history = flow_histories(connection, [weekly]).get(weekly)
    missing = uncovered(weeks_covering(timezone, start, end), history.covered if history else [])
    if missing:
        log.info("waiting for %s of %s", weekly, ", ".join(f"{s.isoformat()} → {e.isoformat()}" for s, e in missing))
    return not missing


MONTH_END_WAIT_LIMIT = timedelta(days=5)


def wait_for_month_time(flow: str, context: dict[str, Any]) -> bool:
    """Month-end's first step: go on once the month's time is exported (:func:`time_export_complete`),
    else reschedule this task for ``BACKBONE_MONTH_END_WAIT_POKE_SECONDS`` later; give up with a
    failure (and its alert) after five days of waiting."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowRescheduleException

    from backbone.settings import load_settings
    from backbone.warehouse.db import engine_for

    settings = load_settings()
    if not settings.month_end_waits_for_time_export:
        return True
    run = run_ref(flow, context)
    if time_export_complete(
        engine_for(settings.accounting_warehouse_conn_id), run.interval_start, run.interval_end, settings.company_timezone
    ):
        return True
    now = datetime.now(UTC)  # how long to wait is scheduling, not data: the clock is right here
    waiting_since = context["ti"].get_first_reschedule_date(context) or now  # when this task first asked to wait
    if now > waiting_since + MONTH_END_WAIT_LIMIT:
        raise AirflowFailException(
            f"{flow}: the weekly export has not covered {run.interval_start.date()} → {run.interval_end.date()} within "
            f"{MONTH_END_WAIT_LIMIT.days} days of this run's start; run the missing weeks (the ledger lists them as gaps), "
            "then clear this task"
        )
    raise AirflowRescheduleException(reschedule_date=now + timedelta(seconds=settings.month_end_wait_poke_seconds))


QUOTA_WAIT_DEFAULT = timedelta(hours=1)
QUOTA_WAIT_MAX = timedelta(hours=24)


@contextmanager
def continue_after_quota(run: RunRef, engine: Engine, *, pending: Callable[[], int]) -> Iterator[None]:
    """When a vendor's long-period quota is spent mid-post (Xero's 5,000 calls a day, Salesforce's
    daily API requests), record "quota reached, N pending" on the run and reschedule the task for
    when the vendor says the quota resets (``Retry-After``; an hour when it does not say). Airflow
    runs it again then, without a human and without using up a retry; everything already sent is
    recorded, and the outbox's idempotency keys keep the rest single."""
    from airflow.sdk.exceptions import AirflowRescheduleException

    from backbone.http import QuotaExhaustedError
    from backbone.warehouse.ops import record_run

    try:
        yield
    except QuotaExhaustedError as exc:
        wait = min(timedelta(seconds=exc.retry_after) if exc.retry_after else QUOTA_WAIT_DEFAULT, QUOTA_WAIT_MAX)
        resume_at = datetime.now(UTC) + wait  # when to try again is scheduling, not data: the clock is right here
        left = pending()
        with engine.begin() as connection:
            record_run(
                connection, run, details={"quota_reached": {"message": str(exc), "pending": left, "resume_at": resume_at.isoformat()}}
            )
        log.warning("quota reached with %d pending; the task continues at %s: %s", left, resume_at.isoformat(), exc)
        raise AirflowRescheduleException(reschedule_date=resume_at) from exc


def _catch_up(connection: Any, run: RunRef) -> tuple[RunRef, dict[str, Any]]:
    """This run, widened back to the end of the last successful run when intervals were missed,
    and what to record about it (``covers_from`` is always written, so a rerun never keeps a stale one)."""
    from dataclasses import replace

    from backbone.schedules import CATCHES_UP, intervals
    from backbone.settings import load_settings
    from backbone.warehouse.ops import first_piloted_start, last_success_end

    if run.flow not in CATCHES_UP:
        return run, _missed_before(connection, run)
    settings = load_settings()
    last_end = last_success_end(connection, run)
    if last_end is None:  # only pilot runs before this one: they wrote nothing, so this run starts where they did
        last_end = first_piloted_start(connection, run)
    if last_end is None or last_end >= run.interval_start:
        return run, {"covers_from": None, "caught_up_intervals": []}
    floor = run.interval_start - timedelta(days=settings.catch_up_max_days)
    covers_from = max(last_end, floor)
    missed = list(intervals(run.flow, settings.company_timezone, start=covers_from, end=run.interval_start))
    record: dict[str, Any] = {
        "covers_from": covers_from.isoformat(),
        "caught_up_intervals": [f"{start.isoformat()} → {end.isoformat()}" for start, end in missed],
    }
    if last_end < floor:
        record["catch_up_limited_from"] = last_end.isoformat()
    return replace(run, covers_from=covers_from), record


def _missed_before(connection: Any, run: RunRef) -> dict[str, Any]:
    """For a flow that does not catch up (month-end is cut by billing month): its earlier intervals,
    since its first run, that no successful run covers. They are named, recorded and alerted on."""
    from backbone.schedules import gaps
    from backbone.settings import load_settings
    from backbone.warehouse.ops import flow_histories

    history = flow_histories(connection, [run.flow], excluding_run=run.run_id).get(run.flow)
    if history is None:
        return {"missed_intervals": []}
    missed = gaps(
        run.flow,
        load_settings().company_timezone,
        first_start=history.first_start,
        covered=history.covered,
        now=run.interval_start,
        grace=timedelta(0),
    )
    return {"missed_intervals": [f"{start.isoformat()} → {end.isoformat()}" for start, end in missed]}


def _announce_missed(run: RunRef, missed: list[str]) -> None:
    from backbone.alerts import Alert, send
    from backbone.settings import load_settings

    lines = [
        f"{run.flow}: {len(missed)} earlier interval(s) have no successful run; this flow does not cover them by itself "
        "(it is cut by billing month). Rerun each in Airflow:",
        *[f"  - {m}" for m in missed],
    ]
    log.warning("\n".join(lines))
    send(Alert(subject=f"[backbone] {run.flow} has {len(missed)} missed interval(s)", text="\n".join(lines)), load_settings())


def _announce_catch_up(run: RunRef, caught_up: dict[str, Any]) -> None:
    """Log and alert: finance should know a run also carried missed intervals (and any it could not)."""
    from backbone.alerts import Alert, send
    from backbone.settings import load_settings

    missed = caught_up["caught_up_intervals"]
    lines = [
        f"{run.flow}: this run also covers {len(missed)} missed interval(s) that had no successful run:",
        *[f"  - {m}" for m in missed],
    ]
    if caught_up.get("catch_up_limited_from"):
        lines.append(
            f"Intervals before {caught_up['covers_from']} (back to {caught_up['catch_up_limited_from']}) are older than "
            "BACKBONE_CATCH_UP_MAX_DAYS and stay gaps in the ledger: rerun them in Airflow."
        )
    log.warning("\n".join(lines))
    send(Alert(subject=f"[backbone] {run.flow} caught up {len(missed)} missed interval(s)", text="\n".join(lines)), load_settings())


FINISHED_DAG_RUN_STATES = frozenset({"success", "failed"})


def dag_run_is_active(dag_id: str, airflow_run_id: str) -> bool:
    """Is that Airflow run still queued or running? (Asked through the Task SDK; a run Airflow no
    longer knows is not active.)"""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    try:
        state = RuntimeTaskInstance.get_dagrun_state(dag_id=dag_id, run_id=airflow_run_id)
    except Exception:  # noqa: BLE001 - unknown run (e.g. a reset metadata DB): nobody is running it
        log.info("Airflow does not know run %s of %s; treating it as ended", airflow_run_id, dag_id, exc_info=True)
        return False
    return str(getattr(state, "value", state)) not in FINISHED_DAG_RUN_STATES


def interval_key(start: datetime, end: datetime) -> str:
    """The identity of a run's work: its data interval in UTC. A rerun, a retry or a backfill of
    the same interval gets the same key (and so the same run record and quarantine rows), whatever
    Airflow run id carried it."""

    return f"{start.astimezone(UTC).isoformat()}/{end.astimezone(UTC).isoformat()}"


def airflow_run_url(context: dict[str, Any]) -> str | None:
    """Link to the run in the Airflow UI, when the API server's base URL is known."""
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="") or ""
    if not base:
        return None
    return f"{base.rstrip('/')}/dags/{context['dag'].dag_id}/runs/{context['run_id']}"


def finish_flow_run(
    flow: str, warehouse_conn_id: str, *, last_task_id: str, context: dict[str, Any], expects_verdicts: bool = True
) -> dict[str, Any]:
    """Close the run record; raise after recording when an upstream step failed.

    The flow succeeded when its last step left its result in XCom, and (``expects_verdicts``)
    every record it extracted ended valid or quarantined: a run that extracted records and gave
    some of them no outcome is failed, never green. A run that did not own its interval (it was
    stopped by another run of the same interval) leaves the record to that run.
    """
    from airflow.sdk import timezone
    from airflow.sdk.exceptions import AirflowFailException

    from backbone.warehouse.db import engine_for
    from backbone.warehouse.ops import finish_run, read_run

    engine = engine_for(warehouse_conn_id)
    run = run_ref(flow, context)
    current = read_run(engine, run) or {}
    owner = (current.get("details") or {}).get("airflow_run_id")
    if owner not in (None, context["run_id"]):
        raise AirflowFailException(
            f"{flow} run {context['run_id']} did not run {run.run_id}: Airflow run {owner!r} of the same interval owns it; its record is "
            "left to that run"
        )
    succeeded = context["ti"].xcom_pull(task_ids=last_task_id) is not None
    problem = unaccounted_records(current) if succeeded and expects_verdicts else None
    if problem:
        succeeded = False
        log.error("%s: %s", flow, problem)
    record = finish_run(
        engine,
        run,
        succeeded=succeeded,
        finished_at=timezone.utcnow(),
        airflow_url=airflow_run_url(context),
        details={"failure": problem} if problem else None,
    )
    _alert(flow, engine, run, record)
    summary = {k: record.get(k) for k in ("status", "extracted", "valid", "quarantined", "loaded", "written_back")}
    if not succeeded:
        raise AirflowFailException(
            f"{flow} run {context['run_id']} failed{': ' + problem if problem else ' upstream'}; run record: {summary}"
        )
    return summary


def unaccounted_records(record: dict[str, Any]) -> str | None:
    """Why a run whose steps all finished must still not be green: records extracted that were
    neither validated nor quarantined (e.g. their staging vanished under them). Records a flow
    deliberately left **waiting** (``details.waiting``: an invoice whose month's time is still being
    exported) have an outcome too."""
    extracted, valid, quarantined = (int(record.get(k) or 0) for k in ("extracted", "valid", "quarantined"))
    judged = valid + quarantined + int((record.get("details") or {}).get("waiting") or 0)
    if extracted > judged:
        return (
            f"{extracted - judged} of {extracted} extracted records were neither validated nor quarantined "
            "(nothing was sent for them); rerun the interval"
        )
    return None


def _alert(flow: str, engine: Engine, run: RunRef, record: dict[str, Any]) -> None:
    from sqlalchemy import select

    from backbone.alerts import alert_for, send
    from backbone.settings import load_settings
    from backbone.warehouse.tables import quarantine

    settings = load_settings()
    with engine.connect() as connection:
        exceptions = [
            dict(r._mapping)
            for r in connection.execute(
                select(quarantine.c.entity, quarantine.c.source_key, quarantine.c.rule, quarantine.c.reason)
                .where(quarantine.c.flow == flow, quarantine.c.run_id == run.run_id, quarantine.c.resolved_at.is_(None))
                .order_by(quarantine.c.id)
                .limit(5)
            )
        ]
    alert = alert_for(flow, record, exceptions, settings)
    if alert is not None:
        send(alert, settings)
