"""Pilot mode, run for real by Airflow: a pilot posts nothing, reports what it would post, and
switching it off posts exactly that, once."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import pytest

from tests.conftest import ANCHOR
from tests.helpers import rows
from tests.test_month_end_e2e import INVOICES, TIMESHEETS, export_october_time, month_closed, run  # noqa: F401 - month_closed is a fixture

pytestmark = pytest.mark.e2e


def would_post(capsys: pytest.CaptureFixture[str]) -> list[dict[str, str]]:
    from backbone.__main__ import main

    capsys.readouterr()
    assert main(["pilot", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def pilot(flows: str):  # noqa: ANN201 - a context manager
    from contextlib import contextmanager

    from airflow.models import Variable

    @contextmanager
    def switched_on():  # noqa: ANN202
        Variable.set("backbone_pilot_flows", flows)
        try:
            yield
        finally:
            Variable.delete("backbone_pilot_flows")

    return switched_on()


def test_a_pilot_sends_nothing_reports_it_and_switching_it_off_sends_exactly_that_once(
    dagbag, sandbox, accounting_warehouse, psa_warehouse, capsys
):
    qbo = sandbox.state.qbo
    with pilot(TIMESHEETS):  # the weekly export in pilot for every week of October
        export_october_time(dagbag, sandbox)
    assert qbo.creates.get("TimeActivity", 0) == 0  # nothing reached accounting
    records = rows(accounting_warehouse, "SELECT details, written_back FROM ops.flow_run WHERE flow = :f", f=TIMESHEETS)
    assert records and all("pilot" in r.details and r.written_back == 0 for r in records)
    report = [line for line in would_post(capsys) if line["outbox"] == "time export"]
    actions = Counter(line["what"] for line in report)
    assert actions["create"] > 0
    assert records[-1].details["pilot"]["would_post"] == len(report)  # the run's own report says the same

    run(dagbag, TIMESHEETS, sandbox.state.psa_time.week_ends()[-1] + timedelta(days=7))  # pilot off: the week holding the 31st again
    assert qbo.creates.get("TimeActivity", 0) == actions["create"]  # exactly what the pilot showed
    assert [line for line in would_post(capsys) if line["outbox"] == "time export"] == []

    with pilot(INVOICES):  # month-end in pilot, with October's time exported for real
        run(dagbag, INVOICES, ANCHOR)
    assert qbo.creates.get("Invoice", 0) == 0 and qbo.creates.get("CreditMemo", 0) == 0
    invoices = Counter(line["what"] for line in would_post(capsys) if line["outbox"] == "invoicing")
    assert invoices["invoice"] > 0
    record = rows(accounting_warehouse, "SELECT details FROM ops.flow_run WHERE flow = :f", f=INVOICES)[0].details
    assert record["pilot"]["by_action"] == dict(invoices)

    run(dagbag, INVOICES, ANCHOR)  # pilot off: the same interval again posts what the pilot listed
    assert (qbo.creates.get("Invoice", 0), qbo.creates.get("CreditMemo", 0)) == (invoices["invoice"], invoices["credit_note"])
    run(dagbag, INVOICES, ANCHOR)  # and only once
    assert (qbo.creates.get("Invoice", 0), qbo.creates.get("CreditMemo", 0)) == (invoices["invoice"], invoices["credit_note"])
    assert would_post(capsys) == []


def scope(value: dict):  # noqa: ANN201 - a context manager
    from contextlib import contextmanager

    from airflow.models import Variable

    @contextmanager
    def in_force():  # noqa: ANN202
        Variable.set("backbone_rollout_scope", json.dumps(value))
        try:
            yield
        finally:
            Variable.delete("backbone_rollout_scope")

    return in_force()


def test_a_rollout_scope_sends_one_clients_time_only_and_the_rest_once_it_is_lifted(dagbag, sandbox, accounting_warehouse, psa_warehouse):
    """A first rollout for one client: everything is loaded, only that client's time is sent; the
    other clients' lines stay pending (counted on the run) and go out, once, when the scope is lifted."""
    qbo = sandbox.state.qbo
    week_end = sandbox.state.psa_time.week_ends()[-1]
    run(dagbag, TIMESHEETS, week_end - timedelta(days=7))  # an ordinary week first: its lines out
    before = qbo.creates.get("TimeActivity", 0)
    lines = rows(accounting_warehouse, "SELECT client_id, count(*) AS n FROM acct.time_export GROUP BY client_id ORDER BY client_id")
    chosen = lines[0].client_id
    with scope({"clients": [chosen]}):
        run(dagbag, TIMESHEETS, week_end)
    sent = rows(
        accounting_warehouse,
        "SELECT client_id, posting_status, count(*) AS n FROM acct.time_export WHERE run_id = (SELECT max(run_id) FROM acct.time_export) "
        "GROUP BY client_id, posting_status",
    )
    assert {r.client_id for r in sent if r.posting_status == "posted"} <= {chosen}
    held = sum(r.n for r in sent if r.posting_status == "pending")
    assert held > 0 and all(r.client_id != chosen for r in sent if r.posting_status == "pending")
    record = rows(accounting_warehouse, "SELECT details FROM ops.flow_run WHERE flow = :f ORDER BY interval_end DESC", f=TIMESHEETS)[0]
    assert record.details["held_back_by_rollout_scope"] == held
    in_scope = qbo.creates.get("TimeActivity", 0) - before

    run(dagbag, TIMESHEETS, week_end + timedelta(days=7))  # scope lifted: the next run sends the rest
    assert rows(accounting_warehouse, "SELECT count(*) AS n FROM acct.time_export WHERE posting_status = 'pending'")[0].n == 0
    assert qbo.creates.get("TimeActivity", 0) - before == in_scope + held  # each line once


@pytest.mark.parametrize(
    ("raw", "words"),
    [("{not json", "not JSON"), ('{"teams": ["x"]}', "any of clients, projects, people, departments"), ('{"clients": 5}', "list")],
)
def test_a_bad_rollout_scope_is_a_sentence(raw, words):
    from backbone.rollout import RolloutScopeError, parse_scope

    with pytest.raises(RolloutScopeError, match=words):
        parse_scope(raw, source="BACKBONE_ROLLOUT_SCOPE")


def test_a_scope_of_people_only_sends_no_invoice():
    from backbone.rollout import RolloutScope, invoice_condition

    assert invoice_condition(RolloutScope()) is None
    assert str(invoice_condition(RolloutScope(departments=frozenset({"Data Engineering"})))) == "false"


def test_closed_won_in_pilot_writes_nothing_and_the_next_real_run_catches_its_interval_up(dagbag, sandbox, psa_warehouse):
    """The PSA and the CRM have no outbox: a pilot run reports the projects it would create and the
    deals it would link, writes nothing, and does not cover its interval; the first real run after
    it reads from where the pilot started and writes everything, once."""
    from backbone.ledger import Ledger

    state = sandbox.state
    with pilot("crm_closed_won_to_psa"):
        run(dagbag, "crm_closed_won_to_psa", ANCHOR)
    assert len(state.psa.projects) == 0 and state.crm_writes == 0
    record = rows(psa_warehouse, "SELECT details, written_back FROM ops.flow_run WHERE flow = 'crm_closed_won_to_psa'")[0]
    would = record.details["pilot"]["by_action"]["create"]
    assert would > 0 and record.written_back == 0 and record.details["writes_skipped"] is True
    assert any(g["flow"] == "crm_closed_won_to_psa" for g in Ledger.from_settings().gaps(now=ANCHOR + timedelta(hours=3)))

    run(dagbag, "crm_closed_won_to_psa", ANCHOR + timedelta(minutes=30))  # pilot off: the next half hour
    assert len(state.psa.projects) == would  # exactly what the pilot reported, each once
    latest = rows(psa_warehouse, "SELECT details FROM ops.flow_run WHERE flow = 'crm_closed_won_to_psa' ORDER BY interval_end DESC")[0]
    assert latest.details["caught_up_intervals"]  # it covered the piloted half hour
    run(dagbag, "crm_closed_won_to_psa", ANCHOR + timedelta(minutes=30))
    assert len(state.psa.projects) == would


def test_the_roster_in_pilot_keeps_the_hr_warehouse_and_the_psa_as_they_were_until_the_real_run(dagbag, sandbox, hr_warehouse):
    from tests.test_hr_roster_pto_to_psa_e2e import RUN_DAY

    state = sandbox.state
    with pilot("hr_roster_pto_to_psa"):
        run(dagbag, "hr_roster_pto_to_psa", RUN_DAY)
    assert len(state.psa.people) == 0
    assert rows(hr_warehouse, "SELECT count(*) AS n FROM hr.person")[0].n == 0  # its changes decide what is pushed: not kept
    report = rows(hr_warehouse, "SELECT details FROM ops.flow_run WHERE flow = 'hr_roster_pto_to_psa'")[0].details["pilot"]
    assert report["would_post"] > 0

    run(dagbag, "hr_roster_pto_to_psa", RUN_DAY + timedelta(days=1))  # pilot off
    assert len(state.psa.people) == report["would_post"]


@pytest.mark.usefixtures("month_closed")  # October exported and invoiced (restored when this worker built it)
def test_payments_and_milestones_in_pilot_send_nothing_and_keep_nothing_then_the_real_run_sends_it(
    dagbag, sandbox, accounting_warehouse, psa_warehouse
):
    """Payments decide what to send the PSA from the statuses they keep, so a pilot keeps none
    (rolled back) and sends none; milestones patch no deal. The first real run sends exactly that."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from tests.test_month_end_e2e import MILESTONES, PAYMENTS

    state = sandbox.state
    pay_ref = rows(
        accounting_warehouse, "SELECT accounting_id FROM acct.invoice WHERE posting_status = 'posted' AND kind = 'invoice' ORDER BY number"
    )[0].accounting_id
    state.qbo.pay(pay_ref, Decimal("100.00"))
    payments_day = datetime.now(UTC) + timedelta(days=1)  # the sandbox stamps payments with the real clock
    with pilot(f"{PAYMENTS},{MILESTONES}"):
        run(dagbag, PAYMENTS, payments_day)
        run(dagbag, MILESTONES, ANCHOR)
    assert state.billing.payment_writes == 0 and state.crm_writes == 0
    assert rows(accounting_warehouse, "SELECT count(*) AS n FROM acct.invoice WHERE payment_status IS NOT NULL")[0].n == 0
    assert rows(psa_warehouse, "SELECT count(*) AS n FROM psa.invoice_status")[0].n == 0
    report = rows(accounting_warehouse, "SELECT details FROM ops.flow_run WHERE flow = :f", f=PAYMENTS)[0].details["pilot"]
    deals = rows(psa_warehouse, "SELECT details FROM ops.flow_run WHERE flow = :f", f=MILESTONES)[0].details["pilot"]["would_post"]
    assert report["would_post"] > 0 and deals > 0

    run(dagbag, PAYMENTS, payments_day + timedelta(days=1))  # pilot off: the next day catches the piloted one up
    run(dagbag, MILESTONES, ANCHOR + timedelta(days=1))
    assert state.billing.payment_writes >= report["would_post"] and state.crm_writes >= deals
    assert rows(psa_warehouse, "SELECT count(*) AS n FROM psa.invoice_status")[0].n == report["would_post"]


def test_the_expense_export_in_pilot_posts_nothing_and_the_next_real_run_posts_exactly_that(dagbag, sandbox, accounting_warehouse, capsys):
    qbo = sandbox.state.qbo
    week = sandbox.state.psa_time.week_ends()[-1]
    with pilot("expenses_weekly_to_accounting"):
        run(dagbag, "expenses_weekly_to_accounting", week)
    assert qbo.creates.get("Bill", 0) == qbo.creates.get("Purchase", 0) == 0
    report = [line for line in would_post(capsys) if line["outbox"] == "expense export"]
    kinds = Counter(line["what"] for line in report)
    assert kinds["create bill"] > 0 and kinds["create purchase"] > 0
    record = rows(accounting_warehouse, "SELECT details FROM ops.flow_run WHERE flow = 'expenses_weekly_to_accounting'")[0]
    assert record.details["pilot"]["would_post"] == len(report)

    run(dagbag, "expenses_weekly_to_accounting", week)  # pilot off
    assert (qbo.creates.get("Bill", 0), qbo.creates.get("Purchase", 0)) == (kinds["create bill"], kinds["create purchase"])
    assert [line for line in would_post(capsys) if line["outbox"] == "expense export"] == []
