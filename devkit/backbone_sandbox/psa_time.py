"""The PSA's time side: people, clients, projects and approved time entries, seeded deterministically.

Entries are approved on the Friday afternoon of the week they were worked (company time), so the
weekly export whose interval ends at ``week_end`` (a Friday 17:00) sees that week. A few are
approved late, a few are not approved at all, and a few are bad on purpose: ``TimeSeed.bad_entries``
names each and the rule that must make it an exception.

Entries are served sorted by ``(approved_at, id)`` with an opaque cursor (the position in that
order), the way cursor-paged PSA APIs do; ``hours`` and ``billable_rate`` are decimal strings.
"""

from __future__ import annotations

import base64
import bisect
import copy
import random
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from faker import Faker

from backbone_sandbox.seed import iso_millis
from backbone_sandbox.store import PicklableLockMixin

BILLING_CODES = {"CONSULT": "Consulting", "DEV": "Development", "PM": "Project management", "TRAINING": "Training", "TRAVEL": "Travel"}
NON_BILLABLE_CODES = frozenset({"TRAVEL"})
RATES = ["95.00", "110.00", "125.00", "150.00"]


def last_week_end(anchor: datetime, timezone: str) -> datetime:
    """The last Friday 17:00 (company time) at or before ``anchor``: where a weekly export interval ends."""
    zone = ZoneInfo(timezone)
    local = anchor.astimezone(zone)
    days_back = (local.weekday() - 4) % 7
    friday = datetime.combine(local.date() - timedelta(days=days_back), time(17), tzinfo=zone)
    if friday > local:
        friday = datetime.combine(friday.date() - timedelta(days=7), time(17), tzinfo=zone)
    return friday


def weeks_back_to_last_closed_month(anchor: datetime, timezone: str) -> int:
    """How many export weeks reach back to the first day of the last closed month (so month-end has its time)."""
    week_end = last_week_end(anchor, timezone)
    local = anchor.astimezone(ZoneInfo(timezone)).date()
    first = (local.replace(day=1) - timedelta(days=1)).replace(day=1)
    return max(1, -(-(week_end.date() - first).days // 7))


@dataclass
class TimeSeed:
    timezone: str
    week_end: datetime
    people: dict[str, dict[str, Any]] = field(default_factory=dict)
    clients: dict[str, dict[str, Any]] = field(default_factory=dict)
    projects: dict[str, dict[str, Any]] = field(default_factory=dict)
    entries: list[dict[str, Any]] = field(default_factory=list)
    bad_entries: dict[str, str] = field(default_factory=dict)
    """Entry id → the rule that must make it an exception."""
    unmapped_client_ids: set[str] = field(default_factory=set)
    unknown_person_ids: set[str] = field(default_factory=set)
    accounting_only_customers: dict[str, dict[str, str]] = field(default_factory=dict)
    """Customers accounting holds besides the PSA's clients, as finance typed them (key → name,
    currency): the orphan client under another spelling, and one client entered twice. The
    audit must find both; matching by name finds neither, so nothing posts to them."""


def _local(day: date, hour: int, minute: int, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=zone).astimezone(UTC)


def seed_time(*, people: int = 12, weeks: int = 3, anchor: datetime, timezone: str = "Europe/Amsterdam", seed: int = 20261127) -> TimeSeed:
    """``people`` × ``weeks`` of approved time (about ten entries per person-week) up to the last Friday 17:00."""
    zone = ZoneInfo(timezone)
    fake = Faker(["en_US", "nl_NL"])
    fake.seed_instance(seed)
    rng = random.Random(seed)
    out = TimeSeed(timezone=timezone, week_end=last_week_end(anchor, timezone))

    client_count = max(4, people // 3)
    for n in range(client_count):
        cid = f"CL-{n + 1:05d}"
        out.clients[cid] = {"id": cid, "name": f"{fake.company()} {n + 1}", "currency": "USD" if n % 4 == 3 else "EUR"}
        for k in range(2):
            pid = f"PJ-{n * 2 + k + 1:05d}"
            out.projects[pid] = {
                "id": pid,
                "name": f"{out.clients[cid]['name']} — {rng.choice(['Data platform', 'ERP rollout', 'Cloud migration', 'Audit'])}",
                "client_id": cid,
            }
    project_ids = list(out.projects)
    for n in range(people):
        pid = f"EMP-{n + 1:05d}"
        first, last = fake.first_name(), fake.last_name()
        contractor = n % 6 == 5
        out.people[pid] = {
            "id": pid,
            "name": f"{first} {last}",
            "email": f"{first}.{last}.{n + 1}@people.example".lower().replace(" ", "").replace("'", ""),
            "type": "contractor" if contractor else "employee",
            "rate": RATES[n % len(RATES)],
        }

    person_ids = list(out.people)
    codes = [c for c in BILLING_CODES if c not in NON_BILLABLE_CODES]
    for k in range(weeks):
        friday = (out.week_end - timedelta(days=7 * k)).date()
        approve_day = friday
        for p_index, person_id in enumerate(person_ids):
            mine = [project_ids[(p_index + j) % len(project_ids)] for j in range(2)]
            for d in range(5):
                day = friday - timedelta(days=4 - d)
                morning = Decimal(rng.choice(["2.5", "3", "3.25", "4", "4.5", "4.75"]))
                code = "TRAVEL" if (p_index + d) % 9 == 0 else codes[(p_index + d) % len(codes)]
                approved_at = _local(approve_day, 14, (p_index * 7 + d) % 60, zone)
                late = k >= 1 and p_index == 2 and d == 3
                if late:  # approved on the Monday after its week: exported with the next week
                    approved_at = _local(friday + timedelta(days=3), 10, 0, zone)
                _append_entry(out, person_id, mine[0], code, day, str(morning), approved_at)
                _append_entry(out, person_id, mine[1], codes[(p_index + d + 1) % len(codes)], day, str(Decimal("8") - morning), approved_at)

    if weeks and people >= 6:
        _plant_bad_entries(out, zone)
    return out


def _plant_bad_entries(out: TimeSeed, zone: ZoneInfo) -> None:
    friday = out.week_end.date()
    monday = friday - timedelta(days=4)
    approved = _local(friday, 15, 30, zone)
    first_project = next(iter(out.projects))

    def bad(
        rule: str,
        person_id: str,
        hours: str = "2",
        code: str = "CONSULT",
        project_id: str = first_project,
        day: date = monday,
        **overrides: Any,
    ) -> dict[str, Any]:
        # A fresh entry with its own id, added to the real ones.
        record = _append_entry(out, person_id, project_id, code, day, hours, approved, **overrides)
        out.bad_entries[record["id"]] = rule
        return record

    people = list(out.people)
    bad("time_entry.billing_code.mapped", people[0], code="SNACKS")
    bad("time_entry.hours.range", people[1], hours="25")
    bad("time_entry.hours.range", people[1], hours="-2", day=monday + timedelta(days=1))
    bad("time_entry.hourly_rate.type", people[2], billable_rate="abc")
    # Submitted but not approved: the API does not list it as approved, so it must never be exported.
    _append_entry(out, people[3], first_project, "CONSULT", monday, "3", approved, approval_status="submitted", approved_at=None)
    bad("time_entry.work_date.not_future", people[4], day=friday + timedelta(days=10))
    # Two entries that are fine alone but put one person-day over 24 hours.
    over = monday - timedelta(days=1)  # a Sunday: no other time that day
    bad("time_entry.person_day_hours.max", people[5], hours="14", day=over)
    bad("time_entry.person_day_hours.max", people[5], hours="12", day=over)
    # A person the accounting system does not know, and a client with no accounting customer.
    stranger = "EMP-09999"
    out.people[stranger] = {
        "id": stranger,
        "name": "Pat Unknown",
        "email": "pat.unknown@people.example",
        "type": "employee",
        "rate": "100.00",
    }
    out.unknown_person_ids.add(stranger)
    bad("time_entry.person.mapped", stranger)
    orphan = "CL-09999"
    out.clients[orphan] = {"id": orphan, "name": "Acme Corp", "currency": "EUR"}
    out.projects["PJ-09999"] = {"id": "PJ-09999", "name": "Acme Corp — Pilot", "client_id": orphan}
    out.unmapped_client_ids.add(orphan)
    first_client = out.clients[next(iter(out.clients))]
    out.accounting_only_customers = {
        "acme": {"name": "ACME Corporation", "currency": "EUR"},  # the orphan as accounting spells it
        "duplicate": {"name": f"{first_client['name']} B.V.", "currency": first_client["currency"]},  # one company, two customers
    }
    bad("time_entry.client.mapped", people[0], project_id="PJ-09999")
    # The same entry id and version served twice with different content.
    twin = bad("time_entry.entry_key.conflict", people[0], hours="1.5", day=monday + timedelta(days=3))
    out.entries.append({**copy.deepcopy(twin), "hours": "6.5"})


def _append_entry(
    out: TimeSeed, person_id: str, project_id: str, code: str, day: date, hours: str, approved: datetime, **overrides: Any
) -> dict[str, Any]:
    person, project = out.people[person_id], out.projects[project_id]
    client = out.clients[project["client_id"]]
    record = {
        "id": f"TE-{len(out.entries) + 1:08d}",
        "version": 1,
        "spent_date": day.isoformat(),
        "hours": hours,
        "billable": code not in NON_BILLABLE_CODES,
        "billable_rate": person["rate"],
        "currency": client["currency"],
        "approval_status": "approved",
        "approved_at": iso_millis(approved),
        "updated_at": iso_millis(approved - timedelta(hours=1)),
        "notes": f"{BILLING_CODES.get(code, code)} for {project['name']}",
        "user": {"id": person_id, "name": person["name"], "email": person["email"], "type": person["type"]},
        "client": {"id": client["id"], "name": client["name"]},
        "project": {"id": project_id, "name": project["name"]},
        "task": {"id": f"TK-{code}", "name": BILLING_CODES.get(code, code), "billing_code": code},
    }
    record.update(overrides)
    out.entries.append(record)
    return record


class ApprovedRecords(PicklableLockMixin):
    """Versioned PSA records (time entries, expenses) kept in ``(approved_at, id)`` order, so a
    page is a slice found by bisection; an edit makes a new version and a withdrawal is listed."""

    def __init__(self, entries: list[dict[str, Any]]):
        self.entries: list[dict[str, Any]] = []
        self._keys: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._reindex(entries)

    def _reindex(self, entries: list[dict[str, Any]]) -> None:
        self.entries = sorted(entries, key=lambda e: (e["approved_at"] or "", e["id"]))
        self._keys = [(e["approved_at"] or "", e["id"]) for e in self.entries]

    def page(
        self, *, approved_from: datetime, approved_to: datetime, status: str | None, cursor: str | None, page_size: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        start_key = (iso_millis(approved_from), "")
        end_key = (iso_millis(approved_to), "")
        with self._lock:
            position = decode_cursor(cursor) if cursor else bisect.bisect_left(self._keys, start_key)
            end = bisect.bisect_left(self._keys, end_key)
            items: list[dict[str, Any]] = []
            while position < end and len(items) < page_size:
                record = self.entries[position]
                position += 1
                if status is None or record["approval_status"] == status:
                    items.append(record)
            return items, (encode_cursor(position) if position < end else None)

    def edit(self, entry_id: str, changes: dict[str, Any], *, approved_at: datetime) -> dict[str, Any]:
        """Edit an entry in the PSA and approve it again: a new version, approved at ``approved_at``."""
        with self._lock:
            matches = [e for e in self.entries if e["id"] == entry_id]
            if not matches:
                raise KeyError(entry_id)
            record = matches[-1]
            record.update(
                changes,
                version=record["version"] + 1,
                approved_at=iso_millis(approved_at),
                updated_at=iso_millis(approved_at),
                approval_status="approved",
            )
            self._reindex(self.entries)
            return record

    def add(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._reindex([*self.entries, record])

    def withdraw(self, entry_id: str, *, at: datetime, reason: str = "deleted") -> dict[str, Any]:
        """Delete an approved entry in the PSA (``deleted``) or send it back for changes
        (``unapproved``): it leaves the approved list, its version goes up, and the withdrawal is
        listed by ``GET /api/v1/time-entries/withdrawn``."""
        with self._lock:
            matches = [e for e in self.entries if e["id"] == entry_id]
            if not matches:
                raise KeyError(entry_id)
            record = matches[-1]
            version = record["version"] + 1
            if reason == "deleted":
                self._reindex([e for e in self.entries if e is not record])
            else:
                record.update(version=version, approval_status="submitted", updated_at=iso_millis(at))
            withdrawal = {"id": entry_id, "version": version, "withdrawn_at": iso_millis(at), "reason": reason}
            withdrawals = self.__dict__.setdefault("withdrawals", [])
            withdrawals.append(withdrawal)
            withdrawals.sort(key=lambda w: (w["withdrawn_at"], w["id"]))
            return withdrawal

    def withdrawals_page(
        self, *, withdrawn_from: datetime, withdrawn_to: datetime, cursor: str | None, page_size: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Withdrawals in ``[withdrawn_from, withdrawn_to)``, oldest first, cursor-paged."""
        with self._lock:
            withdrawals = self.__dict__.get("withdrawals", [])
            keys = [(w["withdrawn_at"], w["id"]) for w in withdrawals]
            position = decode_cursor(cursor) if cursor else bisect.bisect_left(keys, (iso_millis(withdrawn_from), ""))
            end = bisect.bisect_left(keys, (iso_millis(withdrawn_to), ""))
            items = withdrawals[position : min(end, position + page_size)]
            position += len(items)
            return items, (encode_cursor(position) if position < end else None)


class TimeStore(ApprovedRecords):
    """The seeded time entries, and the people, clients and projects they name."""

    def __init__(self, seed: TimeSeed):
        self.timezone = seed.timezone
        self.week_end = seed.week_end
        self.people = seed.people
        self.clients = seed.clients
        self.projects = seed.projects
        self.bad_entries = seed.bad_entries
        self.unmapped_client_ids = seed.unmapped_client_ids
        self.unknown_person_ids = seed.unknown_person_ids
        super().__init__(seed.entries)

    def week_ends(self) -> list[datetime]:
        """Every seeded export week's end (Friday 17:00 local), oldest first."""
        zone = ZoneInfo(self.timezone)
        local = self.week_end.astimezone(zone)
        first = min(date.fromisoformat(e["spent_date"]) for e in self.entries) if self.entries else local.date()
        ends = []
        day = local.date()
        while day >= first:
            ends.append(datetime.combine(day, time(17), tzinfo=zone).astimezone(UTC))
            day -= timedelta(days=7)
        return sorted(ends)


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"pos:{position}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(cursor.encode()).decode().removeprefix("pos:"))
    except ValueError as exc:
        raise ValueError(f"invalid cursor {cursor!r}") from exc
