"""Run records, staging and quarantine: the bookkeeping every flow shares."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from backbone.warehouse.tables import flow_run, quarantine, staged_record

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine


@dataclass(frozen=True)
class RunRef:
    """What identifies one run of one flow: travels between tasks instead of data.

    ``run_id`` is the interval key (see ``backbone.flows.runtime.interval_key``), not Airflow's
    run id, so reruns and backfills of an interval land on the same records.
    """

    flow: str
    run_id: str
    interval_start: datetime
    interval_end: datetime


@dataclass(frozen=True)
class QuarantineRow:
    entity: str
    source_key: str
    rule: str
    reason: str
    raw: dict[str, Any]


@contextmanager
def exclusive(engine: Engine, lock: str, *, what: str) -> Iterator[None]:
    """Hold a session advisory lock named ``lock`` on a dedicated connection for the block, across
    processes and hosts; if someone else holds it, fail at once with ``what`` (never race them)."""
    from sqlalchemy import text

    with engine.connect() as connection:
        got = connection.execute(text("SELECT pg_try_advisory_lock(hashtext(:lock))"), {"lock": lock}).scalar_one()
        connection.commit()
        if not got:
            raise RuntimeError(f"{what}; this run will retry after it")
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(hashtext(:lock))"), {"lock": lock})
            connection.commit()


def clear_staging(connection: Connection, run: RunRef) -> None:
    connection.execute(staged_record.delete().where(staged_record.c.flow == run.flow, staged_record.c.run_id == run.run_id))


def stage(connection: Connection, run: RunRef, entity: str, records: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Keep raw records of this run (the last copy of a key wins: a page can repeat a record)."""
    from sqlalchemy.dialects.postgresql import insert

    if not records:
        return
    rows = {key: {"flow": run.flow, "run_id": run.run_id, "entity": entity, "source_key": key, "payload": payload} for key, payload in records}
    statement = insert(staged_record).values(list(rows.values()))
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["flow", "run_id", "entity", "source_key"],
            set_={"payload": statement.excluded.payload, "status": "staged", "canonical": None},
        )
    )


def stage_unique(connection: Connection, run: RunRef, entity: str, records: Sequence[tuple[str, dict[str, Any]]]) -> int:
    """Keep raw records whose key must not repeat with different content (returns conflicts found).

    A key seen again with the same payload is a harmless repeat. A key seen again with a different
    payload is marked ``conflict`` (the first copy stays as ``payload``, the other in ``canonical``),
    so validation can make it an exception instead of silently keeping one of the two.
    """
    from sqlalchemy import case, func, literal
    from sqlalchemy.dialects.postgresql import insert

    conflicts = 0
    pending = list(records)
    while pending:
        batch: dict[str, dict[str, Any]] = {}
        repeats: list[tuple[str, dict[str, Any]]] = []
        for key, payload in pending:
            if key in batch:
                repeats.append((key, payload))
            else:
                batch[key] = {"flow": run.flow, "run_id": run.run_id, "entity": entity, "source_key": key, "payload": payload}
        statement = insert(staged_record).values(list(batch.values()))
        differs = staged_record.c.payload != statement.excluded.payload
        result = connection.execute(
            statement.on_conflict_do_update(
                index_elements=["flow", "run_id", "entity", "source_key"],
                set_={
                    "status": case((differs, literal("conflict")), else_=staged_record.c.status),
                    "canonical": case((differs, func.jsonb_build_object("conflicting_payload", statement.excluded.payload)), else_=staged_record.c.canonical),
                },
            ).returning(staged_record.c.status)
        )
        conflicts += sum(1 for (status,) in result if status == "conflict")
        pending = repeats
    return conflicts


def iter_staged(engine: Engine, run: RunRef, entity: str, *, status: str | None = None, chunk_size: int = 5000) -> Iterator[list[dict[str, Any]]]:
    """Staged rows of the run in key order, ``chunk_size`` at a time (keyset paging: flat memory)."""
    from sqlalchemy import select

    last_key = ""
    while True:
        query = (
            select(staged_record.c.source_key, staged_record.c.payload, staged_record.c.canonical, staged_record.c.status)
            .where(
                staged_record.c.flow == run.flow,
                staged_record.c.run_id == run.run_id,
                staged_record.c.entity == entity,
                staged_record.c.source_key > last_key,
            )
            .order_by(staged_record.c.source_key)
            .limit(chunk_size)
        )
        if status is not None:
            query = query.where(staged_record.c.status == status)
        with engine.connect() as connection:
            rows = [dict(r._mapping) for r in connection.execute(query)]
        if not rows:
            return
        yield rows
        last_key = rows[-1]["source_key"]


def set_verdicts(connection: Connection, run: RunRef, entity: str, verdicts: Sequence[tuple[str, str, dict[str, Any] | None]]) -> None:
    """Record (source_key, status, canonical rows) for staged records after validation."""
    if not verdicts:
        return
    connection.exec_driver_sql(
        """
        UPDATE ops.staged_record AS s SET status = v.status, canonical = v.canonical::jsonb
        FROM (SELECT unnest(%(keys)s::text[]) AS source_key, unnest(%(statuses)s::text[]) AS status,
                     unnest(%(canonicals)s::text[]) AS canonical) AS v
        WHERE s.flow = %(flow)s AND s.run_id = %(run_id)s AND s.entity = %(entity)s AND s.source_key = v.source_key
        """,
        {
            "keys": [v[0] for v in verdicts],
            "statuses": [v[1] for v in verdicts],
            "canonicals": [json.dumps(v[2]) if v[2] is not None else None for v in verdicts],
            "flow": run.flow,
            "run_id": run.run_id,
            "entity": entity,
        },
    )


def add_quarantine(connection: Connection, run: RunRef, rows: Sequence[QuarantineRow]) -> None:
    from sqlalchemy.dialects.postgresql import insert

    if not rows:
        return
    values = [
        {"flow": run.flow, "run_id": run.run_id, "entity": r.entity, "source_key": r.source_key, "rule": r.rule, "reason": r.reason, "raw": r.raw}
        for r in rows
    ]
    connection.execute(insert(quarantine).values(values).on_conflict_do_nothing(constraint="uq_quarantine_record_rule"))


def record_run(connection: Connection, run: RunRef, **fields: Any) -> None:
    """Create or update the run's record with whatever fields are known so far."""
    from sqlalchemy.dialects.postgresql import insert

    values = {"flow": run.flow, "run_id": run.run_id, "interval_start": run.interval_start, "interval_end": run.interval_end, **fields}
    values.setdefault("status", "running")
    statement = insert(flow_run).values(values)
    updates = {k: statement.excluded[k] for k in values if k not in ("flow", "run_id")}
    if "details" in fields:
        updates["details"] = flow_run.c.details.op("||")(statement.excluded.details)
    connection.execute(statement.on_conflict_do_update(index_elements=["flow", "run_id"], set_=updates))


def resolve_exceptions(connection: Connection, run: RunRef, *, resolved_at: datetime) -> int:
    """Close open exceptions of this flow whose record passed in this run (a newer version of an
    entry counts: ``TE-1:v2`` resolves ``TE-1:v1``). Called before staging is cleared."""
    result = connection.exec_driver_sql(
        """
        UPDATE ops.quarantine q SET resolved_at = %(at)s, resolved_by_run = %(run_id)s
        WHERE q.flow = %(flow)s AND q.resolved_at IS NULL
          AND EXISTS (SELECT 1 FROM ops.staged_record s
                      WHERE s.flow = q.flow AND s.run_id = %(run_id)s AND s.status = 'valid' AND s.entity = q.entity
                        AND split_part(s.source_key, ':v', 1) = split_part(q.source_key, ':v', 1))
        """,
        {"at": resolved_at, "run_id": run.run_id, "flow": run.flow},
    )
    return result.rowcount


def read_run(engine: Engine, run: RunRef) -> dict[str, Any] | None:
    from sqlalchemy import select

    with engine.connect() as connection:
        row = connection.execute(select(flow_run).where(flow_run.c.flow == run.flow, flow_run.c.run_id == run.run_id)).first()
    return dict(row._mapping) if row else None


def finish_run(engine: Engine, run: RunRef, *, succeeded: bool, finished_at: datetime, airflow_url: str | None = None) -> dict[str, Any]:
    """Close the run's record; on success drop its staging rows (they are evidence only on failure)."""
    with engine.begin() as connection:
        record_run(connection, run, status="success" if succeeded else "failed", finished_at=finished_at, airflow_url=airflow_url)
        if succeeded:
            resolve_exceptions(connection, run, resolved_at=finished_at)
            clear_staging(connection, run)
    return read_run(engine, run) or {}
