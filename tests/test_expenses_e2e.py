"""The Friday expense export run for real by Airflow, against the sandbox and PostgreSQL, on both
accounting systems: QuickBooks (Bill / Purchase) and Xero (ACCPAY invoice / SPEND bank transaction).

Each approved expense version is posted once; a rerun posts nothing; an edit after export rewrites
the record the first version made; a change from company card to reimbursable replaces it with a
bill; a withdrawal removes it; every planted bad expense is an exception for its rule and nothing else.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tests.helpers import rows, run_dag, scalar

pytestmark = pytest.mark.e2e
FLOW = "expenses_weekly_to_accounting"
CONNECTIONS = {"quickbooks": "quickbooks_default", "xero": "xero_default"}
OUTBOX_CHECKSUM = """
    SELECT md5(string_agg(row(expense_id, expense_version, request_id, posting_status, accounting_id, attempts)::text, '|'
                          ORDER BY expense_id, expense_version))
    FROM acct.expense_export
"""


def run(dagbag, logical_date) -> None:
    dag_run = run_dag(dagbag, FLOW, logical_date, retries=0)
    assert dag_run.state == "success", f"{FLOW} {logical_date}: {dag_run.state}"


def held_by_accounting(state, system: str) -> dict[str, tuple[str, Decimal]]:
    """Doc number → (kind, amount) of every live expense record the accounting sandbox holds (a
    document number held twice fails: that would be an expense posted twice)."""
    held: list[tuple[str, tuple[str, Decimal]]] = []
    if system == "quickbooks":
        for entity, kind in (("Bill", "bill"), ("Purchase", "purchase")):
            for record in state.qbo.entities[entity].values():
                held.append((record["DocNumber"], (kind, Decimal(str(record["Line"][0]["Amount"])))))
    else:
        for record in state.xero.records["BankTransactions"].values():
            if record["Status"] != "DELETED":
                held.append((record["Reference"], ("purchase", Decimal(str(record["Total"])))))
        for record in state.xero.records["Invoices"].values():
            if record.get("Type") == "ACCPAY" and record["Status"] != "VOIDED":
                held.append((record["InvoiceNumber"], ("bill", Decimal(str(record["Total"])))))
    docs = [doc for doc, _ in held]
    assert len(docs) == len(set(docs)), f"posted twice: {sorted(d for d in docs if docs.count(d) > 1)}"
    return dict(held)


def latest_live_lines(accounting_warehouse) -> dict[str, tuple[str, Decimal]]:
    found = rows(
        accounting_warehouse,
        """SELECT DISTINCT ON (expense_id) doc_number, kind, amount, action FROM acct.expense_export
           WHERE posting_status = 'posted' ORDER BY expense_id, expense_version DESC""",
    )
    return {doc: (kind, amount) for doc, kind, amount, action in found if action != "delete"}


@pytest.mark.parametrize("system", ["quickbooks", "xero"])
def test_expenses_post_once_and_follow_edits_and_withdrawals(system, dagbag, sandbox, accounting_warehouse, monkeypatch):
    monkeypatch.setenv("BACKBONE_ACCOUNTING_CONN_ID", CONNECTIONS[system])
    state = sandbox.state
    weeks = state.psa_time.week_ends()
    for week_end in weeks:
        run(dagbag, week_end)

    # Every approved expense is an outbox line posted once, or an exception for its planted rule.
    approved = {e["id"]: e for e in state.psa_expenses.entries if e["approval_status"] == "approved"}
    posted = {r[0] for r in rows(accounting_warehouse, "SELECT expense_id FROM acct.expense_export WHERE posting_status = 'posted'")}
    exceptions: dict[str, set[str]] = {}
    for key, rule, reason in rows(accounting_warehouse, "SELECT source_key, rule, reason FROM ops.quarantine WHERE flow = :f", f=FLOW):
        assert reason
        exceptions.setdefault(key.split(":v")[0], set()).add(rule)
    assert {e: rules for e, rules in exceptions.items()} == {e: {rule} for e, rule in state.psa_expenses.bad_expenses.items()}
    assert posted == set(approved) - set(exceptions)
    assert held_by_accounting(state, system) == latest_live_lines(accounting_warehouse)
    kinds = dict(rows(accounting_warehouse, "SELECT kind, count(*) FROM acct.expense_export GROUP BY 1"))
    assert kinds["bill"] > 0 and kinds["purchase"] > 0
    billable = rows(accounting_warehouse, "SELECT billable, customer_ref_id IS NOT NULL FROM acct.expense_export")
    assert all(b == has_customer for b, has_customer in billable)

    # A rerun of every week posts nothing new and leaves the outbox as it was.
    outbox = scalar(accounting_warehouse, OUTBOX_CHECKSUM)
    creates = dict(state.qbo.creates if system == "quickbooks" else state.xero.creates)
    for week_end in weeks:
        run(dagbag, week_end)
    assert scalar(accounting_warehouse, OUTBOX_CHECKSUM) == outbox
    assert dict(state.qbo.creates if system == "quickbooks" else state.xero.creates) == creates

    # After export: one bill edited, one purchase turned reimbursable, one bill withdrawn.
    bill_id, other_bill_id = sorted(e for e in posted if approved[e]["reimbursable"] and approved[e]["receipt"])[:2]  # 77.70 needs one
    purchase_id = min(e for e in posted if not approved[e]["reimbursable"])
    next_week = weeks[-1] + timedelta(days=7)
    when = next_week - timedelta(days=2)
    state.psa_expenses.edit(bill_id, {"amount": "77.70"}, approved_at=when)
    state.psa_expenses.edit(purchase_id, {"reimbursable": True}, approved_at=when)
    state.psa_expenses.withdraw(other_bill_id, at=when)
    run(dagbag, next_week)

    lines = {
        (r.expense_id, r.action): r
        for r in rows(accounting_warehouse, "SELECT * FROM acct.expense_export WHERE interval_end = :e", e=next_week)
    }
    assert lines[(bill_id, "update")].posting_status == "posted"
    assert lines[(purchase_id, "update")].kind == "bill"
    assert lines[(other_bill_id, "delete")].amount < 0
    held = held_by_accounting(state, system)
    assert held == latest_live_lines(accounting_warehouse)
    assert held[lines[(bill_id, "update")].doc_number] == ("bill", Decimal("77.70"))
    assert not any(doc.startswith(f"{other_bill_id}v") for doc in held)
    assert held[lines[(purchase_id, "update")].doc_number][0] == "bill"
    assert not any(doc.startswith(f"{purchase_id}v") and kind == "purchase" for doc, (kind, _) in held.items())
    record = rows(
        accounting_warehouse, "SELECT status, written_back FROM ops.flow_run WHERE flow = :f AND interval_end = :e", f=FLOW, e=next_week
    )
    assert record[0].status == "success" and record[0].written_back == 3


def test_a_missing_supplier_record_heals_once_finance_adds_it(dagbag, sandbox, accounting_warehouse):
    """The employee with no supplier record is an exception until QuickBooks has a vendor with
    their e-mail; the next run posts the expense then, without a new PSA version."""
    state = sandbox.state
    weeks = state.psa_time.week_ends()
    run(dagbag, weeks[-1])
    stranger_id = next(e for e, rule in state.psa_expenses.bad_expenses.items() if rule == "expense.payee.mapped")
    expense = next(e for e in state.psa_expenses.entries if e["id"] == stranger_id)
    assert scalar(accounting_warehouse, "SELECT count(*) FROM acct.expense_export WHERE expense_id = :e", e=stranger_id) == 0

    state.qbo.add(
        "Vendor",
        {"DisplayName": f"{expense['user']['name']} (expenses)", "Active": True, "PrimaryEmailAddr": {"Address": expense["user"]["email"]}},
        at=datetime.now(UTC),
    )
    run(dagbag, weeks[-1] + timedelta(days=7))
    assert scalar(accounting_warehouse, "SELECT posting_status FROM acct.expense_export WHERE expense_id = :e", e=stranger_id) == "posted"
    assert (
        scalar(
            accounting_warehouse,
            "SELECT count(*) FROM ops.quarantine WHERE flow = :f AND source_key LIKE :k AND resolved_at IS NULL",
            f=FLOW,
            k=f"{stranger_id}:v%",
        )
        == 0
    )


@pytest.mark.parametrize("system", ["quickbooks", "xero"])
def test_vendor_faults_and_a_lost_answer_never_post_an_expense_twice(system, dagbag, sandbox, accounting_warehouse, monkeypatch):
    """Throttling, server errors, answers slower than the timeout (after the vendor did the work) and
    dropped connections on every write; then a result lost in a crash after the vendor's idempotency
    memory expired: the line tried before is looked up by its document number and adopted."""
    from backbone_sandbox.faults import FaultRule

    monkeypatch.setenv("BACKBONE_ACCOUNTING_CONN_ID", CONNECTIONS[system])
    monkeypatch.setenv("BACKBONE_HTTP_TIMEOUT_SECONDS", "1")
    state = sandbox.state
    writes = "/quickbooks/v3/company/" if system == "quickbooks" else "/xero/api.xro/2.0/"
    method = "POST" if system == "quickbooks" else "PUT"
    state.faults.arm(
        [
            FaultRule(kind="status", status=429, retry_after=1, times=1, path_contains=writes, method=method),
            FaultRule(kind="status", status=503, times=1, path_contains=writes, method=method),
            FaultRule(kind="slow_response", delay_seconds=2.5, times=1, path_contains=writes, method=method),
            FaultRule(kind="reset", times=1, path_contains=writes, method=method),
            FaultRule(kind="status", status=503, times=1, path_contains="/psa/api/v1/expenses"),
        ]
    )
    week = state.psa_time.week_ends()[-1]
    run(dagbag, week)
    assert sum(state.faults.fired.values()) >= 4
    assert held_by_accounting(state, system) == latest_live_lines(accounting_warehouse)

    # A result lost in a crash, past the vendor's idempotency memory: pending again, tried once.
    doc = scalar(accounting_warehouse, "SELECT min(doc_number) FROM acct.expense_export WHERE posting_status = 'posted'")
    with accounting_warehouse.begin() as connection:
        connection.exec_driver_sql(
            "UPDATE acct.expense_export SET posting_status = 'pending', accounting_id = NULL, attempts = 1 WHERE doc_number = %(d)s",
            {"d": doc},
        )
    if system == "quickbooks":
        state.qbo.request_results.clear()
    else:
        state.xero.idempotent.clear()
    run(dagbag, week)
    assert held_by_accounting(state, system) == latest_live_lines(accounting_warehouse)
    assert scalar(accounting_warehouse, "SELECT posting_status FROM acct.expense_export WHERE doc_number = :d", d=doc) == "posted"
