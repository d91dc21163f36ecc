"""The same business through both vendor pairs: HubSpot + QuickBooks and Salesforce + Xero.

The closed-won, timesheet and month-end flows run for real (``dag.test()``) once per pair, each
time on a fresh sandbox seeded with the same business data, switched only by the Connections the
settings name. The warehouses must end up the same apart from vendor ids; each vendor must have
received what the warehouse says was sent, once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest
from sqlalchemy import text

from tests.conftest import ANCHOR, SANDBOX_PORT, RunningSandbox, start_sandbox
from tests.helpers import rows, run_dag

pytestmark = pytest.mark.e2e
CLOSED_WON, TIMESHEETS, EXPENSES, INVOICES = (
    "crm_closed_won_to_psa",
    "timesheets_weekly_to_accounting",
    "expenses_weekly_to_accounting",
    "invoices_month_end_to_accounting",
)
PAIRS = {"hubspot-quickbooks": ("hubspot_default", "quickbooks_default"), "salesforce-xero": ("salesforce_default", "xero_default")}

# Canonical content of the warehouses, with every vendor id left out.
STATE_QUERIES = {
    "clients": "SELECT client_name, domain, country, industry FROM psa.client ORDER BY 1, 2",
    "contacts": "SELECT first_name, last_name, email, job_title FROM psa.contact ORDER BY 3",
    "projects": "SELECT project_name, deal_stage, scope, estimated_hours, contract_value, currency, billing_type, contract_start_date, "
    "contract_end_date, payment_terms_days, close_date, crm_modified_at FROM psa.project ORDER BY 1, 3, 5, 12",
    "project contacts": "SELECT p.project_name, c.email FROM psa.project_contact pc JOIN psa.project p USING (crm_deal_id) "
    "JOIN psa.contact c USING (crm_contact_id) ORDER BY 1, 2",
    "closed-won exceptions": "SELECT entity, count(DISTINCT source_key) FROM ops.quarantine WHERE flow = 'crm_closed_won_to_psa' "
    "GROUP BY 1 ORDER BY 1",
}
ACCOUNTING_QUERIES = {
    "time export": "SELECT entry_id, entry_version, content_hash, person_id, client_id, project_id, billing_code, work_date, hours, "
    "minutes, hourly_rate, amount, currency, billable_status, posting_status FROM acct.time_export ORDER BY 1, 2",
    "invoices": "SELECT psa_invoice_id, number, kind, posting_status, hold_rule, subtotal, tax_amount, total, currency, "
    "(accounting_id IS NOT NULL) FROM acct.invoice ORDER BY 1",
    "reconciliation": "SELECT psa_invoice_id, check_name, passed FROM acct.reconciliation ORDER BY 1, 2",
    "expense export": "SELECT expense_id, expense_version, kind, doc_number, amount, currency, billable, posting_status "
    "FROM acct.expense_export ORDER BY 1, 2",
    "re-billed expense lines": "SELECT psa_invoice_id, line_id, expense_id, amount FROM acct.invoice_line WHERE kind = 'expense' "
    "ORDER BY 1, 2",
    "exceptions": "SELECT flow, entity, source_key, rule FROM ops.quarantine ORDER BY 1, 2, 3, 4",
    "references matched": "SELECT entity IN ('Employee', 'Vendor', 'User') AS person, count(*) FROM acct.reference GROUP BY 1 ORDER BY 1",
}


def run(dagbag, flow, logical_date):
    dag_run = run_dag(dagbag, flow, logical_date, retries=0)
    assert dag_run.state == "success", f"{flow} {logical_date}: {dag_run.state}"


def run_business(dagbag, sandbox, monkeypatch, pair: str) -> None:
    crm, accounting = PAIRS[pair]
    monkeypatch.setenv("BACKBONE_CRM_CONN_ID", crm)
    monkeypatch.setenv("BACKBONE_ACCOUNTING_CONN_ID", accounting)
    monkeypatch.setenv("BACKBONE_MONTH_END_WAITS_FOR_TIME_EXPORT", "false")  # the wait itself: test_month_end_e2e
    run(dagbag, CLOSED_WON, ANCHOR)
    weeks = sandbox.state.psa_time.week_ends()
    for week_end in weeks:
        run(dagbag, TIMESHEETS, week_end)
    run(dagbag, EXPENSES, weeks[0])
    run(dagbag, EXPENSES, weeks[-1])  # catches up the weeks between
    run(dagbag, INVOICES, ANCHOR)


def snapshot(psa_warehouse, accounting_warehouse) -> dict[str, list[tuple]]:
    state = {name: [tuple(r) for r in rows(psa_warehouse, query)] for name, query in STATE_QUERIES.items()}
    state |= {name: [tuple(r) for r in rows(accounting_warehouse, query)] for name, query in ACCOUNTING_QUERIES.items()}
    return state


def empty(psa_warehouse, accounting_warehouse) -> None:
    with psa_warehouse.begin() as connection:
        connection.execute(
            text(
                "TRUNCATE psa.client, psa.contact, psa.project, psa.project_contact, psa.time_entry, psa.invoice_status, ops.flow_run, "
                "ops.staged_record, ops.quarantine"
            )
        )
    with accounting_warehouse.begin() as connection:
        connection.execute(
            text(
                "TRUNCATE acct.reference, acct.time_export, acct.expense_export, acct.invoice, acct.invoice_line, acct.reconciliation, "
                "acct.project_actual, acct.actuals_journal, acct.time_day_record, acct.time_day_member, "
                "acct.payment, "
                "ops.flow_run, ops.flow_run_attempt, ops.staged_record, ops.quarantine"
            )
        )


@contextmanager
def business_sandbox(crm: str) -> Iterator[RunningSandbox]:
    running, server, thread = start_sandbox(SANDBOX_PORT, crm=crm)
    try:
        yield running
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_both_vendor_pairs_give_the_same_warehouse_state(dagbag, psa_warehouse, accounting_warehouse, monkeypatch):
    with business_sandbox("hubspot") as hubspot:
        run_business(dagbag, hubspot, monkeypatch, "hubspot-quickbooks")
        expected, qbo = snapshot(psa_warehouse, accounting_warehouse), hubspot.state.qbo
    empty(psa_warehouse, accounting_warehouse)
    with business_sandbox("salesforce") as salesforce:
        run_business(dagbag, salesforce, monkeypatch, "salesforce-xero")
        got = snapshot(psa_warehouse, accounting_warehouse)
        for name in expected:
            assert got[name] == expected[name], name
        assert len(expected["projects"]) == 75 and len(expected["invoices"]) > 10
        check_salesforce_and_xero(dagbag, salesforce, qbo, psa_warehouse, accounting_warehouse, got)


def check_salesforce_and_xero(dagbag, salesforce, qbo, psa_warehouse, accounting_warehouse, got) -> None:
    # Salesforce: every loaded Opportunity got its PSA project link through a PATCH.
    sf_deals = rows(psa_warehouse, "SELECT crm_deal_id, psa_project_id FROM psa.project")
    assert all(len(deal) == 18 and project for deal, project in sf_deals)
    linked = {d for d, obj in salesforce.state.crm.objects["deals"].items() if obj["properties"].get("psa_project_id")}
    assert len(linked) == len(sf_deals)

    # Xero: one time entry per exported PSA entry, hours as sent; invoices and credit notes as posted.
    xero = salesforce.state.xero
    exported = rows(
        accounting_warehouse,
        "SELECT DISTINCT ON (entry_id) entry_id, minutes, accounting_id FROM acct.time_export WHERE posting_status = 'posted' ORDER BY "
        "entry_id, entry_version DESC",
    )
    assert len(xero.time_entries) == len(exported)
    for entry_id, minutes, accounting_id in exported:
        project_id, _, time_entry_id = accounting_id.partition("/")
        assert xero.time_entries[time_entry_id]["duration"] == minutes and xero.time_entries[time_entry_id]["projectId"] == project_id, (
            entry_id
        )
    posted = rows(accounting_warehouse, "SELECT kind, number, accounting_id, total FROM acct.invoice WHERE posting_status = 'posted'")
    sales = {k: v for k, v in xero.records["Invoices"].items() if v.get("Type") != "ACCPAY"}  # ACCPAY: expense bills
    documents = {**sales, **xero.records["CreditNotes"]}
    assert len(documents) == len(posted) == len(qbo.entities["Invoice"]) + len(qbo.entities["CreditMemo"])
    for kind, number, accounting_id, total in posted:
        document = documents[accounting_id]
        assert document.get("InvoiceNumber" if kind == "invoice" else "CreditNoteNumber") == number
        assert abs(Decimal(str(document["Total"])) - total) <= Decimal("0.01"), number
    # Re-billed expenses reached Xero as lines on the re-billed expenses item, at their amounts.
    item_code = next(i["Code"] for i in xero.records["Items"].values() if i["Name"] == "Re-billed Expenses")
    rebilled = rows(
        accounting_warehouse,
        "SELECT i.accounting_id, l.amount FROM acct.invoice_line l JOIN acct.invoice i USING (psa_invoice_id) "
        "WHERE l.kind = 'expense' AND i.posting_status = 'posted'",
    )
    assert rebilled and len(got["re-billed expense lines"]) >= len(rebilled)
    for accounting_id, amount in rebilled:
        assert any(
            line.get("ItemCode") == item_code and abs(Decimal(str(line["LineAmount"])) - amount) <= Decimal("0.01")
            for line in documents[accounting_id]["LineItems"]
        ), accounting_id

    # A rerun of the month sends nothing new to Xero and changes nothing in the warehouse.
    creates = dict(xero.creates)
    run(dagbag, INVOICES, ANCHOR)
    assert dict(xero.creates) == creates
    assert snapshot(psa_warehouse, accounting_warehouse) == got
