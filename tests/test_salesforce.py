"""SalesforceHook against the sandbox: OAuth, SOQL windows with queryMore, contact roles, limits."""

from __future__ import annotations

from datetime import timedelta

import pytest

from backbone.flows.closed_won import map_bundle
from backbone.hooks import salesforce as salesforce_module
from backbone.hooks.salesforce import SalesforceHook, parse_api_usage, soql_string
from backbone.http import FatalApiError, QuotaExhaustedError
from backbone_sandbox import soql
from backbone_sandbox.faults import FaultRule
from backbone_sandbox.salesforce import number_of, salesforce_id
from tests.conftest import ANCHOR


@pytest.fixture
def hook(sandbox) -> SalesforceHook:
    return SalesforceHook()


def won_deals(state) -> set[str]:
    stages = {"closedwon", "renewal_signed"}
    return {salesforce_id("Opportunity", int(i)) for i, d in state.crm.objects["deals"].items() if d["properties"]["dealstage"] in stages}


def test_windows_and_query_more_return_every_won_deal_once(hook, sandbox, monkeypatch):
    # Small windows and pages, and many deals on the same second: the (SystemModstamp, Id) keyset must not skip or repeat.
    for deal in list(sandbox.state.crm.objects["deals"].values())[:40]:
        deal["properties"]["hs_lastmodifieddate"] = (ANCHOR - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    monkeypatch.setattr(salesforce_module, "WINDOW_SIZE", 7)
    hook.__dict__["extras"] = {**hook.extras, "batch_size": 3}
    pages = list(hook.won_deal_pages(ANCHOR - timedelta(minutes=30), ANCHOR))
    ids = [b["deal"]["Id"] for page in pages for b in page]
    assert len(ids) == len(set(ids)) and set(ids) == won_deals(sandbox.state)
    assert max(len(p) for p in pages) <= 3


def test_a_bundle_carries_account_contacts_and_the_stage_label(hook, sandbox):
    bundles = [b for page in hook.won_deal_pages(ANCHOR - timedelta(minutes=30), ANCHOR) for b in page]
    by_id = {b["deal"]["Id"]: b for b in bundles}
    good = next(b for b in bundles if b["stage_label"] == "Closed Won" and b["company"] and len(b["contacts"]) == 2)
    client, contacts, project, issues = map_bundle(good)
    assert not issues and client["crm_company_id"] == good["deal"]["AccountId"] and project["crm_deal_id"] == good["deal"]["Id"]
    assert [c["crm_company_id"] for c in contacts] == [client["crm_company_id"]] * 2
    unknown_stage = [deal for deal, rule in sandbox.state.crm.bad_deals.items() if rule == "project.deal_stage.known"]
    assert by_id[salesforce_id("Opportunity", int(unknown_stage[0]))]["stage_label"] is None


def test_stage_and_links_are_written_back_with_a_patch(hook, sandbox):
    deal = sorted(won_deals(sandbox.state))[0]
    hook.update_deal(deal, {"psa_project_id": "PRJ-1", "project_status": "live"})
    assert hook.read_deals([deal])[deal]["project_status"] == "live"
    assert sandbox.state.crm.objects["deals"][str(number_of(deal))]["properties"]["psa_project_status"] == "live"


def test_an_expired_session_is_renewed_once(hook, sandbox):
    hook.stage_labels()
    hook._token = ("00D000000000001!expired", hook._token[1])
    assert "Closed Won" in hook.stage_labels().values()


def test_the_org_api_limit_is_respected(hook, sandbox):
    hook.__dict__["extras"] = {**hook.extras, "max_api_usage": 0.00001}
    hook.stage_labels()  # the first answer reports 1 call of 15,000 used: already past this ceiling
    calls = sandbox.state.salesforce_calls
    with pytest.raises(QuotaExhaustedError, match="API usage"):
        hook.stage_labels()
    assert sandbox.state.salesforce_calls == calls  # stopped before sending
    assert parse_api_usage("api-usage=18/15000") == (18, 15000)


def test_bad_credentials_and_bad_queries_fail_at_once(sandbox, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_SALESFORCE_DEFAULT",
        '{"conn_type": "salesforce", "host": "' + sandbox.url + '/salesforce", "login": "x", "password": "y"}',
    )
    with pytest.raises(FatalApiError, match="refused the OAuth grant"):
        SalesforceHook().stage_labels()
    monkeypatch.undo()
    with pytest.raises(FatalApiError, match="MALFORMED_QUERY"):
        list(SalesforceHook().query("SELECT Id FROM Opportunity WHERE"))


def test_server_errors_are_retried(hook, sandbox):
    sandbox.state.faults.arm([FaultRule(kind="status", status=503, path_contains="/query", times=2)])
    assert hook.stage_labels()
    assert sandbox.state.faults.fired["status"] == 2


def test_soql_subset():
    query = soql.parse(
        "SELECT Id, Account.Name FROM Opportunity WHERE IsWon = true AND (Amount > 10 OR Id IN ('a', 'b')) ORDER BY SystemModstamp ASC, "
        "Id LIMIT 5"
    )
    records = [
        {"Id": "a", "IsWon": True, "Amount": 1.0},
        {"Id": "c", "IsWon": True, "Amount": 11.0},
        {"Id": "d", "IsWon": False, "Amount": 99.0},
    ]
    assert [r["Id"] for r in soql.run(query, records)] == ["a", "c"]
    assert soql_string("O'Brien \\ Co") == "'O\\'Brien \\\\ Co'"
    assert soql.parse("SELECT Id FROM Account WHERE Name = " + soql_string("O'Brien")).where == ("cmp", "Name", "=", "O'Brien")
    with pytest.raises(soql.SoqlError):
        soql.parse("SELECT FROM Opportunity")
    assert number_of(salesforce_id("Opportunity", 3_000_017)) == 3_000_017 and len(salesforce_id("Account", 1)) == 18
