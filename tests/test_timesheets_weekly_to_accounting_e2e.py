"""The Friday timesheet export run for real by Airflow against the sandbox and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tests.conftest import ANCHOR
from tests.helpers import rows, run_dag, scalar

pytestmark = pytest.mark.e2e
FLOW = "timesheets_weekly_to_accounting"
WEEK_END = datetime(2026, 10, 30, 16, 0, tzinfo=UTC)  # Friday 17:00 CET: the last week the sandbox seeds
WEEK_START = datetime(2026, 10, 23, 15, 0, tzinfo=UTC)  # Friday 17:00 CEST: the week holds the switch to winter time


def checksum(accounting, psa) -> tuple[str, str]:
    outbox = scalar(
        accounting,
        """SELECT md5(string_agg(row(entry_id, entry_version, run_id, content_hash, customer_ref_id, item_ref_id, hours, minutes, amount,
                  action, request_id, posting_status, accounting_id, attempts)::text, '|' ORDER BY entry_id, entry_version))
           FROM acct.time_export""",
    )
    mirror = scalar(psa, "SELECT md5(string_agg(row(t.*)::text, '|' ORDER BY entry_id)) FROM psa.time_entry t")
    return outbox, mirror


def approved_in(state, start: datetime, end: datetime) -> list[dict]:
    return [
        e
        for e in state.psa_time.entries
        if e["approval_status"] == "approved" and start <= datetime.fromisoformat(e["approved_at"].replace("Z", "+00:00")) < end
    ]


def test_week_goes_to_accounting_once_with_exceptions_kept(dagbag, sandbox, accounting_warehouse, psa_warehouse):
    state = sandbox.state
    assert state.psa_time.week_end == WEEK_END
    dag_run = run_dag(dagbag, FLOW, ANCHOR)
    assert dag_run.state == "success"
    assert (dag_run.data_interval_start, dag_run.data_interval_end) == (WEEK_START, WEEK_END)

    record = rows(accounting_warehouse, "SELECT * FROM ops.flow_run WHERE flow = :f", f=FLOW)[0]._mapping
    week = approved_in(state, WEEK_START, WEEK_END)
    distinct = {(e["id"], e["version"]) for e in week}
    assert record["status"] == "success"
    assert record["extracted"] == len(distinct)
    assert record["extracted"] == record["valid"] + record["quarantined"]
    assert record["loaded"] == record["valid"] == record["written_back"]

    # Every planted bad entry is an exception for the rule it breaks, and nothing else is.
    exceptions = rows(accounting_warehouse, "SELECT source_key, rule, reason FROM ops.quarantine WHERE flow = :f", f=FLOW)
    by_entry: dict[str, set[str]] = {}
    for key, rule, reason in exceptions:
        assert reason
        by_entry.setdefault(key.split(":v")[0], set()).add(rule)
    bad = {entry: rule for entry, rule in state.psa_time.bad_entries.items() if entry in {e["id"] for e in week}}
    assert set(by_entry) == set(bad)
    for entry, rule in bad.items():
        assert rule in by_entry[entry], (entry, by_entry[entry])

    # The accounting system holds exactly one TimeActivity per exported line, and the totals agree.
    activities = state.qbo.entities["TimeActivity"]
    assert len(activities) == record["written_back"]
    outbox = rows(accounting_warehouse, "SELECT entry_id, hours, amount, hourly_rate, accounting_id, currency FROM acct.time_export")
    assert {r.accounting_id for r in outbox} == set(activities)
    qbo_minutes = sum(a["Hours"] * 60 + a["Minutes"] for a in activities.values())
    assert Decimal(qbo_minutes) / 60 == sum(r.hours for r in outbox)
    qbo_amount = sum(Decimal(str(a["HourlyRate"])) * (Decimal(a["Hours"] * 60 + a["Minutes"]) / 60) for a in activities.values())
    assert qbo_amount.quantize(Decimal("0.01")) == sum(r.amount for r in outbox)
    good = [e for e in week if e["id"] not in bad]
    assert sum(Decimal(e["hours"]) for e in good) == sum(r.hours for r in outbox)
    details = record["details"]
    assert Decimal(details["hours"]) == sum(r.hours for r in outbox)
    assert sum(Decimal(v) for v in details["amount_by_currency"].values()) == sum(r.amount for r in outbox)
    assert scalar(psa_warehouse, "SELECT count(*) FROM psa.time_entry") == len(outbox)
    # Two tasks talk to QuickBooks: the first refreshed the token and stored the rotated refresh
    # token (the sandbox refuses a used one) and the access token, which the second one reused.
    assert state.qbo.token_refreshes == 1
    assert set(details["amount_by_currency"]) == {"EUR", "USD"}

    before = checksum(accounting_warehouse, psa_warehouse)
    assert run_dag(dagbag, FLOW, ANCHOR).state == "success"
    assert run_dag(dagbag, FLOW, ANCHOR).state == "success"
    assert checksum(accounting_warehouse, psa_warehouse) == before
    assert len(state.qbo.entities["TimeActivity"]) == record["written_back"]
    assert scalar(accounting_warehouse, "SELECT count(*) FROM ops.flow_run") == 1
    assert state.qbo.token_refreshes == 1  # later runs within the hour authenticated with the access token stored


def test_late_approval_goes_out_the_week_it_was_approved(dagbag, sandbox, accounting_warehouse, psa_warehouse):
    state = sandbox.state
    previous_end = WEEK_START
    assert run_dag(dagbag, FLOW, previous_end).state == "success"
    assert run_dag(dagbag, FLOW, WEEK_END).state == "success"
    exported = dict(rows(accounting_warehouse, "SELECT entry_id, run_id FROM acct.time_export"))
    late = [e for e in state.psa_time.entries if e["spent_date"] < "2026-10-23" and e["approved_at"] >= "2026-10-23T15:00"]
    assert late, "the seed approves some of the week before late"
    for entry in late:
        assert exported[entry["id"]].endswith(WEEK_END.isoformat())
    # Backfilling the earlier week again (out of order) changes nothing.
    before = checksum(accounting_warehouse, psa_warehouse)
    assert run_dag(dagbag, FLOW, previous_end).state == "success"
    assert checksum(accounting_warehouse, psa_warehouse) == before


def test_edit_after_export_posts_one_correcting_update(dagbag, sandbox, accounting_warehouse, psa_warehouse):
    state = sandbox.state
    assert run_dag(dagbag, FLOW, WEEK_END).state == "success"
    entry_id, accounting_id, hours = rows(
        accounting_warehouse, "SELECT entry_id, accounting_id, hours FROM acct.time_export ORDER BY entry_id LIMIT 1"
    )[0]
    activities_before = len(state.qbo.entities["TimeActivity"])

    state.psa_time.edit(entry_id, {"hours": str(hours + Decimal("1.5"))}, approved_at=WEEK_END + timedelta(days=3))
    next_end = WEEK_END + timedelta(days=7)
    assert run_dag(dagbag, FLOW, next_end).state == "success"

    versions = rows(
        accounting_warehouse,
        "SELECT entry_version, action, accounting_id, posting_status, hours FROM acct.time_export WHERE entry_id = :e ORDER BY "
        "entry_version",
        e=entry_id,
    )
    assert [(v.entry_version, v.action, v.posting_status) for v in versions] == [(1, "create", "posted"), (2, "update", "posted")]
    assert versions[1].accounting_id == accounting_id
    assert len(state.qbo.entities["TimeActivity"]) == activities_before
    updated = state.qbo.entities["TimeActivity"][accounting_id]
    assert updated["SyncToken"] == "1"
    assert Decimal(updated["Hours"] * 60 + updated["Minutes"]) / 60 == hours + Decimal("1.5")
    mirror = rows(psa_warehouse, "SELECT entry_version, hours FROM psa.time_entry WHERE entry_id = :e", e=entry_id)[0]
    assert (mirror.entry_version, mirror.hours) == (2, hours + Decimal("1.5"))
    # Rerunning the first week does not roll the mirror back to version 1.
    assert run_dag(dagbag, FLOW, WEEK_END).state == "success"
    assert rows(psa_warehouse, "SELECT entry_version FROM psa.time_entry WHERE entry_id = :e", e=entry_id)[0][0] == 2


def test_post_that_times_out_after_accounting_created_it_is_not_duplicated(dagbag, sandbox, accounting_warehouse, monkeypatch):
    from backbone_sandbox.faults import FaultRule

    monkeypatch.setenv("BACKBONE_HTTP_TIMEOUT_SECONDS", "1")
    state = sandbox.state
    # New entries go to QuickBooks in batch calls: the batch is applied, its answer is late, the retry replays it.
    state.faults.arm([FaultRule(kind="slow_response", path_contains="/batch", method="POST", delay_seconds=2.5, times=3)])
    assert run_dag(dagbag, FLOW, WEEK_END).state == "success"
    assert state.faults.fired.get("slow_response") == 3
    assert state.qbo.replays >= 3
    lines = scalar(accounting_warehouse, "SELECT count(*) FROM acct.time_export WHERE posting_status = 'posted'")
    assert len(state.qbo.entities["TimeActivity"]) == lines


def test_throttling_and_server_errors_are_retried(dagbag, sandbox, accounting_warehouse):
    from backbone_sandbox.faults import FaultRule

    state = sandbox.state
    state.faults.arm(
        [
            FaultRule(kind="status", status=429, path_contains="/batch", times=5),
            FaultRule(kind="status", status=503, path_contains="/time-entries", times=2),
            FaultRule(kind="malformed", path_contains="/query", times=1),
        ]
    )
    assert run_dag(dagbag, FLOW, WEEK_END).state == "success"
    lines = scalar(accounting_warehouse, "SELECT count(*) FROM acct.time_export WHERE posting_status = 'posted'")
    assert lines > 0 and len(state.qbo.entities["TimeActivity"]) == lines


def test_accounting_down_fails_the_run_and_a_later_run_posts_the_rest_once(dagbag, sandbox, accounting_warehouse, monkeypatch):
    from backbone_sandbox.faults import FaultRule

    monkeypatch.setenv("BACKBONE_HTTP_MAX_ATTEMPTS", "2")
    state = sandbox.state
    state.faults.arm(
        [FaultRule(kind="status", status=503, path_contains=path, method="POST", times=10_000) for path in ("/batch", "/timeactivity")]
    )
    assert run_dag(dagbag, FLOW, WEEK_END, retries=0).state == "failed"
    assert scalar(accounting_warehouse, "SELECT status FROM ops.flow_run WHERE flow = :f", f=FLOW) == "failed"
    pending = scalar(accounting_warehouse, "SELECT count(*) FROM acct.time_export WHERE posting_status = 'pending'")
    assert pending > 0 and len(state.qbo.entities["TimeActivity"]) == 0

    state.faults.clear()
    assert run_dag(dagbag, FLOW, WEEK_END).state == "success"
    assert scalar(accounting_warehouse, "SELECT count(*) FROM acct.time_export WHERE posting_status <> 'posted'") == 0
    assert len(state.qbo.entities["TimeActivity"]) == pending


def test_missed_fridays_show_as_gaps_and_the_next_run_exports_them_once(dagbag, sandbox, accounting_warehouse, psa_warehouse):
    from backbone.ledger import Ledger

    state = sandbox.state
    ends = state.psa_time.week_ends()
    assert len(ends) >= 4, "the seed covers at least four weeks"
    ledger = Ledger(engines={"accounting": accounting_warehouse}, timezone="Europe/Amsterdam", gap_grace=timedelta(hours=2))
    later = ends[3] + timedelta(hours=3)

    assert run_dag(dagbag, FLOW, ends[0]).state == "success"
    # Airflow is down (or the DAG paused) over the next three Fridays: the ledger names the weeks.
    missed = [(ends[0], ends[1]), (ends[1], ends[2]), (ends[2], ends[3])]
    assert [(g["interval_start"], g["interval_end"]) for g in ledger.gaps(flow=FLOW, now=later)] == missed

    resumed = run_dag(dagbag, FLOW, ends[3])
    assert resumed.state == "success"
    record = rows(accounting_warehouse, "SELECT * FROM ops.flow_run WHERE flow = :f AND interval_end = :e", f=FLOW, e=ends[3])[0]._mapping
    assert record["status"] == "success" and record["interval_start"] == ends[2]
    assert datetime.fromisoformat(record["details"]["covers_from"]) == ends[0]
    assert len(record["details"]["caught_up_intervals"]) == 2
    assert ledger.gaps(flow=FLOW, now=later) == []

    # Every entry approved in the three missed weeks went out once, with the resumed run.
    caught_up = {(e["id"], e["version"]) for e in approved_in(state, ends[0], ends[3])}
    assert record["extracted"] == len(caught_up)
    exported = rows(
        accounting_warehouse, "SELECT entry_id, entry_version, run_id FROM acct.time_export WHERE run_id = :r", r=record["run_id"]
    )
    assert len(exported) == len({(r.entry_id, r.entry_version) for r in exported}) == record["written_back"] > 0
    activities = len(state.qbo.entities["TimeActivity"])
    assert activities == scalar(accounting_warehouse, "SELECT count(*) FROM acct.time_export WHERE posting_status = 'posted'")

    # Running the resumed week again, or one of the missed weeks late, sends nothing more.
    before = checksum(accounting_warehouse, psa_warehouse)
    assert run_dag(dagbag, FLOW, ends[3]).state == "success"
    assert run_dag(dagbag, FLOW, ends[2]).state == "success"
    assert checksum(accounting_warehouse, psa_warehouse)[0] == before[0]
    assert len(state.qbo.entities["TimeActivity"]) == activities


def test_an_entry_held_for_a_missing_customer_goes_out_once_after_finance_adds_it(dagbag, sandbox, accounting_warehouse, psa_warehouse):
    state = sandbox.state
    assert run_dag(dagbag, FLOW, WEEK_END).state == "success"
    held = rows(
        accounting_warehouse,
        "SELECT source_key, run_id FROM ops.quarantine WHERE flow = :f AND rule = 'time_entry.client.mapped' AND resolved_at IS NULL",
        f=FLOW,
    )
    assert len(held) == 1
    key, first_run = held[0]
    orphan = state.psa_time.clients[next(iter(state.psa_time.unmapped_client_ids))]
    state.qbo.add(
        "Customer", {"DisplayName": orphan["name"], "CompanyName": orphan["name"], "Active": True, "CurrencyRef": {"value": "EUR"}}
    )

    next_end = WEEK_END + timedelta(days=7)
    assert run_dag(dagbag, FLOW, next_end).state == "success"
    next_run = rows(
        accounting_warehouse, "SELECT run_id, details FROM ops.flow_run WHERE flow = :f AND interval_end = :e", f=FLOW, e=next_end
    )[0]
    assert next_run.details["exceptions_rechecked"] >= 1
    line = rows(
        accounting_warehouse, "SELECT run_id, posting_status, accounting_id FROM acct.time_export WHERE entry_id = :e", e=key.split(":v")[0]
    )
    assert [(r.run_id, r.posting_status) for r in line] == [(next_run.run_id, "posted")]
    assert line[0].accounting_id in state.qbo.entities["TimeActivity"]
    resolved = rows(
        accounting_warehouse, "SELECT resolved_by_run FROM ops.quarantine WHERE source_key = :k AND run_id = :r", k=key, r=first_run
    )
    assert [r.resolved_by_run for r in resolved] == [next_run.run_id]

    # The week after sends it no second time (other held entries may heal then: a work date now inside the window).
    assert run_dag(dagbag, FLOW, next_end + timedelta(days=7)).state == "success"
    assert scalar(accounting_warehouse, "SELECT count(*) FROM acct.time_export WHERE entry_id = :e", e=key.split(":v")[0]) == 1
    posted = scalar(accounting_warehouse, "SELECT count(*) FROM acct.time_export WHERE posting_status = 'posted'")
    assert len(state.qbo.entities["TimeActivity"]) == posted


def test_entries_withdrawn_in_the_psa_after_export_are_removed_from_accounting_once(dagbag, sandbox, accounting_warehouse, psa_warehouse):
    state = sandbox.state
    assert run_dag(dagbag, FLOW, WEEK_END).state == "success"
    exported = rows(accounting_warehouse, "SELECT entry_id, accounting_id, hours FROM acct.time_export ORDER BY entry_id LIMIT 2")
    (deleted, deleted_record, hours), (unapproved, unapproved_record, _) = exported
    state.psa_time.withdraw(deleted, at=WEEK_END + timedelta(days=2), reason="deleted")
    state.psa_time.withdraw(unapproved, at=WEEK_END + timedelta(days=3), reason="unapproved")

    next_end = WEEK_END + timedelta(days=7)
    assert run_dag(dagbag, FLOW, next_end).state == "success"
    assert deleted_record not in state.qbo.entities["TimeActivity"]
    assert unapproved_record not in state.qbo.entities["TimeActivity"]
    assert state.qbo.deletes["TimeActivity"] == 2
    lines = rows(
        accounting_warehouse,
        "SELECT entry_version, action, posting_status, hours FROM acct.time_export WHERE entry_id = :e ORDER BY entry_version",
        e=deleted,
    )
    assert [(line.action, line.posting_status) for line in lines] == [("create", "posted"), ("delete", "posted")]
    assert lines[1].hours == -hours  # the run's totals net the withdrawn time out
    assert scalar(psa_warehouse, "SELECT count(*) FROM psa.time_entry WHERE entry_id IN (:a, :b)", a=deleted, b=unapproved) == 0

    # Running the week again reverses nothing twice.
    before = checksum(accounting_warehouse, psa_warehouse)
    assert run_dag(dagbag, FLOW, next_end).state == "success"
    assert checksum(accounting_warehouse, psa_warehouse) == before
    assert state.qbo.deletes["TimeActivity"] == 2
