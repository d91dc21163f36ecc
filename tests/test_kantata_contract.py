"""Every answer the Kantata hook reads has the shape Kantata's API document gives it.

Kantata's Swagger document (app.mavenlink.com/oas/specification; mirrored in the public repository
``api-evangelist/mavenlink``, ``openapi/``) reserves Kantata's copyright, so it is not vendored:
the schemas below restate, for each object the hook reads, the property names and JSON types that
document lists (only those properties: an answer holding any other field fails, so the sandbox
cannot invent one). Objects are keyed by ``id`` in the answer, so ``id`` is allowed everywhere.

The test drives the hook through each thing it does on Kantata (projects, approved and withdrawn
time, people with their roles, skills and organizations, time off, invoices, payments, milestones)
against the sandbox and checks every answer it received.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import jsonschema
import pytest

from backbone.hooks.kantata import KantataHook

STRING, INTEGER, BOOLEAN, NUMBER = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}, {"type": "number"}
DATE, DATE_TIME, IDS = {"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}, {"type": "array", "items": STRING}
NULLABLE = (
    "description",
    "notes",
    "headline",
    "message",
    "start_date",
    "due_date",
    "end_date",
    "current_resolution_created_at_date",
    "story_id",
    "default_role_id",
    "parent_id",
)


def kantata_object(**properties: dict[str, Any]) -> dict[str, Any]:
    """A Kantata object: the listed properties (a few may be null, as Kantata answers), nothing else."""
    typed = {
        name: ({**schema, "type": [schema["type"], "null"]} if name in NULLABLE and "type" in schema else schema)
        for name, schema in properties.items()
    }
    return {"type": "object", "required": ["id"], "properties": {"id": STRING, **typed}, "additionalProperties": False}


LINE_ITEM = {
    "amount_in_cents": INTEGER,
    "created_at": DATE_TIME,
    "currency": STRING,
    "notes": STRING,
    "taxable": BOOLEAN,
    "workspace_id": INTEGER,
}
"""What Kantata's fixed fee items and additional items both carry."""
OBJECTS = {
    "workspaces": kantata_object(
        title=STRING,
        description=STRING,
        archived=BOOLEAN,
        budgeted=BOOLEAN,
        price=STRING,
        price_in_cents=INTEGER,
        currency=STRING,
        start_date=DATE,
        due_date=DATE,
        created_at=DATE_TIME,
        updated_at=DATE_TIME,
        workspace_group_ids=IDS,
        external_reference_ids=IDS,
    ),
    "external_references": kantata_object(
        subject_type=STRING,
        subject_id=INTEGER,
        service_name=STRING,
        service_model=STRING,
        service_model_ref=STRING,
        status=STRING,
        external_status={"type": ["string", "null"]},
        external_message={"type": ["string", "null"]},
        created_at=DATE_TIME,
        updated_at=DATE_TIME,
        last_synced_at=DATE_TIME,
    ),
    "timesheet_submissions": kantata_object(
        type=STRING,
        status={"enum": ["approved", "rejected", "cancelled", "pending"]},
        start_date=DATE,
        end_date=DATE,
        current_resolution_created_at_date=DATE_TIME,
        created_at=DATE_TIME,
        updated_at=DATE_TIME,
        user_id=STRING,
        workspace_id=STRING,
        time_entry_ids=IDS,
    ),
    "time_entries": kantata_object(
        date_performed=DATE,
        time_in_minutes=INTEGER,
        billable=BOOLEAN,
        rate_in_cents=INTEGER,
        currency=STRING,
        notes=STRING,
        approved=BOOLEAN,
        is_invoiced=BOOLEAN,
        taxable=BOOLEAN,
        created_at=DATE_TIME,
        updated_at=DATE_TIME,
        user_id=STRING,
        workspace_id=STRING,
        story_id=STRING,
    ),
    "users": kantata_object(full_name=STRING, email_address=STRING, classification=STRING, headline=STRING),
    "workspace_groups": kantata_object(name=STRING, company=BOOLEAN),
    "stories": kantata_object(
        title=STRING,
        story_type=STRING,
        state=STRING,
        budget_estimate_in_cents=INTEGER,
        created_at=DATE_TIME,
        updated_at=DATE_TIME,
        workspace_id=STRING,
        external_reference_ids=IDS,
        story_state_change_ids=IDS,
    ),
    "story_state_changes": kantata_object(state=STRING, formatted_state=STRING, created_at=DATE_TIME, updated_at=DATE_TIME),
    "invoices": kantata_object(
        title=STRING,
        user_invoice_number=INTEGER,
        draft=BOOLEAN,
        status={"enum": ["new", "cancelled", "accepted payment"]},
        invoice_date=DATE,
        due_date=DATE,
        payment_schedule=INTEGER,
        currency=STRING,
        currency_base_unit=INTEGER,
        tax_rate=NUMBER,
        balance_in_cents=INTEGER,
        message=STRING,
        created_at=DATE_TIME,
        updated_at=DATE_TIME,
        workspace_ids=IDS,
        time_entry_ids=IDS,
        fixed_fee_item_ids=IDS,
        additional_item_ids=IDS,
        external_reference_ids=IDS,
    ),
    "fixed_fee_items": kantata_object(**LINE_ITEM, story_id=INTEGER),
    "additional_items": kantata_object(**LINE_ITEM),
    "external_payments": kantata_object(
        amount_in_cents=INTEGER, currency=STRING, message=STRING, created_at=DATE_TIME, updated_at=DATE_TIME
    ),
    "time_off_entries": kantata_object(hours=NUMBER, requested_date=DATE, submission_date=DATE, user_id=STRING),
    "account_invitations": kantata_object(email_address=STRING, full_name=STRING, invitee_id=STRING),
    "roles": kantata_object(name=STRING, created_at=DATE_TIME, updated_at=DATE_TIME, deleted_at=DATE_TIME),
    "account_memberships": kantata_object(
        permission=STRING, default_role_id=STRING, user_id=STRING, disabled_at=DATE_TIME, created_at=DATE_TIME, updated_at=DATE_TIME
    ),
    "skill_categories": kantata_object(name=STRING, skill_ids=IDS),
    "skills": kantata_object(
        name=STRING, description=STRING, max_level=STRING, skill_category_id=STRING, created_at=DATE_TIME, updated_at=DATE_TIME
    ),
    "skill_memberships": kantata_object(
        cached_skill_name=STRING,
        level=INTEGER,
        max_level=INTEGER,
        skill_id=STRING,
        user_id=STRING,
        created_at=DATE_TIME,
        updated_at=DATE_TIME,
    ),
    "organizations": kantata_object(
        name=STRING,
        type={"enum": ["Department", "Geography"]},
        parent_id=STRING,
        ancestor_ids=IDS,
        created_at=DATE_TIME,
        updated_at=DATE_TIME,
    ),
    "organization_memberships": kantata_object(
        department_id=STRING,
        geography_id=STRING,
        member_id=STRING,
        member_type=STRING,
        primary=BOOLEAN,
        created_at=DATE_TIME,
        updated_at=DATE_TIME,
    ),
}
ENVELOPE = {
    "type": "object",
    "required": ["count", "meta", "results"],
    "properties": {
        "count": INTEGER,
        "meta": {
            "type": "object",
            "required": ["count", "page_count", "page_number", "page_size"],
            "properties": {name: INTEGER for name in ("count", "page_count", "page_number", "page_size")},
        },
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["key", "id"],
                "properties": {"key": STRING, "id": STRING},
                "additionalProperties": False,
            },
        },
        **{collection: {"type": "object", "additionalProperties": schema} for collection, schema in OBJECTS.items()},
    },
    "additionalProperties": False,
}


@pytest.fixture
def answers(sandbox, monkeypatch) -> list[tuple[str, Any]]:
    """Every decoded answer a Kantata hook gets in this test, with the call it answered."""
    seen: list[tuple[str, Any]] = []
    original = KantataHook.request

    def recording(self, method, path, **kwargs):  # noqa: ANN001, ANN202 - the hook's own signature
        body = original(self, method, path, **kwargs)
        seen.append((f"{method} {path}", body))
        return body

    monkeypatch.setattr(KantataHook, "request", recording)
    monkeypatch.setenv(
        "AIRFLOW_CONN_KANTATA_TEST", json.dumps({"conn_type": "kantata", "host": f"{sandbox.url}/kantata", "password": "sandbox-token"})
    )
    return seen


def test_every_answer_the_hook_reads_has_kantatas_shape(sandbox, answers):
    hook = KantataHook("kantata_test")
    project = {"name": "Acme — Data platform", "client": {"name": "Acme"}, "budget": "25000.00", "currency": "EUR", "end_date": None}
    hook.upsert_project("hubspot", "9101", project)
    hook.upsert_project("hubspot", "9101", {**project, "budget": "26000.00"})

    ends = sandbox.state.psa_time.week_ends()
    entries = [e for page in hook.iter_approved_time_entries(ends[-1] - timedelta(days=7), ends[-1]) for e in page]
    seed_id = next(e["id"] for e in sandbox.state.psa_time.entries if e["id"].removeprefix("TE-").lstrip("0") == entries[0]["id"])
    sandbox.state.psa_time.withdraw(seed_id, at=ends[-1] + timedelta(days=1), reason="unapproved")
    assert list(hook.iter_withdrawn_time_entries(ends[-1], ends[-1] + timedelta(days=2)))

    keeper = next(iter(sandbox.state.psa_time.people.values()))
    hook.upsert_person("bamboohr", "81", {"name": keeper["name"], "email": keeper["email"], "active": True})
    hook.upsert_person("bamboohr", "82", {"name": "Nia Newhire", "email": "nia@people.example", "role": "Analyst", "active": True})
    hook.replace_time_off("bamboohr", "82", "2026-11-01", "2026-11-30", [{"date": "2026-11-03", "hours": "8"}])
    hook.replace_time_off("bamboohr", "82", "2026-11-01", "2026-11-30", [{"date": "2026-11-03", "hours": "4"}])
    profile = {"department": "Cloud", "location": "Remote", "skills": ["SQL", "Spark"], "certifications": [{"name": "Scrum Master"}]}
    hook.upsert_person("bamboohr", "82", {"name": "Nia Newhire", "email": "nia@people.example", "role": "Analyst", **profile})
    hook.upsert_person(
        "bamboohr", "82", {"name": "Nia Newhire", "email": "nia@people.example", "role": "Consultant", "department": "Finance"}
    )

    billing = sandbox.state.billing
    assert [i for page in hook.iter_invoices(billing.period) for i in page]
    assert hook.count_unapproved_invoices(billing.period) == 0
    approved = min(datetime.fromisoformat(i["approved_at"].replace("Z", "+00:00")) for i in billing.invoices if i["approved_at"])
    assert list(hook.iter_invoices_between("approved", approved - timedelta(days=1), approved + timedelta(days=1)))
    invoice_id = next(i["id"] for page in hook.iter_invoices(billing.period) for i in page if i["status"] == "approved")
    hook.set_invoice_payment_status(
        invoice_id, {"status": "paid", "amount_paid": "1.00", "balance": "0.00", "currency": "EUR", "accounting_id": "171"}
    )
    completed = [datetime.fromisoformat(m["completed_at"].replace("Z", "+00:00")) for m in billing.milestones]
    assert hook.milestones(min(completed), max(completed) + timedelta(seconds=1))

    read = [(call, body) for call, body in answers if body]
    assert len(read) > 15
    for call, body in read:
        try:
            jsonschema.validate(body, ENVELOPE, format_checker=jsonschema.FormatChecker())
        except jsonschema.ValidationError as exc:
            pytest.fail(f"{call}: {exc.message} at {'/'.join(map(str, exc.absolute_path))}")
