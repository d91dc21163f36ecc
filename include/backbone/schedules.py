"""When each flow runs, and which of its intervals are due, covered or missing.

One place for every flow's schedule: the DAG files build their timetables here, and the ledger
uses the same timetables to find **gaps** — intervals that are due but that no successful run
covers (Airflow was down, the DAG was paused, a run failed and nobody reran it). A run that starts
after a gap covers it (``backbone.flows.runtime.open_flow_run``), so gaps close by themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import CronDataIntervalTimetable

FLOW_SCHEDULES = {
    "crm_closed_won_to_psa": "*/30 * * * *",
    "hr_roster_pto_to_psa": "0 5 * * *",
    "accounting_codes_to_psa": "30 4 * * *",
    "timesheets_weekly_to_accounting": "0 17 * * FRI",
    "expenses_weekly_to_accounting": "0 17 * * FRI",
    "invoices_month_end_to_accounting": "0 0 1 * *",
    "project_actuals_to_accounting": "0 0 1 * *",
    "invoices_to_accounting": "0 7 * * *",
    "payments_to_psa": "0 6 * * *",
    "psa_milestones_to_crm": "30 6 * * *",
    "backbone_deadlines": "5 * * * *",
}
"""Each flow's cron, in company time: a run covers the interval between two of its ticks."""

FLOW_DEADLINES = {
    "crm_closed_won_to_psa": timedelta(hours=1),
    "hr_roster_pto_to_psa": timedelta(hours=3),
    "accounting_codes_to_psa": timedelta(hours=3),
    "timesheets_weekly_to_accounting": timedelta(hours=1),
    "expenses_weekly_to_accounting": timedelta(hours=1),
    "invoices_month_end_to_accounting": timedelta(days=3),
    "project_actuals_to_accounting": timedelta(days=5),
    "invoices_to_accounting": timedelta(hours=3),
    "payments_to_psa": timedelta(hours=3),
    "psa_milestones_to_crm": timedelta(hours=3),
}
"""By when after its interval ends a flow's run must have succeeded (its business deadline): the
Friday export by 18:00, month-end within three days of the 1st, the daily flows within three hours."""

FLOW_WAREHOUSES = {
    "psa": ("crm_closed_won_to_psa", "hr_roster_pto_to_psa", "accounting_codes_to_psa", "psa_milestones_to_crm"),
    "accounting": (
        "timesheets_weekly_to_accounting",
        "expenses_weekly_to_accounting",
        "invoices_month_end_to_accounting",
        "invoices_to_accounting",
        "payments_to_psa",
        "project_actuals_to_accounting",
    ),
}
"""Which warehouse keeps each flow's run ledger (``ops.flow_run``)."""

CATCHES_UP = frozenset(FLOW_SCHEDULES) - {"invoices_month_end_to_accounting", "project_actuals_to_accounting", "backbone_deadlines"}
"""Flows whose run, after missed intervals, extracts from the end of the last successful one. The
monthly flows are cut by calendar month instead; each missed month is its own run."""

Interval = tuple[datetime, datetime]

TIME_EXPORT_ASSET = "backbone_time_export"
"""The Airflow Asset the weekly export updates when a run succeeds and month-end consumes: the
Assets view shows the chain export → month-end."""


def timetable(flow: str, timezone: str) -> CronDataIntervalTimetable:
    """The flow's data-interval timetable for its DAG (each run covers ``[previous tick, tick)``)."""
    from airflow.sdk import CronDataIntervalTimetable

    return CronDataIntervalTimetable(FLOW_SCHEDULES[flow], timezone=timezone)


def dag_arguments(flow: str, timezone: str, *, retry_delay: timedelta, start: datetime | None = None) -> dict[str, Any]:
    """What every flow's ``@dag`` shares: its id and timetable, one run at a time, no Airflow catch-up
    (a run covers missed intervals itself: ``backbone.flows.runtime.open_flow_run``), and retries
    with exponential backoff owned by data engineering."""
    import pendulum

    from backbone.settings import load_settings

    override = load_settings().retry_delay_seconds
    if override is not None:
        retry_delay = timedelta(seconds=override)
    return {
        "dag_id": flow,
        "schedule": timetable(flow, timezone),
        "start_date": start or pendulum.datetime(2026, 1, 1, tz=timezone),
        "catchup": False,
        "max_active_runs": 1,
        "default_args": {"owner": "data-engineering", "retries": 3, "retry_delay": retry_delay, "retry_exponential_backoff": True},
    }


def intervals(flow: str, timezone: str, *, start: datetime, end: datetime) -> Iterator[Interval]:
    """The flow's scheduled intervals that start at or after ``start`` and end at or before ``end``."""
    from airflow.timetables.base import DataInterval, TimeRestriction
    from airflow.timetables.interval import CronDataIntervalTimetable  # the scheduler's own, which computes intervals

    table = CronDataIntervalTimetable(FLOW_SCHEDULES[flow], timezone=timezone)
    import pendulum

    restriction = TimeRestriction(earliest=pendulum.instance(start), latest=None, catchup=True)
    info = table.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    while info is not None and info.data_interval.end <= end:
        yield info.data_interval.start, info.data_interval.end
        last = DataInterval(info.data_interval.start, info.data_interval.end)
        info = table.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)


def weeks_covering(timezone: str, start: datetime, end: datetime) -> list[Interval]:
    """The weekly export's intervals that overlap ``[start, end)``: for a month, from the week holding
    its first day to the week holding its last (which ends on the first Friday after it)."""
    weekly = "timesheets_weekly_to_accounting"
    return [
        (s, e)
        for s, e in intervals(weekly, timezone, start=start - timedelta(days=8), end=end + timedelta(days=8))
        if e > start and s < end
    ]


def uncovered(expected: Iterable[Interval], covered: Iterable[Interval]) -> list[Interval]:
    """The expected intervals not wholly inside the union of ``covered`` spans."""
    merged: list[list[datetime]] = []
    for start, end in sorted(covered):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in expected if not any(m_start <= s and e <= m_end for m_start, m_end in merged)]


def gaps(
    flow: str, timezone: str, *, first_start: datetime, covered: Iterable[Interval], now: datetime, grace: timedelta, limit: int = 200
) -> list[Interval]:
    """Due intervals of ``flow`` from ``first_start`` (its first run) until ``now − grace`` that no
    successful run covers, oldest first (at most ``limit``: a long outage is named, not enumerated)."""
    expected = intervals(flow, timezone, start=first_start, end=now - grace)
    found = []
    covered = list(covered)
    for interval in expected:
        if uncovered([interval], covered):
            found.append(interval)
            if len(found) >= limit:
                break
    return found
