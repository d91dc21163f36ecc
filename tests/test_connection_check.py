"""``backbone check`` against the sandbox: a table per system; a revoked consent named, exit 1."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.db


def check(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, dict[str, str]]]:
    from backbone.__main__ import main

    code = main(["check", "--json"])
    return code, {row["system"]: row for row in json.loads(capsys.readouterr().out)}


def test_every_system_answers_and_the_warehouses_are_current(sandbox, psa_warehouse, accounting_warehouse, capsys):
    code, found = check(capsys)
    assert code == 0, found
    assert set(found) == {
        "CRM (HubSpot)",
        "HR (BambooHR)",
        "PSA (PSA)",
        "accounting (QuickBooks)",
        "billing codes",
        "psa warehouse",
        "accounting warehouse",
        "mapping coverage",
    }
    assert all(row["status"] == "ok" for row in found.values()), found
    assert found["accounting warehouse"]["detail"].startswith("reachable, schema at accounting_")
    assert "rate-limit headroom: daily calls left 6" in found["CRM (HubSpot)"]["detail"]  # X-HubSpot-RateLimit-Daily-Remaining
    assert "not published by the vendor" in found["accounting (QuickBooks)"]["detail"]  # Intuit documents no such headers


def test_a_revoked_consent_and_a_wrong_token_are_named_and_fail_the_check(
    sandbox, psa_warehouse, accounting_warehouse, capsys, monkeypatch
):
    from airflow.models import Variable

    Variable.set("quickbooks_default_refresh_token", "revoked-by-the-user")  # the user disconnected the app in QuickBooks
    monkeypatch.setenv("AIRFLOW_CONN_PSA_DEFAULT", json.dumps({"conn_type": "psa", "host": f"{sandbox.url}/psa", "password": "wrong"}))
    try:
        code, found = check(capsys)
    finally:
        Variable.delete("quickbooks_default_refresh_token")
    assert code == 1
    assert found["accounting (QuickBooks)"]["status"] == "FAILED" and "invalid_grant" in found["accounting (QuickBooks)"]["detail"]
    assert found["PSA (PSA)"]["status"] == "FAILED" and "401" in found["PSA (PSA)"]["detail"]
    assert found["CRM (HubSpot)"]["status"] == "ok"


def test_the_other_vendor_pair_is_checked_through_its_own_hooks(sandbox, psa_warehouse, accounting_warehouse, capsys, monkeypatch):
    monkeypatch.setenv("BACKBONE_CRM_CONN_ID", "salesforce_default")
    monkeypatch.setenv("BACKBONE_ACCOUNTING_CONN_ID", "xero_default")
    code, found = check(capsys)
    assert code == 0, found
    assert found["CRM (Salesforce)"]["status"] == "ok" and found["accounting (Xero)"]["status"] == "ok"
    assert "api-usage=" in found["CRM (Salesforce)"]["detail"]  # Sforce-Limit-Info
    assert found["billing codes"]["status"] == "ok", found["billing codes"]  # Xero items and their sales accounts match
    assert "calls left today" in found["accounting (Xero)"]["detail"] and "this minute" in found["accounting (Xero)"]["detail"]


def test_a_token_without_the_scopes_the_flows_need_fails_the_check_naming_them(
    sandbox, psa_warehouse, accounting_warehouse, capsys, monkeypatch
):
    """Xero grants what the user consented to; a connection made without ``projects`` and
    ``accounting.settings.read`` authenticates fine and then fails on the first time export or item
    read. The check reads the token answer's ``scope`` and names what is missing
    (https://developer.xero.com/documentation/guides/oauth2/scopes/)."""
    monkeypatch.setenv("BACKBONE_ACCOUNTING_CONN_ID", "xero_default")
    monkeypatch.setitem(sandbox.state.xero.token_answer, "scope", "offline_access accounting.transactions accounting.contacts.read")
    code, found = check(capsys)
    xero = found["accounting (Xero)"]
    assert code == 1 and xero["status"] == "FAILED"
    assert "accounting.settings.read, projects" in xero["detail"] and "reconnect" in xero["detail"]


def test_a_billing_code_whose_item_was_renamed_or_moved_in_accounting_is_named_before_the_export(
    sandbox, psa_warehouse, accounting_warehouse, capsys
):
    """Finance renamed the "Project Management" item and moved "Training" to another income account in
    QuickBooks: the check names both codes (a warning: their time would become exceptions, not a
    failed run), so the mapping is fixed before Friday's export holds that time."""
    items = sandbox.state.qbo.entities["Item"]
    for item in items.values():
        if item["Name"] == "Project Management":
            item["Name"] = "PM Services"
        if item["Name"] == "Training":
            item["IncomeAccountRef"] = {**item.get("IncomeAccountRef", {}), "name": "4999 Other Revenue"}
    code, found = check(capsys)
    codes = found["billing codes"]
    assert code == 0 and codes["status"] == "warning"
    assert "PM: no active item 'Project Management'" in codes["detail"]
    assert "TRAINING: item 'Training' posts to '4999 Other Revenue', the mapping says '4030 Training Revenue'" in codes["detail"]
