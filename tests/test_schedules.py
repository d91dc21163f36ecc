"""Schedules, due intervals and gaps: pure functions over the flows' timetables (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from backbone.schedules import FLOW_SCHEDULES, gaps, intervals, uncovered
from backbone.warehouse.ops import RunRef

ZONE = "Europe/Amsterdam"
WEEKLY = "timesheets_weekly_to_accounting"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_weekly_intervals_run_friday_to_friday_in_company_time_across_the_clock_change():
    weeks = list(intervals(WEEKLY, ZONE, start=utc(2026, 10, 16, 15), end=utc(2026, 11, 6, 16)))
    assert weeks == [
        (utc(2026, 10, 16, 15), utc(2026, 10, 23, 15)),
        (utc(2026, 10, 23, 15), utc(2026, 10, 30, 16)),  # 17:00 CEST → 17:00 CET
        (utc(2026, 10, 30, 16), utc(2026, 11, 6, 16)),
    ]


def test_an_interval_is_covered_only_when_successful_runs_span_all_of_it():
    weeks = list(intervals(WEEKLY, ZONE, start=utc(2026, 10, 2, 15), end=utc(2026, 10, 30, 16)))
    first, second, third, fourth = weeks
    # a catching-up run of the fourth week covered the second and third as well
    assert uncovered(weeks, [first, (second[0], fourth[1])]) == []
    assert uncovered(weeks, [first, fourth]) == [second, third]
    assert uncovered(weeks, [(first[0], first[1] - timedelta(minutes=1))]) == weeks


def test_gaps_are_due_intervals_since_the_first_run_after_a_grace_period():
    first_week = (utc(2026, 10, 2, 15), utc(2026, 10, 9, 15))
    now = utc(2026, 10, 30, 17)  # an hour after the fourth Friday's end
    found = gaps(WEEKLY, ZONE, first_start=first_week[0], covered=[first_week], now=now, grace=timedelta(hours=2))
    assert found == [(utc(2026, 10, 9, 15), utc(2026, 10, 16, 15)), (utc(2026, 10, 16, 15), utc(2026, 10, 23, 15))]
    later = gaps(WEEKLY, ZONE, first_start=first_week[0], covered=[first_week], now=now + timedelta(hours=2), grace=timedelta(hours=2))
    assert later[-1] == (utc(2026, 10, 23, 15), utc(2026, 10, 30, 16))  # now past the grace: the fourth week is due too
    assert gaps(WEEKLY, ZONE, first_start=first_week[0], covered=[(first_week[0], now)], now=now, grace=timedelta(0)) == []


def test_a_long_outage_is_named_not_enumerated():
    start = utc(2026, 1, 1)
    found = gaps("crm_closed_won_to_psa", ZONE, first_start=start, covered=[], now=utc(2026, 11, 1), grace=timedelta(0), limit=5)
    assert len(found) == 5 and found[0][0] == start


def test_every_dag_has_a_schedule_and_a_run_reads_from_where_it_catches_up():
    dag_files = {p.stem for p in (Path(__file__).resolve().parents[1] / "dags").glob("*.py")}
    assert set(FLOW_SCHEDULES) == dag_files - {"backbone_setup"}  # triggered by hand, once per deployment
    run = RunRef(WEEKLY, "k", utc(2026, 10, 23, 15), utc(2026, 10, 30, 16))
    assert run.extract_from == run.interval_start
    assert RunRef(WEEKLY, "k", run.interval_start, run.interval_end, covers_from=utc(2026, 10, 9, 15)).extract_from == utc(2026, 10, 9, 15)
