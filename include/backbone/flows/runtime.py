"""Glue between Airflow's task context and the flows: run references and hooks, built in tasks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from backbone.warehouse.ops import RunRef

if TYPE_CHECKING:
    from sqlalchemy import Engine


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
    """Mark the run as running in its warehouse (first task of every flow); return it and the engine."""
    from backbone.warehouse.db import engine_for
    from backbone.warehouse.ops import record_run

    run = run_ref(flow, context)
    engine = engine_for(warehouse_conn_id)
    with engine.begin() as connection:
        record_run(connection, run, status="running", started_at=context["dag_run"].start_date, details={"airflow_run_id": context["run_id"]})
    return run, engine


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


def finish_flow_run(flow: str, warehouse_conn_id: str, *, last_task_id: str, context: dict[str, Any]) -> dict[str, Any]:
    """Close the run record; raise after recording when an upstream step failed.

    The flow succeeded when its last step left its result in XCom.
    """
    from airflow.sdk import timezone
    from airflow.sdk.exceptions import AirflowFailException

    succeeded = context["ti"].xcom_pull(task_ids=last_task_id) is not None

    from backbone.warehouse.db import engine_for
    from backbone.warehouse.ops import finish_run

    engine = engine_for(warehouse_conn_id)
    run = run_ref(flow, context)
    record = finish_run(engine, run, succeeded=succeeded, finished_at=timezone.utcnow(), airflow_url=airflow_run_url(context))
    _alert(flow, engine, run, record)
    summary = {k: record.get(k) for k in ("status", "extracted", "valid", "quarantined", "loaded", "written_back")}
    if not succeeded:
        raise AirflowFailException(f"{flow} run {context['run_id']} failed upstream; run record: {summary}")
    return summary


def _alert(flow: str, engine: Engine, run: RunRef, record: dict[str, Any]) -> None:
    from sqlalchemy import select

    from backbone.alerts import alert_for, send
    from backbone.settings import load_settings
    from backbone.warehouse.tables import quarantine

    settings = load_settings()
    with engine.connect() as connection:
        exceptions = [dict(r._mapping) for r in connection.execute(
            select(quarantine.c.entity, quarantine.c.source_key, quarantine.c.rule, quarantine.c.reason)
            .where(quarantine.c.flow == flow, quarantine.c.run_id == run.run_id, quarantine.c.resolved_at.is_(None)).order_by(quarantine.c.id).limit(5)
        )]  # fmt: skip
    alert = alert_for(flow, record, exceptions, settings)
    if alert is not None:
        send(alert, settings)
