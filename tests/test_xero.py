"""XeroHook against the sandbox, and the sandbox's Xero answers against Xero's own OpenAPI files.

Every Accounting and Projects response the hook reads is validated with openapi-core against
``xero_accounting.yaml`` / ``xero-projects.yaml`` (vendored in ``tests/specs/xero`` with Xero's MIT
licence). Xero's file is not itself a strictly valid OpenAPI document (it writes boolean defaults as
strings), so the document check is turned off and only responses are validated, reading ``$ref``
the OpenAPI 3.0 way.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path

import pytest
import requests

from backbone.hooks.accounting import DayRecord, day_record_key, request_id_for
from backbone.hooks.oauth import MemoryTokenStore
from backbone.hooks.xero import XeroHook, parse_msdate
from backbone.http import FatalApiError, QuotaExhaustedError
from backbone_sandbox.faults import FaultRule
from backbone_sandbox.xero import msdate

SPECS = Path(__file__).parent / "specs" / "xero"
XERO_ROOT = "https://api.xero.com"


@cache
def openapi(name: str):  # noqa: ANN201 - openapi_core object
    """The vendor's document as OpenAPI 3.0 reads it: siblings of a ``$ref`` are ignored (Xero writes
    ``{"$ref": Amount, "type": "number"}``, which a validator applying both could never satisfy)."""
    import yaml
    from openapi_core import Config, OpenAPI

    def as_read(node):  # noqa: ANN001, ANN202
        if isinstance(node, dict):
            return {"$ref": node["$ref"]} if "$ref" in node else {k: as_read(v) for k, v in node.items()}
        if isinstance(node, list):
            return [as_read(v) for v in node]
        return node

    document = as_read(yaml.safe_load((SPECS / name).read_text(encoding="utf-8")))
    return OpenAPI.from_dict(document, config=Config(spec_validator_cls=None))


@pytest.fixture
def tokens() -> MemoryTokenStore:
    return MemoryTokenStore()


@pytest.fixture
def hook(sandbox, tokens) -> XeroHook:
    return XeroHook(token_store=tokens)


class SpecCheckedSession(requests.Session):
    """A requests session that validates every request the hook sends to Xero, and every answer,
    against the vendor's OpenAPI files: a parameter, header or body Xero does not document fails here."""

    def __init__(self, sandbox_root: str):
        super().__init__()
        self.sandbox_root = sandbox_root
        self.checked: list[str] = []
        self.requests_checked: list[str] = []

    def send(self, request: requests.PreparedRequest, **kwargs):  # noqa: ANN003, ANN201 - requests signature
        from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

        as_sent_to_xero = request.copy()
        as_sent_to_xero.url = request.url.replace(self.sandbox_root, XERO_ROOT)
        spec = openapi("xero-projects.yaml" if "/projects.xro/" in request.url else "xero_accounting.yaml")
        if "/connect/token" not in request.url:  # what the hook sends must be what Xero's spec accepts
            spec.validate_request(RequestsOpenAPIRequest(as_sent_to_xero))
            self.requests_checked.append(f"{request.method} {request.path_url.split('?')[0]}")
        response = super().send(request, **kwargs)
        if "/connect/token" in request.url or response.status_code >= 400:
            return response
        spec.validate_response(RequestsOpenAPIRequest(as_sent_to_xero), RequestsOpenAPIResponse(response))
        self.checked.append(f"{request.method} {request.path_url.split('?')[0]}")
        return response


def a_line(state, **overrides) -> dict:
    contact = next(c for c in state.xero.records["Contacts"].values())
    user = next(iter(state.xero.users.values()))
    return {
        "entry_id": "TE-1",
        "entry_version": 1,
        "project_id": "PJ-1",
        "project_name": "Data platform",
        "customer_ref_id": contact["ContactID"],
        "person_ref_id": user["userId"],
        "billable_status": "Billable",
        "item_name": "Consulting Services",
        "hourly_rate": "110.00",
        "billing_code": "CONSULT",
        "work_date": date(2026, 10, 26),
        "minutes": 90,
        **overrides,
    }


def an_invoice(state, number: str = "INV-T-1") -> tuple[dict, list[dict]]:
    contact = next(c for c in state.xero.records["Contacts"].values() if c["DefaultCurrency"] == "EUR")
    row = {
        "number": number,
        "kind": "invoice",
        "psa_invoice_id": "PI-1",
        "project_id": "PJ-1",
        "customer_ref_id": contact["ContactID"],
        "client_name": contact["Name"],
        "currency": "EUR",
        "issue_date": date(2026, 10, 31),
        "due_date": date(2026, 11, 30),
        "tax_amount": Decimal("42.00"),
    }
    return row, [
        {"description": "Consulting", "quantity": Decimal(2), "rate": Decimal(100), "amount": Decimal(200), "item_ref_id": "CONSULT"}
    ]


def test_every_xero_request_and_answer_follows_xeros_openapi(sandbox, tokens):
    hook = XeroHook(token_store=tokens, session=SpecCheckedSession(f"{sandbox.url}/xero"))
    references = list(hook.reference_records())
    assert {r.entity for r in references} == {"Customer", "Item", "TaxCode", "User", "Vendor", "Account"}
    payee = next(r for r in references if r.entity == "Vendor")
    expense = {
        "kind": "purchase",
        "doc_number": "EX-T-1v1",
        "payee_ref_id": payee.ref_id,
        "account_ref_id": "6200",
        "paid_from_ref_id": "1010",
        "tax_ref_id": "INPUT21",
        "spent_date": date(2026, 10, 26),
        "amount": "60.50",
        "currency": "EUR",
        "exchange_rate": None,
        "billable": True,
        "description": "PSA expense EX-T-1 v1 · TRAVEL · Acme — Data platform · billable to Acme",
    }
    purchase = hook.post_expense(expense, target=None, request_id="ex-1")
    hook.post_expense({**expense, "amount": "70.00"}, target=purchase.object_id, request_id="ex-1-v2")
    assert hook.find_expense(expense).object_id == purchase.object_id
    assert hook.delete_expense("purchase", purchase.object_id, request_id="ex-1-del")
    bill = hook.post_expense({**expense, "kind": "bill", "doc_number": "EX-T-2v1"}, target=None, request_id="ex-2")
    assert hook.delete_expense("bill", bill.object_id, request_id="ex-2-void")
    posted = hook.post_time_entry(a_line(sandbox.state), target=None, request_id="te-1")
    hook.post_time_entry(a_line(sandbox.state, minutes=120, entry_version=2), target=posted.object_id, request_id="te-1-v2")
    journal = {
        "doc_number": "ACT202610-PJ-T",
        "description": "Labour actuals 2026-10: PJ-T Data platform (Acme)",
        "debit_account_ref_id": "5010",
        "credit_account_ref_id": "5990",
        "amount": Decimal("771.00"),
        "journal_date": date(2026, 10, 31),
    }
    made = hook.create_journal(journal, request_id="mj-1")
    assert hook.find_journal(journal) == made.object_id and hook.find_journal({**journal, "doc_number": "ACT202610-PJ-X"}) is None
    row, lines = an_invoice(sandbox.state)
    invoice = hook.create_invoice("invoice", row, lines, "OUTPUT21", request_id="inv-1")
    assert hook.find_invoice("invoice", row["number"]) == (invoice.object_id, Decimal("242.00"))
    credit = hook.create_invoice("credit_note", {**row, "number": "CN-T-1", "kind": "credit_note"}, lines, None, request_id="cn-1")
    assert hook.find_invoice("credit_note", "CN-T-1") == (credit.object_id, Decimal("200.00"))
    requests.post(f"{sandbox.url}/_sandbox/xero/record-payments", timeout=10).raise_for_status()
    payments = list(hook.payments_since(datetime.now(UTC) - timedelta(hours=1)))
    assert [p.invoice_accounting_ids for p in payments] == [[invoice.object_id]] and payments[0].amount == Decimal("242.00")
    assert hook.invoice_balances([invoice.object_id]) == {invoice.object_id: Decimal("0.00")}
    hook.void_invoice("credit_note", credit.object_id, request_id="void-cn-1")
    checked = set(hook.get_conn().checked)
    for call in (
        "GET /xero/api.xro/2.0/Contacts",
        "GET /xero/api.xro/2.0/Items",
        "GET /xero/api.xro/2.0/Accounts",
        "GET /xero/api.xro/2.0/TaxRates",
        "GET /xero/projects.xro/2.0/ProjectsUsers",
        "GET /xero/projects.xro/2.0/Projects",
        "POST /xero/projects.xro/2.0/Projects",
        "PUT /xero/api.xro/2.0/Invoices",
        "GET /xero/api.xro/2.0/Invoices",
        "PUT /xero/api.xro/2.0/CreditNotes",
        "GET /xero/api.xro/2.0/CreditNotes",
        "GET /xero/api.xro/2.0/Payments",
    ):
        assert call in checked, call
    assert any("/Time" in c for c in checked) and any("/Tasks" in c for c in checked)
    sent = set(hook.get_conn().requests_checked)  # every request, writes and the void included, valid per Xero's spec
    assert checked <= sent and any(c.startswith("POST /xero/api.xro/2.0/CreditNotes/") for c in sent)
    assert any(c.startswith("PUT /xero/projects.xro/2.0/Projects/") and "/Time/" in c for c in sent)
    assert "PUT /xero/api.xro/2.0/BankTransactions" in sent and any(c.startswith("POST /xero/api.xro/2.0/BankTransactions/") for c in sent)
    assert "GET /xero/api.xro/2.0/BankTransactions" in checked


def test_a_repeated_idempotency_key_returns_the_first_invoice_not_a_second(hook, sandbox):
    row, lines = an_invoice(sandbox.state, "INV-T-2")
    first = hook.create_invoice("invoice", row, lines, "OUTPUT21", request_id=request_id_for("INV-T-2"))
    again = hook.create_invoice("invoice", row, lines, "OUTPUT21", request_id=request_id_for("INV-T-2"))
    assert again.object_id == first.object_id
    assert sandbox.state.xero.creates["Invoices"] == 1 and sandbox.state.xero.replays == 1


def test_a_time_entry_retried_after_a_lost_answer_is_created_once(hook, sandbox):
    sandbox.state.faults.arm([FaultRule(kind="slow_response", path_contains="/Time", method="POST", delay_seconds=3)])
    hook.timeout = 1
    posted = hook.post_time_entry(a_line(sandbox.state), target=None, request_id="te-lost")
    assert len(sandbox.state.xero.time_entries) == 1 and posted.object_id.endswith(next(iter(sandbox.state.xero.time_entries)))


def test_time_moves_with_its_project_and_tasks_are_made_once(hook, sandbox):
    first = hook.post_time_entry(a_line(sandbox.state), target=None, request_id="a")
    hook.post_time_entry(a_line(sandbox.state, entry_id="TE-2"), target=None, request_id="b")
    moved = hook.post_time_entry(a_line(sandbox.state, project_id="PJ-2", entry_version=2), target=first.object_id, request_id="c")
    xero = sandbox.state.xero
    assert len(xero.projects) == 2 and len(xero.tasks) == 2 and len(xero.time_entries) == 2
    assert moved.object_id.split("/")[0] != first.object_id.split("/")[0]


def test_a_day_record_is_created_replaced_found_by_its_marker_and_deleted_as_xero_documents(sandbox, tokens):
    hook = XeroHook(token_store=tokens, session=SpecCheckedSession(f"{sandbox.url}/xero"))
    line = a_line(sandbox.state, item_ref_id="CONSULT")
    record = DayRecord(day_record_key(line), line, {"TE-1": 90, "TE-2": 30})
    posted = hook.post_day_record(record, target=None, request_id="day-1")
    held = sandbox.state.xero.time_entries[posted.object_id.split("/")[1]]
    assert held["duration"] == 120 and held["description"].startswith(record.marker)
    grown = DayRecord(record.key, line, {**record.entries, "TE-3": 60})
    hook.post_day_record(grown, target=posted.object_id, request_id="day-1-v2")
    assert sandbox.state.xero.time_entries[posted.object_id.split("/")[1]]["duration"] == 180
    assert hook.find_day_record(grown).object_id == posted.object_id
    assert hook.find_day_record(DayRecord(day_record_key({**line, "entry_id": "x", "project_id": "PJ-9"}), line, {"x": 1})) is None
    assert hook.delete_time_entry(posted.object_id, request_id="day-1-del")
    assert not sandbox.state.xero.time_entries
    sent = set(hook.get_conn().requests_checked)
    assert any(c.startswith("PUT /xero/projects.xro/2.0/Projects/") and "/Time/" in c for c in sent)
    assert any(c.startswith("DELETE /xero/projects.xro/2.0/Projects/") for c in sent)


def test_a_day_record_key_is_its_person_project_task_and_day_and_its_hash_its_members():
    line = {
        "person_ref_id": "U1",
        "customer_ref_id": "C1",
        "project_id": "PJ-1",
        "item_ref_id": "I1",
        "billable_status": "Billable",
        "work_date": date(2026, 10, 26),
        "billing_code": "CONSULT",
        "project_name": "P",
    }
    assert day_record_key(line) == day_record_key({**line, "billing_code": "OTHER", "entry_id": "TE-9"})
    for field, other in (("work_date", date(2026, 10, 27)), ("billable_status", "Non-Billable"), ("person_ref_id", "U2")):
        assert day_record_key({**line, field: other}) != day_record_key(line)
    one = DayRecord("k", line, {"TE-1": 60, "TE-2": 30})
    assert one.minutes == 90 and one.content_hash == DayRecord("k", line, {"TE-2": 30, "TE-1": 60}).content_hash
    assert one.content_hash != DayRecord("k", line, {"TE-1": 60, "TE-2": 45}).content_hash
    many = DayRecord("k", line, {f"TE-{n}": 15 for n in range(8)})
    assert many.description.startswith("PSA day k · 8 entries (") and "…" in many.description


def test_refresh_token_rotates_and_a_missing_tenant_is_refused(sandbox, tokens):
    hook = XeroHook(token_store=tokens)
    list(hook.reference_records())
    assert tokens.tokens["xero_default_refresh_token"].startswith("sandbox-xero-refresh-1")
    XeroHook(token_store=tokens).find_invoice("invoice", "none")  # the stored token works for the next hook
    wrong = XeroHook(token_store=tokens)
    wrong.__dict__["tenant_id"] = "not-this-organisation"
    with pytest.raises(FatalApiError, match="403"):
        wrong.find_invoice("invoice", "none")


def test_throttling_is_retried_after_the_given_wait(hook, sandbox):
    sandbox.state.faults.arm([FaultRule(kind="status", status=429, path_contains="/Invoices", retry_after=1, times=2)])
    assert hook.find_invoice("invoice", "none") is None
    assert sandbox.state.faults.fired["status"] == 2


def test_a_used_up_daily_limit_stops_at_once_without_retrying(hook, sandbox):
    sandbox.state.limits["xero_day"].calls = 2
    hook.find_invoice("invoice", "a")
    with pytest.raises(QuotaExhaustedError, match="daily API limit"):
        for _ in range(3):
            hook.find_invoice("invoice", "b")
    assert sandbox.state.limits["xero_day"].rejected == 1  # refused once, not retried


def test_validation_errors_fail_at_once_with_xeros_message(hook, sandbox):
    row, lines = an_invoice(sandbox.state, "INV-T-3")
    with pytest.raises(FatalApiError, match="Item code 'NOPE' is not valid"):
        hook.create_invoice("invoice", row, [{**lines[0], "item_ref_id": "NOPE"}], None, request_id="bad")


def test_the_hook_keeps_to_xeros_per_tenant_budget_by_default(sandbox):
    hook = XeroHook(token_store=MemoryTokenStore())
    hook.__dict__["extras"] = {k: v for k, v in hook.extras.items() if k != "requests_per_minute"}
    assert hook.limiter.interval == pytest.approx(1.0) and hook.concurrency._initial_value == 5


def test_ms_json_dates_both_ways():
    moment = datetime(2026, 10, 31, 12, 30, 5, tzinfo=UTC)
    assert parse_msdate(msdate(moment)) == moment
    assert parse_msdate("/Date(1573755038314)/") == datetime(2019, 11, 14, 18, 10, 38, 314000, tzinfo=UTC)
    assert parse_msdate("/Date(1573755038314+1300)/").tzinfo == UTC


def test_a_projects_page_served_twice_stops_instead_of_looping(salesforce_sandbox, tokens, monkeypatch):
    from backbone.http import RepeatedCursorError

    hook = XeroHook(token_store=tokens)
    answers = iter(
        [
            {"pagination": {"page": 1, "pageCount": 3}, "items": [{"projectId": "a"}]},
            {"pagination": {"page": 1, "pageCount": 3}, "items": []},
        ]
    )
    monkeypatch.setattr(hook, "call", lambda *args, **kwargs: next(answers))
    with pytest.raises(RepeatedCursorError):
        list(hook.projects_all("/Projects"))
