"""Monthly project actuals run for real by Airflow, on both accounting systems: October's labour
actuals per project become one QuickBooks JournalEntry / Xero ManualJournal each, priced at the
standard cost rates; a rerun sends nothing; a late change adds one correction journal for the
difference only; a lost answer is found by its document number; both warehouses reconcile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tests.conftest import ANCHOR
from tests.helpers import rows, run_dag, scalar
from tests.test_month_end_e2e import export_october_time, export_october_weeks, october_exported, october_time_exported

pytestmark = pytest.mark.e2e
FLOW, TIMESHEETS = "project_actuals_to_accounting", "timesheets_weekly_to_accounting"
CONNECTIONS = {"quickbooks": "quickbooks_default", "xero": "xero_default"}


def run(dagbag, flow, logical_date) -> None:
    dag_run = run_dag(dagbag, flow, logical_date, retries=0)
    assert dag_run.state == "success", f"{flow} {logical_date}: {dag_run.state}"


def journals_in_accounting(state, system: str) -> dict[str, Decimal]:
    """Document number → the labour cost it debits, for every journal accounting holds (a number held twice fails)."""
    held: list[tuple[str, Decimal]] = []
    if system == "quickbooks":
        for record in state.qbo.entities["JournalEntry"].values():
            debit = next(line for line in record["Line"] if line["JournalEntryLineDetail"]["PostingType"] == "Debit")
            credit = next(line for line in record["Line"] if line["JournalEntryLineDetail"]["PostingType"] == "Credit")
            assert debit["Amount"] == credit["Amount"]
            labour_debited = debit["JournalEntryLineDetail"]["AccountRef"]["value"] == labour_account(state, system)
            held.append((record["DocNumber"], Decimal(str(debit["Amount"])) * (1 if labour_debited else -1)))
    else:
        for record in state.xero.records.get("ManualJournals", {}).values():
            assert sum(Decimal(str(line["LineAmount"])) for line in record["JournalLines"]) == 0 and record["Status"] == "POSTED"
            labour = next(line for line in record["JournalLines"] if line["AccountCode"] == labour_account(state, system))
            held.append((record["Narration"].split(":")[0], Decimal(str(labour["LineAmount"]))))
    docs = [doc for doc, _ in held]
    assert len(docs) == len(set(docs)), f"posted twice: {sorted(d for d in docs if docs.count(d) > 1)}"
    return dict(held)


def labour_account(state, system: str) -> str:
    if system == "quickbooks":
        return next(a["Id"] for a in state.qbo.entities["Account"].values() if a["Name"] == "5010 Project Labour Cost")
    return "5010"


def expected_labour_cost(accounting_warehouse) -> dict[str, Decimal]:
    """By hand: October's exported hours (newest posted version of each entry) × the EUR standard rate of their code."""
    from backbone.cost_rates import load_cost_rates

    rates = load_cost_rates()
    cost: dict[str, Decimal] = {}
    for project_id, code, hours in rows(
        accounting_warehouse,
        """SELECT project_id, billing_code, sum(hours) FROM (
               SELECT DISTINCT ON (entry_id) * FROM acct.time_export ORDER BY entry_id, entry_version DESC) latest
           WHERE posting_status = 'posted' AND action <> 'delete' AND work_date >= '2026-10-01' AND work_date < '2026-11-01'
           GROUP BY 1, 2""",
    ):
        cost[project_id] = cost.get(project_id, Decimal(0)) + hours * rates[(code, "EUR")]
    return cost


@pytest.mark.parametrize("system", ["quickbooks", "xero"])
def test_labour_actuals_reach_accounting_once_and_follow_a_late_change(
    system, dagbag, sandbox, accounting_warehouse, psa_warehouse, monkeypatch
):
    monkeypatch.setenv("BACKBONE_ACCOUNTING_CONN_ID", CONNECTIONS[system])
    state = sandbox.state
    weeks = state.psa_time.week_ends()
    if system == "quickbooks":  # the month-end tests' October, restored when this worker built it
        october_exported(dagbag, sandbox, psa_warehouse, accounting_warehouse)
    else:
        export_october_time(dagbag, sandbox)
    run(dagbag, FLOW, ANCHOR)

    expected = expected_labour_cost(accounting_warehouse)
    posted = dict(rows(accounting_warehouse, "SELECT doc_number, amount FROM acct.actuals_journal WHERE posting_status = 'posted'"))
    assert posted == {f"ACT202610-{project}": cost for project, cost in expected.items()}
    assert journals_in_accounting(state, system) == posted
    actuals = {r.project_id: r for r in rows(accounting_warehouse, "SELECT * FROM acct.project_actual WHERE period = '2026-10'")}
    assert set(actuals) >= set(expected)
    assert all(r.reconciled for r in actuals.values()), {p: r.detail for p, r in actuals.items() if not r.reconciled}
    assert any(r.expense_cost > 0 for r in actuals.values())  # the exported expenses are counted, not journaled
    record = rows(accounting_warehouse, "SELECT status, details FROM ops.flow_run WHERE flow = :f", f=FLOW)[0]
    assert record.status == "success" and record.details["journals_posted"] == len(expected)

    run(dagbag, FLOW, ANCHOR)  # again: nothing new
    assert journals_in_accounting(state, system) == posted
    assert scalar(accounting_warehouse, "SELECT count(*) FROM acct.actuals_journal") == len(expected)

    # A late change: an October entry gets two more hours, approved on 3 November, exported on 6 November.
    entry = next(
        e
        for e in state.psa_time.entries
        if e["approval_status"] == "approved"
        and e["id"] not in state.psa_time.bad_entries
        and e["spent_date"].startswith("2026-10")
        and e["project"]["id"] in expected
    )
    hours = Decimal(entry["hours"]) + 2
    state.psa_time.edit(entry["id"], {"hours": str(hours)}, approved_at=datetime(2026, 11, 3, 9, tzinfo=UTC))
    run(dagbag, TIMESHEETS, weeks[-1] + timedelta(days=7))
    run(dagbag, FLOW, ANCHOR)
    corrected = expected_labour_cost(accounting_warehouse)
    project = entry["project"]["id"]
    correction = rows(accounting_warehouse, "SELECT seq, doc_number, amount FROM acct.actuals_journal WHERE seq > 1")
    assert [(c.seq, c.doc_number, c.amount) for c in correction] == [(2, f"ACT202610-{project}-2", corrected[project] - expected[project])]
    assert correction[0].amount > 0
    held = journals_in_accounting(state, system)
    assert len(held) == len(expected) + 1 and held[f"ACT202610-{project}-2"] == correction[0].amount
    assert scalar(accounting_warehouse, "SELECT bool_and(reconciled) FROM acct.project_actual WHERE period = '2026-10'")


def test_a_journal_whose_answer_was_lost_is_found_by_its_number_not_posted_twice(dagbag, sandbox, accounting_warehouse, psa_warehouse):
    state = sandbox.state
    october_time_exported(dagbag, sandbox, psa_warehouse, accounting_warehouse)
    run(dagbag, FLOW, ANCHOR)
    before = journals_in_accounting(state, "quickbooks")
    doc = scalar(accounting_warehouse, "SELECT min(doc_number) FROM acct.actuals_journal")
    with accounting_warehouse.begin() as connection:  # a result lost in a crash, past QuickBooks' requestid memory
        connection.exec_driver_sql(
            "UPDATE acct.actuals_journal SET posting_status = 'pending', accounting_id = NULL WHERE doc_number = %(d)s", {"d": doc}
        )
    state.qbo.request_results.clear()
    run(dagbag, FLOW, ANCHOR)
    assert journals_in_accounting(state, "quickbooks") == before
    assert scalar(accounting_warehouse, "SELECT posting_status FROM acct.actuals_journal WHERE doc_number = :d", d=doc) == "posted"


@pytest.mark.parametrize("system", ["quickbooks", "xero"])
def test_with_budgets_in_accounting_the_months_budgets_reach_the_psa_warehouse_and_nothing_is_sent(
    system, dagbag, sandbox, accounting_warehouse, psa_warehouse, monkeypatch
):
    from backbone_sandbox.psa_billing import project_budgets

    monkeypatch.setenv("BACKBONE_ACCOUNTING_CONN_ID", CONNECTIONS[system])
    monkeypatch.setenv("BACKBONE_BUDGET_SOURCE", "accounting")
    state = sandbox.state
    if system == "quickbooks":  # the month-end tests' October time, restored when this worker built it
        october_time_exported(dagbag, sandbox, psa_warehouse, accounting_warehouse)
    else:
        export_october_weeks(dagbag, sandbox)
    run(dagbag, FLOW, ANCHOR)

    seeded = {project: months["2026-10"] for (project, _), months in project_budgets(state.psa_time, ANCHOR).items()}
    loaded = dict(rows(psa_warehouse, "SELECT project_id, amount FROM psa.project_budget WHERE period = '2026-10'"))
    assert loaded == seeded and len(seeded) > 4  # November's budgets are not October's
    assert scalar(psa_warehouse, "SELECT count(DISTINCT source) FROM psa.project_budget") == 1
    assert scalar(accounting_warehouse, "SELECT count(*) FROM acct.actuals_journal") == 0
    assert journals_in_accounting(state, system) == {}
    assert scalar(accounting_warehouse, "SELECT bool_and(reconciled) FROM acct.project_actual WHERE period = '2026-10'")
    record = rows(accounting_warehouse, "SELECT status, details FROM ops.flow_run WHERE flow = :f", f=FLOW)[0]
    assert record.status == "success" and record.details["budgets_read"] == len(seeded)

    run(dagbag, FLOW, ANCHOR)  # again: the same budgets, still nothing sent
    assert dict(rows(psa_warehouse, "SELECT project_id, amount FROM psa.project_budget WHERE period = '2026-10'")) == seeded
