"""Accounting's codes back to the PSA, run for real by Airflow against the sandbox and PostgreSQL:
a renamed item is renamed in the PSA and the export keeps posting to it; a retired item that open
work uses is an exception before Friday's export, and heals when the item is back."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import ANCHOR
from tests.helpers import rows, run_dag, scalar

pytestmark = pytest.mark.e2e
FLOW, TIMESHEETS = "accounting_codes_to_psa", "timesheets_weekly_to_accounting"


def run(dagbag, flow, logical_date) -> None:
    dag_run = run_dag(dagbag, flow, logical_date, retries=0)
    assert dag_run.state == "success", f"{flow} {logical_date}: {dag_run.state}"


def qbo_item(state, name: str) -> dict:
    return next(i for i in state.qbo.entities["Item"].values() if i["Name"] == name)


def test_codes_reach_the_psa_once_and_a_rename_follows(dagbag, sandbox, accounting_warehouse, psa_warehouse):
    state = sandbox.state
    weeks = state.psa_time.week_ends()
    run(dagbag, TIMESHEETS, weeks[-2])  # time posted to the items before accounting renames one
    run(dagbag, FLOW, ANCHOR)
    codes = {c["code"]: c for c in state.psa.billing_code_list().values()}
    consulting = qbo_item(state, "Consulting Services")
    assert codes["CONSULT"]["accounting_item_name"] == "Consulting Services"
    assert codes["CONSULT"]["accounting_item_id"] == consulting["Id"] and codes["CONSULT"]["gl_account"] == "4000 Consulting Revenue"
    assert dict(rows(psa_warehouse, "SELECT billing_code, status FROM psa.billing_code")) == {
        code: "active" for code in ("CONSULT", "DEV", "PM", "TRAINING", "TRAVEL")
    }
    kinds = dict(rows(psa_warehouse, "SELECT kind, count(*) FROM psa.accounting_code WHERE active GROUP BY 1"))
    assert kinds["item"] == len(state.qbo.entities["Item"]) and kinds["gl_account"] > 0 and kinds["tax_code"] > 0
    writes = state.psa.writes
    run(dagbag, FLOW, ANCHOR)  # the same interval again: the PSA is told nothing new
    assert state.psa.writes == writes

    # The run keeps the cross-system audit for the Finance page: the seed's planted inconsistencies.
    findings = {(c, s) for c, s in rows(psa_warehouse, 'SELECT "check", subject FROM psa.audit_finding')}
    assert ("billing_code_unmapped", "SNACKS") in findings
    assert ("client_without_customer", "Acme Corp") in findings and ("billing_code_unmapped", "SUPPORT") in findings
    assert any(check == "person_without_accounting" for check, _ in findings)

    consulting["Name"] = "Consulting"  # renamed in QuickBooks; same Id
    run(dagbag, FLOW, ANCHOR + timedelta(days=1))
    assert state.psa.billing_code_list()["CONSULT"]["accounting_item_name"] == "Consulting"
    status, item_name, detail = rows(
        psa_warehouse, "SELECT status, item_name, detail FROM psa.billing_code WHERE billing_code = 'CONSULT'"
    )[0]
    assert (status, item_name) == ("renamed", "Consulting") and "accounting_mapping.yaml" in detail

    # The last week's consulting time still goes to that item, under its new name: no exception.
    run(dagbag, TIMESHEETS, weeks[-1])
    held = rows(accounting_warehouse, "SELECT rule FROM ops.quarantine WHERE rule = 'time_entry.billing_code.item_exists'")
    assert held == []
    posted = rows(
        accounting_warehouse,
        "SELECT DISTINCT item_ref_id, item_name FROM acct.time_export WHERE billing_code = 'CONSULT' AND interval_end = :e",
        e=weeks[-1],
    )
    assert posted == [(consulting["Id"], "Consulting")]


def test_a_retired_item_in_use_is_an_exception_before_the_export_and_heals(dagbag, sandbox, accounting_warehouse, psa_warehouse):
    state = sandbox.state
    training = qbo_item(state, "Training")
    training["Active"] = False  # made inactive in QuickBooks
    run(dagbag, FLOW, ANCHOR)
    assert state.psa.billing_code_list()["TRAINING"]["active"] is False
    ((rule, reason),) = rows(psa_warehouse, "SELECT rule, reason FROM ops.quarantine WHERE flow = :f AND resolved_at IS NULL", f=FLOW)
    assert rule == "billing_code.item_retired" and "TRAINING" in reason and "time entries approved" in reason
    record = rows(psa_warehouse, "SELECT status, extracted, valid, quarantined FROM ops.flow_run WHERE flow = :f", f=FLOW)[0]
    assert tuple(record) == ("success", 5, 4, 1)

    training["Active"] = True
    run(dagbag, FLOW, ANCHOR + timedelta(days=1))
    assert state.psa.billing_code_list()["TRAINING"]["active"] is True
    assert scalar(psa_warehouse, "SELECT count(*) FROM ops.quarantine WHERE flow = :f AND resolved_at IS NULL", f=FLOW) == 0
