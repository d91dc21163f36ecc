"""The cross-system data audit (``backbone audit``): what does not line up across CRM, PSA,
accounting and HR, with fuzzy suggestions, and the accepted matches written into the mapping."""

from __future__ import annotations

from datetime import timedelta

import yaml

from backbone.accounting_mapping import MAPPING_FILE, load_mapping
from backbone.audit import (
    Snapshot,
    accepted_overrides,
    audit,
    comparable_name,
    mapping_diff,
    read_systems,
    summary,
    to_csv_text,
    with_overrides,
)
from tests.conftest import ANCHOR, forget_rotated_tokens


def _snapshot() -> Snapshot:
    mapping = load_mapping()
    return Snapshot(
        crm_companies={"9001": "ACME Corporation", "9002": "Globex B.V.", "9003": "Initech"},
        psa_clients={"CL-1": "Acme Corp", "CL-2": "Globex B.V."},
        accounting_customers={"58": "Acme Corp.", "59": "Globex B.V.", "60": "globex bv"},
        accounting_items={c.item for c in mapping.billing_codes.values() if c.code != "TRAINING"},
        accounting_people={"ann@example.com"},
        psa_billing_codes={"CONSULT", "WORKSHOP"},
        psa_people={"P-1": "ann@example.com", "P-2": "bob@example.com"},
        hr_people={"ann@example.com"},
    )


def test_names_compare_without_case_punctuation_or_legal_suffixes():
    assert comparable_name("ACME Corporation") == comparable_name("Acme Corp.") == "acme"
    assert comparable_name("Globex B.V.") == comparable_name("globex bv") == "globex"
    assert comparable_name("Corp") == "corp"  # a name that is only a suffix stays a name


def test_the_audit_finds_each_kind_of_inconsistency_once():
    findings = audit(_snapshot(), load_mapping())
    checks = sorted(f.check for f in findings)
    assert checks == sorted(
        [
            "duplicate_customer",  # Globex B.V. and globex bv
            "client_without_customer",  # Acme Corp is "Acme Corp." in accounting
            "client_name_differs",  # ACME Corporation in the CRM
            "billing_code_unmapped",  # WORKSHOP
            "item_missing",  # Training
            "person_without_hr",  # bob
            "person_without_accounting",  # bob
        ]
    ), checks
    (client,) = [f for f in findings if f.check == "client_without_customer"]
    assert client.subject_id == "CL-1" and client.suggestion == "Acme Corp." and client.score == 100.0
    (crm,) = [f for f in findings if f.check == "client_name_differs"]
    assert crm.subject == "ACME Corporation" and crm.suggestion == "Acme Corp"
    assert "Initech" not in to_csv_text(findings)  # a company with no PSA client yet is no mismatch
    assert summary(findings).startswith("audit: 7 findings")


def test_accepted_matches_are_written_into_the_mapping_with_its_comments_kept(tmp_path):
    findings = audit(_snapshot(), load_mapping())
    overrides = accepted_overrides(findings, min_score=90)
    assert overrides == {"CL-1": "Acme Corp."}
    text = MAPPING_FILE.read_text(encoding="utf-8")
    changed = with_overrides(text, overrides)
    assert yaml.safe_load(changed)["clients"]["overrides"] == {"CL-1": "Acme Corp."}
    assert changed.count("#") == text.count("#")  # comments kept
    again = with_overrides(changed, {"CL-9": "Hooli"})
    assert yaml.safe_load(again)["clients"]["overrides"] == {"CL-1": "Acme Corp.", "CL-9": "Hooli"}
    copy = tmp_path / "accounting_mapping.yaml"
    copy.write_text(text, encoding="utf-8")
    diff = mapping_diff(copy, changed)
    assert '+    "CL-1": "Acme Corp."' in diff and "-  overrides: {}" in diff


def test_the_audit_reads_the_sandboxs_four_systems(sandbox, services):
    """Against the demo sandbox: the seeded company finds its inconsistencies, and nothing is written."""
    forget_rotated_tokens()  # a fresh sandbox knows only its first refresh token
    until = max(sandbox.state.psa_time.week_ends()[-1], ANCHOR) + timedelta(days=1)
    before = (dict(sandbox.state.kantata.creates), sandbox.state.psa.people_writes)
    snapshot = read_systems(days=60, until=until)
    assert snapshot.psa_clients and snapshot.accounting_customers and snapshot.hr_people and snapshot.crm_companies
    findings = audit(snapshot, load_mapping())
    checks = {f.check for f in findings}
    # What the seed plants: a PSA client accounting spells differently ("Acme Corp" / "ACME
    # Corporation"), a client entered twice in accounting, a billing code in use and one offered with
    # no mapping, a PSA person HR and accounting do not know, and PSA clients named with a number the
    # CRM's lack. Nothing else.
    assert checks == {
        "client_without_customer",
        "duplicate_customer",
        "billing_code_unmapped",
        "person_without_hr",
        "person_without_accounting",
        "client_name_differs",
    }
    (acme,) = [f for f in findings if f.check == "client_without_customer"]
    assert (acme.subject, acme.suggestion, acme.score) == ("Acme Corp", "ACME Corporation", 100.0)
    (twice,) = [f for f in findings if f.check == "duplicate_customer"]
    first_client = next(iter(sandbox.state.psa_time.clients.values()))["name"]
    assert twice.subject in (first_client, f"{first_client} B.V.") and "2 customers" in twice.detail
    assert {f.subject for f in findings if f.check == "billing_code_unmapped"} == {"SNACKS", "SUPPORT"}
    renamed = {f.subject: f.suggestion for f in findings if f.check == "client_name_differs"}
    assert renamed["Roessink NV"] == "Roessink NV 3"
    assert (dict(sandbox.state.kantata.creates), sandbox.state.psa.people_writes) == before
