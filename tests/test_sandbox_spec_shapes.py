"""Sandbox responses have the shapes of the vendors' published specs.

HubSpot's spec files may not be copied; the schemas below restate the parts listed in
``../shared/specs/README.md`` (SimplePublicObject, the search collection, batch and v4 shapes).
The PSA responses are checked against the PSA's own OpenAPI document.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import requests

SIMPLE_PUBLIC_OBJECT = {
    "type": "object",
    "required": ["id", "properties", "createdAt", "updatedAt", "archived"],
    "properties": {
        "id": {"type": "string"},
        "properties": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
        "createdAt": {"type": "string", "format": "date-time"},
        "updatedAt": {"type": "string", "format": "date-time"},
        "archived": {"type": "boolean"},
    },
}
SEARCH_RESPONSE = {  # CollectionResponseWithTotalSimplePublicObjectForwardPaging
    "type": "object",
    "required": ["total", "results"],
    "properties": {
        "total": {"type": "integer"},
        "results": {"type": "array", "items": SIMPLE_PUBLIC_OBJECT},
        "paging": {
            "type": "object",
            "required": ["next"],
            "properties": {"next": {"type": "object", "required": ["after"], "properties": {"after": {"type": "string"}}}},
        },
    },
}
BATCH_RESPONSE = {
    "type": "object",
    "required": ["status", "results", "startedAt", "completedAt"],
    "properties": {
        "status": {"enum": ["PENDING", "PROCESSING", "CANCELED", "COMPLETE"]},
        "results": {"type": "array", "items": SIMPLE_PUBLIC_OBJECT},
    },
}
ASSOCIATIONS_V4 = {
    "type": "object",
    "required": ["status", "results", "startedAt", "completedAt"],
    "properties": {
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["from", "to"],
                "properties": {
                    "from": {"type": "object", "required": ["id"]},
                    "to": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["toObjectId", "associationTypes"],
                            "properties": {
                                "toObjectId": {"type": "integer"},
                                "associationTypes": {"type": "array", "items": {"type": "object", "required": ["category", "typeId"]}},
                            },
                        },
                    },
                },
            },
        }
    },
}
PIPELINES = {
    "type": "object",
    "required": ["results"],
    "properties": {
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "label", "displayOrder", "stages", "createdAt", "updatedAt", "archived"],
                "properties": {
                    "stages": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["id", "label", "displayOrder", "metadata", "createdAt", "updatedAt", "archived"],
                        },
                    }
                },
            },
        }
    },
}
ERROR = {"type": "object", "required": ["status", "message", "correlationId", "category"]}
AUTH = {"Authorization": "Bearer sandbox-token"}


def post(url, body):
    return requests.post(url, json=body, headers=AUTH, timeout=10)


def test_hubspot_responses_have_the_published_shapes(sandbox):
    base = sandbox.hubspot_url
    jsonschema.validate(requests.get(f"{base}/crm/v3/pipelines/deals", headers=AUTH, timeout=10).json(), PIPELINES)
    for path in ("0-3", "deals"):
        jsonschema.validate(post(f"{base}/crm/v3/objects/{path}/search", {"limit": 100, "filterGroups": []}).json(), SEARCH_RESPONSE)
    jsonschema.validate(
        post(f"{base}/crm/v3/objects/companies/batch/read", {"properties": ["name"], "inputs": [{"id": "1000000"}]}).json(), BATCH_RESPONSE
    )
    jsonschema.validate(
        post(f"{base}/crm/v4/associations/deals/companies/batch/read", {"inputs": [{"id": "3000000"}]}).json(), ASSOCIATIONS_V4
    )
    jsonschema.validate(requests.get(f"{base}/crm/v3/objects/0-3/3000000", headers=AUTH, timeout=10).json(), SIMPLE_PUBLIC_OBJECT)


def test_hubspot_errors_have_the_published_shape(sandbox):
    base = sandbox.hubspot_url
    unauthorised = requests.get(f"{base}/crm/v3/pipelines/deals", timeout=10)
    assert unauthorised.status_code == 401
    jsonschema.validate(unauthorised.json(), ERROR)
    capped = post(f"{base}/crm/v3/objects/deals/search", {"limit": 100, "after": "9950"})
    assert capped.status_code == 400
    jsonschema.validate(capped.json(), ERROR)


def test_hubspot_search_rate_limit_answers_429_with_retry_after(sandbox):
    answers = [post(f"{sandbox.hubspot_url}/crm/v3/objects/deals/search", {"limit": 1}) for _ in range(6)]
    limited = [a for a in answers if a.status_code == 429]
    assert limited and all(int(a.headers["Retry-After"]) >= 1 for a in limited)


def test_psa_answers_match_its_openapi_document(sandbox):
    from backbone.hooks.psa import PsaHook

    spec = requests.get(f"{sandbox.psa_url}/openapi.json", timeout=10).json()
    assert "/api/v1/projects/by-external-id/{source}/{external_id}" in spec["paths"]
    body = {"name": "P", "client": {"external_id": "1", "name": "C"}, "budget": "10.00", "currency": "EUR", "billing_type": "fixed_fee"}
    hook = PsaHook()
    first = hook.upsert_project("hubspot", "42", body)
    again = hook.upsert_project("hubspot", "42", body)
    assert first.created and not again.created and first.project_id == again.project_id
    project = requests.get(f"{sandbox.psa_url}/api/v1/projects/{first.project_id}", headers=AUTH, timeout=10).json()
    jsonschema.validate(project, {"components": spec["components"], **spec["components"]["schemas"]["ProjectOut"]})

    page = requests.get(
        f"{sandbox.psa_url}/api/v1/time-entries",
        params={"approved_from": "2026-10-01T00:00:00Z", "approved_to": "2026-11-01T00:00:00Z", "page_size": 50},
        headers=AUTH,
        timeout=10,
    ).json()
    assert len(page["items"]) == 50 and page["next_cursor"]
    jsonschema.validate(page, {"components": spec["components"], **spec["components"]["schemas"]["TimeEntryPage"]})


def test_sandbox_state_survives_a_restart(tmp_path):
    import pickle

    from backbone_sandbox.app import SandboxConfig, SandboxState
    from tests.conftest import ANCHOR

    config = SandboxConfig(deals=30, anchor=ANCHOR, state_file=tmp_path / "state.pickle")
    state = SandboxState.fresh(config)
    state.psa.by_external[("hubspot", "1")] = "PRJ-000001"
    state.save()
    resumed = SandboxState.load_or_fresh(config)
    assert resumed.psa.by_external == {("hubspot", "1"): "PRJ-000001"}
    assert resumed.crm.search("deals", {"limit": 5})["total"] == 30
    assert pickle.loads(pickle.dumps(resumed.crm)).objects.keys() == state.crm.objects.keys()


def test_a_bench_sized_seed_approves_every_expense_inside_its_week():
    """The benchmark seeds thousands of people: every expense is still approved before its week's end."""
    from datetime import datetime, timedelta

    from backbone_sandbox.app import SandboxConfig, SandboxState
    from tests.conftest import ANCHOR

    state = SandboxState.fresh(SandboxConfig(deals=30, people=600, weeks=1, anchor=ANCHOR))
    week_end = state.psa_time.week_end
    approved = [datetime.fromisoformat(e["approved_at"].replace("Z", "+00:00")) for e in state.psa_expenses.entries if e["approved_at"]]
    assert len(approved) > 200
    assert all(week_end - timedelta(days=7) < moment < week_end for moment in approved)


# --- QuickBooks: Intuit publishes XSDs, not OpenAPI; JSON keys are the XSD's element and attribute names.
QBO_XSD_DIR = Path(__file__).resolve().parent / "specs" / "quickbooks"
XS = "{http://www.w3.org/2001/XMLSchema}"


def _xsd_types() -> dict[str, tuple[str | None, set[str]]]:
    """complexType name → (base type, names of its own elements and attributes)."""
    import xml.etree.ElementTree as ET

    types: dict[str, tuple[str | None, set[str]]] = {}
    for path in QBO_XSD_DIR.glob("*.xsd"):
        for complex_type in ET.parse(path).getroot().iter(f"{XS}complexType"):
            name = complex_type.get("name")
            if not name:
                continue
            extension = complex_type.find(f".//{XS}extension")
            names = {e.get("name") for e in complex_type.iter(f"{XS}element") if e.get("name")}
            names |= {e.get("ref") for e in complex_type.iter(f"{XS}element") if e.get("ref")}
            names |= {a.get("name") for a in complex_type.iter(f"{XS}attribute") if a.get("name")}
            types[name] = (extension.get("base") if extension is not None else None, names)
    return types


def _fields_of(types, name: str) -> set[str]:
    base, names = types[name]
    return names | (_fields_of(types, base) if base in types else set())


@pytest.mark.skipif(not QBO_XSD_DIR.exists(), reason="vendor specs not checked out next to the project")
def test_quickbooks_answers_use_the_xsd_names(sandbox):
    from backbone.hooks.oauth import MemoryTokenStore
    from backbone.hooks.quickbooks import QuickBooksHook

    types = _xsd_types()
    hook = QuickBooksHook(token_store=MemoryTokenStore())
    state = sandbox.state
    employee = next(iter(state.qbo.entities["Employee"].values()))
    customer = next(iter(state.qbo.entities["Customer"].values()))
    item = next(iter(state.qbo.entities["Item"].values()))
    body = {
        "TxnDate": "2026-10-26",
        "NameOf": "Employee",
        "EmployeeRef": {"value": employee["Id"]},
        "CustomerRef": {"value": customer["Id"]},
        "ItemRef": {"value": item["Id"]},
        "BillableStatus": "Billable",
        "HourlyRate": 100.0,
        "Hours": 1,
        "Minutes": 15,
        "Description": "x",
    }
    created = hook.create("TimeActivity", body, request_id="shape-1").body
    assert set(created) <= _fields_of(types, "TimeActivity")
    assert set(created["MetaData"]) <= _fields_of(types, "ModificationMetaData")
    for name in ("Customer", "Employee", "Vendor", "Item"):
        page = next(hook.query_all(name))
        assert set().union(*(set(r) for r in page)) <= _fields_of(types, name), name
    assert set(item["IncomeAccountRef"]) <= {"value", "name", "type"}  # ReferenceType: value + attributes

    raw = hook.call("GET", "/query", params={"query": "SELECT * FROM Item STARTPOSITION 1 MAXRESULTS 2"})
    assert set(raw) <= _fields_of(types, "IntuitResponse")
    assert set(raw["QueryResponse"]) <= _fields_of(types, "QueryResponse") | {"Item"}

    token = hook.access_token()
    fault = requests.post(
        f"{sandbox.quickbooks_url}/v3/company/9341455000000001/timeactivity",
        json={"TxnDate": "x"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert fault.status_code == 400
    assert set(fault.json()) <= _fields_of(types, "IntuitResponse")
    assert set(fault.json()["Fault"]) <= _fields_of(types, "Fault")
    assert set(fault.json()["Fault"]["Error"][0]) <= _fields_of(types, "Error")


def test_quickbooks_invoices_and_payments_use_the_xsd_names(sandbox):
    from decimal import Decimal

    from backbone.hooks.oauth import MemoryTokenStore
    from backbone.hooks.quickbooks import QuickBooksHook

    types = _xsd_types()
    hook = QuickBooksHook(token_store=MemoryTokenStore())
    state = sandbox.state
    customer = next(iter(state.qbo.entities["Customer"].values()))
    item = next(iter(state.qbo.entities["Item"].values()))
    tax = next(iter(state.qbo.entities["TaxCode"].values()))
    line = {
        "Amount": 100.0,
        "DetailType": "SalesItemLineDetail",
        "SalesItemLineDetail": {"ItemRef": {"value": item["Id"]}, "Qty": 1.0, "UnitPrice": 100.0, "TaxCodeRef": {"value": tax["Id"]}},
    }
    invoice = hook.create(
        "Invoice",
        {
            "DocNumber": "T-1",
            "TxnDate": "2026-10-31",
            "DueDate": "2026-11-30",
            "CustomerRef": {"value": customer["Id"]},
            "Line": [line],
            "TxnTaxDetail": {"TotalTax": 21.0},
        },
        request_id="shape-inv",
    ).body
    assert set(invoice) <= _fields_of(types, "Invoice")
    assert set(invoice["Line"][0]) <= _fields_of(types, "Line")
    assert set(invoice["Line"][0]["SalesItemLineDetail"]) <= _fields_of(types, "SalesItemLineDetail")
    assert set(invoice["TxnTaxDetail"]) <= _fields_of(types, "TxnTaxDetail")
    memo = hook.create(
        "CreditMemo",
        {"DocNumber": "C-1", "TxnDate": "2026-10-31", "CustomerRef": {"value": customer["Id"]}, "Line": [line]},
        request_id="shape-cm",
    ).body
    assert set(memo) <= _fields_of(types, "CreditMemo")
    payment = state.qbo.pay(invoice["Id"], Decimal("50"))
    assert set(payment) <= _fields_of(types, "Payment")
    assert set(payment["Line"][0]["LinkedTxn"][0]) <= _fields_of(types, "LinkedTxn")
    assert hook.find_by_doc_number("Invoice", "T-1")["Id"] == invoice["Id"]
    voided = hook.void("Invoice", invoice["Id"], request_id="shape-void").body
    assert voided["TotalAmt"] == 0 and voided["PrivateNote"] == "Voided"


def _element_types() -> dict[tuple[str, str], str]:
    """(complexType, element name) → the element's type name (without the namespace prefix)."""
    import xml.etree.ElementTree as ET

    found: dict[tuple[str, str], str] = {}
    for path in QBO_XSD_DIR.glob("*.xsd"):
        for complex_type in ET.parse(path).getroot().iter(f"{XS}complexType"):
            if complex_type.get("name"):
                for element in complex_type.iter(f"{XS}element"):
                    if element.get("name") and element.get("type"):
                        found[(complex_type.get("name"), element.get("name"))] = element.get("type").split(":")[-1]
    return found


def _unknown_keys(body: object, type_name: str, types: dict, element_types: dict, where: str = "") -> list[str]:
    """Keys of a request body that the XSD type (and, recursively, its elements' types) does not name."""
    if isinstance(body, list):
        return [k for item in body for k in _unknown_keys(item, type_name, types, element_types, where)]
    if not isinstance(body, dict) or type_name not in types:
        return []
    allowed = _fields_of(types, type_name)
    base = types[type_name][0]
    if base and base.split(":")[-1] not in types:  # simple content (ReferenceType): its text is JSON's "value"
        allowed = allowed | {"value"}
    problems = [f"{where}{key}" for key in body if key not in allowed]
    for key, value in body.items():
        owner = type_name
        while owner in types and (owner, key) not in element_types:
            owner = types[owner][0].split(":")[-1] if types[owner][0] else None
        child = element_types.get((owner, key)) if owner else None
        if child:
            problems += _unknown_keys(value, child, types, element_types, f"{where}{key}.")
    return problems


def test_what_the_quickbooks_hook_sends_uses_the_xsd_names():
    """The request bodies the hook builds (TimeActivity, Invoice, CreditMemo) use only element and
    attribute names of Intuit's XSDs, at every level (Line, SalesItemLineDetail, TxnTaxDetail, refs):
    a body QuickBooks would refuse as unknown fails here, not in production."""
    from datetime import date
    from decimal import Decimal

    from backbone.hooks.quickbooks import invoice_body, time_activity_body

    types, element_types = _xsd_types(), _element_types()
    line = {
        "entry_id": "TE-1",
        "entry_version": 1,
        "work_date": date(2026, 10, 26),
        "name_of": "Employee",
        "person_ref_id": "55",
        "person_name": "Ann Smith",
        "client_name": "Acme",
        "item_name": "Consulting Services",
        "customer_ref_id": "58",
        "item_ref_id": "7",
        "billable_status": "Billable",
        "hourly_rate": Decimal("110.00"),
        "minutes": 90,
        "hours": Decimal("1.5"),
        "description": "Consulting",
        "billing_code": "CONSULT",
        "project_id": "PJ-1",
        "project_name": "Data platform",
    }
    assert _unknown_keys(time_activity_body(line), "TimeActivity", types, element_types) == []
    row = {
        "number": "INV-1",
        "kind": "invoice",
        "issue_date": date(2026, 10, 31),
        "due_date": date(2026, 11, 30),
        "customer_ref_id": "58",
        "client_name": "Acme",
        "currency": "EUR",
        "tax_amount": Decimal("42.00"),
        "psa_invoice_id": "PI-1",
        "project_id": "PJ-1",
        "period": "2026-10",
        "billing_type": "time_and_materials",
    }
    lines = [{"description": "x", "quantity": Decimal(2), "rate": Decimal(100), "amount": Decimal(200), "item_ref_id": "7"}]
    assert _unknown_keys(invoice_body(row, lines, "3"), "Invoice", types, element_types) == []
    assert _unknown_keys(invoice_body({**row, "kind": "credit_note"}, lines, None), "CreditMemo", types, element_types) == []
    bogus = {"Line": [{"DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "7"}, "Colour": "red"}}]}
    assert _unknown_keys(bogus, "Invoice", types, element_types) == ["Line.SalesItemLineDetail.Colour"]  # the check does see depth
