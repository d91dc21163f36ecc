"""Fault suite: vendor faults, our own faults, reruns and backfills. After Airflow's retries the
warehouse and the sandbox must hold exactly what a fault-free run leaves: nothing lost, nothing twice.

Business checksums leave out what legitimately differs between runs (accounting ids, timestamps,
attempt counters); everything a person would call the data is compared.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from backbone_sandbox.faults import FaultRule
from tests import reliability
from tests.conftest import ANCHOR
from tests.helpers import run_dag

pytestmark = pytest.mark.e2e
WEEK_END = datetime(2026, 10, 30, 16, 0, tzinfo=UTC)
HR_DAY = datetime(2026, 11, 2, 4, 0, tzinfo=UTC)


def run(dagbag, flow, logical_date, *, retries: int | None = None) -> str:
    return run_dag(dagbag, flow, logical_date, retries=retries).state


def md5(engine, query: str) -> tuple[str, int]:
    with engine.connect() as connection:
        rows = [r[0] for r in connection.execute(text(query))]
    return __import__("hashlib").md5("|".join(sorted(rows)).encode()).hexdigest(), len(rows)


def state_of(flow: str, sandbox, psa, accounting, *, by_run: bool = True) -> dict[str, object]:
    """What a flow leaves behind, in the warehouses and in the vendor systems. ``by_run=False``
    leaves out which run did what (a backfill out of order lets a catching-up or healing run send
    what, in order, an earlier run sent) and compares the exceptions still open."""
    s = sandbox.state
    if flow == "crm_closed_won_to_psa":
        return {
            "warehouse": md5(
                psa,
                "SELECT row(p.*)::text FROM psa.project p UNION ALL SELECT row(c.*)::text FROM psa.client c UNION ALL SELECT "
                "row(k.*)::text FROM psa.contact k "
                "UNION ALL SELECT row(q.entity, q.source_key, q.rule)::text FROM ops.quarantine q",
            ),
            "psa_projects": sorted((p["external_id"], p["name"], p["budget"]) for p in s.psa.projects.values()),
            "crm_links": sorted((d, o["properties"].get("psa_project_id")) for d, o in s.crm.objects["deals"].items()),
        }
    if flow == "timesheets_weekly_to_accounting":
        run_column = "run_id" if by_run else "'-'"
        exceptions = (
            "SELECT row(q.entity, q.source_key, q.rule)::text FROM ops.quarantine q"
            if by_run
            else "SELECT DISTINCT row(q.entity, q.source_key, q.rule)::text FROM ops.quarantine q WHERE q.resolved_at IS NULL"
        )
        return {
            "warehouse": md5(
                accounting,
                f"SELECT row(entry_id, entry_version, {run_column}, content_hash, customer_ref_id, item_ref_id, hours, minutes, amount, "
                f"action, request_id, posting_status)::text FROM acct.time_export UNION ALL {exceptions}",
            ),
            "mirror": md5(psa, "SELECT (to_jsonb(t) - 'last_run_id')::text FROM psa.time_entry t"),
            "time_activities": sorted(
                Counter(
                    (a["Description"], a["Hours"], a["Minutes"], a["HourlyRate"]) for a in s.qbo.entities["TimeActivity"].values()
                ).items()
            ),
        }
    if flow == "hr_roster_pto_to_psa":
        return {
            "warehouse": md5(
                psa,
                "SELECT (to_jsonb(x) - 'last_run_id')::text FROM hr.person x UNION ALL SELECT (to_jsonb(x) - 'last_run_id')::text FROM "
                "hr.time_off_day x "
                "UNION ALL SELECT (to_jsonb(x) - 'last_run_id')::text FROM hr.person_history x UNION ALL SELECT (to_jsonb(x) - "
                "'last_run_id')::text FROM hr.skill x "
                "UNION ALL SELECT (to_jsonb(x))::text FROM hr.capacity x UNION ALL SELECT row(q.entity, q.source_key, q.rule)::text FROM "
                "ops.quarantine q",
            ),
            "psa_people": sorted((k, p["name"], p["role"], p["active"]) for k, p in s.psa.people.items()),
            "psa_time_off": sorted((k, sorted(v.items())) for k, v in s.psa.time_off.items()),
        }
    raise KeyError(flow)


FLOWS = {
    "crm_closed_won_to_psa": (ANCHOR, "/hubspot/"),
    "timesheets_weekly_to_accounting": (WEEK_END, ("/psa/api/v1/time-entries", "/quickbooks/v3/")),
    "hr_roster_pto_to_psa": (HR_DAY, "/bamboohr/"),
}
FAULTS = {
    "429 storm": dict(kind="status", status=429, retry_after=1, times=4),
    "5xx": dict(kind="status", status=503, times=3),
    "slower than the timeout": dict(kind="slow", delay_seconds=2.5, times=2),
    "connection reset": dict(kind="reset", times=2),
    "truncated body": dict(kind="truncated", times=2),
    "malformed JSON": dict(kind="malformed", times=2),
}
REFERENCE: dict[str, dict[str, object]] = {}


@pytest.fixture
def clean(psa_warehouse, accounting_warehouse, hr_warehouse):
    return psa_warehouse, accounting_warehouse


@pytest.mark.parametrize("flow", list(FLOWS))
def test_fault_free_reference(flow, dagbag, sandbox, clean):
    """Each flow once without faults: what every faulty run below must end up equal to."""
    psa, accounting = clean
    logical, _ = FLOWS[flow]
    assert run(dagbag, flow, logical) == "success"
    REFERENCE[flow] = state_of(flow, sandbox, psa, accounting)


@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
@pytest.mark.parametrize("flow", list(FLOWS))
def test_vendor_faults_leave_the_same_state_as_a_fault_free_run(flow, fault, dagbag, sandbox, clean, monkeypatch):
    psa, accounting = clean
    if flow not in REFERENCE:
        pytest.skip("needs test_fault_free_reference of this flow earlier in the session")
    monkeypatch.setenv("BACKBONE_HTTP_TIMEOUT_SECONDS", "1")
    logical, paths = FLOWS[flow]
    paths = paths if isinstance(paths, tuple) else (paths,)
    sandbox.state.faults.arm([FaultRule(path_contains=p, **FAULTS[fault]) for p in paths])
    assert run(dagbag, flow, logical) == "success"
    fired = sum(sandbox.state.faults.fired.values())
    actual = state_of(flow, sandbox, psa, accounting)
    reliability.count(faults_injected=fired, survived=fired, rows_compared=sum(v[1] for v in actual.values() if isinstance(v, tuple)))
    assert fired >= 1
    assert actual == REFERENCE[flow]


@pytest.mark.parametrize("kind", ["empty_page", "repeat_cursor"])
def test_paging_faults_in_hubspot_search(kind, dagbag, clean, monkeypatch):
    """An empty page in the middle is asked for again; a repeated cursor stops the run with a clear error."""
    from tests.conftest import SANDBOX_PORT, start_sandbox

    psa, accounting = clean
    running, server, thread = start_sandbox(SANDBOX_PORT, deals=400)  # enough won deals for several pages
    try:
        running.state.faults.arm([FaultRule(kind=kind, path_contains="/search", times=1)])
        if kind == "empty_page":
            assert run(dagbag, "crm_closed_won_to_psa", ANCHOR) == "success"
            won = [
                d for d in running.state.crm.objects["deals"].values() if d["properties"]["dealstage"] in ("closedwon", "renewal_signed")
            ]
            with psa.connect() as connection:
                record = connection.execute(text("SELECT extracted, loaded, quarantined FROM ops.flow_run")).one()
            assert record.extracted == len(won) == record.loaded + record.quarantined  # nothing lost
        else:
            assert run(dagbag, "crm_closed_won_to_psa", ANCHOR, retries=0) == "failed"
            with psa.connect() as connection:
                assert connection.execute(text("SELECT count(*) FROM psa.project")).scalar_one() == 0
        assert running.state.faults.fired.get(kind) == 1
        reliability.count(faults_injected=1, survived=1)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# --- our own faults --------------------------------------------------------------------------------
def test_warehouse_connection_killed_mid_load_leaves_no_half_load(dagbag, sandbox, clean, monkeypatch):
    from backbone.flows import timesheets

    psa, accounting = clean
    original = timesheets._write_outbox
    calls = {"n": 0}

    def dying(connection, run_, lines):
        written = original(connection, run_, lines)
        calls["n"] += 1
        connection.exec_driver_sql("SELECT pg_terminate_backend(pg_backend_pid())")  # the database drops us mid-transaction
        return written

    monkeypatch.setattr(timesheets, "_write_outbox", dying)
    assert run(dagbag, "timesheets_weekly_to_accounting", WEEK_END, retries=0) == "failed"
    with accounting.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM acct.time_export")).scalar_one() == 0  # all or nothing
    assert len(sandbox.state.qbo.entities["TimeActivity"]) == 0
    monkeypatch.setattr(timesheets, "_write_outbox", original)
    assert run(dagbag, "timesheets_weekly_to_accounting", WEEK_END) == "success"
    lines = _posted_lines(accounting)
    assert lines == len(sandbox.state.qbo.entities["TimeActivity"]) > 0
    reliability.count(faults_injected=1, survived=1, rows_compared=lines)


def test_killed_after_accounting_accepted_but_before_recording_posts_nothing_twice(dagbag, sandbox, clean, monkeypatch):
    from backbone.flows import timesheets

    psa, accounting = clean
    original = timesheets._record_results

    def crash(*args, **kwargs):
        raise SystemExit("worker killed after QuickBooks answered")  # as a SIGKILL would: nothing recorded

    monkeypatch.setattr(timesheets, "_record_results", crash)
    assert run(dagbag, "timesheets_weekly_to_accounting", WEEK_END, retries=0) == "failed"
    created = len(sandbox.state.qbo.entities["TimeActivity"])
    assert created > 0 and _posted_lines(accounting) == 0
    monkeypatch.setattr(timesheets, "_record_results", original)
    assert run(dagbag, "timesheets_weekly_to_accounting", WEEK_END) == "success"
    lines = _posted_lines(accounting)
    assert len(sandbox.state.qbo.entities["TimeActivity"]) == lines
    assert sandbox.state.qbo.creates["TimeActivity"] == created  # found by their key (attempted before), not created again
    duplicates = _duplicate_activities(sandbox)
    reliability.count(faults_injected=1, survived=1, duplicates=duplicates, rows_compared=lines)
    assert duplicates == 0


def test_a_second_run_cannot_post_while_the_first_is_posting(dagbag, sandbox, clean):
    from backbone.warehouse.ops import exclusive

    psa, accounting = clean
    with exclusive(
        accounting, "timesheets_weekly_to_accounting:post", what="another run holds the posting lock"
    ):  # another run of the flow is posting
        assert run(dagbag, "timesheets_weekly_to_accounting", WEEK_END, retries=0) == "failed"
        assert len(sandbox.state.qbo.entities["TimeActivity"]) == 0
    assert run(dagbag, "timesheets_weekly_to_accounting", WEEK_END) == "success"
    assert _duplicate_activities(sandbox) == 0
    reliability.count(faults_injected=1, survived=1)


# --- reruns and backfills ------------------------------------------------------------------------------
def test_eight_weeks_backfilled_out_of_order_equal_in_order(dagbag, clean, monkeypatch):
    from tests.conftest import SANDBOX_PORT, start_sandbox

    psa, accounting = clean
    results = []
    for order in ("in order", "shuffled"):
        running, server, thread = start_sandbox(SANDBOX_PORT, weeks=8)
        try:
            weeks = running.state.psa_time.week_ends()
            assert len(weeks) >= 8
            if order == "shuffled":
                random.Random(7).shuffle(weeks)
            # ... and then the next scheduled run (the latest week), which judges held entries again.
            for week_end in [*weeks, max(weeks)]:
                assert run(dagbag, "timesheets_weekly_to_accounting", week_end) == "success"
            results.append(state_of("timesheets_weekly_to_accounting", running, psa, accounting, by_run=False))
        finally:
            server.should_exit = True
            thread.join(timeout=10)
        with accounting.begin() as connection:
            connection.execute(
                text("TRUNCATE acct.reference, acct.time_export, ops.flow_run, ops.flow_run_attempt, ops.staged_record, ops.quarantine")
            )
        with psa.begin() as connection:
            connection.execute(text("TRUNCATE psa.time_entry"))
        from tests.conftest import forget_rotated_tokens

        forget_rotated_tokens()
    assert results[0] == results[1]
    reliability.count(rows_compared=results[0]["warehouse"][1])


def _posted_lines(accounting) -> int:
    with accounting.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM acct.time_export WHERE posting_status = 'posted'")).scalar_one()


def _duplicate_activities(sandbox) -> int:
    descriptions = Counter(a["Description"] for a in sandbox.state.qbo.entities["TimeActivity"].values())
    return sum(n - 1 for n in descriptions.values() if n > 1)


def test_hr_deltas_run_three_times_change_nothing(dagbag, sandbox, clean):
    psa, accounting = clean
    states = []
    for _ in range(3):
        assert run(dagbag, "hr_roster_pto_to_psa", HR_DAY + timedelta(days=1)) == "success"
        states.append(state_of("hr_roster_pto_to_psa", sandbox, psa, accounting))
    assert states[0] == states[1] == states[2]
    reliability.count(rows_compared=states[0]["warehouse"][1] * 3)
