"""Pilot mode, run for real by Airflow: a pilot posts nothing, reports what it would post, and
switching it off posts exactly that, once."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import pytest

from tests.conftest import ANCHOR
from tests.helpers import rows
from tests.test_month_end_e2e import INVOICES, TIMESHEETS, export_october_time, run

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
