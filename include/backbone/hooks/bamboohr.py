"""BambooHR API v1: employees, custom reports, change feeds, tables and time-off requests.

BambooHR authenticates with HTTP Basic, the API key as user name and any password. It throttles
with 503 today and with 429 + ``Retry-After`` from 2026-09-16; both are retried by the shared policy.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import cached_property
from typing import Any
from urllib.parse import quote

from backbone.hooks.auth import ApiKeyBasicAuth
from backbone.hooks.base import JsonApiHook
from backbone.hooks.hr import HistoryRecord, PersonRecord, TimeOffRequest
from backbone.http import RateLimiter, RetriableApiError

TABLES = {
    "job_history": "jobInfo",
    "status_history": "employmentStatus",
    "skills": "customSkills",
    "certifications": "customCertifications",
}
"""The roster's canonical tables → BambooHR's table names (the custom ones as this company set them up)."""


EMPTY_DATES = frozenset({"", "0000-00-00", "0000-00-00 00:00:00"})
"""How BambooHR writes "no date" in date fields: an empty string, or the MySQL zero date
``0000-00-00`` (seen in ``terminationDate`` of employees never terminated; other connectors treat it
as empty too, e.g. faros-ai/airbyte-connectors#592). Both mean none, never an invalid date."""


def _date_or_none(value: Any) -> Any:
    return None if value is None or (isinstance(value, str) and value.strip() in EMPTY_DATES) else value


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class BambooHRRecords:
    """BambooHR's field names, in one place: raw records → the dictionary's canonical fields."""

    system = "bamboohr"

    def __init__(self, hours_field: str = "customStandardHoursPerWeek"):
        self.hours_field = hours_field

    @property
    def report_fields(self) -> list[str]:
        """The fields the custom report asks for (everything :meth:`person` reads)."""
        return [
            "firstName",
            "lastName",
            "displayName",
            "workEmail",
            "jobTitle",
            "department",
            "division",
            "location",
            "employmentHistoryStatus",
            "status",
            "hireDate",
            "originalHireDate",
            "terminationDate",
            "supervisorEId",
            self.hours_field,
            "lastChanged",
        ]

    def table_name(self, table: str) -> str:
        return TABLES[table]

    def person(self, raw: dict[str, Any]) -> PersonRecord:
        return {
            "hr_id": raw.get("id"),
            "name": raw.get("displayName") or " ".join(filter(None, [raw.get("firstName"), raw.get("lastName")])) or None,
            "email": raw.get("workEmail"),
            "job_title": raw.get("jobTitle"),
            "department": raw.get("department"),
            "division": raw.get("division"),
            "location": raw.get("location"),
            "employment_status": raw.get("employmentHistoryStatus"),
            "is_active": {"Active": "true", "Inactive": "false"}.get(str(raw.get("status")), raw.get("status")),
            "hire_date": _date_or_none(raw.get("hireDate")),
            "original_hire_date": _date_or_none(raw.get("originalHireDate")),
            "termination_date": _date_or_none(raw.get("terminationDate")),
            "weekly_hours": raw.get(self.hours_field),
            "supervisor_id": raw.get("supervisorEId"),
        }

    def time_off_request(self, raw: dict[str, Any]) -> TimeOffRequest:
        return {
            "request_id": str(raw.get("id")),
            "hr_id": str(raw.get("employeeId")),
            "status": _as_dict(raw.get("status")).get("status"),
            "type": _as_dict(raw.get("type")).get("name"),
            "unit": str(_as_dict(raw.get("amount")).get("unit") or "hours").lower(),
            "start": str(raw.get("start")),
            "end": str(raw.get("end")),
            "dates": _as_dict(raw.get("dates")),
        }

    def history(self, raw: dict[str, Any]) -> HistoryRecord:
        return {
            "effective_date": _date_or_none(raw.get("date")),
            "job_title": raw.get("jobTitle"),
            "department": raw.get("department"),
            "division": raw.get("division"),
            "employment_status": raw.get("employmentStatus"),
        }

    def skill(self, raw: dict[str, Any]) -> dict[str, Any]:
        return {
            "hr_id": str(raw.get("employeeId")),
            "skill": raw.get("customSkill"),
            "level": raw.get("customLevel"),
            "row_id": raw.get("id"),
        }

    def certification(self, raw: dict[str, Any]) -> dict[str, Any]:
        return {
            "hr_id": str(raw.get("employeeId")),
            "name": raw.get("customCertification"),
            "expires_on": _date_or_none(raw.get("customExpirationDate")),
            "row_id": raw.get("id"),
        }


class BambooHRHook(JsonApiHook):
    """BambooHR with an API key.

    Connection (``bamboohr_default``): ``host`` = ``https://{companyDomain}.bamboohr.com`` (the API
    lives under ``/api/v1``), ``password`` = API key. Extras: ``custom_hours_field`` (default
    ``customStandardHoursPerWeek``), ``requests_per_second`` (default 5).
    """

    conn_name_attr = "bamboohr_conn_id"
    default_conn_name = "bamboohr_default"
    conn_type = "bamboohr"
    hook_name = "BambooHR"
    system_name = "BambooHR"

    def __init__(self, bamboohr_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(bamboohr_conn_id, **kwargs)

    @cached_property
    def records(self) -> BambooHRRecords:
        """How this company's BambooHR records read (the hours field is a custom one: extra ``custom_hours_field``)."""
        return BambooHRRecords(str(self.extras.get("custom_hours_field") or "customStandardHoursPerWeek"))

    @cached_property
    def limiter(self) -> RateLimiter:
        return RateLimiter(self.budget("requests_per_second", setting=None, default=5))

    @cached_property
    def auth(self) -> ApiKeyBasicAuth:
        key = self.connection.password
        if not key:
            raise ValueError(f"Connection {self.conn_id!r} has no API key: put it in the password field")
        return ApiKeyBasicAuth(key)

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.request("GET", "/api/v1/employees/directory", limiter=self.limiter)
        except Exception as exc:  # noqa: BLE001 - reported to the UI, not raised
            return False, str(exc)
        return True, "BambooHR answered"

    def employees_report(self, employee_ids: list[str] | None = None) -> list[dict[str, Any]]:
        """Every employee (current and former), or only ``employee_ids``, with the roster fields."""
        body: dict[str, Any] = {"title": "backbone roster", "fields": self.records.report_fields}
        if employee_ids is not None:
            if not employee_ids:
                return []
            body["filters"] = {"employeeIds": [int(i) for i in employee_ids]}
        answer = self.request(
            "POST", "/api/v1/reports/custom", params={"format": "json", "onlyCurrent": "false"}, json=body, limiter=self.limiter
        )
        return list((answer or {}).get("employees") or [])

    def changed_employees(self, since: datetime) -> dict[str, dict[str, Any]]:
        """Employee id → {action: Inserted|Updated|Deleted, lastChanged} since ``since``."""
        answer = self.request("GET", "/api/v1/employees/changed", params={"since": since.isoformat()}, limiter=self.limiter)
        return dict((answer or {}).get("employees") or {})

    def changed_table(self, table: str, since: datetime) -> dict[str, list[dict[str, Any]]]:
        """Employee id → all rows of ``table`` for employees changed since ``since``."""
        answer = self.request(
            "GET", f"/api/v1/employees/changed/tables/{quote(table)}", params={"since": since.isoformat()}, limiter=self.limiter
        )
        return {eid: list(v.get("rows") or []) for eid, v in ((answer or {}).get("employees") or {}).items()}

    def time_off_requests(self, start: date, end: date) -> list[dict[str, Any]]:
        """Requests of any status whose leave overlaps ``[start, end]`` (dates the leave happens)."""
        answer = self.request(
            "GET", "/api/v1/time_off/requests", params={"start": start.isoformat(), "end": end.isoformat()}, limiter=self.limiter
        )
        if not isinstance(answer, list):
            raise RetriableApiError(f"BambooHR time_off/requests returned {type(answer).__name__}, not a list")
        return answer
