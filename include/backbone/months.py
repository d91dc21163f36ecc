"""Calendar months, computed one way everywhere (pendulum's month arithmetic)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo


def first_of_next_month(day: date) -> date:
    """The first day of the month after ``day``'s month (2026-12-15 → 2027-01-01)."""
    import pendulum

    following = pendulum.date(day.year, day.month, 1).add(months=1)
    return date(following.year, following.month, 1)


def month_bounds(month: str, timezone: str) -> tuple[datetime, datetime]:
    """``[first day 00:00, first of next month 00:00)`` of ``YYYY-MM`` in ``timezone``."""
    zone = ZoneInfo(timezone)
    first = date.fromisoformat(f"{month}-01")
    following = first_of_next_month(first)
    return datetime(first.year, first.month, 1, tzinfo=zone), datetime(following.year, following.month, 1, tzinfo=zone)
