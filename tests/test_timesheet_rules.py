"""Timesheet mapping and rules on bad input, without Airflow: every bad entry gets a reason."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backbone.accounting_mapping import AccountingReferences, normalise
from backbone.flows.timesheets import CONTENT_HASH_FIELDS, content_hash, entry_key, judge_chunk, map_entry
from backbone.hooks.quickbooks import time_activity_body

REFS = AccountingReferences.from_rows(
    [
        {"entity": "Customer", "match_key": normalise("Acme B.V."), "ref_id": "11", "name": "Acme B.V.", "extra": {}},
        {"entity": "Employee", "match_key": "ann@people.example", "ref_id": "21", "name": "Ann Smith", "extra": {}},
        {"entity": "Vendor", "match_key": "cy@people.example", "ref_id": "31", "name": "Cy Contractor", "extra": {}},
        {
            "entity": "Item",
            "match_key": normalise("Consulting Services"),
            "ref_id": "41",
            "name": "Consulting Services",
            "extra": {"income_account": "4000 Consulting Revenue"},
        },
        {
            "entity": "Item",
            "match_key": normalise("Software Development"),
            "ref_id": "42",
            "name": "Software Development",
            "extra": {"income_account": "9999 Wrong Account"},
        },
    ]
)
GOOD = {
    "id": "TE-1",
    "version": 1,
    "spent_date": "2026-10-26",
    "hours": "7.75",
    "billable": True,
    "billable_rate": "110.00",
    "currency": "EUR",
    "approval_status": "approved",
    "approved_at": "2026-10-30T14:00:00.000Z",
    "updated_at": "2026-10-30T13:00:00.000Z",
    "notes": "Workshop",
    "user": {"id": "EMP-1", "name": "Ann Smith", "email": "ann@people.example", "type": "employee"},
    "client": {"id": "CL-1", "name": "Acme B.V."},
    "project": {"id": "PJ-1", "name": "Acme — Data platform"},
    "task": {"id": "TK-CONSULT", "name": "Consulting", "billing_code": "CONSULT"},
}


def entry(**changes) -> dict:
    record = copy.deepcopy(GOOD)
    for path, value in changes.items():
        target = record
        *parents, leaf = path.split("__")
        for parent in parents:
            target = target[parent]
        if value is ...:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return record


def judge(*records, status: str = "staged", exported: dict | None = None, overfull=frozenset()):
    chunk = [{"source_key": entry_key(r.get("id"), r.get("version")), "payload": r, "canonical": None, "status": status} for r in records]
    return judge_chunk(chunk, REFS, overfull_days=set(overfull), last_work_date=date(2026, 10, 30), exported_hashes=exported or {})


def rules_of(quarantine) -> set[str]:
    return {q.rule for q in quarantine}


def test_a_good_entry_becomes_an_outbox_line_with_codes_and_amount():
    verdicts, quarantine = judge(entry())
    assert quarantine == []
    line = verdicts[0][2]
    assert (line["customer_ref_id"], line["person_ref_id"], line["name_of"], line["item_ref_id"]) == ("11", "21", "Employee", "41")
    assert (line["gl_account"], line["minutes"], line["amount"], line["billable_status"]) == (
        "4000 Consulting Revenue",
        465,
        "852.50",
        "Billable",
    )
    body = time_activity_body({**line, "work_date": date(2026, 10, 26)})
    assert (body["Hours"], body["Minutes"], body["EmployeeRef"]["value"], body["TxnDate"]) == (7, 45, "21", "2026-10-26")


def test_a_contractor_is_posted_as_a_vendor():
    verdicts, quarantine = judge(entry(user__email="cy@people.example", user__type="contractor"))
    assert quarantine == [] and verdicts[0][2]["name_of"] == "Vendor"
    assert "VendorRef" in time_activity_body({**verdicts[0][2], "work_date": date(2026, 10, 26)})


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"task__billing_code": "SNACKS"}, "time_entry.billing_code.mapped"),
        ({"task__billing_code": "TRAINING"}, "time_entry.billing_code.item_exists"),
        ({"task__billing_code": "DEV"}, "time_entry.billing_code.gl_account"),
        ({"user__email": "nobody@people.example"}, "time_entry.person.mapped"),
        ({"user__type": "contractor"}, "time_entry.person.mapped"),
        ({"client__name": "Unknown Ltd"}, "time_entry.client.mapped"),
        ({"hours": "25"}, "time_entry.hours.range"),
        ({"hours": "-2"}, "time_entry.hours.range"),
        ({"hours": "0"}, "time_entry.hours.range"),
        ({"hours": "seven"}, "time_entry.hours.type"),
        ({"billable_rate": "abc"}, "time_entry.hourly_rate.type"),
        ({"billable_rate": "1e400"}, "time_entry.hourly_rate.type"),
        ({"approval_status": "submitted"}, "time_entry.approval_status.allowed_values"),
        ({"currency": "XBT"}, "time_entry.currency.allowed_values"),
        ({"spent_date": "2026-11-09"}, "time_entry.work_date.not_future"),
        ({"spent_date": "26/10/2026"}, "time_entry.work_date.type"),
        ({"spent_date": "2026-02-30"}, "time_entry.work_date.type"),
        ({"user": ...}, "time_entry.person_id.required"),
        ({"id": "TE 1; DROP TABLE acct.time_export"}, "time_entry.entry_id.pattern"),
        ({"version": "two"}, "time_entry.entry_version.type"),
    ],
)
def test_bad_entries_become_exceptions_with_a_reason(changes, rule):
    verdicts, quarantine = judge(entry(**changes))
    assert verdicts[0][1] == "quarantined"
    assert rule in rules_of(quarantine), rules_of(quarantine)
    assert all(q.reason for q in quarantine)


def test_hostile_and_non_latin_text_is_kept_as_data():
    verdicts, quarantine = judge(entry(notes="'); DROP TABLE acct.time_export;-- 🚀 株式会社", project__name="Zürich Ölwerke ☕"))
    assert quarantine == [] and verdicts[0][2]["project_name"] == "Zürich Ölwerke ☕"


def test_more_than_24_hours_in_a_person_day_is_an_exception():
    _, quarantine = judge(entry(), overfull={("EMP-1", "2026-10-26")})
    assert rules_of(quarantine) == {"time_entry.person_day_hours.max"}


def test_the_same_id_and_version_with_different_content_is_a_conflict():
    verdicts, quarantine = judge(entry(), status="conflict")
    assert verdicts[0][1] == "quarantined" and "time_entry.entry_key.conflict" in rules_of(quarantine)


def test_a_version_already_exported_with_other_content_is_refused():
    exported = {"TE-1:v1": content_hash(map_entry(entry(hours="1")))}
    _, quarantine = judge(entry(), exported=exported)
    assert rules_of(quarantine) == {"time_entry.entry_key.exported_differently"}
    verdicts, quarantine = judge(entry(), exported={"TE-1:v1": content_hash(map_entry(entry()))})
    assert quarantine == [] and verdicts[0][1] == "valid"


def test_non_billable_codes_are_never_billable():
    refs_row = {
        "entity": "Item",
        "match_key": normalise("Travel Time"),
        "ref_id": "45",
        "name": "Travel Time",
        "extra": {"income_account": "6100 Non-billable Travel"},
    }
    REFS.items[refs_row["match_key"]] = AccountingReferences.from_rows([refs_row]).items[refs_row["match_key"]]
    verdicts, quarantine = judge(entry(task__billing_code="TRAVEL", billable=True))
    assert quarantine == [] and verdicts[0][2]["billable_status"] == "NotBillable"


@given(st.dictionaries(st.sampled_from(CONTENT_HASH_FIELDS), st.one_of(st.none(), st.text(), st.integers(), st.floats(), st.booleans())))
def test_content_hash_is_the_sha256_of_json_dumps_of_the_field_texts_as_outbox_lines_hold_it(row):
    """Lines already in the outbox carry hashes of ``json.dumps``; the faster spelling must give the same bytes."""
    written = json.dumps([str(row.get(f)) for f in CONTENT_HASH_FIELDS])
    assert content_hash(row) == hashlib.sha256(written.encode()).hexdigest()


def test_content_hash_of_hostile_text_matches_json_dumps():
    row = {"person_id": 'a"\\\n\x00\u2028é\ud800😀', "hours": Decimal("7.50"), "billable": True}
    assert content_hash(row) == hashlib.sha256(json.dumps([str(row.get(f)) for f in CONTENT_HASH_FIELDS]).encode()).hexdigest()


@pytest.mark.parametrize(
    "changes", [{"user__id": ["EMP-1"]}, {"client__id": ["CL-1"]}, {"client__name": ["Acme B.V."]}, {"user__email": {"a": 1}}]
)
def test_an_id_or_name_sent_as_a_list_or_object_gets_a_verdict_instead_of_stopping_the_chunk(changes):
    """Hostile shapes where text belongs: each entry is judged (the dictionary judges a value by its
    text; the accounting lookups do not remember what they cannot key), and the good entry beside it
    goes out."""
    hostile = entry(**changes, id="TE-2")
    verdicts, quarantine = judge(hostile, entry())
    assert [v[0] for v in verdicts] == ["TE-2:v1", "TE-1:v1"]
    assert verdicts[1][1] == "valid"
    if changes.keys() & {"client__name", "user__email"}:
        assert verdicts[0][1] == "quarantined" and quarantine
