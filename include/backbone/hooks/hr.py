"""What the roster flow needs from an HR system, in the data dictionary's names.

A hook (``backbone.hooks.bamboohr``) reads the vendor's records as they are; the flow stages them
unchanged (the evidence an exception keeps) and reads them only through the vendor's
:class:`HrRecords`, which turns one raw record into canonical fields. So no vendor field or table
name appears in ``backbone.flows.roster``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Protocol, TypedDict

HR_TABLES = ("job_history", "status_history", "skills", "certifications")
"""The per-person tables the roster reads, by canonical name (each vendor names its own)."""


class PersonRecord(TypedDict):
    hr_id: Any
    name: Any
    email: Any
    job_title: Any
    department: Any
    division: Any
    location: Any
    employment_status: Any
    is_active: Any
    hire_date: Any
    original_hire_date: Any
    termination_date: Any
    weekly_hours: Any
    supervisor_id: Any


class TimeOffRequest(TypedDict):
    request_id: str
    hr_id: str
    status: Any
    type: Any
    unit: str
    start: str
    end: str
    dates: dict[str, Any]
    """Day (ISO date) → amount in ``unit`` (hours or days)."""


class HistoryRecord(TypedDict):
    effective_date: Any
    job_title: Any
    department: Any
    division: Any
    employment_status: Any


class HrRecords(Protocol):
    """One vendor's raw HR records → canonical fields (pure functions; never raise on bad data)."""

    system: str

    def table_name(self, table: str) -> str:
        """The vendor's name of a canonical table (one of ``HR_TABLES``)."""
        ...

    def person(self, raw: dict[str, Any]) -> PersonRecord: ...

    def time_off_request(self, raw: dict[str, Any]) -> TimeOffRequest: ...

    def history(self, raw: dict[str, Any]) -> HistoryRecord: ...

    def skill(self, raw: dict[str, Any]) -> dict[str, Any]:
        """``{"hr_id", "skill", "level", "row_id"}``."""
        ...

    def certification(self, raw: dict[str, Any]) -> dict[str, Any]:
        """``{"hr_id", "name", "expires_on", "row_id"}``."""
        ...


class HrSource(Protocol):
    """An HR system as the roster flow reads it (records as the vendor sends them)."""

    records: HrRecords

    def employees_report(self, employee_ids: list[str] | None = None) -> list[dict[str, Any]]: ...

    def changed_employees(self, since: datetime) -> dict[str, dict[str, Any]]:
        """Employee id → ``{"action": "Inserted" | "Updated" | "Deleted", ...}`` since ``since``."""
        ...

    def changed_table(self, table: str, since: datetime) -> dict[str, list[dict[str, Any]]]:
        """Employee id → all rows of the vendor's ``table`` for employees changed since ``since``."""
        ...

    def time_off_requests(self, start: date, end: date) -> list[dict[str, Any]]: ...
