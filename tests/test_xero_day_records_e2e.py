"""Xero day records (``BACKBONE_XERO_TIME_AGGREGATION=day``), run for real by Airflow against the
sandbox and PostgreSQL: one Projects time entry per person, project, task and day, holding the
sum of its entries; the outbox keeps one line per entry version, each naming its day record.

Edits, moves and withdrawals after export change the day records they touch, once; an answer
lost after Xero created a record is replayed or found again, never created twice; a record Xero
refuses is its entries' exception and the others stand.
"""

from __future__ import annotations

import copy
from collections import Counter, defaultdict
from datetime import datetime, timedelta

import pytest

from backbone.hooks.accounting import DAY_RECORD_KEY_FIELDS
from backbone_sandbox.faults import FaultRule
from tests.helpers import rows, run_dag, scalar

pytestmark = pytest.mark.e2e
FLOW = "timesheets_weekly_to_accounting"
SPLITS = 3
"""Each seeded entry of the week is booked as this many entries (a person logging a task in blocks)."""


@pytest.fixture
def xero_days(monkeypatch):
    monkeypatch.setenv("BACKBONE_ACCOUNTING_CONN_ID", "xero_default")
    monkeypatch.setenv("BACKBONE_XERO_TIME_AGGREGATION", "day")


def run(dagbag, logical_date, *, expect: str = "success") -> None:
    dag_run = run_dag(dagbag, FLOW, logical_date, retries=0)
    assert dag_run.state == expect, f"{FLOW} {logical_date}: {dag_run.state}"


def book_in_blocks(state, week_end: datetime) -> int:
    """Add ``SPLITS - 1`` half-hour entries beside every good entry approved in the week ending
    ``week_end``: same person, project, task and day. Answers how many entries the week has now."""
    start = week_end - timedelta(days=7)
    week = [
        e
        for e in state.psa_time.entries
        if e["approval_status"] == "approved"
        and e["id"] not in state.psa_time.bad_entries
        and start <= datetime.fromisoformat(e["approved_at"].replace("Z", "+00:00")) < week_end
    ]
    for n, entry in enumerate(week):
        for k in range(SPLITS - 1):
            block = copy.deepcopy(entry)
            block.update(id=f"TE-9{n:04d}{k:03d}", hours="0.5")
            state.psa_time.add(block)
    return len(week) * SPLITS


def live_time(state) -> dict[str, dict]:
    return {f"{e['projectId']}/{e['timeEntryId']}": dict(e) for e in state.xero.time_entries.values()}


def assert_records_hold_their_entries(state, accounting_warehouse) -> dict[str, dict]:
    """Every Xero time entry is one day record whose duration is its members' minutes, each
    member the newest posted version of its entry, or one entry posted alone (aggregation off);
    nothing is held twice."""
    held = live_time(state)
    markers = Counter(e["description"].split(" · ")[0] for e in held.values())
    assert not [m for m, n in markers.items() if n > 1], "a day record created twice"
    records = rows(
        accounting_warehouse, "SELECT day_key, accounting_id, minutes, entries FROM acct.time_day_record WHERE accounting_id IS NOT NULL"
    )
    # A record accounting never took holds nothing: Xero refused it (its entries are exceptions).
    assert not rows(
        accounting_warehouse,
        "SELECT 1 FROM acct.time_day_record d WHERE accounting_id IS NULL AND (last_error IS NULL OR entries > 0 OR EXISTS "
        "(SELECT 1 FROM acct.time_day_member m WHERE m.day_key = d.day_key))",
    )
    alone = {
        accounting_id: entry_id
        for entry_id, accounting_id, action in rows(
            accounting_warehouse,
            """SELECT DISTINCT ON (entry_id) entry_id, accounting_id, action FROM acct.time_export WHERE posting_status = 'posted'
               AND entry_id NOT IN (SELECT entry_id FROM acct.time_day_member) ORDER BY entry_id, entry_version DESC""",
        )
        if action != "delete"
    }
    assert {r.accounting_id for r in records} | set(alone) == set(held)
    assert all(held[accounting_id]["description"].startswith(f"PSA {entry_id} v") for accounting_id, entry_id in alone.items())
    members: dict[str, int] = defaultdict(int)
    for key, minutes in rows(accounting_warehouse, "SELECT day_key, minutes FROM acct.time_day_member"):
        members[key] += minutes
    for record in records:
        assert held[record.accounting_id]["duration"] == record.minutes == members[record.day_key]
        assert held[record.accounting_id]["description"].startswith(f"PSA day {record.day_key} · {record.entries} entries")
    newest = rows(
        accounting_warehouse,
        """SELECT DISTINCT ON (entry_id) entry_id, entry_version, action, minutes, accounting_id FROM acct.time_export
           WHERE posting_status = 'posted' ORDER BY entry_id, entry_version DESC""",
    )
    in_records = dict(rows(accounting_warehouse, "SELECT entry_id, entry_version FROM acct.time_day_member"))
    alone_entries = set(alone.values())
    assert in_records == {r.entry_id: r.entry_version for r in newest if r.action != "delete" and r.entry_id not in alone_entries}
    return held


def test_a_week_goes_as_day_records_and_follows_later_changes(xero_days, dagbag, sandbox, accounting_warehouse, monkeypatch):
    state = sandbox.state
    week_end = state.psa_time.week_ends()[-1]
    entries = book_in_blocks(state, week_end)
    calls_before = state.xero_calls
    run(dagbag, week_end)

    posted = scalar(accounting_warehouse, "SELECT count(*) FROM acct.time_export WHERE posting_status = 'posted'")
    assert posted == entries
    records = scalar(accounting_warehouse, "SELECT count(*) FROM acct.time_day_record")
    assert state.xero.creates["TimeEntries"] == records == len(state.xero.time_entries)
    assert posted / records >= SPLITS - 0.5  # the measured factor: about the entries per person-day and task
    assert scalar(accounting_warehouse, "SELECT count(DISTINCT accounting_id) FROM acct.time_export") == records
    held = assert_records_hold_their_entries(state, accounting_warehouse)
    time_calls = state.xero_calls - calls_before
    print(f"\n{entries} entries, {records} day records, {time_calls} Xero calls in all")

    # A rerun of the week sends nothing.
    calls_before = state.xero_calls
    run(dagbag, week_end)
    assert state.xero.creates.get("TimeEntryUpdates", 0) == 0 and state.xero.creates["TimeEntries"] == records
    assert state.xero_calls - calls_before < 10  # the reference reads only

    # After export: one entry edited, one moved to another project, one withdrawn, and every entry
    # of one record withdrawn.
    lines = rows(
        accounting_warehouse,
        "SELECT entry_id, accounting_id, minutes, project_id FROM acct.time_export WHERE entry_id NOT LIKE 'TE-9%' ORDER BY entry_id",
    )
    edited, moved, withdrawn = lines[0], lines[10], lines[20]
    emptied = lines[30].accounting_id
    later = week_end + timedelta(days=2)
    state.psa_time.edit(edited.entry_id, {"hours": "1.75"}, approved_at=later)
    project = next(p for p in state.psa_time.projects.values() if p["id"] != moved.project_id)
    state.psa_time.edit(moved.entry_id, {"project": {"id": project["id"], "name": project["name"]}}, approved_at=later)
    state.psa_time.withdraw(withdrawn.entry_id, at=later)
    gone = [r.entry_id for r in rows(accounting_warehouse, "SELECT entry_id FROM acct.time_export WHERE accounting_id = :a", a=emptied)]
    for entry_id in gone:
        state.psa_time.withdraw(entry_id, at=later)
    run(dagbag, week_end + timedelta(days=7))

    after = assert_records_hold_their_entries(state, accounting_warehouse)
    assert emptied not in after and set(after) <= set(held) | {k for k in after if k not in held}
    assert after[edited.accounting_id]["duration"] == held[edited.accounting_id]["duration"] - edited.minutes + 105
    assert after[withdrawn.accounting_id]["duration"] == held[withdrawn.accounting_id]["duration"] - withdrawn.minutes
    assert after[moved.accounting_id]["duration"] == held[moved.accounting_id]["duration"] - moved.minutes
    moved_to = scalar(
        accounting_warehouse,
        "SELECT accounting_id FROM acct.time_export WHERE entry_id = :e AND entry_version = 2",
        e=moved.entry_id,
    )
    assert moved_to != moved.accounting_id and moved_to in after
    statuses = dict(rows(accounting_warehouse, "SELECT posting_status, count(*) FROM acct.time_export GROUP BY 1"))
    assert set(statuses) == {"posted"}

    # Switching back to one entry per record: entries already in day records stay there.
    monkeypatch.setenv("BACKBONE_XERO_TIME_AGGREGATION", "entry")
    state.psa_time.edit(edited.entry_id, {"hours": "2"}, approved_at=week_end + timedelta(days=9))
    run(dagbag, week_end + timedelta(days=14))
    final = assert_records_hold_their_entries(state, accounting_warehouse)
    assert final[edited.accounting_id]["duration"] == after[edited.accounting_id]["duration"] + 15


def test_lost_answers_are_replayed_or_found_and_a_refused_record_is_an_exception(
    xero_days, dagbag, sandbox, accounting_warehouse, monkeypatch
):
    monkeypatch.setenv("BACKBONE_HTTP_TIMEOUT_SECONDS", "1")
    state = sandbox.state
    week_end = state.psa_time.week_ends()[-1]
    book_in_blocks(state, week_end)

    # First run: every call that creates a record is answered too late; with one attempt per call
    # the run fails after Xero created them.
    monkeypatch.setenv("BACKBONE_HTTP_MAX_ATTEMPTS", "1")
    state.faults.arm([FaultRule(kind="slow_response", path_contains="/Time", method="POST", delay_seconds=2, times=4)])
    run(dagbag, week_end, expect="failed")
    created = len(state.xero.time_entries)
    assert created >= 1
    # Only records whose call started count an attempt: the calls cancelled after the outage did not.
    unanswered = scalar(accounting_warehouse, "SELECT count(*) FROM acct.time_day_record WHERE attempts > 0 AND accounting_id IS NULL")
    assert 1 <= unanswered <= 4
    state.faults.clear()
    state.xero.idempotent.clear()  # Xero keeps Idempotency-Keys for a while only: the retry must find them by marker

    # Second run: the records tried before are found by their marker; Xero refuses the first
    # record it is sent, whose entries become exceptions while the others post.
    monkeypatch.setenv("BACKBONE_HTTP_MAX_ATTEMPTS", "4")
    state.faults.arm([FaultRule(kind="status", status=400, path_contains="/Time", method="POST", times=1)])
    run(dagbag, week_end)
    assert state.faults.fired.get("status") == 1
    assert_records_hold_their_entries(state, accounting_warehouse)
    refused = rows(accounting_warehouse, "SELECT day_key FROM acct.time_day_record WHERE last_error IS NOT NULL")
    assert len(refused) == 1
    failed = rows(
        accounting_warehouse,
        f"""
        SELECT DISTINCT d.day_key FROM acct.time_export e
        LEFT JOIN acct.time_day_record d ON ({" AND ".join(f"d.{f} = e.{f}" for f in DAY_RECORD_KEY_FIELDS)})
        WHERE e.posting_status = 'failed'
        """,
    )
    assert failed == refused  # every failed entry belongs to the refused record, and only those failed
    failed_entries = scalar(accounting_warehouse, "SELECT count(DISTINCT entry_id) FROM acct.time_export WHERE posting_status = 'failed'")
    quarantined = scalar(
        accounting_warehouse, "SELECT count(*) FROM ops.quarantine WHERE flow = :f AND rule = 'accounting.rejected'", f=FLOW
    )
    assert quarantined == failed_entries >= 1

    # A rerun of the interval (the refusal fixed) posts the rest once.
    run(dagbag, week_end)
    assert_records_hold_their_entries(state, accounting_warehouse)
    assert scalar(accounting_warehouse, "SELECT count(*) FROM acct.time_export WHERE posting_status <> 'posted'") == 0
    records = scalar(accounting_warehouse, "SELECT count(*) FROM acct.time_day_record")
    assert state.xero.creates["TimeEntries"] == records == len(state.xero.time_entries)
