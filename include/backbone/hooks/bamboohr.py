"""BambooHR API v1: employees, custom reports, change feeds, tables and time-off requests.

BambooHR authenticates with HTTP Basic, the API key as user name and any password. It throttles
with 503 today and with 429 + ``Retry-After`` from 2026-09-16; both are retried by the shared policy.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import cached_property
from typing import Any, Protocol
from urllib.parse import quote

from backbone.hooks.auth import ApiKeyBasicAuth
from backbone.hooks.base import JsonApiHook
from backbone.http import RateLimiter

REPORT_FIELDS = [
    "firstName", "lastName", "displayName", "workEmail", "jobTitle", "department", "division", "location", "employmentHistoryStatus",
    "status", "hireDate", "originalHireDate", "terminationDate", "supervisorEId", "customStandardHoursPerWeek", "lastChanged",
]  # fmt: skip
HISTORY_TABLES = ("jobInfo", "employmentStatus")
SKILL_TABLE = "customSkills"
CERTIFICATION_TABLE = "customCertifications"


class HrSource(Protocol):
    """What the roster flow needs from an HR system."""

    def employees_report(self, employee_ids: list[str] | None = None) -> list[dict[str, Any]]: ...

    def changed_employees(self, since: datetime) -> dict[str, dict[str, Any]]: ...

    def changed_table(self, table: str, since: datetime) -> dict[str, list[dict[str, Any]]]: ...

    def time_off_requests(self, start: date, end: date) -> list[dict[str, Any]]: ...


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
        body: dict[str, Any] = {"title": "backbone roster", "fields": REPORT_FIELDS}
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
            from backbone.http import RetriableApiError

            raise RetriableApiError(f"BambooHR time_off/requests returned {type(answer).__name__}, not a list")
        return answer
