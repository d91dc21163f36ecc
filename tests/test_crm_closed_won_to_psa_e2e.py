"""The closed-won flow run for real by Airflow against the sandbox and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from sqlalchemy import text

from tests.conftest import ANCHOR
from tests.helpers import rows, run_dag, scalar

pytestmark = pytest.mark.e2e
FLOW = "crm_closed_won_to_psa"


def checksum(engine) -> str:
    """One hash over every business row of the PSA warehouse and the quarantine."""
    query = """
        SELECT md5(string_agg(t, '|' ORDER BY t)) FROM (
            SELECT 'c' || row(c.*)::text AS t FROM psa.client c
            UNION ALL SELECT 'p' || row(p.*)::text FROM psa.project p
            UNION ALL SELECT 'k' || row(k.*)::text FROM psa.contact k
            UNION ALL SELECT 'l' || row(l.*)::text FROM psa.project_contact l
            UNION ALL SELECT 'q' || row(q.run_id, q.entity, q.source_key, q.rule, q.reason, q.raw)::text FROM ops.quarantine q
        ) rows
    """
    with engine.connect() as connection:
        return connection.execute(text(query)).scalar_one()


def test_closed_won_deals_become_psa_projects_and_reruns_change_nothing(dagbag, sandbox, psa_warehouse):
    state = sandbox.state
    bad_deals = dict(state.crm.bad_deals)

    dag_run = run_dag(dagbag, FLOW, ANCHOR)
    assert dag_run.state == "success"

    record = psa_warehouse.connect().execute(text("SELECT * FROM ops.flow_run WHERE flow = :f"), {"f": FLOW}).one()._mapping
    won = [d for d in state.crm.objects["deals"].values() if d["properties"]["dealstage"] in ("closedwon", "renewal_signed")]
    assert record["status"] == "success"
    assert record["extracted"] == len(won)
    assert record["extracted"] == record["loaded"] + record["quarantined"]
    assert record["quarantined"] == len(bad_deals)
    assert record["written_back"] == record["loaded"]

    quarantined = dict(psa_warehouse.connect().execute(text("SELECT source_key, rule FROM ops.quarantine WHERE entity = 'deal'")).all())
    assert quarantined == bad_deals
    reasons = scalar(psa_warehouse, "SELECT count(*) FROM ops.quarantine WHERE reason = '' OR raw IS NULL")
    assert reasons == 0
    bad_contacts = dict(psa_warehouse.connect().execute(text("SELECT source_key, rule FROM ops.quarantine WHERE entity = 'contact'")).all())
    assert bad_contacts == state.crm.bad_contacts

    assert scalar(psa_warehouse, "SELECT count(*) FROM psa.project") == record["loaded"]
    assert scalar(psa_warehouse, "SELECT count(*) FROM psa.project WHERE psa_project_id IS NULL") == 0
    assert len(state.psa.projects) == record["loaded"]
    # Hostile and non-Latin names load unharmed.
    names = {r[0] for r in psa_warehouse.connect().execute(text("SELECT client_name FROM psa.client")).all()}
    assert "Robert'); DROP TABLE psa.client;-- Consulting" in names
    assert "株式会社テスト・ソリューションズ" in names
    # The PSA link is on the CRM deal.
    deal_id, project_id = psa_warehouse.connect().execute(text("SELECT crm_deal_id, psa_project_id FROM psa.project LIMIT 1")).one()
    assert state.crm.objects["deals"][deal_id]["properties"]["psa_project_id"] == project_id
    assert scalar(psa_warehouse, "SELECT count(*) FROM ops.staged_record") == 0

    before = checksum(psa_warehouse)
    creates, crm_writes = state.psa.creates, state.crm_writes
    assert run_dag(dagbag, FLOW, ANCHOR).state == "success"
    assert run_dag(dagbag, FLOW, ANCHOR).state == "success"
    assert checksum(psa_warehouse) == before
    assert (state.psa.creates, state.crm_writes) == (creates, crm_writes)
    assert scalar(psa_warehouse, "SELECT count(*) FROM ops.flow_run") == 1


def test_deal_edited_after_load_updates_its_project(dagbag, sandbox, psa_warehouse):
    state = sandbox.state
    assert run_dag(dagbag, FLOW, ANCHOR).state == "success"
    deal_id = psa_warehouse.connect().execute(text("SELECT crm_deal_id FROM psa.project ORDER BY crm_deal_id LIMIT 1")).scalar_one()
    project_count = len(state.psa.projects)

    edited_at = (ANCHOR + timedelta(minutes=10)).isoformat()
    response = requests.patch(
        f"{sandbox.url}/_sandbox/crm/deals/{deal_id}",
        params={"at": edited_at},
        json={"amount": "123456.78", "dealname": "Renamed project"},
        timeout=10,
    )
    response.raise_for_status()

    assert run_dag(dagbag, FLOW, ANCHOR + timedelta(minutes=30)).state == "success"
    row = (
        psa_warehouse.connect()
        .execute(text("SELECT contract_value, project_name, psa_project_id FROM psa.project WHERE crm_deal_id = :d"), {"d": deal_id})
        .one()
    )
    assert str(row.contract_value) == "123456.78"
    assert row.project_name == "Renamed project"
    assert len(state.psa.projects) == project_count
    psa_project = state.psa.projects[row.psa_project_id]
    assert psa_project["name"] == "Renamed project"
    assert psa_project["budget"] == "123456.78"
    assert scalar(psa_warehouse, "SELECT count(*) FROM psa.project WHERE crm_deal_id = :d", d=deal_id) == 1
    second = (
        psa_warehouse.connect()
        .execute(text("SELECT extracted, loaded, quarantined, details FROM ops.flow_run ORDER BY interval_end DESC LIMIT 1"))
        .one()
    )
    rechecked = second.details["held_rechecked"]  # the deals held for a value the dictionary did not allow, judged again
    assert rechecked == sum(1 for rule in state.crm.bad_deals.values() if rule.endswith(".allowed_values"))
    assert second.extracted == second.loaded + second.quarantined == 1 + rechecked
    assert second.loaded == 1


def test_a_deal_held_for_a_value_the_dictionary_did_not_allow_loads_once_the_dictionary_allows_it(
    dagbag, sandbox, psa_warehouse, monkeypatch, tmp_path
):
    import shutil

    import yaml

    from backbone import data_dictionary, validation

    state = sandbox.state
    yen = next(deal for deal, rule in state.crm.bad_deals.items() if rule == "project.currency.allowed_values")
    state.crm.objects["deals"][yen]["properties"]["deal_currency_code"] = "JPY"  # as seeded: a currency we do not bill in yet
    assert run_dag(dagbag, FLOW, ANCHOR).state == "success"
    assert scalar(psa_warehouse, "SELECT count(*) FROM psa.project WHERE crm_deal_id = :d", d=yen) == 0

    dictionary = tmp_path / "dictionary"  # a data engineer adds the currency to the data dictionary
    shutil.copytree(data_dictionary.DICTIONARY_DIR, dictionary)
    project = yaml.safe_load((dictionary / "project.yaml").read_text())
    project["fields"]["currency"]["allowed_values"].append("JPY")
    (dictionary / "project.yaml").write_text(yaml.safe_dump(project, allow_unicode=True))
    monkeypatch.setattr(data_dictionary, "DICTIONARY_DIR", dictionary)
    for cached in (data_dictionary.load_entity, validation._suite, validation._batch_definition):
        cached.cache_clear()
    try:
        fixing_run = run_dag(dagbag, FLOW, ANCHOR + timedelta(minutes=30), retries=0)  # the deal itself did not change in the CRM
        assert fixing_run.state == "success"
        assert scalar(psa_warehouse, "SELECT count(*) FROM psa.project WHERE crm_deal_id = :d", d=yen) == 1
        assert state.crm.objects["deals"][yen]["properties"]["psa_project_id"]  # linked back in the CRM
        resolved_by = rows(psa_warehouse, "SELECT resolved_by_run FROM ops.quarantine WHERE entity = 'deal' AND source_key = :d", d=yen)
        fixing_interval = scalar(psa_warehouse, "SELECT run_id FROM ops.flow_run ORDER BY interval_end DESC LIMIT 1")
        assert [r.resolved_by_run for r in resolved_by] == [fixing_interval]
        creates = state.psa.creates
        assert run_dag(dagbag, FLOW, ANCHOR + timedelta(minutes=60)).state == "success"
        assert state.psa.creates == creates  # once
    finally:
        monkeypatch.undo()
        for cached in (data_dictionary.load_entity, validation._suite, validation._batch_definition):
            cached.cache_clear()


def test_a_failing_vendor_fails_the_run_and_records_it(dagbag, sandbox, psa_warehouse, monkeypatch):
    monkeypatch.setenv("BACKBONE_HTTP_MAX_ATTEMPTS", "2")
    from backbone_sandbox.faults import FaultRule

    sandbox.state.faults.arm([FaultRule(kind="status", status=503, path_contains="/search", times=100)])
    dag_run = run_dag(dagbag, FLOW, ANCHOR, retries=0)
    assert dag_run.state == "failed"
    status = scalar(psa_warehouse, "SELECT status FROM ops.flow_run WHERE flow = :f", f=FLOW)
    assert status == "failed"
    assert scalar(psa_warehouse, "SELECT count(*) FROM psa.project") == 0
    assert len(sandbox.state.psa.projects) == 0
