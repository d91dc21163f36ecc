"""HR roster, skills and time off → the PSA warehouse and the PSA, with weekly capacity.

extract → validate → load → push. A run reads the employees BambooHR changed since its interval
start (minus an overlap), or all of them when a full snapshot is due, so a deleted or terminated
person is never missed. Time off is read for a window around the run (N days back, M ahead) and
the window is replaced as a whole: a request cancelled or denied since the last run loses its
days. Capacity (``hr.capacity``) is recomputed for the 12 ISO weeks from the run's date; earlier weeks
keep what was computed while they were current (the history utilization is measured against).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from backbone.hooks.hr import HR_TABLES
from backbone.validation import RuleFailure, validate_rows
from backbone.warehouse import hr as hr_queries
from backbone.warehouse import ops
from backbone.warehouse.ops import QuarantineRow, RunRef

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from backbone.hooks.hr import HrRecords, HrSource, TimeOffRequest
    from backbone.hooks.psa import PsaPeople

log = logging.getLogger(__name__)

FLOW = "hr_roster_pto_to_psa"
HR_SOURCE = "bamboohr"
CAPACITY_WEEKS = 12
HOURS_PER_DAY_UNIT = Decimal(8)
EPOCH = datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))


@dataclass(frozen=True)
class Window:
    """The time-off window a run reads and replaces, and the date capacity is computed from."""

    start: date
    end: date
    as_of: date

    @classmethod
    def of(cls, run: RunRef, company_timezone: str, *, days_back: int, days_ahead: int) -> Window:
        as_of = run.interval_end.astimezone(ZoneInfo(company_timezone)).date()
        return cls(start=as_of - timedelta(days=days_back), end=as_of + timedelta(days=days_ahead), as_of=as_of)


def full_snapshot_due(warehouse: Engine, run: RunRef, *, every_days: int) -> bool:
    """A full snapshot unless one succeeded in the ``every_days`` before this interval's end."""
    with warehouse.connect() as connection:
        recent = hr_queries.full_snapshots_between(
            connection, run.flow, since=run.interval_end - timedelta(days=every_days), until=run.interval_end, excluding_run=run.run_id
        )
    return recent == 0


# --- extract -------------------------------------------------------------------------------------
def extract_roster(hr: HrSource, warehouse: Engine, run: RunRef, *, full: bool, overlap: timedelta, window: Window) -> dict[str, Any]:
    since = EPOCH if full else run.extract_from - overlap
    with warehouse.begin() as connection:
        ops.clear_staging(connection, run)
    deleted: list[str] = []
    if full:
        employees = hr.employees_report()
    else:
        changes = hr.changed_employees(since)
        deleted = sorted(eid for eid, c in changes.items() if c.get("action") == "Deleted")
        employees = hr.employees_report(sorted(eid for eid, c in changes.items() if c.get("action") != "Deleted"))
    tables = {table: hr.changed_table(hr.records.table_name(table), since) for table in HR_TABLES}
    requests = hr.time_off_requests(window.start, window.end)
    with warehouse.begin() as connection:
        ops.stage(connection, run, "person", [(str(e.get("id")), e) for e in employees])
        ops.stage(connection, run, "deleted", [(eid, {"id": eid}) for eid in deleted])
        for table, by_employee in tables.items():
            ops.stage(connection, run, f"table:{table}", [(eid, {"rows": rows}) for eid, rows in by_employee.items()])
        conflicts = ops.stage_unique(connection, run, "time_off", [(str(r.get("id")), r) for r in requests])
        details = {
            "snapshot": "full" if full else "delta",
            "changed_since": since.isoformat(),
            "deleted_in_hr": len(deleted),
            "time_off_window": [window.start.isoformat(), window.end.isoformat()],
            "time_off_requests_received": len(requests),
            "duplicate_request_conflicts": conflicts,
        }
        ops.record_run(connection, run, extracted=len(employees) + len({str(r.get("id")) for r in requests}), details=details)
    log.info(
        "%s snapshot: %d employees, %d deleted, %d time-off requests", details["snapshot"], len(employees), len(deleted), len(requests)
    )
    return {"employees": len(employees), "time_off_requests": len(requests), "deleted": len(deleted)}


# --- validate ------------------------------------------------------------------------------------
def request_days(request: TimeOffRequest) -> list[dict[str, Any]]:
    """A request → one ``time_off_day`` row per day it covers (hours; a day unit counts 8 hours)."""
    rows = []
    for day, amount in sorted(request["dates"].items(), key=lambda item: str(item[0])):
        try:
            hours = Decimal(str(amount)) * (HOURS_PER_DAY_UNIT if request["unit"] == "days" else 1)
        except InvalidOperation:
            hours = None
        if hours == 0:
            continue  # weekends and free days carry 0
        rows.append(
            {
                "day_key": f"{request['request_id']}:{day}",
                "request_id": request["request_id"],
                "hr_id": request["hr_id"],
                "day": str(day),
                "hours": None if hours is None else str(hours),
                "status": request["status"],
                "type": request["type"],
            }
        )
    return rows


ALL_AT_ONCE = 10_000_000
"""People and requests are judged as one chunk each (uniqueness rules span all of them)."""


def validate_roster(warehouse: Engine, run: RunRef, records: HrRecords) -> dict[str, Any]:
    """People, their table rows and time-off requests against the dictionary and the flow's rules."""
    valid_people: set[str] = set()

    def judge_people(staged: list[dict[str, Any]]) -> tuple[list[ops.Verdict], list[QuarantineRow], dict[str, int]]:
        people = [records.person(r["payload"]) for r in staged]
        outcome = validate_rows("person", people)
        verdicts: list[ops.Verdict] = []
        rows: list[QuarantineRow] = []
        for index, (row, person) in enumerate(zip(staged, people, strict=True)):
            failures = outcome.failures.get(index, [])
            verdicts.append((row["source_key"], "quarantined" if failures else "valid", None if failures else person))
            rows += [QuarantineRow("person", row["source_key"], f.rule, f.reason, row["payload"]) for f in dict.fromkeys(failures)]
            if not failures:
                valid_people.add(row["source_key"])
        return verdicts, rows, {}

    people = ops.validate_staged(warehouse, run, "person", judge_people, chunk_size=ALL_AT_ONCE, record=False)
    with warehouse.connect() as connection:
        known = hr_queries.people_in_hr(connection)
    known = (known | valid_people) - {r["source_key"] for chunk in ops.iter_staged(warehouse, run, "deleted") for r in chunk}
    table_rows = _validate_table_rows(warehouse, run, records)
    with warehouse.begin() as connection:
        ops.add_quarantine(connection, run, table_rows)

    def judge(staged: list[dict[str, Any]]) -> tuple[list[ops.Verdict], list[QuarantineRow], dict[str, int]]:
        verdicts, rows = judge_requests(staged, known, records)
        return verdicts, rows, {}

    requests = ops.validate_staged(warehouse, run, "time_off", judge, chunk_size=ALL_AT_ONCE, record=False)
    rules: Counter[str] = Counter(people.failed_rules)
    rules.update(requests.failed_rules)
    rules.update(row.rule for row in table_rows)
    valid, quarantined = people.valid + requests.valid, people.quarantined + requests.quarantined
    with warehouse.begin() as connection:
        ops.record_run(connection, run, valid=valid, quarantined=quarantined, details={"failed_rules": dict(rules)})
    if rules:
        log.warning("HR exceptions: %s", dict(rules))
    return {"valid": valid, "quarantined": quarantined}


def judge_requests(
    staged_requests: list[dict[str, Any]], known_people: set[str], records: HrRecords
) -> tuple[list[tuple[str, str, dict[str, Any] | None]], list[QuarantineRow]]:
    requests = [records.time_off_request(r["payload"] if isinstance(r["payload"], dict) else {}) for r in staged_requests]
    days_by_request = [request_days(r) for r in requests]
    flat = [d for days in days_by_request for d in days]
    outcome = validate_rows("time_off_day", flat)
    failures_by_day: dict[str, list[RuleFailure]] = {flat[i]["day_key"]: f for i, f in outcome.failures.items()}
    verdicts: list[tuple[str, str, dict[str, Any] | None]] = []
    quarantine: list[QuarantineRow] = []
    for staged, request, days in zip(staged_requests, requests, days_by_request, strict=True):
        failures = [f for d in days for f in failures_by_day.get(d["day_key"], [])]
        if staged["status"] == "conflict":
            failures.append(
                RuleFailure("time_off.request_id.conflict", f"request {staged['source_key']} was sent twice with different content")
            )
        if request["end"] < request["start"]:
            failures.append(
                RuleFailure(
                    "time_off.dates.ordered",
                    f"request {staged['source_key']} ends ({request['end']}) before it starts ({request['start']})",
                )
            )
        if request["hr_id"] not in known_people:
            failures.append(
                RuleFailure(
                    "time_off.employee.known", f"employee {request['hr_id']} of request {staged['source_key']} is not in the roster"
                )
            )
        if failures:
            verdicts.append((staged["source_key"], "quarantined", None))
            raw = staged["payload"] if staged["status"] != "conflict" else {"first": staged["payload"], **(staged["canonical"] or {})}
            quarantine += [QuarantineRow("time_off", staged["source_key"], f.rule, f.reason, raw) for f in dict.fromkeys(failures)]
        else:
            verdicts.append((staged["source_key"], "valid", {"status": request["status"], "days": days}))
    return verdicts, quarantine


def _validate_table_rows(warehouse: Engine, run: RunRef, records: HrRecords) -> list[QuarantineRow]:
    """Skills and certifications: a bad row is an exception, the person's other rows still load."""
    quarantine: list[QuarantineRow] = []
    for table, entity, mapper in (
        ("skills", "skill", _skill_row(records)),
        ("certifications", "certification", _certification_row(records)),
    ):
        staged = [r for chunk in ops.iter_staged(warehouse, run, f"table:{table}") for r in chunk]
        rows = [(s["source_key"], raw, mapper(raw)) for s in staged for raw in s["payload"]["rows"]]
        outcome = validate_rows(entity, [m for _, _, m in rows])
        verdicts = []
        bad_keys = set()
        for index, (employee, raw, mapped) in enumerate(rows):
            for f in dict.fromkeys(outcome.failures.get(index, [])):
                quarantine.append(QuarantineRow(entity, f"{employee}:{mapped['row_id']}", f.rule, f.reason, raw))
                bad_keys.add(id(raw))
        for s in staged:
            good = [mapper(raw) for raw in s["payload"]["rows"] if id(raw) not in bad_keys]
            verdicts.append((s["source_key"], "valid", {"rows": good}))
        with warehouse.begin() as connection:
            ops.set_verdicts(connection, run, f"table:{table}", verdicts)
    return quarantine


def _skill_row(records: HrRecords) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def row(raw: dict[str, Any]) -> dict[str, Any]:
        skill = records.skill(raw)
        return {"skill_key": f"{skill['hr_id']}:{skill['skill']}", **skill}

    return row


def _certification_row(records: HrRecords) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def row(raw: dict[str, Any]) -> dict[str, Any]:
        certification = records.certification(raw)
        return {"certification_key": f"{certification['hr_id']}:{certification['name']}", **certification}

    return row


# --- load ----------------------------------------------------------------------------------------
def load_roster(warehouse: Engine, run: RunRef, records: HrRecords, *, full: bool, window: Window, country: str) -> dict[str, Any]:
    """Everything in one transaction: people, history, departments, skills, certifications, the
    time-off window, holidays and capacity. Returns counts; who changed is staged for the push."""

    with warehouse.begin() as connection:
        ops.lock_for_transaction(connection, run.flow)
        people = _load_people(connection, warehouse, run, full=full)
        history = _load_history(connection, warehouse, run, records)
        skills_changed = _load_person_tables(connection, warehouse, run)
        time_off_people, days = _load_time_off(connection, warehouse, run, window)
        _load_holidays(connection, window, country)
        capacity_rows = _recompute_capacity(connection, window)
        expiring = hr_queries.certifications_expiring(connection, window.as_of, within_days=30)
        push = sorted(set(people["changed"]) | skills_changed)
        ops.stage(connection, run, "push:person", [(hr_id, {"hr_id": hr_id}) for hr_id in push])
        ops.stage(connection, run, "push:time_off", [(hr_id, {"hr_id": hr_id}) for hr_id in sorted(time_off_people)])
        details = {
            "people_changed": len(people["changed"]),
            "people_marked_gone": people["gone"],
            "history_rows_changed": history,
            "time_off_days": days,
            "time_off_people_changed": len(time_off_people),
            "capacity_rows": capacity_rows,
            "certifications_expiring": expiring,
        }
        ops.record_run(connection, run, loaded=people["loaded"], details=details)
    if expiring:
        log.warning("%d certifications expire within 30 days: %s", len(expiring), expiring)
    return {"loaded": people["loaded"], "time_off_days": days}


def _date(value: Any) -> date | None:
    return date.fromisoformat(str(value)) if value else None


def _load_people(connection: Connection, warehouse: Engine, run: RunRef, *, full: bool) -> dict[str, Any]:
    from sqlalchemy import select, update

    from backbone.warehouse.db import upsert
    from backbone.warehouse.tables import hr_person

    rows = []
    for chunk in ops.iter_staged(warehouse, run, "person", status="valid"):
        for staged in chunk:
            p = staged["canonical"]
            rows.append(
                {
                    **{
                        k: p[k]
                        for k in (
                            "hr_id",
                            "name",
                            "email",
                            "job_title",
                            "department",
                            "division",
                            "location",
                            "employment_status",
                            "supervisor_id",
                        )
                    },
                    "is_active": p["is_active"] == "true",
                    "hire_date": _date(p["hire_date"]),
                    "original_hire_date": _date(p["original_hire_date"]),
                    "termination_date": _date(p["termination_date"]),
                    "weekly_hours": Decimal(p["weekly_hours"]),
                    "deleted_in_hr": False,
                    "last_run_id": run.run_id,
                }
            )
    before = {r.hr_id: r.last_run_id for r in connection.execute(select(hr_person.c.hr_id, hr_person.c.last_run_id))}
    upsert(connection, hr_person, rows, key=["hr_id"])
    after = {r.hr_id: r.last_run_id for r in connection.execute(select(hr_person.c.hr_id, hr_person.c.last_run_id))}
    changed = [r["hr_id"] for r in rows if after.get(r["hr_id"]) == run.run_id]  # inserted or changed by this interval
    gone_ids = {r["source_key"] for chunk in ops.iter_staged(warehouse, run, "deleted") for r in chunk}
    if full:
        gone_ids |= set(before) - {r["hr_id"] for r in rows} - _quarantined(warehouse, run, "person")
    gone = 0
    if gone_ids:
        result = connection.execute(
            update(hr_person)
            .where(hr_person.c.hr_id.in_(sorted(gone_ids)), hr_person.c.deleted_in_hr.is_(False))
            .values(deleted_in_hr=True, is_active=False, last_run_id=run.run_id)
        )
        gone = result.rowcount
        changed += sorted(gone_ids & set(before))
    return {"loaded": len(rows), "changed": sorted(set(changed)), "gone": gone}


def _quarantined(warehouse: Engine, run: RunRef, entity: str) -> set[str]:
    return {r["source_key"] for chunk in ops.iter_staged(warehouse, run, entity, status="quarantined") for r in chunk}


def _load_history(connection: Connection, warehouse: Engine, run: RunRef, records: HrRecords) -> int:
    from backbone.warehouse.db import upsert
    from backbone.warehouse.tables import hr_department, hr_person_history

    rows: dict[tuple[str, str, date], dict[str, Any]] = {}
    departments: dict[str, dict[str, Any]] = {}
    for table, kind in (("job_history", "job"), ("status_history", "status")):
        for chunk in ops.iter_staged(warehouse, run, f"table:{table}"):
            for staged in chunk:
                for raw in staged["payload"]["rows"]:
                    record = records.history(raw)
                    effective = _date(record["effective_date"])
                    if effective is None:
                        continue
                    rows[(staged["source_key"], kind, effective)] = {
                        "hr_id": staged["source_key"],
                        "kind": kind,
                        "effective_date": effective,
                        "job_title": record["job_title"],
                        "department": record["department"],
                        "division": record["division"],
                        "employment_status": record["employment_status"],
                        "last_run_id": run.run_id,
                    }
                    if record["department"]:
                        departments[record["department"]] = {
                            "department": record["department"],
                            "division": record["division"],
                            "last_run_id": run.run_id,
                        }
    changed = upsert(
        connection,
        hr_person_history,
        sorted(rows.values(), key=lambda r: (r["hr_id"], r["kind"], r["effective_date"])),
        key=["hr_id", "kind", "effective_date"],
    )
    upsert(connection, hr_department, sorted(departments.values(), key=lambda r: r["department"]), key=["department"])
    return changed


def _load_person_tables(connection: Connection, warehouse: Engine, run: RunRef) -> set[str]:
    """Replace each extracted person's skills and certifications; return who changed."""
    from sqlalchemy import delete, not_, tuple_

    from backbone.warehouse.db import upsert
    from backbone.warehouse.tables import hr_certification, hr_skill

    changed: set[str] = set()
    for table, target, key in (("skills", hr_skill, "skill"), ("certifications", hr_certification, "name")):
        for chunk in ops.iter_staged(warehouse, run, f"table:{table}"):
            for staged in chunk:
                hr_id = staged["source_key"]
                rows = {
                    r[key]: {
                        "hr_id": hr_id,
                        key: r[key],
                        **({"level": r.get("level")} if key == "skill" else {"expires_on": _date(r.get("expires_on"))}),
                        "last_run_id": run.run_id,
                    }
                    for r in (staged["canonical"] or {}).get("rows", [])
                }
                stale = delete(target).where(target.c.hr_id == hr_id)
                if rows:
                    stale = stale.where(not_(tuple_(target.c.hr_id, target.c[key]).in_([(hr_id, k) for k in rows])))
                removed = connection.execute(stale).rowcount
                written = upsert(connection, target, sorted(rows.values(), key=lambda r: r[key]), key=["hr_id", key])
                if removed or written:
                    changed.add(hr_id)
    return changed


def _load_time_off(connection: Connection, warehouse: Engine, run: RunRef, window: Window) -> tuple[set[str], int]:
    """Replace the window's approved days; return whose days changed and how many days there are."""
    from sqlalchemy import delete, select

    from backbone.warehouse.tables import hr_time_off_day

    in_window = (hr_time_off_day.c.day >= window.start) & (hr_time_off_day.c.day <= window.end)
    old = {(r.hr_id, r.request_id, r.day, r.hours) for r in connection.execute(select(hr_time_off_day).where(in_window))}
    rows = {}
    for chunk in ops.iter_staged(warehouse, run, "time_off", status="valid"):
        for staged in chunk:
            verdict = staged["canonical"]
            if verdict["status"] != "approved":
                continue
            for d in verdict["days"]:
                day = date.fromisoformat(d["day"])
                if window.start <= day <= window.end:
                    rows[(d["request_id"], day)] = {
                        "request_id": d["request_id"],
                        "day": day,
                        "hr_id": d["hr_id"],
                        "hours": Decimal(d["hours"]),
                        "type": d["type"],
                        "last_run_id": run.run_id,
                    }
    new = {(r["hr_id"], r["request_id"], r["day"], r["hours"]) for r in rows.values()}
    if old != new:
        connection.execute(delete(hr_time_off_day).where(in_window))
        if rows:
            connection.execute(hr_time_off_day.insert(), sorted(rows.values(), key=lambda r: (r["request_id"], r["day"])))
    return {x[0] for x in old ^ new}, len(rows)


def _load_holidays(connection: Connection, window: Window, country: str) -> None:
    import holidays

    from backbone.warehouse.db import upsert
    from backbone.warehouse.tables import hr_company_holiday

    years = sorted({window.start.year, window.end.year, (window.as_of + timedelta(weeks=CAPACITY_WEEKS)).year})
    calendar = holidays.country_holidays(country, years=years)
    upsert(
        connection,
        hr_company_holiday,
        [{"day": day, "name": name, "country": country} for day, name in sorted(calendar.items())],
        key=["day"],
    )


def _recompute_capacity(connection: Connection, window: Window) -> int:
    """Available hours per person per ISO week for 12 weeks from the run's date."""
    first_monday = window.as_of - timedelta(days=window.as_of.weekday())
    return hr_queries.recompute_capacity(connection, first_monday=first_monday, weeks=CAPACITY_WEEKS, as_of=window.as_of)


# --- push ----------------------------------------------------------------------------------------
def psa_person(row: dict[str, Any], skills: list[str], certifications: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": row["name"],
        "email": row["email"],
        "role": row["job_title"],
        "department": row["department"],
        "division": row["division"],
        "location": row["location"],
        "employment_status": row["employment_status"],
        "weekly_hours": str(row["weekly_hours"]),
        "start_date": row["hire_date"].isoformat(),
        "end_date": row["termination_date"].isoformat() if row["termination_date"] else None,
        "active": bool(row["is_active"]) and not row["deleted_in_hr"],
        "skills": skills,
        "certifications": certifications,
    }


def push_to_psa(psa: PsaPeople, warehouse: Engine, run: RunRef, *, window: Window) -> dict[str, int]:
    """New hires, role changes, leavers and skills, then changed time off: idempotent calls keyed by HR id."""
    from sqlalchemy import select

    from backbone.warehouse.tables import hr_certification, hr_person, hr_skill, hr_time_off_day

    person_ids = [r["source_key"] for chunk in ops.iter_staged(warehouse, run, "push:person") for r in chunk]
    time_off_ids = [r["source_key"] for chunk in ops.iter_staged(warehouse, run, "push:time_off") for r in chunk]
    created = updated = time_off_updates = 0
    with warehouse.connect() as connection:
        people = {
            r.hr_id: dict(r._mapping)
            for r in connection.execute(select(hr_person).where(hr_person.c.hr_id.in_(sorted(set(person_ids) | set(time_off_ids)))))
        }
        skills: dict[str, list[str]] = defaultdict(list)
        for r in connection.execute(
            select(hr_skill.c.hr_id, hr_skill.c.skill).where(hr_skill.c.hr_id.in_(person_ids)).order_by(hr_skill.c.skill)
        ):
            skills[r.hr_id].append(r.skill)
        certifications: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in connection.execute(
            select(hr_certification).where(hr_certification.c.hr_id.in_(person_ids)).order_by(hr_certification.c.name)
        ):
            certifications[r.hr_id].append({"name": r.name, "expires_on": r.expires_on.isoformat() if r.expires_on else None})
        days: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in connection.execute(
            select(hr_time_off_day.c.hr_id, hr_time_off_day.c.day, hr_time_off_day.c.hours)
            .where(hr_time_off_day.c.hr_id.in_(time_off_ids), hr_time_off_day.c.day >= window.start, hr_time_off_day.c.day <= window.end)
            .order_by(hr_time_off_day.c.day)
        ):
            days[r.hr_id].append({"date": r.day.isoformat(), "hours": str(r.hours)})
    for hr_id in sorted(set(person_ids) | set(time_off_ids)):
        if hr_id not in people:
            continue
        was_created = psa.upsert_person(HR_SOURCE, hr_id, psa_person(people[hr_id], skills.get(hr_id, []), certifications.get(hr_id, [])))
        created += was_created
        updated += not was_created
        if hr_id in time_off_ids:
            merged: dict[str, Decimal] = defaultdict(Decimal)
            for d in days.get(hr_id, []):
                merged[d["date"]] += Decimal(d["hours"])
            payload = [{"date": d, "hours": str(min(h, Decimal(24)))} for d, h in sorted(merged.items())]
            time_off_updates += psa.replace_time_off(HR_SOURCE, hr_id, window.start.isoformat(), window.end.isoformat(), payload)
    with warehouse.begin() as connection:
        ops.record_run(
            connection,
            run,
            written_back=created + time_off_updates,  # what changed in the PSA; re-sending a known person is not a write
            details={"psa_people_created": created, "psa_people_sent": updated, "psa_time_off_changed": time_off_updates},
        )
    log.info("PSA: %d people created, %d updated, %d time-off windows changed", created, updated, time_off_updates)
    return {"created": created, "updated": updated, "time_off_changed": time_off_updates}
