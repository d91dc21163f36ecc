"""The weekly export's data interval: Friday 17:00 to Friday 17:00 company time, DST included."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pendulum
import pytest

FLOW = "timesheets_weekly_to_accounting"
AMSTERDAM = ZoneInfo("Europe/Amsterdam")


@pytest.fixture(scope="module")
def timetable(dagbag):
    from airflow.serialization.encoders import coerce_to_core_timetable

    return coerce_to_core_timetable(dagbag.get_dag(FLOW).timetable)


def week_of(timetable, moment: datetime):
    interval = timetable.infer_manual_data_interval(run_after=pendulum.instance(moment))
    return interval.start, interval.end


@pytest.mark.parametrize(
    ("run_after", "hours"),
    [
        (datetime(2026, 10, 30, 17, 0, tzinfo=AMSTERDAM), 169),  # holds the switch to winter time (25 Oct)
        (datetime(2026, 4, 3, 17, 0, tzinfo=AMSTERDAM), 167),  # holds the switch to summer time (29 Mar)
        (datetime(2026, 11, 6, 17, 0, tzinfo=AMSTERDAM), 168),
    ],
)
def test_each_week_runs_friday_17_to_friday_17_local(timetable, run_after, hours):
    start, end = week_of(timetable, run_after)
    for edge in (start, end):
        local = edge.astimezone(AMSTERDAM)
        assert (local.weekday(), local.hour, local.minute) == (4, 17, 0)
    assert end == run_after
    assert (end - start) == timedelta(hours=hours)


def test_a_run_between_fridays_covers_the_last_full_week(timetable):
    start, end = week_of(timetable, datetime(2026, 11, 2, 12, 0, tzinfo=AMSTERDAM))  # a Monday
    assert end.astimezone(AMSTERDAM) == datetime(2026, 10, 30, 17, 0, tzinfo=AMSTERDAM)
    assert start.astimezone(AMSTERDAM) == datetime(2026, 10, 23, 17, 0, tzinfo=AMSTERDAM)


def test_consecutive_weeks_neither_gap_nor_overlap_through_a_year(timetable):
    from airflow.timetables.base import DataInterval, TimeRestriction

    restriction = TimeRestriction(earliest=pendulum.datetime(2026, 1, 1, tz="UTC"), latest=None, catchup=True)
    last = None
    weeks = []
    for _ in range(53):
        info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        weeks.append(info.data_interval)
        last = DataInterval(info.data_interval.start, info.data_interval.end)
    for earlier, later in zip(weeks, weeks[1:], strict=False):
        assert earlier.end == later.start
    assert all(w.start.astimezone(AMSTERDAM).strftime("%a %H:%M") == "Fri 17:00" for w in weeks)
