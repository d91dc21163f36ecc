"""BambooHR API v1 as our hook uses it, seeded deterministically (shapes from ``bamboohr/public.yaml``).

Basic auth with the API key as user name. Endpoints: employees directory, ``POST reports/custom``,
``employees/changed``, ``employees/changed/tables/{table}``, ``time_off/requests`` (``start`` /
``end`` are the dates the leave happens; a request is listed when it overlaps them). Throttling is
answered with 503 (today) or 429 + ``Retry-After`` (from 2026-09-16) through the fault switches.

The seed has joiners, leavers, a rehire, a department change, partial-day and multi-week leave,
leave across a month end, cancelled and denied requests, a duplicate request id, a deleted
employee, a certification about to expire, and a few bad requests (``HrSeed.bad_requests``).
"""

from __future__ import annotations

import base64
import random
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from faker import Faker
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import Response

from backbone.months import first_of_next_month
from backbone_sandbox.errors import answer_bad_requests
from backbone_sandbox.store import PicklableLockMixin

DEPARTMENTS = {
    "Data Engineering": ("Delivery", ["Data Engineer", "Senior Data Engineer", "Analytics Engineer"]),
    "Cloud": ("Delivery", ["Cloud Engineer", "Platform Engineer"]),
    "Consulting": ("Delivery", ["Consultant", "Senior Consultant", "Engagement Manager"]),
    "Finance": ("Operations", ["Controller", "Accountant"]),
    "People": ("Operations", ["HR Partner"]),
}
STATUS_HOURS = {"Full-Time": "40", "Part-Time": "24", "Contractor": "32"}
LOCATIONS = ("Amsterdam", "Utrecht", "Remote")
SKILLS = ["Python", "Airflow", "dbt", "SQL", "AWS", "Azure", "Spark", "Power BI"]
CERTIFICATIONS = ["AWS Solutions Architect", "Azure Data Engineer", "Databricks Data Engineer", "Scrum Master"]
REPORT_FIELDS = {
    "firstName": "First name",
    "lastName": "Last name",
    "displayName": "Display name",
    "workEmail": "Work email",
    "jobTitle": "Job title",
    "department": "Department",
    "division": "Division",
    "location": "Location",
    "employmentHistoryStatus": "Employment status",
    "status": "Status",
    "hireDate": "Hire date",
    "originalHireDate": "Original hire date",
    "terminationDate": "Termination date",
    "supervisorEId": "Supervisor employee id",
    "customStandardHoursPerWeek": "Standard hours per week",
    "lastChanged": "Last changed",
}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


@dataclass
class HrSeed:
    today: date
    employees: dict[str, dict[str, Any]] = field(default_factory=dict)
    tables: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    """table name → employee id → rows."""
    changed: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    bad_requests: dict[str, str] = field(default_factory=dict)
    cases: dict[str, str] = field(default_factory=dict)
    """Named people and requests the tests look at (joiner, leaver, rehire, ...)."""


def seed_hr(
    *,
    people: int = 30,
    anchor: datetime,
    timezone: str = "Europe/Amsterdam",
    seed: int = 20261127,
    time_keepers: list[dict[str, Any]] | None = None,
) -> HrSeed:
    """``time_keepers``: the PSA's people (``{"name", "email"}``); the first employees take their names
    and e-mail addresses, so the HR roster and the PSA's approved time are one company (utilization
    joins them by e-mail). Every other value is seeded as without them."""
    zone = ZoneInfo(timezone)
    fake = Faker(["en_US", "nl_NL"])
    fake.seed_instance(seed + 1)
    rng = random.Random(seed + 1)
    today = anchor.astimezone(zone).date()
    out = HrSeed(today=today, tables={"jobInfo": {}, "employmentStatus": {}, "customSkills": {}, "customCertifications": {}})
    departments = list(DEPARTMENTS)
    row_id = 0

    def next_row() -> str:
        nonlocal row_id
        row_id += 1
        return str(row_id)

    def changed_at(day: date) -> str:
        return _iso(datetime.combine(day, time(9), tzinfo=zone))

    for n in range(max(people, 12)):
        eid = str(100 + n)
        first, last = fake.first_name(), fake.last_name()
        email = f"{first}.{last}.{eid}@people.example".lower().replace(" ", "").replace("'", "")
        if time_keepers and n < len(time_keepers):
            first, _, last = time_keepers[n]["name"].partition(" ")
            email = time_keepers[n]["email"]
        department = departments[n % len(departments)] if n >= 3 else "Data Engineering"
        division, titles = DEPARTMENTS[department]
        status = "Contractor" if n % 9 == 8 else "Part-Time" if n % 7 == 6 else "Full-Time"
        hired = today - timedelta(days=200 + (n * 97) % 1500)
        out.employees[eid] = {
            "id": eid,
            "firstName": first,
            "lastName": last,
            "displayName": f"{first} {last}",
            "workEmail": email,
            "jobTitle": titles[n % len(titles)],
            "department": department,
            "division": division,
            "location": rng.choice(LOCATIONS),
            "employmentHistoryStatus": status,
            "status": "Active",
            "hireDate": hired.isoformat(),
            "originalHireDate": hired.isoformat(),
            "terminationDate": "0000-00-00",  # how BambooHR answers "never terminated"
            "supervisorEId": "100" if n else None,
            "customStandardHoursPerWeek": STATUS_HOURS[status],
            "lastChanged": changed_at(hired),
        }
        out.tables["jobInfo"][eid] = [
            {
                "id": next_row(),
                "employeeId": eid,
                "date": hired.isoformat(),
                "location": out.employees[eid]["location"],
                "department": department,
                "division": division,
                "jobTitle": out.employees[eid]["jobTitle"],
                "reportsTo": "100" if n else None,
            }
        ]
        out.tables["employmentStatus"][eid] = [{"id": next_row(), "employeeId": eid, "date": hired.isoformat(), "employmentStatus": status}]
        skills = rng.sample(SKILLS, 3) if n >= 3 else ["Airflow", "Python", "SQL"]
        out.tables["customSkills"][eid] = [
            {"id": next_row(), "employeeId": eid, "customSkill": s, "customLevel": rng.choice(["Intermediate", "Expert"])} for s in skills
        ]
        out.tables["customCertifications"][eid] = []
        if n % 4 == 1:
            out.tables["customCertifications"][eid].append(
                {
                    "id": next_row(),
                    "employeeId": eid,
                    "customCertification": CERTIFICATIONS[n % len(CERTIFICATIONS)],
                    "customExpirationDate": (today + timedelta(days=200 + n)).isoformat(),
                }
            )

    ids = list(out.employees)
    # Joiners: one hired a week ago, one starting next week.
    for eid, offset, case in ((ids[-1], -7, "joiner"), (ids[-2], 7, "future_joiner")):
        start = today + timedelta(days=offset)
        out.employees[eid].update(
            hireDate=start.isoformat(), originalHireDate=start.isoformat(), lastChanged=changed_at(today - timedelta(days=1))
        )
        out.tables["jobInfo"][eid][0]["date"] = start.isoformat()
        out.tables["employmentStatus"][eid][0]["date"] = start.isoformat()
        out.cases[case] = eid
    # Leavers: one left three weeks ago, one leaves in ten days.
    gone, leaving = ids[4], ids[5]
    left = today - timedelta(days=21)
    out.employees[gone].update(
        status="Inactive", employmentHistoryStatus="Terminated", terminationDate=left.isoformat(), lastChanged=changed_at(left)
    )
    out.tables["employmentStatus"][gone].append(
        {"id": next_row(), "employeeId": gone, "date": left.isoformat(), "employmentStatus": "Terminated"}
    )
    leaves = today + timedelta(days=10)
    out.employees[leaving].update(terminationDate=leaves.isoformat(), lastChanged=changed_at(today - timedelta(days=1)))
    out.tables["employmentStatus"][leaving].append(
        {"id": next_row(), "employeeId": leaving, "date": leaves.isoformat(), "employmentStatus": "Terminated"}
    )
    out.cases.update(leaver=gone, leaving_soon=leaving)
    # A rehire keeps the id: terminated in 2024, back two months ago.
    rehire = ids[6]
    back = today - timedelta(days=60)
    out.tables["employmentStatus"][rehire] = [
        {"id": next_row(), "employeeId": rehire, "date": "2022-01-03", "employmentStatus": "Full-Time"},
        {"id": next_row(), "employeeId": rehire, "date": "2024-06-30", "employmentStatus": "Terminated"},
        {"id": next_row(), "employeeId": rehire, "date": back.isoformat(), "employmentStatus": "Full-Time"},
    ]
    out.employees[rehire].update(
        originalHireDate="2022-01-03",
        hireDate=back.isoformat(),
        employmentHistoryStatus="Full-Time",
        customStandardHoursPerWeek="40",
        lastChanged=changed_at(back),
    )
    out.cases["rehire"] = rehire
    # A department change ten days ago.
    mover = ids[7]
    moved = today - timedelta(days=10)
    out.tables["jobInfo"][mover].append(
        {
            "id": next_row(),
            "employeeId": mover,
            "date": moved.isoformat(),
            "location": "Amsterdam",
            "department": "Data Engineering",
            "division": "Delivery",
            "jobTitle": "Data Engineer",
            "reportsTo": "100",
        }
    )
    out.employees[mover].update(department="Data Engineering", division="Delivery", jobTitle="Data Engineer", lastChanged=changed_at(moved))
    if not any(r["customSkill"] == "Airflow" for r in out.tables["customSkills"][mover]):
        out.tables["customSkills"][mover].append(
            {"id": next_row(), "employeeId": mover, "customSkill": "Airflow", "customLevel": "Intermediate"}
        )
    out.cases["department_change"] = mover
    # A certification that expires within 30 days.
    expiring = ids[1]
    out.tables["customCertifications"][expiring] = [
        {
            "id": next_row(),
            "employeeId": expiring,
            "customCertification": "AWS Solutions Architect",
            "customExpirationDate": (today + timedelta(days=20)).isoformat(),
        }
    ]
    out.cases["certification_expiring"] = expiring

    for eid, employee in out.employees.items():
        out.changed[eid] = {"id": eid, "action": "Updated", "lastChanged": employee["lastChanged"]}
    # Deleted from BambooHR yesterday: only `changed` still knows it.
    deleted = "999"
    out.changed[deleted] = {"id": deleted, "action": "Deleted", "lastChanged": changed_at(today - timedelta(days=1))}
    out.cases["deleted"] = deleted

    _seed_time_off(out, ids, today, zone)
    return out


def _workdays(start: date, end: date) -> list[date]:
    return [start + timedelta(days=d) for d in range((end - start).days + 1) if (start + timedelta(days=d)).weekday() < 5]


def _seed_time_off(out: HrSeed, ids: list[str], today: date, zone: ZoneInfo) -> None:
    serial = 5000

    def request(
        eid: str, start: date, end: date, *, status: str = "approved", hours_per_day: float = 8.0, case: str | None = None, **overrides: Any
    ) -> dict[str, Any]:
        nonlocal serial
        serial += 1
        employee = out.employees.get(eid, {"displayName": "Unknown"})
        days = {d.isoformat(): hours_per_day for d in _workdays(start, end)}
        record = {
            "id": serial,
            "employeeId": int(eid),
            "name": employee["displayName"],
            "start": start.isoformat(),
            "end": end.isoformat(),
            "created": (today - timedelta(days=14)).isoformat(),
            "status": {"lastChanged": (today - timedelta(days=3)).isoformat(), "lastChangedByUserId": 1, "status": status},
            "type": {"id": 78, "name": "Vacation", "icon": "palm-trees"},
            "amount": {"unit": "hours", "amount": sum(days.values())},
            "actions": {"view": True, "edit": False, "cancel": False, "approve": False, "deny": False, "bypass": False},
            "dates": days,
            "notes": {"employee": "", "manager": ""},
        }
        record.update(overrides)
        out.requests.append(record)
        if case:
            out.cases[case] = str(record["id"])
        return record

    next_monday = today + timedelta(days=7 - today.weekday())
    request(ids[8], next_monday + timedelta(days=1), next_monday + timedelta(days=1), hours_per_day=4.0, case="partial_day")
    request(ids[9], next_monday, next_monday + timedelta(days=16), case="multi_week")  # Monday to the Wednesday two weeks on
    month_end = first_of_next_month(today) - timedelta(days=1)
    request(ids[10], month_end - timedelta(days=2), month_end + timedelta(days=4), case="across_month_end")
    request(ids[11], next_monday, next_monday + timedelta(days=4), status="canceled", case="cancelled")
    request(ids[2], next_monday + timedelta(days=7), next_monday + timedelta(days=8), status="denied", case="denied")
    dup = request(ids[3], next_monday + timedelta(days=14), next_monday + timedelta(days=15), case="duplicate")
    out.requests.append(dict(dup))  # served twice, identical
    for k, eid in enumerate(ids[12:20]):  # ordinary approved leave, some past, some ahead
        start = today + timedelta(days=-20 + 9 * k)
        request(eid, start, start + timedelta(days=k % 3))
    # Data Engineering's week-after-next, for the capacity question: two people away three days.
    for eid in ids[:2]:
        request(eid, next_monday + timedelta(days=7), next_monday + timedelta(days=9))

    def bad(rule: str, **kwargs: Any) -> None:
        record = request(**kwargs)
        out.bad_requests[str(record["id"])] = rule

    bad(
        "time_off_day.status.allowed_values",
        eid=ids[12],
        start=next_monday + timedelta(days=21),
        end=next_monday + timedelta(days=21),
        status="pending_review",
    )
    bad("time_off.dates.ordered", eid=ids[13], start=next_monday + timedelta(days=22), end=next_monday + timedelta(days=20))
    bad(
        "time_off_day.hours.range",
        eid=ids[14],
        start=next_monday + timedelta(days=23),
        end=next_monday + timedelta(days=23),
        hours_per_day=30.0,
    )
    bad(
        "time_off_day.hours.range",
        eid=ids[15],
        start=next_monday + timedelta(days=24),
        end=next_monday + timedelta(days=24),
        hours_per_day=-4.0,
    )
    bad("time_off.employee.known", eid="4242", start=next_monday, end=next_monday)


class HrStore(PicklableLockMixin):
    def __init__(self, seed: HrSeed):
        self.today = seed.today
        self.employees = seed.employees
        self.tables = seed.tables
        self.changed = seed.changed
        self.requests = seed.requests
        self.bad_requests = seed.bad_requests
        self.cases = seed.cases
        self._lock = threading.Lock()

    def set_request_status(self, request_id: str, status: str, *, on: date) -> None:
        """A manager cancels or denies a request (as in BambooHR's UI)."""
        with self._lock:
            for record in self.requests:
                if str(record["id"]) == request_id:
                    record["status"] = {**record["status"], "status": status, "lastChanged": on.isoformat()}

    def update_employee(self, employee_id: str, fields: dict[str, Any], *, at: datetime) -> None:
        with self._lock:
            self.employees[employee_id].update(fields, lastChanged=_iso(at))
            self.changed[employee_id] = {"id": employee_id, "action": "Updated", "lastChanged": _iso(at)}

    def delete_employee(self, employee_id: str, *, at: datetime) -> None:
        with self._lock:
            self.employees.pop(employee_id, None)
            for rows in self.tables.values():
                rows.pop(employee_id, None)
            self.changed[employee_id] = {"id": employee_id, "action": "Deleted", "lastChanged": _iso(at)}


def _since(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise HTTPException(400, "The since parameter is missing or is not a valid ISO 8601 date.") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def build_bamboohr_app(state: Any) -> FastAPI:
    app = FastAPI(title="BambooHR API (sandbox)", docs_url=None, redoc_url=None)
    store: HrStore = state.hr
    _add_basic_auth(app, state, store)
    _add_reports(app, state, store)
    _add_changes(app, state, store)
    return app


GATEWAY_PATH = re.compile(r"^/api/gateway\.php/[^/]+/v1(/.*)$")
"""BambooHR's documented base URL ``https://api.bamboohr.com/api/gateway.php/{companyDomain}/v1/``
(what PyBambooHR and older integrations call) beside ``https://{companyDomain}.bamboohr.com/api/v1/``."""


def _add_basic_auth(app: FastAPI, state: Any, store: Any) -> None:
    @app.middleware("http")
    async def gateway_paths(request: Request, call_next):  # noqa: ANN001, ANN202 - starlette signature
        """Both documented URL forms reach the same routes; a trailing slash is the same resource."""
        root = request.scope.get("root_path", "")
        own = request.scope["path"].removeprefix(root)  # mounted: Starlette keeps the full path
        match = GATEWAY_PATH.match(own)
        path = "/api/v1" + match[1] if match else own
        if path != "/" and path.endswith("/"):
            path = path.rstrip("/")
        if path != own:
            request.scope["path"] = root + path
            request.scope["raw_path"] = (root + path).encode()
        return await call_next(request)

    @app.middleware("http")
    async def basic_auth(request: Request, call_next):  # noqa: ANN001, ANN202 - starlette signature
        # BambooHR: the API key is the user name, and "the password can be any random string".
        if api_key_of(request.headers.get("authorization")) != state.config.token:
            return Response(status_code=401, headers={"X-BambooHR-Error-Message": "Unauthorized. Invalid API credentials."})
        return await call_next(request)

    @app.exception_handler(HTTPException)
    async def _error(_: Request, exc: HTTPException) -> Response:
        return Response(status_code=exc.status_code, headers={"X-BambooHR-Error-Message": str(exc.detail)})

    answer_bad_requests(app, lambda _, detail: Response(status_code=400, headers={"X-BambooHR-Error-Message": detail}))


def api_key_of(authorization: str | None) -> str | None:
    """The user name of an HTTP Basic header (BambooHR's API key), whatever the password."""
    if not authorization or not authorization.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(authorization.removeprefix("Basic "), validate=True).decode()
    except ValueError:
        return None
    return decoded.split(":", 1)[0]


def report_request(raw: bytes, content_type: str) -> dict[str, Any]:
    """A custom report request as JSON or as BambooHR's XML form
    (``<report><title>…</title><filters><lastChanged>…</lastChanged></filters><fields><field id="…"/></fields></report>``)."""
    import json
    from xml.etree import ElementTree

    text = raw.decode("utf-8", errors="replace").strip()
    if "xml" not in content_type and not text.startswith("<"):
        try:
            body = json.loads(text or "{}")
        except ValueError:
            raise HTTPException(400, "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise HTTPException(400, "The request body must be an object.")
        return body
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        raise HTTPException(400, "The request body is not valid XML.") from None
    request: dict[str, Any] = {"title": root.findtext("title") or "", "fields": [f.get("id") for f in root.iter("field") if f.get("id")]}
    changed = root.find("filters/lastChanged")
    if changed is not None and (changed.text or "").strip():
        request["filters"] = {"lastChanged": {"includeNull": changed.get("includeNull", "no"), "value": changed.text.strip()}}
    return request


def _add_reports(app: FastAPI, state: Any, store: Any) -> None:
    @app.get("/api/v1/employees/directory")
    def directory(onlyCurrent: bool = True) -> dict[str, Any]:  # noqa: N803 - BambooHR's parameter name
        fields = [
            {"id": f, "type": "text", "name": REPORT_FIELDS[f]}
            for f in ("displayName", "firstName", "lastName", "jobTitle", "workEmail", "department", "location", "division")
        ]
        people = [e for e in store.employees.values() if not onlyCurrent or e["status"] == "Active"]
        return {"fields": fields, "employees": [{"id": e["id"], **{f["id"]: e.get(f["id"]) for f in fields}} for e in people]}

    @app.post("/api/v1/reports/custom")
    async def custom_report(request: Request, format: str = Query("json"), onlyCurrent: bool = False) -> dict[str, Any]:  # noqa: A002, N803
        if format != "json":
            raise HTTPException(404, "Report format not found.")
        body = report_request(await request.body(), request.headers.get("content-type", ""))
        fields = [f for f in body.get("fields") or [] if f in REPORT_FIELDS]
        if len(body.get("fields") or []) > 400:
            raise HTTPException(400, "More than 400 fields requested.")
        wanted = {str(i) for i in ((body.get("filters") or {}).get("employeeIds") or [])}
        since = ((body.get("filters") or {}).get("lastChanged") or {}).get("value")
        people = [e for e in store.employees.values() if (not wanted or e["id"] in wanted) and (not onlyCurrent or e["status"] == "Active")]
        if since:
            people = [e for e in people if _since(e["lastChanged"]) >= _since(since)]
        return {
            "title": body.get("title") or "Report",
            "fields": [{"id": f, "type": "text", "name": REPORT_FIELDS[f]} for f in fields],
            "employees": [{"id": e["id"], **{f: e.get(f) for f in fields}} for e in sorted(people, key=lambda e: int(e["id"]))],
        }


def _add_changes(app: FastAPI, state: Any, store: Any) -> None:
    @app.get("/api/v1/employees/changed")
    def changed(since: str, type: str | None = None) -> dict[str, Any]:  # noqa: A002
        moment = _since(since)
        hits = {eid: c for eid, c in store.changed.items() if _since(c["lastChanged"]) >= moment}
        latest = max((c["lastChanged"] for c in hits.values()), default=_iso(moment))
        return {"latest": latest, "employees": hits}

    @app.get("/api/v1/employees/changed/tables/{table}")
    def changed_table(table: str, since: str) -> dict[str, Any]:
        if table not in store.tables:
            raise HTTPException(404, "The specified table does not exist.")
        moment = _since(since)
        employees = {}
        for eid, rows in store.tables[table].items():
            last = store.employees.get(eid, {}).get("lastChanged")
            if last and _since(last) >= moment:
                employees[eid] = {"lastChanged": last, "rows": rows}
        return {"table": table, "employees": employees}

    @app.get("/api/v1/time_off/requests")
    def time_off(start: date, end: date, status: str | None = None, employeeId: int | None = None) -> list[dict[str, Any]]:  # noqa: N803
        wanted = set(status.split(",")) if status else None
        hits = []
        for record in store.requests:
            try:
                overlaps = date.fromisoformat(record["end"]) >= start and date.fromisoformat(record["start"]) <= end
            except ValueError:
                continue
            if record["end"] < record["start"]:
                overlaps = date.fromisoformat(record["start"]) >= start and date.fromisoformat(record["start"]) <= end
            if (
                overlaps
                and (wanted is None or record["status"]["status"] in wanted)
                and (employeeId is None or record["employeeId"] == employeeId)
            ):
                hits.append(record)
        return hits
