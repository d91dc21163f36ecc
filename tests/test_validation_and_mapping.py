"""Suites generated from the data dictionary, and bad CRM input turned into reasons, not crashes."""

from __future__ import annotations

import copy
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backbone.data_dictionary import entity_names, load_entity
from backbone.flows.closed_won import _judge_chunk, map_bundle
from backbone.validation import _expectation_specs, build_suite, validate_rows
from tests.test_reliability_properties import ANY_VALUE


def good_bundle(deal_id: str = "3000000") -> dict:
    return {
        "deal": {
            "id": deal_id,
            "properties": {
                "dealname": "ERP rollout",
                "pipeline": "default",
                "dealstage": "closedwon",
                "amount": "12000.00",
                "deal_currency_code": "EUR",
                "closedate": "2026-11-02T10:00:00.000Z",
                "hs_lastmodifieddate": "2026-11-02T11:45:00.000Z",
                "estimated_hours": "100",
                "billing_type": "time_and_materials",
                "contract_start_date": "2026-12-01",
                "contract_end_date": "2027-03-01",
                "payment_terms_days": "30",
                "description": "Scope",
            },
        },
        "company": {
            "id": "1000000",
            "properties": {"name": "Acme BV", "domain": "acme.example", "country": "Netherlands", "industry": "RETAIL"},
        },
        "contacts": [
            {"id": "2000000", "properties": {"firstname": "Ann", "lastname": "Lee", "email": "ann@acme.example", "jobtitle": "CFO"}}
        ],
        "stage_label": "Closed Won",
    }


def judge(bundle: dict) -> tuple[str, set[str]]:
    verdicts, quarantine, _ = _judge_chunk([{"source_key": bundle["deal"]["id"], "payload": bundle}])
    return verdicts[0][1], {q.rule for q in quarantine if q.entity == "deal"}


def test_every_entity_gets_a_generated_suite_covering_each_rule():
    for name in entity_names():
        entity = load_entity(name)
        suite = build_suite(name)
        assert len(suite.expectations) == len(_expectation_specs(entity))
        required = [f for f in entity.fields.values() if f.required]
        rules = {e.meta["rule"] for e in suite.expectations}
        assert {f"{name}.{f.name}.required" for f in required} <= rules


def test_a_good_deal_is_valid():
    assert judge(good_bundle()) == ("valid", set())


@pytest.mark.parametrize(
    ("damage", "rule"),
    [
        (lambda b: b["deal"]["properties"].update(amount="twelve thousand"), "project.contract_value.type"),
        (lambda b: b["deal"]["properties"].update(amount="-5"), "project.contract_value.range"),
        (lambda b: b.update(company=None), "project.crm_company_id.required"),
        (lambda b: b["company"]["properties"].update(name=""), "client.client_name.required"),
        (lambda b: b.update(stage_label=None), "project.deal_stage.known"),
        (lambda b: b["deal"]["properties"].update(deal_currency_code="DOGE"), "project.currency.allowed_values"),
        (lambda b: b["deal"]["properties"].update(closedate="yesterday"), "project.close_date.type"),
        (lambda b: b["deal"]["properties"].update(dealname="x" * 300), "project.project_name.max_length"),
        (lambda b: b["deal"]["properties"].pop("billing_type"), "project.billing_type.required"),
    ],
)
def test_bad_deals_are_quarantined_with_the_rule_they_broke(damage, rule):
    bundle = copy.deepcopy(good_bundle())
    damage(bundle)
    status, rules = judge(bundle)
    assert status == "quarantined"
    assert rule in rules


@pytest.mark.parametrize("name", ["Robert'); DROP TABLE psa.client;--", "株式会社テスト", "Zürich Ölwerke 🚀", "Ο Πελάτης"])
def test_hostile_and_non_latin_names_are_valid(name):
    bundle = good_bundle()
    bundle["company"]["properties"]["name"] = name
    bundle["deal"]["properties"]["dealname"] = name
    assert judge(bundle) == ("valid", set())


def test_a_bad_contact_is_quarantined_but_its_deal_loads():
    bundle = good_bundle()
    bundle["contacts"][0]["properties"]["email"] = "not-an-email"
    verdicts, quarantine, stats = _judge_chunk([{"source_key": "3000000", "payload": bundle}])
    assert verdicts[0][1] == "valid" and verdicts[0][2]["contacts"] == []
    assert [(q.entity, q.rule) for q in quarantine] == [("contact", "contact.email.type")]


def test_mapping_never_crashes_on_missing_pieces():
    for bundle in ({}, {"deal": {"id": "1"}}, {"deal": {"id": "1", "properties": None}, "contacts": None}):
        client, contacts, project, issues = map_bundle(bundle)
        assert client is None and contacts == [] and project["crm_deal_id"] == "1" or project["crm_deal_id"] == "None"


def test_duplicate_keys_in_one_batch_are_flagged():
    rows = [{"crm_company_id": "1", "client_name": "A"}, {"crm_company_id": "1", "client_name": "B"}]
    outcome = validate_rows("client", rows)
    assert set(outcome.failures) == {0, 1}
    assert outcome.failed_rules == {"client.crm_company_id.unique": 2}


@st.composite
def repeating_batches(draw) -> tuple[str, list[list[dict]]]:
    """An entity and a few batches of its rows whose values come from a small pool per field (so
    most fields repeat, within a batch and across batches, as real runs do), the pools holding
    hostile values of any type."""
    entity = draw(st.sampled_from(sorted(entity_names())))
    fields = load_entity(entity).field_names
    pools = {name: draw(st.lists(ANY_VALUE, min_size=1, max_size=4)) for name in fields}

    def row() -> dict:
        return {name: draw(st.sampled_from(pool)) for name, pool in pools.items() if draw(st.integers(0, 9))}

    batches = [[row() for _ in range(draw(st.integers(min_value=6, max_value=30)))] for _ in range(draw(st.integers(1, 3)))]
    return entity, batches


@settings(
    max_examples=int(os.environ.get("BACKBONE_PROPERTY_EXAMPLES", "12")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(repeating_batches())
def test_validating_distinct_values_gives_the_verdicts_of_validating_every_row(batch):
    """The compact path (each repeating field judged on its distinct values, a value judged before
    in the process taken from memory) fails exactly the rows, for exactly the rules, in the same
    order, that checking every row does."""
    entity, batches = batch
    for rows in batches:
        every_row, compact = validate_rows(entity, rows, compact=False), validate_rows(entity, rows, compact=True)
        assert compact.failures == every_row.failures
        assert compact.failed_rules == every_row.failed_rules
