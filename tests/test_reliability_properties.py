"""Bad input by property-based testing, schema drift, and the security checks of the fault suite.

Invariant over every vendor's payloads, however broken: no crash on data; every record ends valid or
quarantined (extracted = loaded + quarantined); every quarantine row has a rule and a reason.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tests import reliability
from tests.conftest import ROOT

PROPERTY_SETTINGS = settings(
    max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)

HOSTILE_TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            " ",
            "Robert'); DROP TABLE acct.time_export;--",
            "株式会社テスト",
            "🚀☕",
            "x" * 5000,
            "\x00",
            "NaN",
            "Infinity",
            "-1e400",
            "1e308",
            "0000-00-00",
            "2026-02-30",
            "9999-12-31",
        ]
    ),
)
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    HOSTILE_TEXT,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def mutated(base: dict, fields: list[str]) -> st.SearchStrategy[dict]:
    """``base`` with some fields removed, replaced by anything, or joined by unknown ones."""

    @st.composite
    def build(draw) -> dict:
        record = copy.deepcopy(base)
        for field in draw(st.lists(st.sampled_from(fields), max_size=4, unique=True)):
            action = draw(st.sampled_from(["drop", "replace"]))
            parent, _, leaf = field.rpartition(".")
            target = record
            for part in filter(None, parent.split(".")):
                target = target.setdefault(part, {}) if isinstance(target.get(part), dict) else target
            if action == "drop":
                target.pop(leaf, None)
            else:
                target[leaf] = draw(ANY_VALUE)
        if draw(st.booleans()):
            record[draw(st.text(min_size=1, max_size=10))] = draw(ANY_VALUE)
        return record

    return build()


def check_invariant(keys: list[str], verdicts, quarantine) -> None:
    assert [v[0] for v in verdicts] == keys
    assert all(v[1] in ("valid", "quarantined") for v in verdicts)
    quarantined = {v[0] for v in verdicts if v[1] == "quarantined"}
    assert {q.source_key for q in quarantine} >= quarantined
    assert all(q.rule and q.reason for q in quarantine)
    reliability.count(generated_payloads=len(keys))


# --- PSA time entries --------------------------------------------------------------------------------
from tests.test_timesheet_rules import GOOD as GOOD_ENTRY  # noqa: E402
from tests.test_timesheet_rules import REFS  # noqa: E402

ENTRY_FIELDS = [
    "id",
    "version",
    "spent_date",
    "hours",
    "billable",
    "billable_rate",
    "currency",
    "approval_status",
    "approved_at",
    "user.id",
    "user.email",
    "user.type",
    "client.id",
    "client.name",
    "project.id",
    "task.billing_code",
    "notes",
]


@PROPERTY_SETTINGS
@given(st.lists(mutated(GOOD_ENTRY, ENTRY_FIELDS), min_size=1, max_size=4))
def test_time_entries_never_crash_and_always_balance(entries):
    from backbone.flows.timesheets import entry_key, judge_chunk

    chunk = [
        {"source_key": entry_key(str(e.get("id")), e.get("version")) + f"#{n}", "payload": e, "canonical": None, "status": "staged"}
        for n, e in enumerate(entries)
    ]
    verdicts, quarantine = judge_chunk(chunk, REFS, overfull_days=set(), last_work_date=date(2026, 10, 30), exported_hashes={})
    check_invariant([c["source_key"] for c in chunk], verdicts, quarantine)
    for _, status, line in verdicts:
        if status == "valid":  # what is posted is sane
            from decimal import Decimal

            assert Decimal("0") < Decimal(line["hours"]) <= 24 and Decimal(line["amount"]) >= 0


# --- HubSpot deals ------------------------------------------------------------------------------------
GOOD_BUNDLE = {
    "deal": {
        "id": "3000001",
        "properties": {
            "dealname": "Data platform",
            "pipeline": "default",
            "dealstage": "closedwon",
            "amount": "12000.00",
            "deal_currency_code": "EUR",
            "closedate": "2026-11-02T10:00:00.000Z",
            "billing_type": "fixed_fee",
            "hs_lastmodifieddate": "2026-11-02T11:00:00.000Z",
            "estimated_hours": "100",
            "contract_start_date": "2026-12-01",
            "payment_terms_days": "30",
        },
    },
    "company": {"id": "1000001", "properties": {"name": "Acme B.V.", "domain": "acme.example", "country": "Netherlands"}},
    "contacts": [{"id": "2000001", "properties": {"firstname": "Ann", "lastname": "Smith", "email": "ann@acme.example"}}],
    "stage_label": "Closed Won",
}
BUNDLE_FIELDS = [
    "deal.id",
    "deal.properties.dealname",
    "deal.properties.amount",
    "deal.properties.deal_currency_code",
    "deal.properties.closedate",
    "deal.properties.billing_type",
    "deal.properties.estimated_hours",
    "company.id",
    "company.properties.name",
    "stage_label",
]


@PROPERTY_SETTINGS
@given(st.lists(mutated(GOOD_BUNDLE, BUNDLE_FIELDS), min_size=1, max_size=3))
def test_deals_never_crash_and_always_balance(bundles):
    from backbone.flows.closed_won import _judge_chunk

    chunk = [{"source_key": f"k{n}", "payload": b, "canonical": None, "status": "staged"} for n, b in enumerate(bundles)]
    try:
        verdicts, quarantine, stats = _judge_chunk(chunk)
    except (TypeError, AttributeError) as exc:  # a whole bundle of the wrong shape must still not crash
        pytest.fail(f"crashed on data: {exc!r}")
    deal_verdicts = [v for v in verdicts]
    check_invariant([c["source_key"] for c in chunk], deal_verdicts, [q for q in quarantine if q.entity == "deal"])
    assert stats["valid"] + stats["quarantined"] == len(chunk)


# --- BambooHR time off ------------------------------------------------------------------------------------
GOOD_REQUEST = {
    "id": 5001,
    "employeeId": 101,
    "name": "Ann",
    "start": "2026-11-09",
    "end": "2026-11-10",
    "status": {"status": "approved", "lastChanged": "2026-11-01"},
    "type": {"id": 78, "name": "Vacation"},
    "amount": {"unit": "hours", "amount": 16},
    "dates": {"2026-11-09": 8, "2026-11-10": 8},
}
REQUEST_FIELDS = ["id", "employeeId", "start", "end", "status.status", "type.name", "amount.unit", "dates", "dates.2026-11-09"]


@PROPERTY_SETTINGS
@given(st.lists(mutated(GOOD_REQUEST, REQUEST_FIELDS), min_size=1, max_size=4))
def test_time_off_requests_never_crash_and_always_balance(requests_):
    from backbone.flows.roster import judge_requests
    from backbone.hooks.bamboohr import BambooHRRecords

    chunk = [{"source_key": f"r{n}", "payload": r, "canonical": None, "status": "staged"} for n, r in enumerate(requests_)]
    verdicts, quarantine = judge_requests(chunk, {"101"}, BambooHRRecords())
    check_invariant([c["source_key"] for c in chunk], verdicts, quarantine)


# --- PSA invoices -------------------------------------------------------------------------------------------
GOOD_INVOICE = {
    "id": "PINV-1",
    "number": "2026-10-0001",
    "type": "invoice",
    "status": "approved",
    "period": "2026-10",
    "billing_type": "time_and_materials",
    "project": {"id": "PJ-1", "crm_deal_id": "3000001"},
    "client": {"id": "CL-1", "name": "Acme B.V."},
    "currency": "EUR",
    "issue_date": "2026-10-31",
    "due_date": "2026-11-30",
    "lines": [{"line_id": "L1", "kind": "time", "quantity": "10", "rate": "100.00", "amount": "1000.00"}],
    "subtotal": "1000.00",
    "tax_code": "VAT21",
    "tax_amount": "210.00",
    "total": "1210.00",
    "credit_note_for": None,
}
INVOICE_FIELDS = [
    "id",
    "number",
    "type",
    "billing_type",
    "client.name",
    "currency",
    "issue_date",
    "lines",
    "subtotal",
    "tax_code",
    "tax_amount",
    "total",
    "project.crm_deal_id",
]


@PROPERTY_SETTINGS
@given(mutated(GOOD_INVOICE, INVOICE_FIELDS))
def test_invoices_never_crash_and_are_held_with_reasons(invoice):
    from backbone.flows.invoicing import CheckContext, header_row, judge_invoice
    from backbone.validation import validate_rows

    outcome = validate_rows("invoice", [header_row(invoice)])
    results, canonical = judge_invoice(invoice, REFS, CheckContext(), structurally_valid=not outcome.failures)
    assert all(r["detail"] for r in results if not r["passed"])
    assert canonical["psa_invoice_id"] == invoice.get("id")
    reliability.count(generated_payloads=1)


# --- schema drift ---------------------------------------------------------------------------------------------
pytestmark_e2e = pytest.mark.e2e


@pytest.mark.e2e
def test_a_new_field_is_reported_and_a_removed_required_field_quarantines(dagbag, sandbox, accounting_warehouse, psa_warehouse):
    entries = sandbox.state.psa_time.entries
    for entry in entries:
        entry["overtime_flag"] = False  # the vendor added a field
    victim = next(
        e
        for e in entries
        if e["approved_at"] and e["approved_at"].startswith("2026-10-30") and e["id"] not in sandbox.state.psa_time.bad_entries
    )
    del victim["billable_rate"]  # and dropped one we need, on one entry
    assert dagbag.get_dag("timesheets_weekly_to_accounting").test(logical_date=datetime(2026, 10, 30, 16, tzinfo=UTC)).state == "success"
    with accounting_warehouse.connect() as connection:
        drift = connection.execute(text("SELECT details->'schema_drift' FROM ops.flow_run")).scalar_one()
        rules = {
            r[0] for r in connection.execute(text("SELECT rule FROM ops.quarantine WHERE source_key = :k"), {"k": f"{victim['id']}:v1"})
        }
    assert drift["new_fields"]["overtime_flag"] > 0 and drift["missing_fields"] == {"billable_rate": 1}
    assert rules == {"time_entry.hourly_rate.required"}
    reliability.count(faults_injected=2, survived=2)


# --- security ---------------------------------------------------------------------------------------------------
@pytest.mark.e2e
def test_no_secret_reaches_a_log_or_the_ledger(dagbag, sandbox, accounting_warehouse, psa_warehouse, capfd, caplog):
    from backbone_devtools.localenv import QBO_CLIENT_SECRET, QBO_INITIAL_REFRESH_TOKEN

    assert dagbag.get_dag("timesheets_weekly_to_accounting").test(logical_date=datetime(2026, 10, 30, 16, tzinfo=UTC)).state == "success"
    assert dagbag.get_dag("crm_closed_won_to_psa").test(logical_date=datetime(2026, 11, 2, 12, tzinfo=UTC)).state == "success"
    captured = capfd.readouterr()
    logs = captured.out + captured.err + "\n".join(r.getMessage() for r in caplog.records)
    logs_dir = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    if logs_dir.exists():
        logs += "".join(p.read_text(errors="replace") for p in logs_dir.rglob("*") if p.is_file())
    ledger = ""
    for engine in (accounting_warehouse, psa_warehouse):
        with engine.connect() as connection:
            ledger += json.dumps(
                [
                    r[0]
                    for r in connection.execute(
                        text("SELECT row(f.*)::text FROM ops.flow_run f UNION ALL SELECT row(q.*)::text FROM ops.quarantine q")
                    )
                ]
            )
    runtime_tokens = list(sandbox.state.qbo.access_tokens) + list(sandbox.state.qbo.refresh_tokens)
    secrets = ["sandbox-token", QBO_CLIENT_SECRET, QBO_INITIAL_REFRESH_TOKEN, *runtime_tokens]
    assert len(logs) > 1000  # the runs did log
    for secret in secrets:
        assert secret not in logs, f"a secret ({secret[:6]}…) appears in the task logs"
        assert secret not in ledger, f"a secret ({secret[:6]}…) appears in the run ledger"


def test_sql_is_never_built_from_data():
    """Every f-string handed to SQLAlchemy or the driver interpolates only identifiers and fragments
    fixed in code (listed here); values always travel as bound parameters."""
    allowed = {
        ("ledger.py", "condition"),
        ("ledger.py", "where"),
        ("ops_ledger.py", "FINANCE_READER_ROLE"),
        ("ops_ledger.py", "schema"),
        ("bi_schema.py", "FINANCE_READER_ROLE"),
        ("0010_bi_margin_and_pipeline.py", "FINANCE_READER_ROLE"),
        ("0011_accounting_codes.py", "FINANCE_READER_ROLE"),
        ("0012_project_budgets.py", "FINANCE_READER_ROLE"),
        ("0014_project_actuals.py", "FINANCE_READER_ROLE"),
        ("0015_time_day_records.py", "FINANCE_READER_ROLE"),
        ("outbox.py", "self.table_name"),  # a VersionedOutbox's table and key columns: constants of the two exports
        ("outbox.py", "self.id_column"),
        ("outbox.py", "self.version_column"),
        ("ops_attempts.py", "FINANCE_READER_ROLE"),
        ("ops_attempts.py", "ATTEMPT_COLUMNS"),  # the column list, and the two lists made from it:
        ("ops_attempts.py", "new_values"),
        ("ops_attempts.py", "updates"),
        ("db.py", "qualified"),
        ("db.py", "column_list"),
        ("db.py", "conflict"),
        ("db.py", "', '.join"),
    }
    found = set()
    for path in (ROOT / "include" / "backbone").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "text",
                "exec_driver_sql",
                "execute",
            ):
                for arg in node.args[:1]:
                    if isinstance(arg, ast.JoinedStr):
                        for value in arg.values:
                            if isinstance(value, ast.FormattedValue):
                                found.add((path.name, ast.unparse(value.value).split("[")[0].split("(")[0]))
    assert found <= allowed, f"SQL built with f-strings from: {sorted(found - allowed)}"


def test_the_sandbox_listens_on_loopback_only(tmp_path):
    import psutil

    from tests.conftest import free_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "backbone_sandbox", "--port", str(port), "--deals", "10", "--people", "6"],
        env={**os.environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(100):
            listening = [c for c in psutil.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
            if listening:
                break
            time.sleep(0.2)
        assert listening and {c.laddr.ip for c in listening} == {"127.0.0.1"}
    finally:
        process.terminate()
        process.wait(timeout=20)
