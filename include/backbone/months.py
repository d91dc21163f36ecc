"""Calendar months, computed one way everywhere (pendulum's month arithmetic)."""

from __future__ import annotations

from datetime import date


def first_of_next_month(day: date) -> date:
    """The first day of the month after ``day``'s month (2026-12-15 → 2027-01-01)."""
    import pendulum

    following = pendulum.date(day.year, day.month, 1).add(months=1)
    return date(following.year, following.month, 1)
