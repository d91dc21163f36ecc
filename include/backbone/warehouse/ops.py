"""Run records, staging and quarantine: the bookkeeping every flow shares."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from backbone.warehouse.db import json_for_database
from backbone.warehouse.tables import flow_run, quarantine, staged_record

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

log = logging.getLogger(__name__)


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
    covers_from: datetime | None = None
    """Where extraction starts when this run also covers missed intervals before its own (the end
    of the last successful run); None when it covers only its own interval."""

    @property
    def extract_from(self) -> datetime:
        """The start of what this run reads: its interval's start, or earlier when it catches up."""
        return self.covers_from if self.covers_from is not None and self.covers_from < self.interval_start else self.interval_start


@dataclass(frozen=True)
class QuarantineRow:
    entity: str
    source_key: str
    rule: str
    reason: str
    raw: dict[str, Any]


class FlowBusy(RuntimeError):
    """Another run holds the lock this run needs; nothing was touched."""


ENSURE_LOCK_ROW = "INSERT INTO ops.flow_lock (name) VALUES (:lock) ON CONFLICT DO NOTHING"
TAKE_LOCK_ROW = "SELECT name FROM ops.flow_lock WHERE name = :lock FOR UPDATE"
TRY_LOCK_ROW = "SELECT name FROM ops.flow_lock WHERE name = :lock FOR UPDATE NOWAIT"


@contextmanager
def _held_lock_row(engine: Engine, lock: str, *, busy: str | None, timeout_seconds: float | None = None) -> Iterator[None]:
    """Hold the row ``lock`` of ``ops.flow_lock`` on a dedicated connection for the block, in a
    transaction kept open: a process that dies drops its connection and so its lock, and a role
    without UPDATE on the ops tables (the finance reader) cannot take it at all. With ``busy`` set,
    a held lock fails at once with that sentence; otherwise it is waited for (up to ``timeout_seconds``)."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    with engine.connect() as connection:
        connection.execute(text(ENSURE_LOCK_ROW), {"lock": lock})
        connection.commit()  # committed first: another taker must find the row, not wait on our insert
        if timeout_seconds is not None:
            connection.execute(text("SELECT set_config('lock_timeout', :timeout, true)"), {"timeout": f"{int(timeout_seconds * 1000)}ms"})
        try:
            connection.execute(text(TRY_LOCK_ROW if busy is not None else TAKE_LOCK_ROW), {"lock": lock})
        except OperationalError as exc:
            connection.rollback()
            if busy is not None and "could not obtain lock" in str(exc):
                raise FlowBusy(f"{busy}; this run will retry after it") from None
            raise
        try:
            yield
        finally:
            connection.rollback()


def exclusive(engine: Engine, lock: str, *, what: str) -> AbstractContextManager[None]:
    """Hold the flow lock ``lock`` for the block, across processes and hosts; if someone else holds
    it, fail at once with ``what`` (never race them)."""
    return _held_lock_row(engine, lock, busy=what)


def waiting_lock(engine: Engine, lock: str, *, timeout_seconds: float) -> AbstractContextManager[None]:
    """Like :func:`exclusive`, but wait up to ``timeout_seconds`` for the holder instead of failing."""
    return _held_lock_row(engine, lock, busy=None, timeout_seconds=timeout_seconds)


def lock_for_transaction(connection: Connection, lock: str) -> None:
    """Take the flow lock ``lock`` until the current transaction ends (waits for a holder). For
    loads that must not interleave; the finance role cannot take it."""
    from sqlalchemy import text

    connection.execute(text(ENSURE_LOCK_ROW), {"lock": lock})
    connection.execute(text(TAKE_LOCK_ROW), {"lock": lock})


def clear_staging(connection: Connection, run: RunRef) -> None:
    connection.execute(staged_record.delete().where(staged_record.c.flow == run.flow, staged_record.c.run_id == run.run_id))


UNSTORABLE = "unstorable"
"""Staging status of a record PostgreSQL cannot hold as it is (see ``backbone.storable``)."""


def set_aside_unstorable(
    connection: Connection, run: RunRef, entity: str, records: Sequence[tuple[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    """Return the records that can be stored; quarantine the others with their reason.

    An unstorable record is staged as ``unstorable`` under a safe key with a safe copy of its
    payload (so counts add up and the next steps skip it), and quarantined with the rule
    ``<entity>.unstorable``. The other records of the page go on as usual.
    """
    from backbone.storable import safe_key, safe_raw, unstorable_reason

    storable: list[tuple[str, dict[str, Any]]] = []
    set_aside: dict[str, dict[str, Any]] = {}
    problems: list[QuarantineRow] = []
    for key, payload in records:
        reason = unstorable_reason(key, payload)
        if reason is None:
            storable.append((key, payload))
            continue
        stored_key, raw = safe_key(key), safe_raw(payload, reason)
        set_aside[stored_key] = {**_staged_row(run, entity, stored_key, raw), "status": UNSTORABLE}
        problems.append(QuarantineRow(entity, stored_key, f"{entity.split(':')[0]}.unstorable", f"the record {reason}", raw))
    if set_aside:
        from sqlalchemy.dialects.postgresql import insert

        statement = insert(staged_record)
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=["flow", "run_id", "entity", "source_key"],
                set_={"payload": statement.excluded.payload, "status": UNSTORABLE, "canonical": None},
            ),
            list(set_aside.values()),
        )
        add_quarantine(connection, run, problems)
        log.warning("%d %s records cannot be stored and are exceptions: %s", len(problems), entity, [p.reason for p in problems[:3]])
    return storable


def _staged_row(run: RunRef, entity: str, key: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"flow": run.flow, "run_id": run.run_id, "entity": entity, "source_key": key, "payload": payload}


def _staged_rows(run: RunRef, entity: str, records: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Rows of ``ops.staged_record`` by key (the last copy of a key wins)."""
    return {key: _staged_row(run, entity, key, payload) for key, payload in records}


def stage(connection: Connection, run: RunRef, entity: str, records: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Keep raw records of this run (the last copy of a key wins: a page can repeat a record)."""
    from sqlalchemy.dialects.postgresql import insert

    records = set_aside_unstorable(connection, run, entity, records)
    if not records:
        return
    rows = _staged_rows(run, entity, records)
    # One statement with many parameter sets (SQLAlchemy's "insertmanyvalues" batches them), not a
    # VALUES list compiled anew for every page: compiling was a third of the weekly extract.
    statement = insert(staged_record)
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["flow", "run_id", "entity", "source_key"],
            set_={"payload": statement.excluded.payload, "status": "staged", "canonical": None},
        ),
        list(rows.values()),
    )


def stage_if_absent(connection: Connection, run: RunRef, entity: str, records: Sequence[tuple[str, dict[str, Any]]]) -> int:
    """Keep raw records whose key this run has not staged yet (a held copy judged again must not
    replace the vendor's fresh one); returns how many were added."""
    from sqlalchemy.dialects.postgresql import insert

    records = set_aside_unstorable(connection, run, entity, records)
    if not records:
        return 0
    rows = _staged_rows(run, entity, records)
    statement = insert(staged_record).on_conflict_do_nothing(index_elements=["flow", "run_id", "entity", "source_key"])
    result = connection.execute(statement.returning(staged_record.c.source_key), list(rows.values()))
    return len(result.all())


def stage_unique(connection: Connection, run: RunRef, entity: str, records: Sequence[tuple[str, dict[str, Any]]]) -> int:
    """Keep raw records whose key must not repeat with different content (returns conflicts found).

    A key seen again with the same payload is a harmless repeat. A key seen again with a different
    payload is marked ``conflict`` (the first copy stays as ``payload``, the other in ``canonical``),
    so validation can make it an exception instead of silently keeping one of the two.
    """
    from sqlalchemy import case, func, literal
    from sqlalchemy.dialects.postgresql import insert

    conflicts = 0
    pending = set_aside_unstorable(connection, run, entity, records)
    while pending:
        batch: dict[str, dict[str, Any]] = {}
        repeats: list[tuple[str, dict[str, Any]]] = []
        for key, payload in pending:
            if key in batch:
                repeats.append((key, payload))
            else:
                batch[key] = _staged_row(run, entity, key, payload)
        statement = insert(staged_record)
        differs = staged_record.c.payload != statement.excluded.payload
        result = connection.execute(
            statement.on_conflict_do_update(
                index_elements=["flow", "run_id", "entity", "source_key"],
                set_={
                    "status": case((differs, literal("conflict")), else_=staged_record.c.status),
                    "canonical": case(
                        (differs, func.jsonb_build_object("conflicting_payload", statement.excluded.payload)),
                        else_=staged_record.c.canonical,
                    ),
                },
            ).returning(staged_record.c.status),
            list(batch.values()),
        )
        conflicts += sum(1 for (status,) in result if status == "conflict")
        pending = repeats
    return conflicts


STAGED_FIELDS = ("source_key", "payload", "canonical", "status")


def iter_staged(
    engine: Engine, run: RunRef, entity: str, *, status: str | None = None, chunk_size: int = 5000
) -> Iterator[list[dict[str, Any]]]:
    """Staged rows of the run in key order, ``chunk_size`` at a time (keyset paging: flat memory).
    Unstorable records (already exceptions) are left out unless asked for by status."""
    from sqlalchemy import select

    last_key = ""
    while True:
        query = (
            select(*(staged_record.c[name] for name in STAGED_FIELDS))
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
        else:
            query = query.where(staged_record.c.status != UNSTORABLE)
        with engine.connect() as connection:  # plain tuples zipped with the names: no mapping view per row
            rows = [dict(zip(STAGED_FIELDS, r, strict=True)) for r in connection.execute(query).tuples()]
        if not rows:
            return
        yield rows
        last_key = rows[-1]["source_key"]


Verdict = tuple[str, str, "dict[str, Any] | None"]
"""(source key, ``valid`` or ``quarantined``, the canonical row kept for loading)."""


@dataclass
class Tally:
    """What validating a run's staged records came to."""

    valid: int = 0
    quarantined: int = 0
    failed_rules: dict[str, int] = field(default_factory=dict)
    extra: dict[str, int] = field(default_factory=dict)
    """Flow-specific counts a judge reports per chunk (e.g. contacts quarantined), summed."""


def validate_staged(
    warehouse: Engine,
    run: RunRef,
    entity: str,
    judge: Callable[[list[dict[str, Any]]], tuple[list[Verdict], list[QuarantineRow], dict[str, int]]],
    *,
    chunk_size: int,
    details: Callable[[Tally], dict[str, Any]] | None = None,
    record: bool = True,
) -> Tally:
    """The skeleton every validating flow shares: staged records chunk by chunk → ``judge`` →
    verdicts and quarantine rows written per chunk → counts, rule counts and the run record.

    ``judge`` is the flow's own rules (pure where it can be); ``details`` adds what the flow wants
    in the run record besides ``failed_rules``. ``record=False`` leaves the run record to the caller
    (a flow that validates several entities and records their sum).
    """
    tally = Tally()
    for chunk in iter_staged(warehouse, run, entity, chunk_size=chunk_size):
        verdicts, quarantine_rows, extra = judge(chunk)
        with warehouse.begin() as connection:
            set_verdicts(connection, run, entity, verdicts)
            add_quarantine(connection, run, quarantine_rows)
        tally.valid += sum(1 for _, status, _ in verdicts if status == "valid")
        tally.quarantined += sum(1 for _, status, _ in verdicts if status == "quarantined")
        for row in quarantine_rows:
            tally.failed_rules[row.rule] = tally.failed_rules.get(row.rule, 0) + 1
        for name, count in extra.items():
            tally.extra[name] = tally.extra.get(name, 0) + count
    if not record:
        return tally
    with warehouse.begin() as connection:
        record_run(
            connection,
            run,
            valid=tally.valid,
            quarantined=tally.quarantined,
            details={"failed_rules": dict(tally.failed_rules), **(details(tally) if details else {})},
        )
    return tally


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
            "canonicals": [json_for_database(v[2]) if v[2] is not None else None for v in verdicts],
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
        {
            "flow": run.flow,
            "run_id": run.run_id,
            "entity": r.entity,
            "source_key": r.source_key,
            "rule": r.rule,
            "reason": r.reason,
            "raw": r.raw,
        }
        for r in rows
    ]
    connection.execute(insert(quarantine).values(values).on_conflict_do_nothing(constraint="uq_quarantine_record_rule"))


def record_run(connection: Connection, run: RunRef, **fields: Any) -> None:
    """Create or update the run's record (its current attempt) with whatever fields are known so far.

    Every count is **by this attempt**. ``written_back`` adds to what this attempt already wrote
    (a posting task retried by Airflow inside the attempt counts each object once, as it posts it);
    ``details`` merges into the attempt's details.
    """
    from sqlalchemy.dialects.postgresql import insert

    values = {"flow": run.flow, "run_id": run.run_id, "interval_start": run.interval_start, "interval_end": run.interval_end, **fields}
    values.setdefault("status", "running")
    if "quarantined" in fields:  # exceptions = what validation refused + what could not be stored at all
        values["quarantined"] = fields["quarantined"] + count_unstorable(connection, run)
    statement = insert(flow_run).values(values)
    updates = {k: statement.excluded[k] for k in values if k not in ("flow", "run_id")}
    if "details" in fields:
        updates["details"] = flow_run.c.details.op("||")(statement.excluded.details)
    if "written_back" in fields:
        updates["written_back"] = flow_run.c.written_back + statement.excluded.written_back
    connection.execute(statement.on_conflict_do_update(index_elements=["flow", "run_id"], set_=updates))


def start_attempt(connection: Connection, run: RunRef, *, started_at: datetime, details: dict[str, Any]) -> None:
    """Begin a new attempt on the interval's record: counts back to zero, details replaced, status
    ``running``. The attempt before it stays in ``ops.flow_run_attempt`` as it ended (a trigger keeps
    every attempt, keyed by its start), so a rerun never overwrites what an earlier one did."""
    from sqlalchemy import update

    connection.execute(
        update(flow_run)
        .where(flow_run.c.flow == run.flow, flow_run.c.run_id == run.run_id)
        .values(
            interval_start=run.interval_start,
            interval_end=run.interval_end,
            status="running",
            started_at=started_at,
            finished_at=None,
            extracted=0,
            valid=0,
            quarantined=0,
            loaded=0,
            written_back=0,
            details=details,
            airflow_url=None,
        )
    )


def count_unstorable(connection: Connection, run: RunRef) -> int:
    from sqlalchemy import func, select

    query = select(func.count()).where(
        staged_record.c.flow == run.flow, staged_record.c.run_id == run.run_id, staged_record.c.status == UNSTORABLE
    )
    return int(connection.execute(query).scalar_one())


def open_exceptions_to_recheck(
    connection: Connection, run: RunRef, entity: str, rules: Iterable[str], *, flows: Sequence[str] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Records of this flow held in earlier runs for a cause that may since have been fixed (a
    mapping added, a customer created, a date now inside the export window) and still open: the
    latest raw copy per key, to be judged again by this run. One that passes goes out with this run
    and its exception is resolved by it (:func:`resolve_exceptions`); one that fails again stays open.
    Only exceptions of intervals up to this run's are taken: a backfill of an old interval does not
    judge what later intervals held, so the end state does not depend on the order runs happen in.
    ``flows`` widens the search to other flows sharing the entity (the two invoicing flows)."""
    rows = connection.exec_driver_sql(
        """
        SELECT DISTINCT ON (q.source_key) q.source_key, q.raw FROM ops.quarantine q
        WHERE q.flow = ANY(%(flows)s) AND q.entity = %(entity)s AND q.resolved_at IS NULL AND q.run_id <> %(run_id)s
          AND q.rule = ANY(%(rules)s)
          AND EXISTS (SELECT 1 FROM ops.flow_run r WHERE r.flow = q.flow AND r.run_id = q.run_id AND r.interval_end <= %(end)s)
          AND NOT EXISTS (SELECT 1 FROM ops.quarantine o WHERE o.flow = q.flow AND o.entity = q.entity AND o.source_key = q.source_key
                          AND o.resolved_at IS NULL AND NOT (o.rule = ANY(%(rules)s)))
        ORDER BY q.source_key, q.quarantined_at DESC
        """,
        {"flows": list(flows or [run.flow]), "entity": entity, "run_id": run.run_id, "rules": sorted(rules), "end": run.interval_end},
    ).all()
    return [(key, raw) for key, raw in rows if isinstance(raw, dict)]


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


@dataclass(frozen=True)
class Claim:
    """Who held an interval before this run claimed it (None when nobody was running it)."""

    previous_owner: str | None
    previous_status: str | None


@dataclass(frozen=True)
class FlowHistory:
    """What a flow's run records say about time: where its first run started, and the spans its
    successful runs covered (from ``covers_from`` when a run caught up missed intervals)."""

    first_start: datetime
    covered: list[tuple[datetime, datetime]]
    piloted: list[tuple[datetime, datetime]] = field(default_factory=list)
    """Spans of pilot runs that sent nothing on purpose: not covered (the next real run catches them
    up), but not overdue either (the deadline watchdog does not alert on them)."""


WRITES_SKIPPED = "writes_skipped"
"""A ``details`` key of a run that deliberately sent nothing (pilot mode of a flow without an
outbox): it succeeded, but it does not cover its interval, so the next real run catches it up."""

HISTORY_QUERY = (
    "SELECT flow, interval_start, interval_end, "
    "CASE WHEN details ? 'writes_skipped' THEN 'writes_skipped' ELSE status END AS status, details->>'covers_from' AS covers_from "
    "FROM ops.flow_run WHERE flow = ANY(:flows) AND run_id <> :excluding"
)
"""The run records :func:`flow_histories` reads (also run by the ledger through its read-only engines)."""


def histories_from_rows(rows: Sequence[Any]) -> dict[str, FlowHistory]:
    """Rows of :data:`HISTORY_QUERY` → each flow's :class:`FlowHistory` (flows without runs are absent)."""
    by_flow: dict[str, list[Any]] = {}
    for row in rows:
        by_flow.setdefault(row[0], []).append(row)
    return {
        flow: FlowHistory(
            first_start=min(r[1] for r in mine),
            covered=[(datetime.fromisoformat(r[4]) if r[4] else r[1], r[2]) for r in mine if r[3] == "success"],
            piloted=[(r[1], r[2]) for r in mine if r[3] == WRITES_SKIPPED],
        )
        for flow, mine in by_flow.items()
    }


def flow_histories(connection: Connection, flows: Sequence[str], *, excluding_run: str = "") -> dict[str, FlowHistory]:
    """The run history of each of ``flows`` that has run (``excluding_run``: leave that run's record out)."""
    from sqlalchemy import text

    rows = connection.execute(text(HISTORY_QUERY), {"flows": list(flows), "excluding": excluding_run}).all()
    return histories_from_rows(rows)


def last_success_end(connection: Connection, run: RunRef) -> datetime | None:
    """The end of the latest successful run of this flow that ended at or before this run's
    interval starts (None when there is none): where a catching-up run starts reading."""
    from sqlalchemy import func, select

    return connection.execute(
        select(func.max(flow_run.c.interval_end)).where(
            flow_run.c.flow == run.flow,
            flow_run.c.status == "success",
            ~flow_run.c.details.has_key(WRITES_SKIPPED),
            flow_run.c.interval_end <= run.interval_start,
            flow_run.c.run_id != run.run_id,
        )
    ).scalar_one()


def first_piloted_start(connection: Connection, run: RunRef) -> datetime | None:
    """Where the earliest pilot run (writes skipped) of this flow before this interval started."""
    from sqlalchemy import func, select

    return connection.execute(
        select(func.min(flow_run.c.interval_start)).where(
            flow_run.c.flow == run.flow,
            flow_run.c.details.has_key(WRITES_SKIPPED),
            flow_run.c.interval_end <= run.interval_start,
            flow_run.c.run_id != run.run_id,
        )
    ).scalar_one()


def claim_interval(connection: Connection, run: RunRef, owner: str, *, is_active: Callable[[str], bool]) -> Claim:
    """Make ``owner`` (an Airflow run id) the one run working on this flow's interval, or raise
    :class:`FlowBusy` before anything is touched when another run of the same interval is active.

    The run record is the lock: its row is locked ``FOR UPDATE`` while deciding, so two runs
    claiming together are served one after the other. A record left ``running`` by a run that is
    no longer active (killed, lost with its worker) is taken over, and that attempt is noted.
    """
    from sqlalchemy import select
    from sqlalchemy.dialects.postgresql import insert

    key = (flow_run.c.flow == run.flow) & (flow_run.c.run_id == run.run_id)
    while True:
        row = connection.execute(select(flow_run.c.status, flow_run.c.details).where(key).with_for_update()).first()
        if row is not None:
            break
        created = connection.execute(
            insert(flow_run)
            .values(
                flow=run.flow,
                run_id=run.run_id,
                interval_start=run.interval_start,
                interval_end=run.interval_end,
                status="running",
                details={"airflow_run_id": owner},
            )
            .on_conflict_do_nothing()
            .returning(flow_run.c.run_id)
        ).first()
        if created is not None:
            return Claim(previous_owner=None, previous_status=None)
    status, details = row
    previous = (details or {}).get("airflow_run_id")
    if status == "running" and previous and previous != owner and is_active(previous):
        raise FlowBusy(
            f"{run.flow} for {run.interval_start.isoformat()} → {run.interval_end.isoformat()} is being run by Airflow run {previous!r} "
            "right now; "
            "this run stops without touching anything (one run per interval at a time)"
        )
    return Claim(previous_owner=previous if previous != owner else None, previous_status=status)


def close_abandoned_runs(
    connection: Connection, flow: str, *, except_run_id: str, is_active: Callable[[str], bool], at: datetime
) -> list[str]:
    """Mark ``failed`` the run records of ``flow`` still ``running`` whose Airflow run has ended
    (a killed task or a lost database never closed them); returns their interval keys."""
    from sqlalchemy import select, update

    closed = []
    rows = connection.execute(
        select(flow_run.c.run_id, flow_run.c.details)
        .where(flow_run.c.flow == flow, flow_run.c.status == "running", flow_run.c.run_id != except_run_id)
        .with_for_update(skip_locked=True)
    ).all()
    for run_id, details in rows:
        owner = (details or {}).get("airflow_run_id")
        if owner and is_active(owner):
            continue
        reason = f"Airflow run {owner!r} ended without closing this record (killed, or the warehouse was unreachable); found by a later run"
        connection.execute(
            update(flow_run)
            .where(flow_run.c.flow == flow, flow_run.c.run_id == run_id)
            .values(status="failed", finished_at=at, details=flow_run.c.details.op("||")({"failure": reason}))
        )
        closed.append(run_id)
    return closed


def read_run(engine: Engine, run: RunRef) -> dict[str, Any] | None:
    from sqlalchemy import select

    with engine.connect() as connection:
        row = connection.execute(select(flow_run).where(flow_run.c.flow == run.flow, flow_run.c.run_id == run.run_id)).first()
    return dict(row._mapping) if row else None


def finish_run(
    engine: Engine,
    run: RunRef,
    *,
    succeeded: bool,
    finished_at: datetime,
    airflow_url: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Close the run's record; on success drop its staging rows (they are evidence only on failure)."""
    with engine.begin() as connection:
        extra = {"details": details} if details else {}
        record_run(connection, run, status="success" if succeeded else "failed", finished_at=finished_at, airflow_url=airflow_url, **extra)
        if succeeded:
            resolve_exceptions(connection, run, resolved_at=finished_at)
            clear_staging(connection, run)
    return read_run(engine, run) or {}
