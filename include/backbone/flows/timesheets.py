"""Approved PSA time → accounting time records, exactly once per entry version.

extract → validate → load → post. What a week covers is decided by **approval time**: an entry
approved in ``[interval_start, interval_end)`` goes out with that run, whatever day it was worked.
Each approved version of an entry is one line of the outbox ``acct.time_export``, written before
anything is posted and never rewritten; posting uses a ``requestid`` derived from the entry and
version, so a retry, a crash after the accounting system answered, or a rerun of the interval
cannot create a second object. An entry edited after export comes back as a new version and is
posted as an update of the object its earlier version created (a correction, never a duplicate).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError, ThreadPoolExecutor
from contextlib import closing
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from backbone.accounting_mapping import AccountingReferences, load_mapping, normalise
from backbone.data_dictionary import load_entity
from backbone.flows.day_records import post_day_records, split_day_entries
from backbone.flows.outbox import VersionedOutbox, version_key
from backbone.flows.pipelining import BackgroundWriter, read_ahead
from backbone.flows.references import load_references, refresh_references
from backbone.hooks.accounting import RejectedByAccounting, TimeBatchPoster
from backbone.hooks.oauth import ReauthorisationRequired
from backbone.validation import RuleFailure, SchemaDrift, validate_rows
from backbone.warehouse import ops
from backbone.warehouse.ops import QuarantineRow, RunRef

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from backbone.hooks.accounting import AccountingSystem
    from backbone.hooks.psa import PsaTimeSource

log = logging.getLogger(__name__)
_json_string = json.encoder.encode_basestring_ascii  # what json.dumps writes for a str (ensure_ascii, its default)

TIME_RECORD_KEY_NAMESPACE = "TimeActivity"
"""The first part of every time record's idempotency key. Keys already sent use it, so it stays as
it is (it names QuickBooks' object only by history): a new namespace would post every line again."""

FLOW = "timesheets_weekly_to_accounting"
ENTITY = "time_entry"
WITHDRAWAL = "time_entry_withdrawal"
MAX_HOURS_PER_PERSON_DAY = Decimal("24")
CENT = Decimal("0.01")
RESULT_BATCH = 2000
PSA_ENTRY_FIELDS = frozenset(
    {
        "id",
        "version",
        "spent_date",
        "hours",
        "billable",
        "billable_rate",
        "currency",
        "approval_status",
        "approved_at",
        "updated_at",
        "notes",
        "user",
        "client",
        "project",
        "task",
    }
)
"""The fields of a PSA time entry this flow reads or expects; others are reported as schema drift."""
POST_BATCH_ENTRIES = 2000
HEALABLE_RULES = frozenset(
    {
        "time_entry.client.mapped",
        "time_entry.person.mapped",
        "time_entry.billing_code.mapped",
        "time_entry.billing_code.item_exists",
        "time_entry.billing_code.gl_account",
        "time_entry.work_date.not_future",
    }
)
"""Exceptions whose cause can go away without a new version of the entry (finance adds the
customer, the mapping gains the code, the work date falls inside a later export week): every run
judges such open exceptions of earlier runs again, and posts the ones that now pass."""


entry_key = version_key


# --- extract -------------------------------------------------------------------------------------
def extract_time_entries(
    psa: PsaTimeSource, accounting: AccountingSystem, warehouse: Engine, run: RunRef, *, page_size: int
) -> dict[str, int]:
    """Refresh the accounting reference lists, then stage every entry approved in the interval."""
    references = refresh_references(accounting, warehouse, run)
    with warehouse.begin() as connection:
        ops.clear_staging(connection, run)
    withdrawn = _stage_withdrawals(psa, warehouse, run, page_size=page_size)
    extracted = conflicts = 0
    for page in psa.iter_approved_time_entries(run.extract_from, run.interval_end, page_size=page_size):
        records = [
            (entry_key(str(e.get("id")), e.get("version")), e)
            for e in page
            if not version_below(e.get("version"), withdrawn.get(str(e.get("id"))))
        ]
        with warehouse.begin() as connection:
            conflicts += ops.stage_unique(connection, run, ENTITY, records)
        extracted += len(records)
        log.info("extracted %d time entries approved %s → %s", extracted, run.extract_from.isoformat(), run.interval_end.isoformat())
    with warehouse.begin() as connection:
        rechecks = ops.open_exceptions_to_recheck(connection, run, ENTITY, HEALABLE_RULES)
        conflicts += ops.stage_unique(connection, run, ENTITY, rechecks)
    if rechecks:
        log.info("judging %d entries held by earlier runs again (their cause may be fixed)", len(rechecks))
    staged = count_staged(warehouse, run, entity=ENTITY)
    with warehouse.begin() as connection:
        ops.record_run(
            connection,
            run,
            extracted=staged,
            details={
                "entries_received": extracted,
                "withdrawn_in_psa": len(withdrawn),
                "exceptions_rechecked": len(rechecks),
                "conflicting_repeats": conflicts,
                "accounting_references": references,
            },
        )
    return {"extracted": staged, "conflicts": conflicts}


def version_below(version: Any, withdrawn_version: int | None) -> bool:
    try:
        return withdrawn_version is not None and int(version) < withdrawn_version
    except (TypeError, ValueError):
        return False


def _stage_withdrawals(psa: PsaTimeSource, warehouse: Engine, run: RunRef, *, page_size: int) -> dict[str, int]:
    withdrawn = psa.iter_withdrawn_time_entries(run.extract_from, run.interval_end, page_size=page_size)
    return stage_withdrawals(withdrawn, warehouse, run, entity=ENTITY, withdrawal=WITHDRAWAL, noun="time entries")


def stage_withdrawals(
    withdrawn_pages: Iterable[list[dict[str, Any]]], warehouse: Engine, run: RunRef, *, entity: str, withdrawal: str, noun: str
) -> dict[str, int]:
    """Records the PSA deleted or un-approved in the window: staged (as ``withdrawal``) for
    reversal in accounting, and their open exceptions closed (a withdrawn record must never go out
    later as a healed one). Returns record id → the withdrawal's version."""
    withdrawn: dict[str, int] = {}
    for page in withdrawn_pages:
        for item in page:
            try:
                version = int(item["version"])
            except (KeyError, TypeError, ValueError):
                log.warning("PSA withdrawal without a usable version ignored: %r", item)
                continue
            record_id = str(item.get("id"))
            withdrawn[record_id] = max(version, withdrawn.get(record_id, version))
    if not withdrawn:
        return withdrawn
    with warehouse.begin() as connection:
        ops.stage(connection, run, withdrawal, [(entry_key(e, v), {"id": e, "version": v}) for e, v in sorted(withdrawn.items())])
        connection.exec_driver_sql(
            """
            UPDATE ops.quarantine SET resolved_at = now(), resolved_by_run = %(run_id)s
            WHERE flow = %(flow)s AND entity = %(entity)s AND resolved_at IS NULL
              AND split_part(source_key, ':v', 1) = ANY(%(ids)s)
            """,
            {"run_id": run.run_id, "flow": run.flow, "entity": entity, "ids": sorted(withdrawn)},
        )
    log.info("%d %s were withdrawn in the PSA (deleted or un-approved) in this window", len(withdrawn), noun)
    return withdrawn


def count_staged(warehouse: Engine, run: RunRef, status: str | None = None, *, entity: str | None = None) -> int:
    from sqlalchemy import func, select

    from backbone.warehouse.tables import staged_record

    query = select(func.count()).where(staged_record.c.flow == run.flow, staged_record.c.run_id == run.run_id)
    if entity:
        query = query.where(staged_record.c.entity == entity)
    if status:
        query = query.where(staged_record.c.status == status)
    with warehouse.connect() as connection:
        return int(connection.execute(query).scalar_one())


# --- map + validate ------------------------------------------------------------------------------
def map_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """A PSA time entry → the dictionary's ``time_entry`` row (text values, as validated)."""
    user, client, project, task = (entry.get(k) if isinstance(entry.get(k), dict) else {} for k in ("user", "client", "project", "task"))
    billable = entry.get("billable")
    return {
        "entry_key": entry_key(str(entry.get("id")), entry.get("version")),
        "entry_id": entry.get("id"),
        "entry_version": entry.get("version"),
        "person_id": user.get("id"),
        "person_name": user.get("name"),
        "person_email": user.get("email"),
        "person_type": user.get("type"),
        "project_id": project.get("id"),
        "project_name": project.get("name"),
        "client_id": client.get("id"),
        "client_name": client.get("name"),
        "billing_code": task.get("billing_code"),
        "work_date": entry.get("spent_date"),
        "hours": entry.get("hours"),
        "billable": str(billable).lower() if isinstance(billable, bool) else billable,
        "hourly_rate": entry.get("billable_rate"),
        "currency": entry.get("currency"),
        "approval_status": entry.get("approval_status"),
        "approved_at": entry.get("approved_at"),
        "notes": entry.get("notes"),
    }


CONTENT_HASH_FIELDS = (
    "person_id",
    "person_email",
    "person_type",
    "project_id",
    "client_id",
    "client_name",
    "billing_code",
    "work_date",
    "hours",
    "billable",
    "hourly_rate",
    "currency",
)


def content_hash(row: dict[str, Any]) -> str:
    """What must not change within one entry version (approval time and notes aside).

    The SHA-256 of ``json.dumps`` of the fields' texts, as every outbox line holds it; the JSON list
    is written here the way ``json.dumps`` writes a list of strings (its own C string encoder,
    ``", "`` between items), at about half its cost."""
    text = "[" + ", ".join([_json_string(str(row.get(f))) for f in CONTENT_HASH_FIELDS]) + "]"
    return hashlib.sha256(text.encode()).hexdigest()


def _decimal(value: Any) -> Decimal | None:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def validate_time_entries(warehouse: Engine, run: RunRef, *, company_timezone: str, chunk_size: int) -> dict[str, Any]:
    """Dictionary suite plus the flow's rules; failures become exceptions with their reasons."""
    references = load_references(warehouse)
    posted_items = _posted_items(warehouse)
    overfull_days = _overfull_person_days(warehouse, run)
    last_work_date = run.interval_end.astimezone(ZoneInfo(company_timezone)).date()
    drift = SchemaDrift(PSA_ENTRY_FIELDS)

    def judge(chunk: list[dict[str, Any]]) -> tuple[list[ops.Verdict], list[QuarantineRow], dict[str, int]]:
        for row in chunk:
            drift.observe(row["payload"])
        exported = _exported_hashes(warehouse, [row["source_key"] for row in chunk])
        verdicts, quarantine_rows = judge_chunk(
            chunk,
            references,
            overfull_days=overfull_days,
            last_work_date=last_work_date,
            exported_hashes=exported,
            posted_items=posted_items,
        )
        return verdicts, quarantine_rows, {}

    tally = ops.validate_staged(warehouse, run, ENTITY, judge, chunk_size=chunk_size, details=lambda _: {"schema_drift": drift.report()})
    if tally.failed_rules:
        log.warning("%d time entries are exceptions for finance: %s", tally.quarantined, tally.failed_rules)
    if drift:
        log.warning("the PSA's time entries changed shape (new fields are ignored): %s", drift.report())
    return {"valid": tally.valid, "quarantined": tally.quarantined}


def _posted_items(warehouse: Engine) -> dict[str, str]:
    """Billing code → the accounting item its latest posted time went to: how the export follows
    an item accounting renamed (same id, new name) until finance updates the mapping."""
    query = """
        SELECT DISTINCT ON (billing_code) billing_code, item_ref_id FROM acct.time_export
        WHERE posting_status = 'posted' AND action <> 'delete' ORDER BY billing_code, posted_at DESC NULLS LAST
    """
    with warehouse.connect() as connection:
        return {str(code): str(item) for code, item in connection.exec_driver_sql(query).all()}


def _overfull_person_days(warehouse: Engine, run: RunRef) -> set[tuple[str, str]]:
    """(person, work date) pairs whose plausible hours (this run's entries plus the latest exported
    version of every other entry) add up to more than 24."""
    query = """
        WITH staged AS (
            SELECT payload->>'id' AS entry_id, payload->'user'->>'id' AS person_id, payload->>'spent_date' AS work_date,
                   CASE WHEN payload->>'hours' ~ '^-?[0-9]+(\\.[0-9]+)?$' THEN (payload->>'hours')::numeric END AS hours
            FROM ops.staged_record WHERE flow = %(flow)s AND run_id = %(run_id)s AND entity = %(entity)s AND status <> 'conflict'
        ), latest_exported AS (
            SELECT DISTINCT ON (entry_id) entry_id, person_id, work_date::text AS work_date, hours
            FROM acct.time_export ORDER BY entry_id, entry_version DESC
        ), day_hours AS (
            SELECT person_id, work_date, hours FROM staged WHERE hours > 0 AND hours <= 24
            UNION ALL
            SELECT e.person_id, e.work_date, e.hours FROM latest_exported e
            WHERE NOT EXISTS (SELECT 1 FROM staged s WHERE s.entry_id = e.entry_id)
              AND EXISTS (SELECT 1 FROM staged s WHERE s.person_id = e.person_id AND s.work_date = e.work_date)
        )
        SELECT person_id, work_date FROM day_hours GROUP BY person_id, work_date HAVING sum(hours) > %(limit)s
    """
    with warehouse.connect() as connection:
        rows = connection.exec_driver_sql(
            query, {"flow": run.flow, "run_id": run.run_id, "entity": ENTITY, "limit": MAX_HOURS_PER_PERSON_DAY}
        ).all()
    return {(r[0], r[1]) for r in rows}


def _exported_hashes(warehouse: Engine, keys: list[str]) -> dict[str, str]:
    """Content hashes of the chunk's entry versions already in the outbox."""
    return TIME_OUTBOX.exported_hashes(warehouse, keys)


def judge_chunk(
    chunk: list[dict[str, Any]],
    references: AccountingReferences,
    *,
    overfull_days: set[tuple[str, str]],
    last_work_date: date,
    exported_hashes: dict[str, str],
    posted_items: dict[str, str] | None = None,
) -> tuple[list[tuple[str, str, dict[str, Any] | None]], list[QuarantineRow]]:
    """Verdicts (key, status, line for the outbox) and exception rows for one chunk of staged
    entries; ``posted_items`` (billing code → item id posted to before) finds a renamed item."""
    match = _AccountingMatch(references, load_mapping(), posted_items or {})
    max_age = load_entity(ENTITY).fields["work_date"].max_age_days
    earliest_work_date = last_work_date - timedelta(days=max_age) if max_age is not None else None
    rows = [map_entry(r["payload"]) for r in chunk]
    outcome = validate_rows(ENTITY, rows)
    verdicts: list[tuple[str, str, dict[str, Any] | None]] = []
    quarantine_rows: list[QuarantineRow] = []
    for index, (staged, row) in enumerate(zip(chunk, rows, strict=True)):
        failures = list(outcome.failures.get(index, []))
        key = staged["source_key"]
        if staged["status"] == "conflict":
            failures.append(
                RuleFailure(
                    "time_entry.entry_key.conflict",
                    f"entry {row['entry_id']} version {row['entry_version']} was sent twice with different content",
                )
            )
        line: dict[str, Any] | None = None
        if not failures:
            rule_failures, line = _flow_rules(
                row, match, overfull_days=overfull_days, last_work_date=last_work_date, earliest_work_date=earliest_work_date
            )
            failures += rule_failures
        if not failures and line is not None and key in exported_hashes and exported_hashes[key] != line["content_hash"]:
            failures.append(
                RuleFailure(
                    "time_entry.entry_key.exported_differently",
                    f"entry {row['entry_id']} version {row['entry_version']} was already exported with different content; the PSA must "
                    "issue a new version",
                )
            )
        if failures:
            verdicts.append((key, "quarantined", None))
            raw = staged["payload"] if staged["status"] != "conflict" else {"first": staged["payload"], **(staged["canonical"] or {})}
            quarantine_rows += [QuarantineRow(ENTITY, key, f.rule, f.reason, raw) for f in dict.fromkeys(failures)]
        else:
            verdicts.append((key, "valid", line))
    return verdicts, quarantine_rows


class _AccountingMatch:
    """The accounting side of one chunk's billing codes, clients and people, each looked up once:
    5,000 entries name a few dozen codes and clients and a few hundred people."""

    def __init__(self, references: AccountingReferences, mapping: Any, posted_items: dict[str, str]) -> None:
        self.references, self.mapping, self.posted_items = references, mapping, posted_items
        self._codes: dict[Any, tuple[Any, Any, list[RuleFailure]]] = {}
        self._customers: dict[tuple[Any, Any], Any] = {}
        self._people: dict[tuple[Any, Any], Any] = {}

    def billing_code(self, billing_code: Any) -> tuple[Any, Any, list[RuleFailure]]:
        """(code mapping, accounting item, failures) of a PSA billing code."""
        return _remembered(self._codes, billing_code, lambda: self._match_code(billing_code))

    def _match_code(self, billing_code: Any) -> tuple[Any, Any, list[RuleFailure]]:
        references = self.references
        code = self.mapping.billing_codes.get(billing_code)
        if code is None:
            reason = f"billing code {billing_code} has no accounting item in accounting_mapping.yaml"
            return None, None, [RuleFailure("time_entry.billing_code.mapped", reason)]
        item = references.items.get(normalise(code.item)) or references.items_by_id.get(self.posted_items.get(code.code, ""))
        if item is None:
            reason = f"billing code {billing_code} maps to item {code.item!r}, which the accounting system does not have"
            return code, None, [RuleFailure("time_entry.billing_code.item_exists", reason)]
        if normalise(item.extra.get("income_account") or "") != normalise(code.gl_account):
            account = item.extra.get("income_account")
            reason = f"item {code.item!r} posts to {account!r} in accounting, but the mapping says {code.gl_account!r}"
            return code, item, [RuleFailure("time_entry.billing_code.gl_account", reason)]
        return code, item, []

    def customer(self, client_id: Any, client_name: Any) -> Any:
        key = self.mapping.customer_key
        return _remembered(self._customers, (client_id, client_name), lambda: self.references.customers.get(key(client_id, client_name)))

    def person(self, person_id: Any, email: Any) -> Any:
        key = self.mapping.person_key
        return _remembered(self._people, (person_id, email), lambda: self.references.people.get(key(person_id, email)))


def _remembered(found: dict[Any, Any], key: Any, look_up: Callable[[], Any]) -> Any:
    """``look_up()``, remembered under ``key``. A key holding a list or an object (hostile input,
    which the dictionary judges by its text) cannot be remembered: it is looked up every time."""
    try:
        if key in found:
            return found[key]
    except TypeError:
        return look_up()
    found[key] = value = look_up()
    return value


def _is_overfull(row: dict[str, Any], overfull_days: set[tuple[str, str]]) -> bool:
    """Is the entry's person-day one whose hours add up to more than a day? A person id that is not
    text (a list sent as an id) was never summed per day by that key."""
    try:
        return (row["person_id"], row["work_date"]) in overfull_days
    except TypeError:
        return False


@lru_cache(maxsize=4096, typed=True)
def _amounts(hours_text: str, rate_text: str) -> tuple[str, int, str, str]:
    """(hours, minutes, rate to the cent, amount to the cent) of an entry: a week repeats a few dozen pairs."""
    hours = Decimal(hours_text)
    rate = Decimal(rate_text)
    return (
        str(hours),
        int((hours * 60).quantize(Decimal(1), rounding=ROUND_HALF_UP)),
        str(rate.quantize(CENT, rounding=ROUND_HALF_UP)),
        str((hours * rate).quantize(CENT, rounding=ROUND_HALF_UP)),
    )


def _flow_rules(
    row: dict[str, Any],
    match: _AccountingMatch,
    *,
    overfull_days: set[tuple[str, str]],
    last_work_date: date,
    earliest_work_date: date | None,
) -> tuple[list[RuleFailure], dict[str, Any] | None]:
    """Rules beyond single fields: dates, person-day totals, and every mapping to accounting.

    Returns the failures, or no failures and the entry's outbox line (a pure function: nothing
    passed in is changed; ``match`` only remembers what it looked up)."""
    failures = []
    try:
        work_date = date.fromisoformat(row["work_date"])
    except ValueError:
        return [RuleFailure("time_entry.work_date.type", f"work date {row['work_date']!r} is not a calendar date")], None
    if work_date > last_work_date:
        failures.append(
            RuleFailure("time_entry.work_date.not_future", f"work date {work_date} is after the end of the export week ({last_work_date})")
        )
    if earliest_work_date is not None and work_date < earliest_work_date:
        failures.append(
            RuleFailure(
                "time_entry.work_date.plausible",
                f"work date {work_date} is more than {(last_work_date - earliest_work_date).days} days before the end of the export week "
                f"({last_work_date})",
            )
        )
    if _is_overfull(row, overfull_days):
        failures.append(
            RuleFailure(
                "time_entry.person_day_hours.max",
                f"{row['person_id']} has more than {MAX_HOURS_PER_PERSON_DAY} hours on {row['work_date']}",
            )
        )
    code, item, code_failures = match.billing_code(row["billing_code"])
    failures += code_failures
    customer = match.customer(row["client_id"], row["client_name"])
    if customer is None:
        failures.append(
            RuleFailure(
                "time_entry.client.mapped", f"client {row['client_id']} ({row['client_name']}) has no accounting customer with that name"
            )
        )
    person = match.person(row["person_id"], row["person_email"])
    wanted_entity = "Vendor" if row["person_type"] == "contractor" else "Employee"
    if person is None:
        failures.append(
            RuleFailure("time_entry.person.mapped", f"{row['person_id']} ({row['person_email']}) is not an accounting employee or vendor")
        )
    elif person.entity not in (wanted_entity, "User"):  # a User: the system does not tell employees from contractors
        failures.append(
            RuleFailure("time_entry.person.mapped", f"{row['person_id']} is a PSA {row['person_type']} but an accounting {person.entity}")
        )
    if failures:
        return failures, None
    assert code is not None and item is not None and customer is not None and person is not None
    hours, minutes, rate, amount = _amounts(row["hours"], row["hourly_rate"])
    line = dict(
        entry_id=row["entry_id"],
        entry_version=int(row["entry_version"]),
        content_hash=content_hash(row),
        person_id=row["person_id"],
        person_name=row["person_name"],
        name_of=person.entity,
        person_ref_id=person.ref_id,
        client_id=row["client_id"],
        client_name=row["client_name"],
        customer_ref_id=customer.ref_id,
        project_id=row["project_id"],
        project_name=row["project_name"],
        billing_code=code.code,
        item_ref_id=item.ref_id,
        item_name=item.name,
        gl_account=code.gl_account,
        work_date=row["work_date"],
        hours=hours,
        minutes=minutes,
        hourly_rate=rate,
        amount=amount,
        currency=row["currency"],
        billable_status=match.mapping.billable_status_of(row["billable"] == "true", code),
        approved_at=row["approved_at"],
        person_email=row["person_email"],
        billable=row["billable"] == "true",
    )
    return [], line


# --- load ----------------------------------------------------------------------------------------
MIRROR_FIELDS = (
    "entry_id",
    "entry_version",
    "person_id",
    "person_email",
    "project_id",
    "client_id",
    "billing_code",
    "work_date",
    "hours",
    "billable",
    "hourly_rate",
    "currency",
    "approved_at",
)
OUTBOX_FIELDS = (
    "entry_id",
    "entry_version",
    "content_hash",
    "person_id",
    "person_name",
    "name_of",
    "person_ref_id",
    "client_id",
    "client_name",
    "customer_ref_id",
    "project_id",
    "project_name",
    "billing_code",
    "item_ref_id",
    "item_name",
    "gl_account",
    "work_date",
    "hours",
    "minutes",
    "hourly_rate",
    "amount",
    "currency",
    "billable_status",
)
TIME_OUTBOX = VersionedOutbox(
    table_name="time_export",
    id_column="entry_id",
    version_column="entry_version",
    key_namespace=TIME_RECORD_KEY_NAMESPACE,
    fields=OUTBOX_FIELDS,
    date_column="work_date",
    negated=("hours", "minutes", "amount"),
)


def load_time_entries(psa_warehouse: Engine, accounting_warehouse: Engine, run: RunRef, *, chunk_size: int) -> dict[str, Any]:
    """Mirror valid entries in the PSA warehouse, then write the outbox lines: each in one transaction."""

    from sqlalchemy import delete

    from backbone.cost_rates import sync_cost_rates
    from backbone.warehouse.tables import time_entry

    withdrawals = [r["payload"] for chunk in ops.iter_staged(accounting_warehouse, run, WITHDRAWAL) for r in chunk]
    mirrored = 0
    with psa_warehouse.begin() as connection:
        for chunk in ops.iter_staged(accounting_warehouse, run, ENTITY, status="valid", chunk_size=chunk_size):
            rows = [_mirror_row(r["canonical"], run.run_id) for r in chunk]
            mirrored += _upsert_newer_versions(connection, time_entry, rows)
        if withdrawals:  # the PSA no longer holds them as approved time
            for w in withdrawals:
                connection.execute(delete(time_entry).where(time_entry.c.entry_id == w["id"], time_entry.c.entry_version < w["version"]))
        sync_cost_rates(connection)  # the margin mart's cost side follows the dictionary
    written = reversals = 0
    with accounting_warehouse.begin() as connection:
        ops.lock_for_transaction(connection, f"{run.flow}:outbox")
        for chunk in ops.iter_staged(accounting_warehouse, run, ENTITY, status="valid", chunk_size=chunk_size):
            written += _write_outbox(connection, run, [r["canonical"] for r in chunk])
        reversals = _write_reversals(connection, run, withdrawals)
        totals = outbox_totals(connection, run)
        ops.record_run(
            connection,
            run,
            loaded=totals["lines"],
            details={"outbox_lines_written": written, "reversals_written": reversals, "psa_mirror_rows_changed": mirrored, **totals},
        )
    log.info(
        "outbox: %d new lines (%d in this run), %s hours, amounts %s",
        written,
        totals["lines"],
        totals["hours"],
        totals["amount_by_currency"],
    )
    return {"loaded": totals["lines"], "outbox_lines_written": written}


def _mirror_row(line: dict[str, Any], run_id: str) -> dict[str, Any]:
    row = {f: line[f] for f in MIRROR_FIELDS}
    row["work_date"] = date.fromisoformat(row["work_date"])
    row["approved_at"] = datetime.fromisoformat(row["approved_at"].replace("Z", "+00:00"))
    return {**row, "last_run_id": run_id}


def _upsert_newer_versions(connection: Connection, table: Any, rows: list[dict[str, Any]]) -> int:
    """Upsert keyed by entry id; an older version never overwrites a newer one (backfills run out of order)."""
    from backbone.warehouse.db import copy_upsert

    return copy_upsert(connection, table, rows, key=["entry_id"], newer_column="entry_version")


def _write_outbox(connection: Connection, run: RunRef, lines: list[dict[str, Any]]) -> int:
    """Insert lines not yet in the outbox. A line, once written, is never rewritten by a later run."""
    return TIME_OUTBOX.write_lines(connection, run, lines)


def _write_reversals(connection: Connection, run: RunRef, withdrawals: list[dict[str, Any]]) -> int:
    """One ``delete`` line per withdrawn entry whose latest outbox line is older than the
    withdrawal: a copy of that line with its hours, minutes and amount negated (so a run's totals
    net out), keyed by the withdrawal's version. Entries never exported, or already reversed, get none."""
    return TIME_OUTBOX.write_reversals(connection, run, withdrawals)


def outbox_totals(connection: Connection, run: RunRef) -> dict[str, Any]:
    """Lines, hours and amount per currency that this run's interval exports (what finance reconciles)."""
    query = """
        SELECT count(*) AS lines, coalesce(sum(hours), 0) AS hours, currency, coalesce(sum(amount), 0) AS amount,
               count(*) FILTER (WHERE action IN ('update', 'delete')) AS corrections
        FROM acct.time_export WHERE run_id = %(run_id)s GROUP BY ROLLUP (currency)
    """
    totals: dict[str, Any] = {"lines": 0, "hours": "0", "amount_by_currency": {}, "corrections": 0}
    for lines, hours, currency, amount, corrections in connection.exec_driver_sql(query, {"run_id": run.run_id}).all():
        if currency is None:
            totals.update(lines=int(lines), hours=str(hours), corrections=int(corrections))
        else:
            totals["amount_by_currency"][currency] = str(amount)
    return totals


# --- post ----------------------------------------------------------------------------------------
def post_time_activities(
    accounting: AccountingSystem, warehouse: Engine, run: RunRef, *, concurrency: int, in_scope: Any = None
) -> dict[str, Any]:
    """Post every pending outbox line up to this interval (older leftovers first), entries in parallel.

    Versions of one entry go in order, so a correction always follows the object it corrects.
    A line the accounting system rejects (4xx) is marked failed and becomes an exception; a line
    that could not be sent (throttling or outages beyond the retries) stays pending and fails
    the task, so Airflow's retry sends it, with the same requestid.
    """
    outcome: dict[str, Any] = {"posted": 0, "rejected": 0, "error": None}
    with ops.exclusive(warehouse, f"{run.flow}:post", what=f"another {run.flow} run is posting to accounting right now"):
        # Statistics as the load left the outbox: with the pre-load ones (few or no pending lines),
        # PostgreSQL picks each next batch by scanning and sorting the whole table instead of
        # walking its key (171 ms instead of 15 ms a batch at 100k lines).
        with warehouse.begin() as connection:
            connection.exec_driver_sql("ANALYZE acct.time_export")
        # The next batch is read (and its attempts counted) while this one is sent, and answers are
        # recorded while later ones are sent; a batch read but never sent gets its attempts back.
        batches = _pending_entries(warehouse, run, entries_per_batch=POST_BATCH_ENTRIES, in_scope=in_scope)
        ahead = read_ahead(batches, unused=lambda entries: _give_back_attempts(warehouse, entries))
        with BackgroundWriter("record-results") as recorder, closing(ahead):
            for batch in ahead:
                log.info("posting %d outbox lines of %d entries with %d workers", sum(map(len, batch)), len(batch), concurrency)
                done = _post_entries(accounting, warehouse, run, batch, concurrency=concurrency, recorder=recorder)
                outcome["posted"] += done["posted"]
                outcome["rejected"] += done["rejected"]
                if done["error"] is not None:
                    outcome["error"] = done["error"]
                    break
    with warehouse.begin() as connection:
        posted_in_run = connection.exec_driver_sql(
            "SELECT count(*) FILTER (WHERE posting_status = 'posted'), count(*) FILTER (WHERE posting_status = 'failed') FROM "
            "acct.time_export WHERE run_id = %(r)s",
            {"r": run.run_id},
        ).one()
        held_back = _held_back_by_scope(connection, run, in_scope)
        ops.record_run(
            connection,
            run,
            written_back=outcome["posted"],
            details={
                "posted_in_interval": int(posted_in_run[0]),
                "rejected_by_accounting": int(posted_in_run[1]),
                **({"held_back_by_rollout_scope": held_back} if in_scope is not None else {}),
            },
        )
    if in_scope is not None and held_back:
        log.warning("rollout scope: %d outbox lines outside it stay pending (sent once the scope includes them)", held_back)
    if outcome["error"] is not None:
        raise outcome["error"]
    return {"posted": outcome["posted"], "rejected": outcome["rejected"], "posted_in_run": int(posted_in_run[0])}


def _held_back_by_scope(connection: Connection, run: RunRef, in_scope: Any) -> int:
    """Pending lines up to this interval that the rollout scope kept from being sent."""
    from sqlalchemy import func, not_, select

    from backbone.warehouse.tables import time_export

    if in_scope is None:
        return 0
    return int(
        connection.execute(
            select(func.count()).where(
                time_export.c.posting_status == "pending", time_export.c.interval_end <= run.interval_end, not_(in_scope)
            )
        ).scalar_one()
    )


def pending_lines(warehouse: Engine, run: RunRef) -> int:
    """Outbox lines up to this interval still waiting to be posted."""
    with warehouse.connect() as connection:
        return int(
            connection.exec_driver_sql(
                "SELECT count(*) FROM acct.time_export WHERE posting_status = 'pending' AND interval_end <= %(end)s",
                {"end": run.interval_end},
            ).scalar_one()
        )


def _pending_entries(
    warehouse: Engine, run: RunRef, *, entries_per_batch: int, in_scope: Any = None
) -> Iterator[list[list[dict[str, Any]]]]:
    """Lines to post, grouped by entry (versions in order), a bounded number of entries at a time;
    ``in_scope`` (a condition from ``backbone.rollout``) leaves the rest pending."""
    from sqlalchemy import and_, or_, select, true

    from backbone.warehouse.tables import time_export

    postable = and_(
        or_(
            and_(time_export.c.posting_status == "pending", time_export.c.interval_end <= run.interval_end),
            and_(time_export.c.posting_status == "failed", time_export.c.run_id == run.run_id),
        ),
        in_scope if in_scope is not None else true(),
    )
    last_entry = ""
    while True:
        next_entries = (
            select(time_export.c.entry_id)
            .where(postable, time_export.c.entry_id > last_entry)
            .group_by(time_export.c.entry_id)
            .order_by(time_export.c.entry_id)
            .limit(entries_per_batch)
            .correlate(None)
            .subquery("next_entries")
        )
        # One round trip picks the next entries' lines and counts the attempt, before any call: a
        # crash mid-call leaves attempts > 0, so the next try looks first.
        with warehouse.begin() as connection:
            picked = connection.execute(
                time_export.update()
                .where(postable, time_export.c.entry_id == next_entries.c.entry_id)
                .values(attempts=time_export.c.attempts + 1)
                .returning(*time_export.c)
            )
            columns = list(picked.keys())
            lines = [dict(zip(columns, row, strict=True)) for row in picked.fetchall()]  # not row._mapping: a key view per row
        if not lines:
            return
        by_entry: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for line in sorted(lines, key=lambda line: (line["entry_id"], line["entry_version"])):
            line["attempts"] -= 1  # tries before this one: a line never tried is created without a lookup
            by_entry[line["entry_id"]].append(line)
        yield list(by_entry.values())
        last_entry = max(by_entry)


def _give_back_attempts(warehouse: Engine, entries: list[list[dict[str, Any]]]) -> None:
    """Lines whose attempt was counted but that were never sent (read ahead, then the run stopped):
    the next run sends them without looking them up first."""
    lines = [line for versions in entries for line in versions]
    try:
        with warehouse.begin() as connection:
            connection.exec_driver_sql(
                "UPDATE acct.time_export AS t SET attempts = t.attempts - 1 FROM (SELECT unnest(%(ids)s::text[]) AS entry_id, "
                "unnest(%(versions)s::int[]) AS entry_version) AS v WHERE t.entry_id = v.entry_id AND t.entry_version = "
                "v.entry_version AND t.attempts > 0 AND t.posting_status = 'pending'",
                {"ids": [line["entry_id"] for line in lines], "versions": [line["entry_version"] for line in lines]},
            )
    except Exception:  # noqa: BLE001 - harmless if lost: those lines are looked up before they are sent
        log.warning("could not give back the attempts of %d lines read but not sent", len(lines), exc_info=True)


def _post_entries(
    accounting: AccountingSystem,
    warehouse: Engine,
    run: RunRef,
    entries: list[list[dict[str, Any]]],
    *,
    concurrency: int,
    recorder: BackgroundWriter,
) -> dict[str, Any]:
    """Post a group of entries: first creates never tried before go in the vendor's batch calls
    where it has them (``TimeBatchPoster``), every other entry in its own calls, in parallel;
    ``recorder`` writes the answers."""
    results: list[dict[str, Any]] = []
    outcome: dict[str, Any] = {"posted": 0, "rejected": 0, "error": None}
    latest = _latest_posted(warehouse, [versions[0]["entry_id"] for versions in entries])
    targets = {v[0]["entry_id"]: _target(latest[v[0]["entry_id"]], v[0]) for v in entries if v[0]["entry_id"] in latest}
    by_day, entries, in_day_records = split_day_entries(accounting, warehouse, entries, targets)
    fresh, one_by_one = _split_for_batches(accounting, entries, targets)

    def flush() -> None:
        if results:
            recorder.submit(_record_results, warehouse, run, list(results))
            outcome["posted"] += sum(1 for r in results if r["posting_status"] == "posted")
            outcome["rejected"] += sum(1 for r in results if r["posting_status"] == "failed")
            results.clear()

    if by_day:
        day_results, outcome["error"] = post_day_records(accounting, warehouse, run, by_day, in_day_records, concurrency=concurrency)  # type: ignore[arg-type]
        results.extend(_result(line, status, accounting_id=object_id, error=error) for line, status, object_id, error in day_results)
        if outcome["error"] is not None:
            flush()
            return outcome
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="post") as pool:
        futures = [pool.submit(_post_new_batch, accounting, batch) for batch in fresh]
        futures += [pool.submit(_post_entry_versions, accounting, targets.get(v[0]["entry_id"]), v) for v in one_by_one]
        for done, future in enumerate(futures, start=1):
            try:
                results.extend(future.result())
            except CancelledError:
                continue
            except Exception as exc:  # noqa: BLE001 - kept, recorded and re-raised after the batch is saved
                if outcome["error"] is None:  # accounting is unreachable: stop sending, keep what was sent
                    outcome["error"] = exc
                    for pending in futures:
                        pending.cancel()
            if len(results) >= RESULT_BATCH:
                flush()
            if done % 500 == 0:
                log.info("posted %d of %d calls' entries", done, len(futures))
    flush()
    return outcome


def _latest_posted(warehouse: Engine, entry_ids: list[str]) -> dict[str, Any]:
    """Each entry's newest posted version (one query for the whole group)."""
    with warehouse.connect() as connection:
        return {
            row.entry_id: row
            for row in connection.exec_driver_sql(
                "SELECT DISTINCT ON (entry_id) entry_id, entry_version, accounting_id, action FROM acct.time_export "
                "WHERE entry_id = ANY(%(ids)s) AND posting_status = 'posted' ORDER BY entry_id, entry_version DESC",
                {"ids": entry_ids},
            )
        }


def _target(posted: Any, first_pending: dict[str, Any]) -> str | None:
    """The accounting record a pending version updates: the newest posted earlier version's, unless it was deleted."""
    if posted.entry_version < first_pending["entry_version"] and posted.action != "delete":
        return posted.accounting_id
    return None


def _split_for_batches(
    accounting: AccountingSystem, entries: list[list[dict[str, Any]]], targets: dict[str, str | None]
) -> tuple[list[list[dict[str, Any]]], list[list[dict[str, Any]]]]:
    """``(batches of fresh first creates, entries posted one by one)``. Fresh: a single pending
    create with nothing posted to update and no earlier attempt (a line tried before is looked up
    first, which the one-by-one path does)."""
    size = accounting.time_batch_size if isinstance(accounting, TimeBatchPoster) else 1
    if size <= 1:
        return [], entries
    fresh, one_by_one = [], []
    for versions in entries:
        line = versions[0]
        if len(versions) == 1 and line["action"] != "delete" and not line.get("attempts") and targets.get(line["entry_id"]) is None:
            fresh.append(line)
        else:
            one_by_one.append(versions)
    return [fresh[n : n + size] for n in range(0, len(fresh), size)], one_by_one


def _post_new_batch(accounting: TimeBatchPoster, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One batch call of first creates; a refused item is that line's exception, the others stand."""
    answers = accounting.create_time_entries(lines)  # type: ignore[arg-type]
    results = []
    for line, answer in zip(lines, answers, strict=True):
        if isinstance(answer, RejectedByAccounting):
            results.append(_result(line, "failed", error=str(answer)))
        else:
            results.append(_result(line, "posted", accounting_id=answer.object_id, sync_token=answer.sync_token))
    return results


def _post_entry_versions(accounting: AccountingSystem, target: str | None, versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Post one entry's pending versions in order; an update targets the newest posted earlier
    version (``target``), a ``delete`` line removes it, and a version after a delete is created anew."""
    results = []
    for line in versions:
        if line["action"] == "delete":
            try:
                deleted = accounting.delete_time_entry(target, request_id=line["request_id"]) if target else False
            except ReauthorisationRequired:
                raise
            except RejectedByAccounting as exc:
                results.append(_result(line, "failed", error=str(exc)))
                break
            log.info(
                "time entry %s withdrawn in the PSA: %s", line["entry_id"], "deleted in accounting" if deleted else "nothing to delete"
            )
            results.append(_result(line, "posted", accounting_id=target, target=target))
            target = None
            continue
        try:
            found = accounting.find_time_entry(line) if target is None and line.get("attempts") else None
            if found is not None:  # an earlier attempt created it and its answer was lost: adopt, never create twice
                log.info(
                    "time entry %s v%s already in accounting as %s (an earlier attempt); adopted",
                    line["entry_id"],
                    line["entry_version"],
                    found.object_id,
                )
            answer = found or accounting.post_time_entry(line, target=target, request_id=line["request_id"])
        except ReauthorisationRequired:
            raise  # the Connection itself is dead: fail the task now, every line stays pending
        except RejectedByAccounting as exc:
            results.append(_result(line, "failed", error=str(exc)))
            break  # later versions of this entry wait until this one is fixed
        results.append(_result(line, "posted", accounting_id=answer.object_id, sync_token=answer.sync_token, target=target))
        target = answer.object_id
    return results


def _result(
    line: dict[str, Any],
    status: str,
    *,
    accounting_id: str | None = None,
    sync_token: str | None = None,
    target: str | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    return {
        "entry_id": line["entry_id"],
        "entry_version": line["entry_version"],
        "posting_status": status,
        "accounting_id": accounting_id,
        "accounting_sync_token": sync_token,
        "target_ref_id": target,
        "last_error": error,
        "raw": {k: (str(v) if v is not None else None) for k, v in line.items()} if status == "failed" else None,  # exceptions only
    }


def _record_results(warehouse: Engine, run: RunRef, results: Iterable[dict[str, Any]]) -> None:
    results = list(results)
    with warehouse.begin() as connection:
        # Results need not wait for the WAL flush (PostgreSQL's synchronous_commit): a result lost in
        # a database crash leaves its line pending with an attempt counted, and a line tried before is
        # looked up in accounting before anything is sent again, so nothing is posted twice. The
        # attempt itself (``_pending_entries``) is committed durably before any call.
        connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
        connection.exec_driver_sql(  # one statement for the whole batch
            """
            UPDATE acct.time_export AS t SET posting_status = v.posting_status, accounting_id = coalesce(v.accounting_id, t.accounting_id),
                   accounting_sync_token = coalesce(v.accounting_sync_token, t.accounting_sync_token), target_ref_id =
                       coalesce(v.target_ref_id, t.target_ref_id),
                   last_error = v.last_error, posted_at = CASE WHEN v.posting_status = 'posted' THEN now() ELSE t.posted_at END
            FROM (SELECT unnest(%(entry_id)s::text[]) AS entry_id, unnest(%(entry_version)s::int[]) AS entry_version,
                unnest(%(posting_status)s::text[]) AS posting_status,
                         unnest(%(accounting_id)s::text[]) AS accounting_id, unnest(%(accounting_sync_token)s::text[]) AS
                             accounting_sync_token,
                         unnest(%(target_ref_id)s::text[]) AS target_ref_id, unnest(%(last_error)s::text[]) AS last_error) AS v
            WHERE t.entry_id = v.entry_id AND t.entry_version = v.entry_version
            """,
            {
                k: [r[k] for r in results]
                for k in (
                    "entry_id",
                    "entry_version",
                    "posting_status",
                    "accounting_id",
                    "accounting_sync_token",
                    "target_ref_id",
                    "last_error",
                )
            },
        )
        ops.add_quarantine(
            connection,
            run,
            [
                QuarantineRow(
                    "time_activity",
                    entry_key(r["entry_id"], r["entry_version"]),
                    "accounting.rejected",
                    r["last_error"] or "rejected",
                    r["raw"],
                )
                for r in results
                if r["posting_status"] == "failed"
            ],
        )
