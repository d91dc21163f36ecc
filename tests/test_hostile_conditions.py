"""Hostile conditions, through the real storage path: poison records, racing runs of one interval,
token faults, replays past the vendor's idempotency memory, and the finance role's reach.

Each test counts what it proved into the reliability report printed at the end of ``make test``.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from backbone_sandbox.faults import FaultRule
from tests import reliability
from tests.conftest import ANCHOR, PG_PORT, ROOT
from tests.helpers import dags_test_process, rows, run_dag, scalar

pytestmark = pytest.mark.e2e
TIMESHEETS = "timesheets_weekly_to_accounting"
WEEK_START = datetime(2026, 10, 23, 15, 0, tzinfo=UTC)
WEEK_END = datetime(2026, 10, 30, 16, 0, tzinfo=UTC)


def _deep(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


POISON = {
    "nul in notes": ({"notes": "ok\x00then"}, "time_entry.unstorable"),
    "id longer than any column": ({"id": "TE-" + "9" * 300}, "time_entry.unstorable"),
    "bare NaN hours": ({"hours": float("nan")}, "time_entry.unstorable"),
    "5,000-deep nesting": ({"notes": _deep(5000)}, "time_entry.unstorable"),
    "version 10^30": ({"version": 10**30}, "time_entry.unstorable"),
    "lone surrogate": ({"notes": "bad \ud800 text"}, "time_entry.unstorable"),
    "work date 0001-01-01": ({"spent_date": "0001-01-01"}, "time_entry.work_date.plausible"),
}


def _approved_valid(state) -> set[str]:
    week = [
        e
        for e in state.psa_time.entries
        if e["approval_status"] == "approved" and WEEK_START <= datetime.fromisoformat(e["approved_at"].replace("Z", "+00:00")) < WEEK_END
    ]
    return {e["id"] for e in week if e["id"] not in state.psa_time.bad_entries}


def test_poison_time_entries_are_quarantined_and_every_valid_entry_still_goes_out(dagbag, sandbox, accounting_warehouse, psa_warehouse):
    state = sandbox.state
    valid = _approved_valid(state)
    template = next(e for e in state.psa_time.entries if e["id"] in valid)
    planted = {}
    for n, (name, (changes, rule)) in enumerate(POISON.items()):
        record = {**copy.deepcopy(template), "id": f"TE-POISON{n}", **changes}
        state.psa_time.add(record)
        planted[name] = (record["id"], rule)

    dag_run = run_dag(dagbag, TIMESHEETS, WEEK_END)
    assert dag_run.state == "success"
    exported = {r[0] for r in rows(accounting_warehouse, "SELECT DISTINCT entry_id FROM acct.time_export WHERE posting_status = 'posted'")}
    assert exported == valid  # every valid entry of the week delivered, nothing poisoned among them
    exceptions = rows(accounting_warehouse, "SELECT source_key, rule, reason, raw FROM ops.quarantine WHERE flow = :f", f=TIMESHEETS)
    for name, (entry_id, rule) in planted.items():
        prefix = entry_id[:40]
        hits = [e for e in exceptions if e.source_key.startswith(prefix) and e.rule == rule]
        assert hits, f"{name}: no {rule} exception for {entry_id[:40]}"
        assert hits[0].reason, name
    record = rows(accounting_warehouse, "SELECT extracted, valid, quarantined FROM ops.flow_run WHERE flow = :f", f=TIMESHEETS)[0]
    assert record.extracted == record.valid + record.quarantined
    reliability.count(poison_quarantined=len(planted), valid_delivered=len(exported), valid_expected=len(valid))

    # A rerun changes nothing and still names each poison record once.
    assert run_dag(dagbag, TIMESHEETS, WEEK_END).state == "success"
    assert scalar(accounting_warehouse, "SELECT count(DISTINCT entry_id) FROM acct.time_export WHERE posting_status = 'posted'") == len(
        valid
    )


def test_a_deal_name_with_nul_is_one_exception_not_a_failed_run(dagbag, sandbox, psa_warehouse):
    state = sandbox.state
    bad = set(state.crm.bad_deals)
    deal_id = next(
        d for d, o in sorted(state.crm.objects["deals"].items()) if d not in bad and o["properties"].get("dealstage") == "closedwon"
    )
    state.crm.objects["deals"][deal_id]["properties"]["dealname"] = "Poisoned\x00deal"
    assert run_dag(dagbag, "crm_closed_won_to_psa", ANCHOR).state == "success"
    record = rows(psa_warehouse, "SELECT extracted, loaded, quarantined FROM ops.flow_run WHERE flow = 'crm_closed_won_to_psa'")[0]
    assert record.quarantined == len(bad) + 1 and record.extracted == record.loaded + record.quarantined and record.loaded > 0
    assert scalar(psa_warehouse, "SELECT count(*) FROM ops.quarantine WHERE source_key = :k AND rule = 'deal.unstorable'", k=deal_id) == 1
    assert scalar(psa_warehouse, "SELECT count(*) FROM psa.project WHERE crm_deal_id = :k", k=deal_id) == 0
    reliability.count(poison_quarantined=1, valid_delivered=record.loaded, valid_expected=record.extracted - len(bad) - 1)


def test_two_runs_of_one_interval_never_interleave_and_never_end_green_and_empty(sandbox, accounting_warehouse, psa_warehouse, tmp_path):
    """A scheduled run and a manual trigger one second apart, started together as separate processes."""
    dates = [WEEK_END + timedelta(hours=1), WEEK_END + timedelta(hours=1, seconds=1)]  # both: the week ending WEEK_END
    processes = [dags_test_process(TIMESHEETS, d, tmp_path / f"run{i}.log") for i, d in enumerate(dates)]
    for process in processes:
        process.wait(timeout=600)
    logs = [(tmp_path / f"run{i}.log").read_text() for i in range(2)]
    posted = scalar(accounting_warehouse, "SELECT count(*) FROM acct.time_export WHERE posting_status = 'posted'")
    record = rows(
        accounting_warehouse, "SELECT status, extracted, valid, quarantined, written_back FROM ops.flow_run WHERE flow = :f", f=TIMESHEETS
    )
    assert len(record) == 1  # both runs cover the same interval: one record
    stopped = sum("one run per interval" in log or "another run of the same interval" in log for log in logs)
    if record[0].status == "success":
        assert record[0].extracted == record[0].valid + record[0].quarantined and posted == record[0].written_back > 0
    assert posted == 0 or len(sandbox.state.qbo.entities["TimeActivity"]) == posted  # nothing twice

    # Whatever the race did, a rerun completes the interval exactly once.
    from airflow.dag_processing.dagbag import DagBag

    assert DagBag(dag_folder=str(ROOT / "dags")).get_dag(TIMESHEETS).test(logical_date=WEEK_END).state == "success"
    final = scalar(accounting_warehouse, "SELECT count(*) FROM acct.time_export WHERE posting_status = 'posted'")
    assert final == len(sandbox.state.qbo.entities["TimeActivity"]) > 0
    reliability.count(races=1, silent_empty_runs=0 if record[0].status != "success" or posted > 0 else 1, races_stopped_cleanly=stopped)


def test_the_finance_role_cannot_take_or_block_a_posting_lock(dagbag, sandbox, accounting_warehouse, psa_warehouse):
    from backbone_devtools.localenv import FINANCE_LOCAL_PASSWORD, FINANCE_LOGIN

    finance = create_engine(f"postgresql+psycopg2://{FINANCE_LOGIN}:{FINANCE_LOCAL_PASSWORD}@127.0.0.1:{PG_PORT}/accounting_warehouse")
    try:
        with finance.connect() as connection:
            with pytest.raises(Exception, match="permission denied"):
                connection.execute(text("SELECT * FROM ops.flow_lock FOR UPDATE")).all()
            connection.rollback()
            # An advisory lock on the old lock name blocks nothing any more.
            connection.execute(
                text(
                    "SELECT pg_advisory_lock(hashtext('timesheets_weekly_to_accounting:post')), "
                    "pg_advisory_lock(hashtext('timesheets_weekly_to_accounting:outbox'))"
                )
            )
            assert run_dag(dagbag, TIMESHEETS, WEEK_END).state == "success"
            connection.execute(text("SELECT pg_advisory_unlock_all()"))
    finally:
        finance.dispose()
    assert scalar(accounting_warehouse, "SELECT count(*) FROM acct.time_export WHERE posting_status = 'posted'") > 0


def test_a_time_activity_whose_answer_was_lost_is_found_not_posted_again_after_requestids_are_forgotten(
    dagbag, sandbox, accounting_warehouse, psa_warehouse
):
    state = sandbox.state
    assert run_dag(dagbag, TIMESHEETS, WEEK_END).state == "success"
    before = len(state.qbo.entities["TimeActivity"])
    # QuickBooks created these, but our record of it was lost (a crash after the call) ...
    with accounting_warehouse.begin() as connection:
        lost = connection.execute(
            text(
                "UPDATE acct.time_export SET posting_status = 'pending', accounting_id = NULL, posted_at = NULL "
                "WHERE entry_id IN (SELECT entry_id FROM acct.time_export WHERE posting_status = 'posted' ORDER BY entry_id LIMIT 5) "
                "RETURNING entry_id"
            )
        ).all()
    state.qbo.request_results.clear()  # ... and QuickBooks no longer remembers the requestids
    assert run_dag(dagbag, TIMESHEETS, WEEK_END).state == "success"
    assert len(state.qbo.entities["TimeActivity"]) == before
    assert scalar(
        accounting_warehouse,
        "SELECT count(*) FROM acct.time_export WHERE posting_status = 'posted' AND accounting_id IS NOT NULL AND entry_id = ANY(:ids)",
        ids=[r[0] for r in lost],
    ) == len(lost)
    reliability.count(faults_injected=1, survived=1, rows_compared=before)


def test_a_xero_token_answer_lost_after_rotation_is_recovered_within_the_grace_period(salesforce_sandbox, monkeypatch):
    """Xero keeps a used refresh token valid for 30 minutes in case the answer was lost (Xero's
    developer community, official reply on refresh-token expiry, thread 105714701)."""
    from backbone.hooks.oauth import MemoryTokenStore
    from backbone.hooks.xero import XeroHook

    monkeypatch.setenv("BACKBONE_HTTP_TIMEOUT_SECONDS", "1")
    state = salesforce_sandbox.state
    state.faults.arm([FaultRule(kind="slow_response", path_contains="/xero/connect/token", delay_seconds=2.5, times=1)])
    tokens = MemoryTokenStore()
    hook = XeroHook(token_store=tokens)
    assert hook.access_token()
    assert state.xero.token_refreshes == 1 and getattr(state.xero, "grace_replays", 0) == 1
    assert tokens.load("xero_default_refresh_token") in state.xero.refresh_tokens
    reliability.count(token_faults_survived=1)


def test_two_workers_refreshing_one_rotating_token_take_turns(sandbox, accounting_warehouse):
    """QuickBooks refuses a used refresh token (no grace is documented): without the shared lock
    the second worker would spend the old token and lock the Connection out."""
    from backbone.hooks.oauth import AirflowVariableTokenStore, MemoryTokenStore
    from backbone.hooks.quickbooks import QuickBooksHook

    class SharedStore(MemoryTokenStore):
        lock = AirflowVariableTokenStore.lock  # the warehouse row lock the workers share

    shared = SharedStore()
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker() -> None:
        hook = QuickBooksHook(token_store=shared)
        barrier.wait()
        try:
            hook.access_token(force_refresh=True)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert sandbox.state.qbo.token_refreshes == 4 and shared.load("quickbooks_default_refresh_token") in sandbox.state.qbo.refresh_tokens
    reliability.count(token_faults_survived=1)


@pytest.fixture
def slack_alerts(monkeypatch) -> Iterator[Callable[[], list[str]]]:
    """A Slack incoming webhook on a free port, set as the alert channel; call it for the texts received."""
    import json
    from http.server import HTTPServer

    from tests.test_finance_ledger import _free_port, _Webhook

    port = _free_port()
    sink = HTTPServer(("127.0.0.1", port), _Webhook)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", json.dumps({"conn_type": "http", "password": f"http://127.0.0.1:{port}/hook"}))
    monkeypatch.setenv("BACKBONE_ALERT_SLACK_CONN_ID", "slack_alerts")
    _Webhook.received.clear()
    yield lambda: [json.loads(body)["text"] for body in _Webhook.received]
    sink.shutdown()


def test_a_refused_refresh_token_fails_the_run_at_once_with_the_steps_to_reconnect(
    dagbag, sandbox, accounting_warehouse, psa_warehouse, slack_alerts
):
    import time

    from airflow.models import Variable

    Variable.set("quickbooks_default_refresh_token", "revoked-by-the-user")
    started = time.monotonic()
    dag_run = run_dag(dagbag, TIMESHEETS, WEEK_END)  # the DAG's own retries (3) stay on
    assert time.monotonic() - started < 60  # the alert is out within the minute, not after an hour of retries
    alerts = slack_alerts()
    assert any(TIMESHEETS in text and "FAILED" in text for text in alerts), alerts
    assert dag_run.state == "failed"
    post = next(
        ti for ti in dag_run.get_task_instances() if ti.task_id in ("extract_time_entries", "post_time_activities") and ti.state == "failed"
    )
    assert post.try_number == 1  # not retried: retrying cannot fix a refused token
    failure = scalar(accounting_warehouse, "SELECT status FROM ops.flow_run WHERE flow = :f", f=TIMESHEETS)
    assert failure == "failed"
    assert scalar(accounting_warehouse, "SELECT count(*) FROM acct.time_export WHERE posting_status = 'posted'") == 0
    Variable.delete("quickbooks_default_refresh_token")
    reliability.count(token_faults_survived=1)


def test_a_403_fails_the_run_on_the_first_try_instead_of_retrying_for_an_hour(dagbag, sandbox, psa_warehouse):
    """Retries cannot fix missing permissions: the task fails at once, the run record says why."""
    sandbox.state.faults.arm([FaultRule(kind="status", status=403, path_contains="/crm/v3/pipelines", times=50)])
    dag_run = run_dag(dagbag, "crm_closed_won_to_psa", ANCHOR)  # the DAG's own retries (3) stay on
    assert dag_run.state == "failed"
    extract = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "extract_deals")
    assert extract.state == "failed" and extract.try_number == 1
    record = rows(psa_warehouse, "SELECT status, details FROM ops.flow_run WHERE flow = 'crm_closed_won_to_psa'")[0]
    assert record.status == "failed"
    sandbox.state.faults.clear()


def test_a_week_beyond_xeros_daily_quota_finishes_once_the_quota_resets_without_a_human(
    dagbag, salesforce_sandbox, accounting_warehouse, psa_warehouse, monkeypatch
):
    """Xero allows 5,000 calls a day; here a "day" lasts four seconds and holds 60 calls, so the
    week's posting meets the quota several times. Each time the task is rescheduled for when Xero
    says the quota resets (not failed, not retried), and the week finishes with nothing sent twice."""
    monkeypatch.setenv("BACKBONE_ACCOUNTING_CONN_ID", "xero_default")
    day = salesforce_sandbox.state.limits["xero_day"]
    day.calls, day.seconds = 60, 4.0
    dag_run = run_dag(dagbag, TIMESHEETS, WEEK_END)
    assert dag_run.state == "success"
    assert day.rejected >= 1, "the week needs more calls than one simulated day allows"
    post = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "post_time_activities")
    assert post.try_number == 1  # rescheduled, never failed and retried
    record = rows(accounting_warehouse, "SELECT written_back, details FROM ops.flow_run WHERE flow = :f", f=TIMESHEETS)[0]
    assert record.details["quota_reached"]["pending"] > 0
    posted = scalar(accounting_warehouse, "SELECT count(*) FROM acct.time_export WHERE posting_status = 'posted'")
    assert scalar(accounting_warehouse, "SELECT count(*) FROM acct.time_export WHERE posting_status <> 'posted'") == 0
    assert len(salesforce_sandbox.state.xero.time_entries) == posted == record.written_back
    reliability.count(faults_injected=day.rejected, survived=day.rejected)
    day.calls, day.seconds = 5000, 86_400.0


def test_a_run_past_its_business_deadline_alerts_finance_once(dagbag, sandbox, accounting_warehouse, psa_warehouse, slack_alerts):
    """The Friday export of 30 October did not run: by 18:00 that Friday the watchdog says so, once."""
    assert run_dag(dagbag, TIMESHEETS, WEEK_START).state == "success"  # the week before ran

    assert run_dag(dagbag, "backbone_deadlines", WEEK_END + timedelta(minutes=30)).state == "success"  # 17:35: not due yet
    assert slack_alerts() == []
    assert run_dag(dagbag, "backbone_deadlines", WEEK_END + timedelta(hours=1, minutes=30)).state == "success"  # 18:35
    assert run_dag(dagbag, "backbone_deadlines", WEEK_END + timedelta(hours=2, minutes=30)).state == "success"  # 19:35: no repeat
    alerts = slack_alerts()
    assert len(alerts) == 1, alerts
    assert (
        TIMESHEETS in alerts[0]
        and "Fri 2026-10-23 17:00 → Fri 2026-10-30 17:00" in alerts[0]
        and "due by Fri 2026-10-30 18:00" in alerts[0]
    )
    assert scalar(accounting_warehouse, "SELECT count(*) FROM ops.deadline_alert WHERE flow = :f", f=TIMESHEETS) == 1
