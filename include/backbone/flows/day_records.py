"""Day records: a person's approved time on one project, task and day as one accounting record.

With ``BACKBONE_XERO_TIME_AGGREGATION=day`` (or the Xero Connection's ``time_aggregation`` extra)
the weekly flow still writes one outbox line per entry version, but sends Xero one Projects time
entry per day record (``backbone.hooks.accounting.day_record_key``): a week of 1,000 entries by
40 people costs about as many calls as person-days, not entries.

What accounting holds is kept beside the outbox: ``acct.time_day_record`` (the record, its total
and its Xero id) and ``acct.time_day_member`` (which entry version it sums). Posting a group of
entries works out each touched record's new members (entries leaving, moving, changing or
joining), counts an attempt on each record before any call, then creates, replaces or deletes
it, one call per record, with an Idempotency-Key made of the record and its content. A record
tried before without an answer is looked up by its marker first, so nothing is created twice.

An entry once in a day record stays on this path when the setting is switched back, so an update
never overwrites a whole day with one entry; entries posted one by one before stay one by one.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from backbone.hooks.accounting import (
    DAY_RECORD_KEY_FIELDS,
    DayRecord,
    PostedObject,
    RejectedByAccounting,
    TimeDayPoster,
    day_record_key,
    request_id_for,
)
from backbone.hooks.oauth import ReauthorisationRequired

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from backbone.warehouse.ops import RunRef

log = logging.getLogger(__name__)

LINE_FIELDS = (
    *DAY_RECORD_KEY_FIELDS,
    "person_id",
    "person_name",
    "name_of",
    "client_id",
    "client_name",
    "project_name",
    "billing_code",
    "item_name",
    "gl_account",
    "hourly_rate",
    "currency",
)
"""What a day record keeps of its newest member line: enough to create or replace it alone."""


@dataclass
class DayOutcome:
    """One day record's call: the record accounting now holds (``None`` once deleted or when no
    call was needed and none is held), or the refusal."""

    posted: PostedObject | None = None
    rejected: RejectedByAccounting | None = None
    called: bool = True


def split_day_entries(
    accounting: Any, warehouse: Engine, entries: list[list[dict[str, Any]]], targets: dict[str, str | None]
) -> tuple[list[list[dict[str, Any]]], list[list[dict[str, Any]]], dict[str, list[str]]]:
    """``(entries for day records, entries posted one by one, the day records already holding
    entries)``: an entry already in a day record stays there; with aggregation on, so does any
    entry with no record of its own to update."""
    if not isinstance(accounting, TimeDayPoster) or not entries:
        return [], entries, {}
    held = _records_of_entries(warehouse, [versions[0]["entry_id"] for versions in entries])
    day_mode = bool(accounting.time_aggregation)
    by_day, one_by_one = [], []
    for versions in entries:
        entry_id = versions[0]["entry_id"]
        if entry_id in held or (day_mode and targets.get(entry_id) is None):
            by_day.append(versions)
        else:
            one_by_one.append(versions)
    return by_day, one_by_one, held


def post_day_records(
    accounting: TimeDayPoster,
    warehouse: Engine,
    run: RunRef,
    entries: list[list[dict[str, Any]]],
    old_keys: dict[str, list[str]],
    *,
    concurrency: int,
) -> tuple[list[tuple[dict[str, Any], str, str | None, str | None]], BaseException | None]:
    """Post the day records these entries touch (``old_keys``: the records already holding them,
    from :func:`split_day_entries`); answers ``(results, error)``, a result per line as ``(line,
    status, accounting_id, error)``. Lines of a record that could not be sent (an outage) get no
    result and stay pending; ``error`` is that outage, raised by the caller."""
    newest = {versions[0]["entry_id"]: versions[-1] for versions in entries}
    new_key = {entry_id: day_record_key(line) for entry_id, line in newest.items() if line["action"] != "delete"}  # type: ignore[arg-type]
    touched = {key for keys in old_keys.values() for key in keys} | set(new_key.values())
    if not touched:  # withdrawals of entries that never reached accounting
        return [(line, "posted", None, None) for versions in entries for line in versions], None
    stored, members = _load_days(warehouse, sorted(touched))

    wanted: dict[str, dict[str, tuple[int, int]]] = {key: dict(members.get(key, {})) for key in touched}
    for entry_id in newest:
        for key in old_keys.get(entry_id, ()):
            wanted[key].pop(entry_id, None)
    line_of: dict[str, dict[str, Any]] = {key: row["line"] for key, row in stored.items()}
    for entry_id, key in new_key.items():
        wanted[key][entry_id] = (int(newest[entry_id]["entry_version"]), int(newest[entry_id]["minutes"]))
        line_of[key] = {field: newest[entry_id].get(field) for field in LINE_FIELDS}

    records = {key: DayRecord(key, _as_line(line_of[key]), {e: m for e, (_, m) in wanted[key].items()}) for key in touched}
    tried_before = _count_attempts(warehouse, run, records, stored)

    outcomes: dict[str, DayOutcome] = {}
    never_sent: list[str] = []
    error: BaseException | None = None
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="post-day") as pool:
        futures = {
            key: pool.submit(_post_one, accounting, record, stored.get(key), tried_before.get(key, 0)) for key, record in records.items()
        }
        for key, future in futures.items():
            try:
                outcomes[key] = future.result()
            except Exception as exc:  # noqa: BLE001 - an outage: recorded so far, raised by the caller
                if error is None:
                    error = exc
                    never_sent = [other for other, pending in futures.items() if pending.cancel()]
    _save_days(warehouse, run, records, wanted, outcomes, never_sent)

    results = []
    for versions in entries:
        entry_id = versions[0]["entry_id"]
        keys = set(old_keys.get(entry_id, ())) | ({new_key[entry_id]} if entry_id in new_key else set())
        if any(key not in outcomes for key in keys):
            continue  # not sent: stays pending
        refusal = next((outcomes[key].rejected for key in sorted(keys) if outcomes[key].rejected is not None), None)
        if refusal is not None:
            results += [(line, "failed", None, str(refusal)) for line in versions]
            continue
        holder = outcomes[new_key[entry_id]].posted if entry_id in new_key else None
        accounting_id = holder.object_id if holder is not None else None
        results += [(line, "posted", accounting_id, None) for line in versions]
    sent = sum(1 for outcome in outcomes.values() if outcome.called)
    log.info(
        "day records: %d entries in %d records, %d calls (%d records unchanged)", len(entries), len(records), sent, len(outcomes) - sent
    )
    return results, error


def _post_one(accounting: TimeDayPoster, record: DayRecord, stored: dict[str, Any] | None, tried_before: int) -> DayOutcome:
    """Create, replace or delete one day record; a refusal is the record's outcome, not an error."""
    held = stored.get("accounting_id") if stored else None
    try:
        if not record.entries:
            if held is None:
                return DayOutcome(called=False)
            accounting.delete_time_entry(held, request_id=request_id_for("day-record-delete", record.key, str(stored["content_hash"])))  # type: ignore[index]
            return DayOutcome()
        if held is not None and stored is not None and stored.get("content_hash") == record.content_hash:
            return DayOutcome(posted=PostedObject("TimeEntry", held, record.content_hash, {}), called=False)
        if held is None and tried_before:  # an attempt whose answer was lost may have created it
            found = accounting.find_day_record(record)
            if found is not None:
                log.info("day record %s already in accounting as %s (an earlier attempt); adopted", record.key, found.object_id)
                held = found.object_id
        posted = accounting.post_day_record(record, target=held, request_id=request_id_for("day-record", record.key, record.content_hash))
        return DayOutcome(posted=posted)
    except ReauthorisationRequired:
        raise
    except RejectedByAccounting as exc:
        return DayOutcome(rejected=exc)


def _as_line(line: dict[str, Any]) -> Any:
    if isinstance(line.get("work_date"), str):
        line = {**line, "work_date": date.fromisoformat(line["work_date"])}
    return line


def _records_of_entries(warehouse: Engine, entry_ids: list[str]) -> dict[str, list[str]]:
    """The day records holding each entry (one, or two while a move is half done)."""
    held: dict[str, list[str]] = defaultdict(list)
    with warehouse.connect() as connection:
        for entry_id, key in connection.exec_driver_sql(
            "SELECT entry_id, day_key FROM acct.time_day_member WHERE entry_id = ANY(%(ids)s)", {"ids": entry_ids}
        ):
            held[entry_id].append(key)
    return dict(held)


def _load_days(warehouse: Engine, keys: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, tuple[int, int]]]]:
    """The stored day records and their members (``{key: {entry_id: (version, minutes)}}``)."""
    members: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)
    with warehouse.connect() as connection:
        stored = {
            row.day_key: dict(row._mapping)
            for row in connection.exec_driver_sql(
                "SELECT day_key, line, content_hash, accounting_id, attempts FROM acct.time_day_record WHERE day_key = ANY(%(k)s)",
                {"k": keys},
            )
        }
        for key, entry_id, version, minutes in connection.exec_driver_sql(
            "SELECT day_key, entry_id, entry_version, minutes FROM acct.time_day_member WHERE day_key = ANY(%(k)s)", {"k": keys}
        ):
            members[key][entry_id] = (int(version), int(minutes))
    return stored, members


def _count_attempts(warehouse: Engine, run: RunRef, records: dict[str, DayRecord], stored: dict[str, Any]) -> dict[str, int]:
    """Count this attempt on every touched record before any call (a record is created here on its
    first try); answers the attempts made before this one."""
    rows = [
        {
            "day_key": key,
            **{field: str(record.line[field]) for field in DAY_RECORD_KEY_FIELDS},  # type: ignore[literal-required]
            "line": json.dumps(stored[key]["line"] if key in stored else record.line, default=str),
            "run_id": run.run_id,
        }
        for key, record in records.items()
    ]
    with warehouse.begin() as connection:
        answered = connection.exec_driver_sql(
            """
            INSERT INTO acct.time_day_record AS d (day_key, person_ref_id, customer_ref_id, project_id, item_ref_id,
                billable_status, work_date, line, run_id, attempts)
            SELECT day_key, person_ref_id, customer_ref_id, project_id, item_ref_id, billable_status, work_date::date,
                line::jsonb, run_id, 1
            FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(day_key text, person_ref_id text, customer_ref_id text,
                project_id text, item_ref_id text, billable_status text, work_date text, line text, run_id text)
            ON CONFLICT (day_key) DO UPDATE SET attempts = d.attempts + 1, updated_at = now()
            RETURNING day_key, attempts - 1
            """,
            {"rows": json.dumps(rows)},
        ).all()
    return {key: int(before) for key, before in answered}


def _save_days(
    warehouse: Engine,
    run: RunRef,
    records: dict[str, DayRecord],
    wanted: dict[str, dict[str, tuple[int, int]]],
    outcomes: dict[str, DayOutcome],
    never_sent: list[str],
) -> None:
    """Record what accounting now holds for every record that answered, in one transaction: new
    totals and members where it took the call, the refusal where it did not; a record whose
    entries all left is removed. Records whose call never started (cancelled after an outage)
    get their attempt back, so the next run sends them without a lookup."""
    held = {key: o for key, o in outcomes.items() if o.rejected is None}
    gone = [key for key in held if not records[key].entries]
    kept = [key for key in held if records[key].entries]
    with warehouse.begin() as connection:
        if held:
            connection.exec_driver_sql("DELETE FROM acct.time_day_member WHERE day_key = ANY(%(k)s)", {"k": list(held)})
        if gone:
            connection.exec_driver_sql("DELETE FROM acct.time_day_record WHERE day_key = ANY(%(k)s)", {"k": gone})
        if kept:
            connection.exec_driver_sql(
                """
                UPDATE acct.time_day_record AS d SET line = r.line::jsonb, minutes = r.minutes, entries = r.entries,
                    content_hash = r.content_hash, accounting_id = coalesce(r.accounting_id, d.accounting_id),
                    last_error = NULL, run_id = r.run_id, updated_at = now()
                FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(day_key text, line text, minutes int, entries int,
                    content_hash text, accounting_id text, run_id text)
                WHERE d.day_key = r.day_key
                """,
                {
                    "rows": json.dumps(
                        [
                            {
                                "day_key": key,
                                "line": json.dumps(records[key].line, default=str),
                                "minutes": records[key].minutes,
                                "entries": len(records[key].entries),
                                "content_hash": records[key].content_hash,
                                "accounting_id": held[key].posted.object_id if held[key].posted is not None else None,
                                "run_id": run.run_id,
                            }
                            for key in kept
                        ]
                    )
                },
            )
            connection.exec_driver_sql(
                """
                INSERT INTO acct.time_day_member (entry_id, day_key, entry_version, minutes)
                SELECT entry_id, day_key, entry_version, minutes
                FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(entry_id text, day_key text, entry_version int, minutes int)
                """,
                {
                    "rows": json.dumps(
                        [
                            {"entry_id": entry_id, "day_key": key, "entry_version": version, "minutes": minutes}
                            for key in kept
                            for entry_id, (version, minutes) in wanted[key].items()
                        ]
                    )
                },
            )
        if never_sent:
            connection.exec_driver_sql(
                "UPDATE acct.time_day_record SET attempts = attempts - 1 WHERE day_key = ANY(%(k)s) AND attempts > 0",
                {"k": never_sent},
            )
        refused = {key: str(o.rejected) for key, o in outcomes.items() if o.rejected is not None}
        if refused:
            connection.exec_driver_sql(
                "UPDATE acct.time_day_record AS d SET last_error = r.error, updated_at = now() "
                "FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(day_key text, error text) WHERE d.day_key = r.day_key",
                {"rows": json.dumps([{"day_key": k, "error": e} for k, e in refused.items()])},
            )
