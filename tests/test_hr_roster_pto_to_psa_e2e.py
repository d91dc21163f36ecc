"""The HR roster flow run for real by Airflow against the BambooHR sandbox and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from tests.conftest import ANCHOR
from tests.helpers import rows, run_dag, scalar

pytestmark = pytest.mark.e2e
FLOW = "hr_roster_pto_to_psa"
RUN_DAY = datetime(2026, 11, 2, 4, 0, tzinfo=UTC)  # Monday 05:00 Amsterdam: the run covering Sunday → Monday


def run(dagbag, logical_date=RUN_DAY, *, retries: int | None = None):
    return run_dag(dagbag, FLOW, logical_date, retries=retries)


def checksum(engine) -> str:
    parts = []
    for table in ("person", "person_history", "department", "skill", "certification", "time_off_day", "capacity"):
        parts.append(
            scalar(
                engine,
                "SELECT md5(coalesce(string_agg(t, '|' ORDER BY t), '')) FROM (SELECT (to_jsonb(x) - 'last_run_id')::text AS t FROM "
                f"hr.{table} x) s",
            )
        )
    return "/".join(parts)


def days_of(engine, request_id: str) -> dict[date, Decimal]:
    return dict(rows(engine, "SELECT day, hours FROM hr.time_off_day WHERE request_id = :r", r=request_id))


def test_roster_time_off_and_capacity_land_and_reruns_change_nothing(dagbag, sandbox, hr_warehouse):
    hr = sandbox.state.hr
    cases = hr.cases
    assert run(dagbag).state == "success"
    record = rows(hr_warehouse, "SELECT * FROM ops.flow_run WHERE flow = :f", f=FLOW)[0]._mapping
    details = record["details"]
    assert record["status"] == "success" and details["snapshot"] == "full"
    distinct_requests = {str(r["id"]) for r in hr.requests}
    assert record["extracted"] == len(hr.employees) + len(distinct_requests)
    assert record["extracted"] == record["valid"] + record["quarantined"]
    assert scalar(hr_warehouse, "SELECT count(*) FROM hr.person") == len(hr.employees)

    # Bad requests are exceptions with their rule; the duplicate id counts once.
    quarantined = {
        (r.source_key, r.rule) for r in rows(hr_warehouse, "SELECT source_key, rule FROM ops.quarantine WHERE entity = 'time_off'")
    }
    for request_id, rule in hr.bad_requests.items():
        assert (request_id, rule) in quarantined, (request_id, rule)
    assert {k for k, _ in quarantined} == set(hr.bad_requests)
    assert len(days_of(hr_warehouse, cases["duplicate"])) == 2

    # Partial day, leave across weeks and across a month end, cancelled and denied requests.
    assert list(days_of(hr_warehouse, cases["partial_day"]).values()) == [Decimal("4.00")]
    multi = days_of(hr_warehouse, cases["multi_week"])
    assert len(multi) == 13 and len({d.isocalendar().week for d in multi}) == 3
    across = days_of(hr_warehouse, cases["across_month_end"])
    assert len({d.month for d in across}) == 2
    assert days_of(hr_warehouse, cases["cancelled"]) == {} and days_of(hr_warehouse, cases["denied"]) == {}

    # History: the department change and the rehire keep their effective dates; the rehire keeps its id.
    mover = rows(
        hr_warehouse,
        "SELECT department, effective_date FROM hr.person_history WHERE hr_id = :i AND kind = 'job' ORDER BY effective_date",
        i=cases["department_change"],
    )
    assert [m.department for m in mover][-1] == "Data Engineering" and len(mover) == 2
    rehire = rows(
        hr_warehouse,
        "SELECT employment_status FROM hr.person_history WHERE hr_id = :i AND kind = 'status' ORDER BY effective_date",
        i=cases["rehire"],
    )
    assert [r[0] for r in rehire] == ["Full-Time", "Terminated", "Full-Time"]
    assert scalar(hr_warehouse, "SELECT is_active FROM hr.person WHERE hr_id = :i", i=cases["rehire"]) is True

    # A leaver: history kept, no capacity after the termination date.
    leaver = cases["leaving_soon"]
    ends = scalar(hr_warehouse, "SELECT termination_date FROM hr.person WHERE hr_id = :i", i=leaver)
    after = rows(hr_warehouse, "SELECT available_hours FROM hr.capacity WHERE hr_id = :i AND week_start > :d", i=leaver, d=ends)
    assert after and all(a[0] == 0 for a in after)
    assert scalar(hr_warehouse, "SELECT sum(available_hours) FROM hr.capacity WHERE hr_id = :i", i=cases["leaver"]) == 0
    assert scalar(hr_warehouse, "SELECT count(*) FROM hr.person_history WHERE hr_id = :i", i=cases["leaver"]) >= 2
    # The future joiner has no capacity before starting.
    joiner_weeks = rows(
        hr_warehouse, "SELECT week_start, available_hours FROM hr.capacity WHERE hr_id = :i ORDER BY week_start", i=cases["future_joiner"]
    )
    assert joiner_weeks[0][1] == 0 and joiner_weeks[-1][1] > 0

    # The expiring certification is in the run record.
    assert [c["hr_id"] for c in details["certifications_expiring"]] == [cases["certification_expiring"]]

    # The PSA got everyone once, and their leave.
    psa = sandbox.state.psa
    assert len(psa.people) == len(hr.employees)
    partial = next(r for r in hr.requests if str(r["id"]) == cases["partial_day"])
    assert psa.time_off[f"bamboohr:{partial['employeeId']}"][partial["start"]] == "4.00"
    assert psa.people[f"bamboohr:{cases['leaving_soon']}"]["end_date"] is not None

    before, writes = checksum(hr_warehouse), psa.people_writes
    assert run(dagbag).state == "success"
    assert checksum(hr_warehouse) == before and psa.people_writes == writes


def test_capacity_answers_the_planners_question(dagbag, sandbox, hr_warehouse):
    assert run(dagbag).state == "success"
    week = (ANCHOR.date() + timedelta(days=14)).isocalendar()
    iso_week = f"{week.year}-W{week.week:02d}"
    free = {
        r[0]
        for r in rows(
            hr_warehouse,
            """SELECT c.hr_id FROM hr.capacity c JOIN hr.person p USING (hr_id) JOIN hr.skill s USING (hr_id)
               WHERE p.department = 'Data Engineering' AND s.skill = 'Airflow' AND c.iso_week = :w AND c.available_hours >= 20""",
            w=iso_week,
        )
    }
    hr = sandbox.state.hr
    airflow_people = {eid for eid, rows_ in hr.tables["customSkills"].items() if any(r["customSkill"] == "Airflow" for r in rows_)}
    data_engineers = {eid for eid, e in hr.employees.items() if e["department"] == "Data Engineering" and e["status"] == "Active"}
    away = {"100", "101"}  # three days off in that week: 40 − 24 = 16 hours left
    gone_by_then = {hr.cases["leaving_soon"]}  # leaves in ten days: no hours in two weeks' time
    assert free == (airflow_people & data_engineers) - away - gone_by_then
    assert free


def test_a_cancelled_request_loses_its_days_and_deltas_agree_with_a_full_load(dagbag, sandbox, hr_warehouse):
    hr = sandbox.state.hr
    assert run(dagbag).state == "success"
    request_id = hr.cases["partial_day"]
    assert days_of(hr_warehouse, request_id)

    next_day = RUN_DAY + timedelta(days=1)
    hr.set_request_status(request_id, "canceled", on=next_day.date())
    hr.update_employee(hr.cases["department_change"], {"jobTitle": "Senior Data Engineer"}, at=next_day - timedelta(hours=3))
    hr.delete_employee(hr.cases["joiner"], at=next_day - timedelta(hours=2))
    assert run(dagbag, next_day).state == "success"
    second = rows(hr_warehouse, "SELECT details FROM ops.flow_run WHERE interval_end = :e", e=next_day)[0][0]
    assert second["snapshot"] == "delta"
    assert days_of(hr_warehouse, request_id) == {}
    assert (
        scalar(hr_warehouse, "SELECT job_title FROM hr.person WHERE hr_id = :i", i=hr.cases["department_change"]) == "Senior Data Engineer"
    )
    assert scalar(hr_warehouse, "SELECT deleted_in_hr FROM hr.person WHERE hr_id = :i", i=hr.cases["joiner"]) is True
    cancelled = next(r for r in hr.requests if str(r["id"]) == request_id)
    assert cancelled["start"] not in sandbox.state.psa.time_off[f"bamboohr:{cancelled['employeeId']}"]
    assert sandbox.state.psa.people[f"bamboohr:{hr.cases['joiner']}"]["active"] is False

    with hr_warehouse.begin() as connection:  # the deleted person is absent from a fresh full load: compare the rest
        for table in ("person", "person_history", "skill", "certification"):
            connection.execute(text(f"DELETE FROM hr.{table} WHERE hr_id = :i"), {"i": hr.cases["joiner"]})
    by_delta = checksum(hr_warehouse)
    with hr_warehouse.begin() as connection:  # forget everything, load the same day in one full snapshot
        connection.execute(
            text(
                "TRUNCATE hr.person, hr.person_history, hr.department, hr.skill, hr.certification, hr.time_off_day, hr.capacity, "
                "ops.flow_run, ops.flow_run_attempt, ops.staged_record"
            )
        )
    assert run(dagbag, next_day).state == "success"
    assert rows(hr_warehouse, "SELECT details->>'snapshot' FROM ops.flow_run")[0][0] == "full"
    assert checksum(hr_warehouse) == by_delta


def test_a_503_storm_is_survived_and_a_dead_hr_system_fails_clearly(dagbag, sandbox, hr_warehouse, monkeypatch):
    from backbone_sandbox.faults import FaultRule

    sandbox.state.faults.arm(
        [
            FaultRule(kind="status", status=503, path_contains="/bamboohr/", times=3),
            FaultRule(kind="status", status=429, retry_after=1, path_contains="/time_off", times=1),
        ]
    )
    assert run(dagbag).state == "success"
    monkeypatch.setenv("BACKBONE_HTTP_MAX_ATTEMPTS", "2")
    sandbox.state.faults.arm([FaultRule(kind="malformed", path_contains="/time_off", times=100)])
    assert run(dagbag, RUN_DAY + timedelta(days=1), retries=0).state == "failed"
    assert scalar(hr_warehouse, "SELECT status FROM ops.flow_run WHERE interval_end = :e", e=RUN_DAY + timedelta(days=1)) == "failed"


def test_capacity_of_past_weeks_is_kept_as_the_history_utilization_is_measured_against(dagbag, sandbox, hr_warehouse):
    run(dagbag)
    first = rows(hr_warehouse, "SELECT min(week_start), count(*) FROM hr.capacity")[0]
    run(dagbag, RUN_DAY + timedelta(days=14))  # two weeks later: the window moved on
    kept = scalar(hr_warehouse, "SELECT count(*) FROM hr.capacity WHERE week_start = :w", w=first[0])
    assert kept > 0  # the first week is still there, as computed while it was current
    assert scalar(hr_warehouse, "SELECT count(DISTINCT week_start) FROM hr.capacity") == 12 + 2
