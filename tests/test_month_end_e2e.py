"""Month-end invoicing, payments back and milestones back, run for real by Airflow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from tests.conftest import ANCHOR
from tests.helpers import rows, run_dag
from tests.snapshots import WorldSnapshot

pytestmark = pytest.mark.e2e
INVOICES, PAYMENTS, MILESTONES, TIMESHEETS, EXPENSES = (
    "invoices_month_end_to_accounting",
    "payments_to_psa",
    "psa_milestones_to_crm",
    "timesheets_weekly_to_accounting",
    "expenses_weekly_to_accounting",
)
OCTOBER = (
    datetime(2026, 9, 30, 22, 0, tzinfo=UTC),
    datetime(2026, 10, 31, 23, 0, tzinfo=UTC),
)  # Amsterdam midnight to midnight, CEST → CET


def run(dagbag, flow, logical_date):
    dag_run = run_dag(dagbag, flow, logical_date)
    assert dag_run.state == "success", f"{flow} {logical_date}: {dag_run.state}"
    return dag_run


def export_october_time(dagbag, sandbox):
    """Every week of October, up to the week holding the 31st (it ends on Friday 6 November): month-end waits for it.
    The expenses of those weeks too (the first week, then one run catching up to 6 November): T&M
    invoices re-bill them, and month-end reconciles each such line with the exported expense."""
    export_october_weeks(dagbag, sandbox)
    export_october_expenses(dagbag, sandbox)


def export_october_weeks(dagbag, sandbox):
    """The weekly time export of every week of October, up to the week holding the 31st."""
    weeks = sandbox.state.psa_time.week_ends()
    for week_end in [*weeks, weeks[-1] + timedelta(days=7)]:
        run(dagbag, TIMESHEETS, week_end)


def export_october_expenses(dagbag, sandbox):
    weeks = sandbox.state.psa_time.week_ends()
    run(dagbag, EXPENSES, weeks[0])
    run(dagbag, EXPENSES, weeks[-1] + timedelta(days=7))


def invoice_state(engine) -> str:
    return rows(
        engine,
        "SELECT md5(string_agg(row(psa_invoice_id, posting_status, accounting_id, hold_rule, total)::text, '|' ORDER BY psa_invoice_id)) "
        "FROM acct.invoice",
    )[0][0]


_BUILT: dict[str, WorldSnapshot] = {}
"""Worlds this worker built first, by name; the later tests that need one get it restored."""


def october_time_exported(dagbag, sandbox, psa_warehouse, accounting_warehouse) -> None:
    """:func:`export_october_weeks` on the default sandbox: run for the first test on a worker, the
    same world restored (warehouses, sandbox stores, rotated tokens) for later ones, 7 runs less each.
    Tests of other files that start from it run on this file's worker (``SAME_WORKER`` in conftest)."""
    engines = [psa_warehouse, accounting_warehouse]
    if "time" in _BUILT:
        _BUILT["time"].restore(sandbox.state, engines)
        return
    export_october_weeks(dagbag, sandbox)
    _BUILT["time"] = WorldSnapshot.take(sandbox.state, engines)


def october_exported(dagbag, sandbox, psa_warehouse, accounting_warehouse) -> None:
    """:func:`export_october_time` on the default sandbox, built once per worker on
    :func:`october_time_exported` (45 s less for each later test)."""
    engines = [psa_warehouse, accounting_warehouse]
    if "exported" in _BUILT:
        _BUILT["exported"].restore(sandbox.state, engines)
        return
    october_time_exported(dagbag, sandbox, psa_warehouse, accounting_warehouse)
    export_october_expenses(dagbag, sandbox)
    _BUILT["exported"] = WorldSnapshot.take(sandbox.state, engines)


@pytest.fixture
def month_closed(dagbag, sandbox, accounting_warehouse, psa_warehouse):
    """October exported and invoiced (built once per worker, as :func:`october_exported`)."""
    engines = [psa_warehouse, accounting_warehouse]
    if "closed" in _BUILT:
        _BUILT["closed"].restore(sandbox.state, engines)
        return sandbox.state
    october_exported(dagbag, sandbox, psa_warehouse, accounting_warehouse)
    dag_run = run(dagbag, INVOICES, ANCHOR)
    assert (dag_run.data_interval_start, dag_run.data_interval_end) == OCTOBER
    _BUILT["closed"] = WorldSnapshot.take(sandbox.state, engines)
    return sandbox.state


def test_month_end_posts_checked_invoices_once_and_holds_the_rest(dagbag, month_closed, accounting_warehouse):
    state = month_closed
    held = dict(rows(accounting_warehouse, "SELECT psa_invoice_id, hold_rule FROM acct.invoice WHERE posting_status = 'held'"))
    assert set(held) == set(state.billing.bad_invoices)
    reasons = {
        (r.source_key, r.rule)
        for r in rows(accounting_warehouse, "SELECT source_key, rule FROM ops.quarantine WHERE flow = :f", f=INVOICES)
    }
    for invoice_id, rule in state.billing.bad_invoices.items():
        assert (invoice_id, rule) in reasons, (invoice_id, rule)

    posted = rows(
        accounting_warehouse,
        "SELECT psa_invoice_id, number, kind, accounting_id, total, currency FROM acct.invoice WHERE posting_status = 'posted'",
    )
    invoices = [p for p in posted if p.kind == "invoice"]
    credit_notes = [p for p in posted if p.kind == "credit_note"]
    assert len(invoices) == len(state.qbo.entities["Invoice"]) and len(credit_notes) == len(state.qbo.entities["CreditMemo"]) == 1
    by_id = {**state.qbo.entities["Invoice"], **state.qbo.entities["CreditMemo"]}
    for p in posted:
        assert by_id[p.accounting_id]["DocNumber"] == p.number
        assert Decimal(str(by_id[p.accounting_id]["TotalAmt"])) == p.total
    voided_in_psa = [i["id"] for i in state.billing.invoices if i["status"] == "voided"]
    assert (
        rows(accounting_warehouse, "SELECT posting_status FROM acct.invoice WHERE psa_invoice_id = :i", i=voided_in_psa[0])[0][0]
        == "not_posted"
    )
    # Every T&M invoice that was posted reconciled with exported time; multi-currency totals are kept apart.
    failed_reconciliations = {
        r[0]
        for r in rows(
            accounting_warehouse, "SELECT psa_invoice_id FROM acct.reconciliation WHERE check_name = 'time.reconciles' AND NOT passed"
        )
    }
    assert failed_reconciliations == {i for i, rule in state.billing.bad_invoices.items() if rule == "invoice.time.reconciles"}
    # Re-billed expenses: each T&M invoice's expense lines are the expenses the expense export sent,
    # and reach accounting on the re-billed expenses item at their amounts.
    expense_checks = rows(accounting_warehouse, "SELECT passed FROM acct.reconciliation WHERE check_name = 'expenses.reconcile'")
    assert expense_checks and all(passed for (passed,) in expense_checks)
    rebilled_item = next(i["Id"] for i in state.qbo.entities["Item"].values() if i["Name"] == "Re-billed Expenses")
    rebilled = rows(
        accounting_warehouse,
        "SELECT i.accounting_id, l.amount FROM acct.invoice_line l JOIN acct.invoice i USING (psa_invoice_id) "
        "WHERE l.kind = 'expense' AND i.posting_status = 'posted'",
    )
    assert rebilled
    for accounting_id, amount in rebilled:
        assert any(
            line["SalesItemLineDetail"]["ItemRef"]["value"] == rebilled_item and Decimal(str(line["Amount"])) == amount
            for line in by_id[accounting_id]["Line"]
            if line.get("DetailType") == "SalesItemLineDetail"
        ), accounting_id
    record = rows(accounting_warehouse, "SELECT * FROM ops.flow_run WHERE flow = :f", f=INVOICES)[0]._mapping
    assert record["status"] == "success" and record["details"]["held"] == len(held)
    net = {}
    for p in posted:
        net[p.currency] = net.get(p.currency, Decimal(0)) + (-p.total if p.kind == "credit_note" else p.total)
    assert {c: Decimal(v) for c, v in record["details"]["amount_by_currency"].items()} == net
    assert set(net) == {"EUR", "USD"}

    before, objects = invoice_state(accounting_warehouse), len(by_id)
    run(dagbag, INVOICES, ANCHOR)
    assert invoice_state(accounting_warehouse) == before
    assert len(state.qbo.entities["Invoice"]) + len(state.qbo.entities["CreditMemo"]) == objects


def test_an_expense_withdrawn_after_export_but_still_billed_holds_its_invoice_until_it_is_billed_right(
    dagbag, sandbox, accounting_warehouse, psa_warehouse
):
    state = sandbox.state
    invoice = next(
        i
        for i in state.billing.invoices
        if i["id"] not in state.billing.bad_invoices and i["status"] == "approved" and any(line["kind"] == "expense" for line in i["lines"])
    )
    line = next(line for line in invoice["lines"] if line["kind"] == "expense")
    october_exported(dagbag, sandbox, psa_warehouse, accounting_warehouse)
    state.psa_expenses.withdraw(line["expense"]["id"], at=datetime(2026, 11, 6, 10, tzinfo=UTC))  # deleted in the PSA after export
    run(dagbag, EXPENSES, sandbox.state.psa_time.week_ends()[-1] + timedelta(days=7))  # the withdrawal's week: reversed in accounting
    run(dagbag, INVOICES, ANCHOR)
    held = rows(
        accounting_warehouse, "SELECT posting_status, hold_rule, hold_reason FROM acct.invoice WHERE psa_invoice_id = :i", i=invoice["id"]
    )
    assert held[0][:2] == ("held", "invoice.expenses.reconcile")
    assert f"bills expense {line['expense']['id']}, which was not exported as billable" in held[0][2]
    assert not any(i["DocNumber"] == invoice["number"] for i in state.qbo.entities["Invoice"].values())


def test_a_rerun_after_the_requestid_window_finds_the_invoice_by_number(dagbag, month_closed, accounting_warehouse):
    state = month_closed
    invoice_id, accounting_id = rows(
        accounting_warehouse,
        "SELECT psa_invoice_id, accounting_id FROM acct.invoice WHERE posting_status = 'posted' AND kind = 'invoice' LIMIT 1",
    )[0]
    with accounting_warehouse.begin() as connection:  # as if the task died after QuickBooks answered, long ago
        connection.execute(
            text("UPDATE acct.invoice SET posting_status = 'pending', accounting_id = NULL WHERE psa_invoice_id = :i"), {"i": invoice_id}
        )
    state.qbo.request_results.clear()
    count = len(state.qbo.entities["Invoice"])
    run(dagbag, INVOICES, ANCHOR)
    assert len(state.qbo.entities["Invoice"]) == count
    assert rows(accounting_warehouse, "SELECT posting_status, accounting_id FROM acct.invoice WHERE psa_invoice_id = :i", i=invoice_id)[
        0
    ] == ("posted", accounting_id)


def test_a_post_that_times_out_after_accounting_created_it_is_one_invoice(
    dagbag, sandbox, accounting_warehouse, psa_warehouse, monkeypatch
):
    from backbone_sandbox.faults import FaultRule

    october_exported(dagbag, sandbox, psa_warehouse, accounting_warehouse)
    monkeypatch.setenv("BACKBONE_HTTP_TIMEOUT_SECONDS", "1")
    sandbox.state.faults.arm([FaultRule(kind="slow_response", path_contains="/invoice", method="POST", delay_seconds=2.5, times=2)])
    run(dagbag, INVOICES, ANCHOR)
    numbers = [i["DocNumber"] for i in sandbox.state.qbo.entities["Invoice"].values()]
    assert len(numbers) == len(set(numbers)) and sandbox.state.faults.fired["slow_response"] == 2


def test_void_payments_and_milestones_flow_back(dagbag, month_closed, accounting_warehouse, psa_warehouse):
    state = month_closed
    posted = rows(
        accounting_warehouse,
        "SELECT psa_invoice_id, accounting_id, total FROM acct.invoice WHERE posting_status = 'posted' AND kind = 'invoice' ORDER BY "
        "number",
    )
    (void_id, void_ref, _), (pay_id, pay_ref, pay_total) = posted[0], posted[1]

    state.billing.void(void_id)
    run(dagbag, INVOICES, ANCHOR)
    assert rows(accounting_warehouse, "SELECT posting_status FROM acct.invoice WHERE psa_invoice_id = :i", i=void_id)[0][0] == "voided"
    assert state.qbo.entities["Invoice"][void_ref]["TotalAmt"] == 0

    state.qbo.pay(pay_ref, Decimal("100.00"))
    payments_day = datetime.now(UTC) + timedelta(days=1)  # the sandbox stamps payments with the real clock
    run(dagbag, PAYMENTS, payments_day)
    statuses = dict(rows(psa_warehouse, "SELECT psa_invoice_id, status FROM psa.invoice_status"))
    assert statuses[pay_id] == "overdue" or statuses[pay_id] == "partially_paid"
    assert statuses[void_id] == "voided"
    assert state.billing.payment_status[pay_id]["amount_paid"] == "100.00"
    writes = state.billing.payment_writes
    run(dagbag, PAYMENTS, payments_day)
    assert state.billing.payment_writes == writes

    state.qbo.pay(pay_ref, pay_total - Decimal("100.00"))
    run(dagbag, PAYMENTS, payments_day)
    assert dict(rows(psa_warehouse, "SELECT psa_invoice_id, status FROM psa.invoice_status"))[pay_id] == "paid"
    assert rows(accounting_warehouse, "SELECT count(*) FROM acct.payment")[0][0] == 2

    run(dagbag, MILESTONES, ANCHOR)
    recent = state.billing.milestones[-1]
    deal = state.crm.objects["deals"][recent["crm_deal_id"]]["properties"]
    assert (deal["psa_last_milestone"], deal["psa_project_status"]) == ("Go-live", "live")
    assert deal["psa_billed_to_date"].endswith("EUR")
    crm_writes = state.crm.version
    run(dagbag, MILESTONES, ANCHOR)
    assert state.crm.version == crm_writes


DAILY = "invoices_to_accounting"
NOV_3_MORNING = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)  # 10:00 in Amsterdam
NOV_4_RUN = datetime(2026, 11, 4, 6, 0, tzinfo=UTC)  # the daily run for [3 Nov 07:00, 4 Nov 07:00) local


def a_clean_invoice(state) -> dict:
    return next(
        i
        for i in state.billing.invoices
        if i["type"] == "invoice" and i["status"] == "approved" and i["id"] not in state.billing.bad_invoices
    )


def outbox_status(engine, invoice_id: str) -> str | None:
    found = rows(engine, "SELECT posting_status FROM acct.invoice WHERE psa_invoice_id = :i", i=invoice_id)
    return found[0][0] if found else None


def test_an_october_invoice_approved_on_3_november_is_posted_once_by_the_next_daily_run(
    dagbag, sandbox, accounting_warehouse, psa_warehouse
):
    state = sandbox.state
    october_exported(dagbag, sandbox, psa_warehouse, accounting_warehouse)
    late = a_clean_invoice(state)
    state.billing.submit(late["id"])  # the PM has not approved it when October closes
    run(dagbag, INVOICES, ANCHOR)
    assert outbox_status(accounting_warehouse, late["id"]) is None
    close = rows(accounting_warehouse, "SELECT details FROM ops.flow_run WHERE flow = :f", f=INVOICES)[0][0]
    assert close["unapproved_in_psa"] == 1  # the month's close report says what the PM has not approved yet
    invoices_before = len(state.qbo.entities["Invoice"])

    state.billing.approve(late["id"], at=NOV_3_MORNING)
    run(dagbag, DAILY, NOV_4_RUN)
    assert outbox_status(accounting_warehouse, late["id"]) == "posted"
    assert len(state.qbo.entities["Invoice"]) == invoices_before + 1
    assert any(i["DocNumber"] == late["number"] for i in state.qbo.entities["Invoice"].values())
    run(dagbag, DAILY, NOV_4_RUN)  # again: nothing more
    run(dagbag, DAILY, NOV_4_RUN + timedelta(days=1))  # the next day: nothing more either
    assert len(state.qbo.entities["Invoice"]) == invoices_before + 1


def test_after_finance_approval_an_approved_invoice_waits_until_finance_releases_it(
    dagbag, sandbox, accounting_warehouse, psa_warehouse, monkeypatch
):
    monkeypatch.setenv("BACKBONE_INVOICE_TIMING", "after_finance_approval")
    state = sandbox.state
    october_exported(dagbag, sandbox, psa_warehouse, accounting_warehouse)
    late = a_clean_invoice(state)
    state.billing.submit(late["id"])
    state.billing.approve(late["id"], at=NOV_3_MORNING)
    run(dagbag, DAILY, NOV_4_RUN)
    assert outbox_status(accounting_warehouse, late["id"]) is None  # approved by the PM, not released by finance
    assert len(state.qbo.entities["Invoice"]) == 0

    state.billing.release(late["id"], at=NOV_3_MORNING + timedelta(days=2))
    run(dagbag, DAILY, NOV_4_RUN + timedelta(days=2))  # covers the day before it too (catch-up)
    assert outbox_status(accounting_warehouse, late["id"]) == "posted"
    assert [i["DocNumber"] for i in state.qbo.entities["Invoice"].values()] == [late["number"]]


def test_a_held_invoice_goes_out_once_after_finance_adds_its_customer(dagbag, month_closed, accounting_warehouse):
    state = month_closed
    stray = next(i for i in state.billing.invoices if state.billing.bad_invoices.get(i["id"]) == "invoice.customer.mapped")
    assert outbox_status(accounting_warehouse, stray["id"]) == "held"
    client = stray["client"]["name"]
    state.qbo.add("Customer", {"DisplayName": client, "CompanyName": client, "Active": True, "CurrencyRef": {"value": stray["currency"]}})

    daily = run(dagbag, DAILY, ANCHOR)
    assert outbox_status(accounting_warehouse, stray["id"]) == "posted"
    daily_run_id = rows(accounting_warehouse, "SELECT run_id FROM ops.flow_run WHERE flow = :f", f=DAILY)[0][0]
    holds = rows(
        accounting_warehouse, "SELECT resolved_by_run FROM ops.quarantine WHERE flow = :f AND source_key = :k", f=INVOICES, k=stray["id"]
    )
    assert holds and {h.resolved_by_run for h in holds} == {daily_run_id}
    posted = len(state.qbo.entities["Invoice"])
    run(dagbag, DAILY, ANCHOR)
    assert len(state.qbo.entities["Invoice"]) == posted
    assert daily.state == "success"


def test_month_end_waits_for_the_export_of_the_week_holding_the_31st(dagbag, sandbox, accounting_warehouse, psa_warehouse, tmp_path):
    import os
    import time

    from tests.helpers import dags_test_process

    weeks = sandbox.state.psa_time.week_ends()
    for week_end in weeks:  # up to Friday 30 October: the 30th's evening and the 31st are not exported yet
        run(dagbag, TIMESHEETS, week_end)
    os.environ["BACKBONE_MONTH_END_WAIT_POKE_SECONDS"] = "2"
    try:
        month_end = dags_test_process(INVOICES, ANCHOR, tmp_path / "month_end.log")
        time.sleep(15)
        assert month_end.poll() is None, (tmp_path / "month_end.log").read_text()[-3000:]  # still waiting
        assert rows(accounting_warehouse, "SELECT count(*) FROM acct.invoice")[0][0] == 0
        run(dagbag, TIMESHEETS, weeks[-1] + timedelta(days=7))  # Friday 6 November: the week holding the 31st
        assert month_end.wait(timeout=600) == 0, (tmp_path / "month_end.log").read_text()[-3000:]
    finally:
        del os.environ["BACKBONE_MONTH_END_WAIT_POKE_SECONDS"]
    record = rows(accounting_warehouse, "SELECT status, details FROM ops.flow_run WHERE flow = :f", f=INVOICES)[0]
    assert record.status == "success" and record.details["period"] == "2026-10"
    assert rows(accounting_warehouse, "SELECT count(*) FROM acct.invoice WHERE posting_status = 'posted'")[0][0] > 0


def test_a_missed_month_end_is_named_and_stays_a_gap_until_it_is_run(dagbag, sandbox, accounting_warehouse, psa_warehouse, monkeypatch):
    from backbone.ledger import Ledger

    monkeypatch.setenv("BACKBONE_MONTH_END_WAITS_FOR_TIME_EXPORT", "false")  # no September or November time in the seed
    run(dagbag, INVOICES, datetime(2026, 10, 2, 12, tzinfo=UTC))  # September
    run(dagbag, INVOICES, datetime(2026, 12, 2, 12, tzinfo=UTC))  # November: October's run never happened
    november_end = datetime(2026, 11, 30, 23, tzinfo=UTC)
    query = "SELECT details FROM ops.flow_run WHERE flow = :f AND interval_end = :e"
    november = rows(accounting_warehouse, query, f=INVOICES, e=november_end)[0][0]
    assert november["missed_intervals"] == [f"{OCTOBER[0].isoformat()} → {OCTOBER[1].isoformat()}"]
    ledger = Ledger(engines={"accounting": accounting_warehouse}, timezone="Europe/Amsterdam")
    december = datetime(2026, 12, 2, 12, tzinfo=UTC)
    assert [(g["interval_start"], g["interval_end"]) for g in ledger.gaps(flow=INVOICES, now=december)] == [OCTOBER]
    run(dagbag, INVOICES, ANCHOR)  # someone reruns October
    assert ledger.gaps(flow=INVOICES, now=december) == []


def test_a_t_and_m_invoice_approved_before_its_months_time_is_exported_waits_then_goes_out_once(
    dagbag, sandbox, accounting_warehouse, psa_warehouse
):
    from backbone.ledger import Ledger

    state = sandbox.state
    clean_tm = [
        i
        for i in state.billing.invoices
        if i["type"] == "invoice"
        and i["status"] == "approved"
        and i["billing_type"] == "time_and_materials"
        and i["id"] not in state.billing.bad_invoices
    ]
    late_worker = next(  # time worked on Saturday 31 October, approved on Monday 2 November
        e
        for e in state.psa_time.entries
        if e["project"]["id"] == clean_tm[0]["project"]["id"]
        and e["billable"]
        and e["approval_status"] == "approved"
        and e["id"] not in state.psa_time.bad_entries
        and e["spent_date"].startswith("2026-10")
    )
    state.psa_time.edit(late_worker["id"], {"spent_date": "2026-10-31"}, approved_at=datetime(2026, 11, 2, 9, tzinfo=UTC))
    export_october_expenses(dagbag, sandbox)
    weeks = state.psa_time.week_ends()
    for week_end in weeks:  # up to Friday 30 October: the 31st goes out on 6 November
        run(dagbag, TIMESHEETS, week_end)
    for invoice in clean_tm:  # the PM approves October's T&M invoices on 3 November
        state.billing.submit(invoice["id"])
        state.billing.approve(invoice["id"], at=NOV_3_MORNING)
    run(dagbag, DAILY, NOV_4_RUN)

    statuses = {i["id"]: outbox_status(accounting_warehouse, i["id"]) for i in clean_tm}
    waiting = [key for key, status in statuses.items() if status == "waiting"]
    assert clean_tm[0]["id"] in waiting, statuses
    assert set(statuses.values()) <= {"waiting", "posted"}
    ledger = Ledger(engines={"accounting": accounting_warehouse}, timezone="Europe/Amsterdam")
    assert ledger.open_exceptions(flow=DAILY) == []  # waiting is not an exception
    listed = ledger.waiting_invoices()
    assert sorted(w["number"] for w in listed) == sorted(i["number"] for i in clean_tm if i["id"] in waiting)
    assert all("waiting for the weekly export" in w["reason"] for w in listed)
    record = rows(accounting_warehouse, "SELECT details FROM ops.flow_run WHERE flow = :f", f=DAILY)[0][0]
    assert record["waiting"] == len(waiting) and record["held"] == 0
    posted_before = len(state.qbo.entities["Invoice"])

    run(dagbag, DAILY, NOV_4_RUN + timedelta(days=1))  # still waiting: nothing new is exported
    assert {outbox_status(accounting_warehouse, key) for key in waiting} == {"waiting"}
    run(dagbag, TIMESHEETS, weeks[-1] + timedelta(days=7))  # Friday 6 November: the week holding the 31st
    run(dagbag, DAILY, NOV_4_RUN + timedelta(days=3))  # the next daily run judges them again and posts them
    assert {outbox_status(accounting_warehouse, key) for key in waiting} == {"posted"}
    assert len(state.qbo.entities["Invoice"]) == posted_before + len(waiting)
    assert ledger.waiting_invoices() == [] and ledger.open_exceptions(flow=DAILY) == []
    run(dagbag, DAILY, NOV_4_RUN + timedelta(days=4))
    assert len(state.qbo.entities["Invoice"]) == posted_before + len(waiting)
