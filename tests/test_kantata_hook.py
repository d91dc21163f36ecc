"""KantataHook against the Kantata sandbox: projects from deals created exactly once without an
idempotency key, the side-loaded answer envelope, ``only=`` misses, hidden objects, bare 429s.

Kantata behaviour these tests rely on, from its API reference (developer.kantata.com): answers
list ``results`` in canonical order beside id-keyed collections that may hold side-loaded extras;
``only=`` answers without a 404 for ids it does not show; archived projects are hidden by default
filters (``include_archived`` defaults to false) and their show route 404s; no POST takes an
idempotency key; external references tie objects to ids elsewhere; throttling answers 429 without
``Retry-After``.
"""

from __future__ import annotations

import json

import pytest
import requests

from backbone.hooks.kantata import KantataHook, records_in_order
from backbone_sandbox.faults import FaultRule
from backbone_sandbox.limits import SlidingWindowLimit

PROJECT = {
    "name": "Acme — Data platform",
    "client": {"external_id": "C-1", "name": "Acme Corp"},
    "contacts": [],
    "description": "Build the data platform",
    "estimated_hours": "120",
    "budget": "25000.00",
    "currency": "EUR",
    "billing_type": "time_and_materials",
    "start_date": "2026-11-02",
    "end_date": "2027-01-29",
    "payment_terms_days": 30,
}


@pytest.fixture
def hook(sandbox, monkeypatch) -> KantataHook:
    monkeypatch.setenv(
        "AIRFLOW_CONN_KANTATA_TEST", json.dumps({"conn_type": "kantata", "host": f"{sandbox.url}/kantata", "password": "sandbox-token"})
    )
    return KantataHook("kantata_test")


def test_a_deal_becomes_one_workspace_linked_by_its_external_reference(hook, sandbox):
    store = sandbox.state.kantata
    first = hook.upsert_project("hubspot", "9001", PROJECT)
    again = hook.upsert_project("hubspot", "9001", {**PROJECT, "budget": "27500.00"})
    assert first.created and not again.created and again.project_id == first.project_id
    assert len(store.workspaces) == 1 and store.workspaces[first.project_id]["price"] == 27500
    reference = hook.external_reference("Workspace", "hubspot", "deal", "9001")
    assert reference is not None and str(reference["subject_id"]) == first.project_id
    assert first.url.endswith(f"/workspaces/{first.project_id}")


def test_a_create_whose_answer_times_out_is_found_again_not_made_twice(hook, sandbox, monkeypatch):
    """The POST is applied and its answer comes too late: the hook looks up the deal's external
    reference before any new POST and adopts the workspace the lost answer had made."""
    monkeypatch.setenv("BACKBONE_HTTP_TIMEOUT_SECONDS", "1")
    slow = FaultRule(kind="slow_response", path_contains="/kantata/api/v1/workspaces", method="POST", delay_seconds=2.5, times=1)
    sandbox.state.faults.arm([slow])
    ref = KantataHook("kantata_test").upsert_project("hubspot", "9002", PROJECT)
    store = sandbox.state.kantata
    assert sandbox.state.faults.fired.get("slow_response") == 1
    assert ref.created and store.creates["workspaces"] == 1 and list(store.workspaces) == [ref.project_id]
    assert hook.external_reference("Workspace", "hubspot", "deal", "9002")["subject_id"] == int(ref.project_id)


def test_the_reference_is_made_with_the_workspace_in_one_request(hook, sandbox):
    """The create body carries the external reference, so no moment exists in which the workspace
    is there and its link is not (a crash between two calls would leave an orphan to duplicate)."""
    hook.upsert_project("hubspot", "9003", PROJECT)
    store = sandbox.state.kantata
    assert store.creates == {"workspaces": 1, "external_references": 1}


def test_a_workspace_deleted_in_kantata_is_made_again(hook, sandbox):
    """Kantata deletes are hard: a reference may name a workspace that is gone. The deal gets a new one."""
    first = hook.upsert_project("hubspot", "9007", PROJECT)
    del sandbox.state.kantata.workspaces[first.project_id]
    again = hook.upsert_project("hubspot", "9007", PROJECT)
    assert again.created and again.project_id != first.project_id
    assert hook.external_reference("Workspace", "hubspot", "deal", "9007")["subject_id"] == int(again.project_id)


def test_an_archived_workspace_is_hidden_by_default_but_still_found(hook, sandbox):
    """Default filters hide archived projects (the show route 404s); the hook looks up with
    ``include_archived`` so a deal's archived project is updated, not made again."""
    first = hook.upsert_project("hubspot", "9004", PROJECT)
    sandbox.state.kantata.workspaces[first.project_id]["archived"] = True
    shown = requests.get(
        f"{sandbox.url}/kantata/api/v1/workspaces/{first.project_id}.json", headers={"Authorization": "Bearer sandbox-token"}, timeout=5
    )
    assert shown.status_code == 404 and shown.json()["errors"][0]["message"]
    assert hook.visible("workspaces", [first.project_id]) == {}
    again = hook.upsert_project("hubspot", "9004", PROJECT)
    assert again.project_id == first.project_id and len(sandbox.state.kantata.workspaces) == 1


def test_only_answers_the_ids_it_shows_without_a_404(hook, sandbox):
    made = hook.upsert_project("hubspot", "9005", PROJECT)
    found = hook.visible("workspaces", [made.project_id, "999999", "not-an-id"])
    assert list(found) == [made.project_id]


def test_side_loaded_extras_are_not_read_as_results():
    body = {
        "count": 1,
        "results": [{"key": "workspaces", "id": "7"}, {"key": "users", "id": "3"}],
        "workspaces": {"9": {"id": "9", "title": "side-loaded parent"}, "7": {"id": "7", "title": "the result"}},
        "users": {"3": {"id": "3"}},
    }
    assert [w["title"] for w in records_in_order(body, "workspaces")] == ["the result"]
    with pytest.raises(Exception, match="without the object"):
        records_in_order({"results": [{"key": "workspaces", "id": "8"}], "workspaces": {}}, "workspaces")


def test_pages_follow_results_order_across_pages(hook, sandbox):
    store = sandbox.state.kantata
    for n in range(5):
        store.create_workspace({"title": f"Project {n}", "description": "paging"})
    seen = [w["id"] for page in hook.pages("workspaces", {"search": "description:'paging'"}, per_page=2) for w in page]
    assert len(seen) == 5 == len(set(seen))


def test_a_throttled_call_without_retry_after_is_retried(hook, sandbox):
    sandbox.state.faults.arm([FaultRule(kind="status", status=429, path_contains="/kantata/api/v1/workspaces", times=2)])
    ref = hook.upsert_project("hubspot", "9006", PROJECT)
    assert ref.created and sandbox.state.faults.fired["status"] == 2


def test_the_sandbox_throttles_as_kantata_does_without_retry_after(sandbox):
    sandbox.state.limits["kantata"] = SlidingWindowLimit(1, 60.0)
    url = f"{sandbox.url}/kantata/api/v1/workspaces.json"
    answers = [requests.get(url, headers={"Authorization": "Bearer sandbox-token"}, timeout=5) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 429]
    assert "Retry-After" not in answers[1].headers and answers[1].json()["errors"]
    refused = requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=5)
    assert refused.status_code == 401 and refused.json()["errors"][0]["message"]


# --- approved time -------------------------------------------------------------------------------


def _comparable(entry: dict) -> tuple:
    """A time entry without the vendor's ids and stamps' spelling: what the business sees."""
    from datetime import datetime
    from decimal import Decimal

    return (
        entry["spent_date"],
        Decimal(entry["hours"]),
        entry["billable"],
        entry["billable_rate"],
        entry["currency"],
        entry["user"]["name"],
        entry["user"]["email"],
        entry["user"]["type"],
        entry["client"].get("name"),
        entry["project"]["name"],
        entry["task"]["billing_code"],
        datetime.fromisoformat(entry["approved_at"].replace("Z", "+00:00")),
    )


def _week_windows(sandbox):
    from datetime import timedelta

    return [(end - timedelta(days=7), end) for end in sandbox.state.psa_time.week_ends()]


def test_approved_time_on_kantata_is_the_same_week_as_on_the_psa_api(hook, sandbox):
    """Each export week read through timesheet submissions equals our PSA API's approved list,
    hour for hour, late approvals in the week they were approved. The one planted record Kantata's
    wire cannot carry (one id served twice with different content) is left out of the comparison."""
    from backbone.hooks.psa import PsaHook

    psa = PsaHook("psa_default")
    planted = sandbox.state.psa_time.bad_entries
    from backbone_sandbox.kantata_time import NOT_ON_KANTATA

    twins = {e["id"] for e in sandbox.state.psa_time.entries if planted.get(e["id"]) in NOT_ON_KANTATA}
    total = 0
    for start, end in _week_windows(sandbox):
        ours = sorted(_comparable(e) for page in psa.iter_approved_time_entries(start, end) for e in page if e["id"] not in twins)
        theirs = [e for page in hook.iter_approved_time_entries(start, end, page_size=50) for e in page]
        assert sorted(_comparable(e) for e in theirs if e["id"] not in {t.removeprefix("TE-").lstrip("0") for t in twins}) == ours
        assert all(e["version"] > 0 and e["approval_status"] == "approved" for e in theirs)
        total += len(ours)
    assert total > 300


def test_an_approval_withdrawn_after_export_is_listed_with_a_higher_version(hook, sandbox):
    from datetime import timedelta

    start, end = _week_windows(sandbox)[-1]
    entry = next(e for page in hook.iter_approved_time_entries(start, end) for e in page)
    seed_id = next(e["id"] for e in sandbox.state.psa_time.entries if e["id"].removeprefix("TE-").lstrip("0") == entry["id"])
    later = end + timedelta(days=2)
    sandbox.state.psa_time.withdraw(seed_id, at=later, reason="unapproved")
    withdrawn = [w for page in hook.iter_withdrawn_time_entries(later - timedelta(hours=1), later + timedelta(hours=1)) for w in page]
    assert [w["id"] for w in withdrawn] == [entry["id"]] and withdrawn[0]["version"] > entry["version"]
    assert entry["id"] not in {e["id"] for page in hook.iter_approved_time_entries(start, end) for e in page}


# --- people and time off --------------------------------------------------------------------------

PERSON = {"name": "Nia Newhire", "email": "nia.newhire@people.example", "role": "Data Engineer", "active": True}


def test_a_person_kantata_has_is_linked_by_email_not_invited(hook, sandbox):
    keeper = next(iter(sandbox.state.psa_time.people.values()))
    assert hook.upsert_person("bamboohr", "77", {**PERSON, "name": keeper["name"], "email": keeper["email"]}) is False
    assert hook.upsert_person("bamboohr", "77", {**PERSON, "name": keeper["name"], "email": keeper["email"]}) is False
    store = sandbox.state.kantata
    assert "account_invitations" not in store.creates
    (reference,) = [r for r in store.external_references.values() if r["subject_type"] == "User"]
    assert reference["service_model_ref"] == "77" and reference["service_model"] == "employee"


def test_a_new_hire_is_invited_once_even_when_the_answer_is_lost(hook, sandbox, monkeypatch):
    """POST /account_invitations takes no idempotency key: after a timed-out answer the hook finds
    the invitee by e-mail address instead of inviting again (a second invitation would be refused
    or, worse, a second licence)."""
    monkeypatch.setenv("BACKBONE_HTTP_TIMEOUT_SECONDS", "1")
    slow = FaultRule(kind="slow_response", path_contains="/kantata/api/v1/account_invitations", method="POST", delay_seconds=2.5, times=1)
    sandbox.state.faults.arm([slow])
    assert KantataHook("kantata_test").upsert_person("bamboohr", "501", PERSON) is True
    assert hook.upsert_person("bamboohr", "501", PERSON) is False
    store = sandbox.state.kantata
    assert sandbox.state.faults.fired.get("slow_response") == 1 and store.creates["account_invitations"] == 1
    assert [u["email_address"] for u in store.invited_users.values()] == [PERSON["email"]]


def test_a_leaver_without_a_kantata_user_is_not_invited(hook, sandbox):
    assert hook.upsert_person("bamboohr", "502", {**PERSON, "email": "gone@people.example", "active": False}) is False
    assert hook.replace_time_off("bamboohr", "502", "2026-11-01", "2026-11-30", [{"date": "2026-11-03", "hours": "8"}]) is False
    assert not sandbox.state.kantata.invited_users


def test_time_off_is_replaced_inside_the_window_only(hook, sandbox):
    hook.upsert_person("bamboohr", "503", PERSON)
    days = [{"date": "2026-11-03", "hours": "8"}, {"date": "2026-11-04", "hours": "4"}]
    assert hook.replace_time_off("bamboohr", "503", "2026-11-01", "2026-11-30", days) is True
    assert hook.replace_time_off("bamboohr", "503", "2026-11-01", "2026-11-30", days) is False
    outside = hook.replace_time_off("bamboohr", "503", "2026-12-01", "2026-12-31", [{"date": "2026-12-24", "hours": "8"}])
    changed = hook.replace_time_off("bamboohr", "503", "2026-11-01", "2026-11-30", [{"date": "2026-11-04", "hours": "8"}])
    entries = {e["requested_date"]: e["hours"] for e in sandbox.state.kantata.time_off_entries.values()}
    assert outside and changed and entries == {"2026-11-04": 8.0, "2026-12-24": 8.0}


def test_a_time_off_post_whose_answer_is_lost_is_not_added_twice(hook, sandbox, monkeypatch):
    """Kantata adds a second POST's hours to the day's entry: a blind retry would make 8 hours 16."""
    hook.upsert_person("bamboohr", "504", PERSON)
    monkeypatch.setenv("BACKBONE_HTTP_TIMEOUT_SECONDS", "1")
    slow = FaultRule(kind="slow_response", path_contains="/kantata/api/v1/time_off_entries", method="POST", delay_seconds=2.5, times=1)
    sandbox.state.faults.arm([slow])
    days = [{"date": "2026-11-05", "hours": "8"}]
    assert KantataHook("kantata_test").replace_time_off("bamboohr", "504", "2026-11-01", "2026-11-30", days) is True
    assert sandbox.state.faults.fired.get("slow_response") == 1
    assert [e["hours"] for e in sandbox.state.kantata.time_off_entries.values()] == [8.0]


def test_submissions_that_move_while_paging_are_read_again(monkeypatch):
    """Kantata pages by number: a submission updated during the read can shift the pages so one is
    skipped. The hook reads the whole list first, and reads it again when the ids fall short of the count."""
    from datetime import UTC, datetime

    def page(ids, count):  # noqa: ANN001, ANN202
        rows = {i: {"id": i, "status": "approved", RESOLVED: "2026-10-30T14:00:00Z", "time_entry_ids": [f"t{i}"]} for i in ids}
        return {
            "count": count,
            "meta": {"count": count},
            "results": [{"key": "timesheet_submissions", "id": i} for i in ids],
            "timesheet_submissions": rows,
        }

    RESOLVED = "current_resolution_created_at_date"
    reads = iter([[page(["1", "2"], 3), page(["2"], 3)], [page(["1", "2"], 3), page(["3"], 3)]])  # a shift, then a clean read
    monkeypatch.setattr(KantataHook, "bodies", lambda self, collection, params=None, per_page=200: iter(next(reads)))
    hook = KantataHook.__new__(KantataHook)
    groups = list(
        hook._resolved_submissions("approved", datetime(2026, 10, 30, tzinfo=UTC), datetime(2026, 10, 31, tzinfo=UTC), page_size=10)
    )
    assert [s["id"] for group in groups for s in group] == ["1", "2", "3"]


# --- invoices, payment status and milestones ---------------------------------------------------
def billing_hook(sandbox, monkeypatch, **extra) -> KantataHook:
    conn = {"conn_type": "kantata", "host": f"{sandbox.url}/kantata", "password": "sandbox-token", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_KANTATA_BILLING", json.dumps(conn))
    return KantataHook("kantata_billing")


def test_a_months_invoices_read_from_kantata_are_the_seeds_invoices_it_can_carry(sandbox, monkeypatch):
    """Every finished invoice of the month the account has, in our PSA API's shape: time lines from
    the invoice's time entries (one per person and rate), fixed fees with the milestone they bill,
    tax from the tax rate, the fixed-fee project's CRM deal from its external reference."""
    from backbone_sandbox.kantata_billing import KantataBillingView, kantata_invoice_id

    hook = billing_hook(sandbox, monkeypatch, tax_codes={"21": "VAT21", "0": "EXEMPT"})
    billing = sandbox.state.billing
    left_out = KantataBillingView(sandbox.state).left_out()
    got = {i["id"]: i for page in hook.iter_invoices(billing.period, page_size=5) for i in page}
    wanted = {kantata_invoice_id(i["id"]): i for i in billing.for_period(billing.period) if i["id"] not in left_out}
    assert set(got) == set(wanted) and len(got) >= 8
    for kid, seed in wanted.items():
        invoice = got[kid]
        assert (invoice["subtotal"], invoice["tax_code"], invoice["tax_amount"], invoice["total"]) == (
            seed["subtotal"],
            seed["tax_code"],
            seed["tax_amount"],
            seed["total"],
        )
        assert invoice["status"] == seed["status"] and invoice["billing_type"] == seed["billing_type"]
        assert invoice["client"]["name"] == seed["client"]["name"] and invoice["issue_date"] == seed["issue_date"]
        assert sorted(line["amount"] for line in invoice["lines"]) == sorted(line["amount"] for line in seed["lines"])
        if seed["billing_type"] == "fixed_fee":
            assert invoice["project"]["crm_deal_id"] == seed["project"]["crm_deal_id"]
            assert [line["milestone"]["name"] for line in invoice["lines"]] == [line["milestone"]["name"] for line in seed["lines"]]
    assert set(left_out.values()) >= {"Kantata has no credit notes", "Kantata computes tax and total from the lines and the tax rate"}


def test_an_unnamed_tax_rate_reaches_validation_as_a_percentage(sandbox, monkeypatch):
    hook = billing_hook(sandbox, monkeypatch)
    codes = {i["tax_code"] for page in hook.iter_invoices(sandbox.state.billing.period) for i in page}
    assert codes == {"21%", "0%"}


def test_drafts_are_counted_as_unapproved_and_an_approval_is_read_by_its_window(sandbox, monkeypatch):
    """Kantata keeps no approval time: finishing a draft updates the invoice, and the window that
    holds that update reads it."""
    from datetime import UTC, datetime, timedelta

    from backbone_sandbox.kantata_billing import kantata_invoice_id

    hook = billing_hook(sandbox, monkeypatch)
    billing = sandbox.state.billing
    target = next(
        i for i in billing.invoices if i["type"] == "invoice" and i["status"] == "approved" and i["id"] not in billing.bad_invoices
    )
    billing.submit(target["id"])
    assert hook.count_unapproved_invoices(billing.period) == 1
    assert kantata_invoice_id(target["id"]) not in {i["id"] for page in hook.iter_invoices(billing.period) for i in page}

    approved = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
    billing.approve(target["id"], at=approved)
    window = [
        i["id"]
        for page in hook.iter_invoices_between("approved", approved - timedelta(hours=1), approved + timedelta(hours=1))
        for i in page
    ]
    assert window == [kantata_invoice_id(target["id"])]
    assert not list(hook.iter_invoices_between("approved", approved + timedelta(hours=1), approved + timedelta(days=1)))
    assert hook.count_unapproved_invoices(billing.period) == 0
    with pytest.raises(NotImplementedError, match="finance release"):
        list(hook.iter_invoices_between("released", approved, approved + timedelta(hours=1)))


def test_payment_status_is_written_once_and_a_paid_invoice_gets_one_external_payment(sandbox, monkeypatch):
    """The status rides on the invoice's accounting reference (a repeat writes nothing); paid in
    full, Kantata records one external payment, even when the answer to its POST is lost."""
    from backbone_sandbox.kantata_billing import KantataBillingView

    hook = billing_hook(sandbox, monkeypatch)
    monkeypatch.setenv("BACKBONE_HTTP_TIMEOUT_SECONDS", "1")
    view = KantataBillingView(sandbox.state)
    invoice_id = next(k for k, i in view.invoices().items() if i["status"] == "new" and not i["draft"])
    partial = {"status": "partially_paid", "amount_paid": "100.00", "balance": "50.00", "currency": "EUR", "accounting_id": "171"}
    assert hook.set_invoice_payment_status(invoice_id, partial) is True
    assert hook.set_invoice_payment_status(invoice_id, partial) is False
    assert hook.set_invoice_payment_status(invoice_id, {**partial, "balance": "50.0"}) is False  # the same amount written otherwise
    reference = hook.external_reference("Invoice", "accounting", "invoice", "171")
    assert reference["external_status"] == "partially_paid" and str(reference["subject_id"]) == invoice_id

    sandbox.state.faults.arm([FaultRule(kind="slow_response", path_contains="/external_payments", method="POST", delay_seconds=2.5)])
    paid = {**partial, "status": "paid", "amount_paid": "150.00", "balance": "0.00"}
    assert hook.set_invoice_payment_status(invoice_id, paid) is True
    assert hook.set_invoice_payment_status(invoice_id, paid) is False
    assert [p["invoice_id"] for p in view.payments().values()] == [invoice_id]
    assert view.invoices()[invoice_id]["status"] == "accepted payment"


def test_milestones_completed_in_a_window_carry_their_deal(sandbox, monkeypatch):
    from datetime import datetime

    hook = billing_hook(sandbox, monkeypatch)
    seed = sandbox.state.billing.milestones
    moments = sorted(datetime.fromisoformat(m["completed_at"].replace("Z", "+00:00")) for m in seed)
    got = hook.milestones(moments[0], moments[-1])
    assert sorted(m["name"] for m in got) == sorted(m["name"] for m in seed[:-1] if m["completed_at"] != seed[-1]["completed_at"])
    assert {m["crm_deal_id"] for m in got} <= {m["crm_deal_id"] for m in seed}
    assert all(m["project_name"] and m["completed_at"] for m in got)


# --- a person's role, skills, certifications, department and location ---------------------------

PROFILE = {
    **PERSON,
    "role": "Analytics Engineer",
    "department": "Cloud",
    "location": "Utrecht",
    "skills": ["Python", "dbt"],
    "certifications": [{"name": "Scrum Master", "expires_on": None}, {"name": "AWS Solutions Architect", "expires_on": "2027-03-31"}],
}


def _profile_of(sandbox, email: str) -> dict:
    from backbone_sandbox.kantata_people import account_users
    from backbone_sandbox.kantata_profiles import KantataProfiles
    from backbone_sandbox.kantata_time import KantataTimeView

    view = KantataTimeView(sandbox.state)
    (user_id,) = [u for u, r in account_users(view, sandbox.state.kantata).items() if r["email_address"] == email]
    return KantataProfiles(sandbox.state.kantata, view).profile(user_id)


def test_a_persons_role_skills_and_department_reach_kantata_once_and_follow_hr(hook, sandbox):
    """The role HR names becomes the member's default role (made once when the account lacks it);
    skills and certifications become skill memberships (certifications in Kantata's Certification
    category); department and location place the member in the account's two organization trees.
    A second push changes nothing; a changed HR record replaces role, skills and placement."""
    hook.upsert_person("bamboohr", "601", PROFILE)
    assert _profile_of(sandbox, PERSON["email"]) == {
        "role": "Analytics Engineer",
        "department": "Cloud",
        "geography": "Utrecht",
        "skills": ["Python", "dbt"],
        "certifications": ["AWS Solutions Architect", "Scrum Master"],
    }
    store = sandbox.state.kantata
    creates, updates = dict(store.creates), dict(store.updates)
    assert creates["roles"] == 1 and creates["skills"] == 2 and creates["skill_memberships"] == 1  # one bulk POST
    KantataHook("kantata_test").upsert_person("bamboohr", "601", PROFILE)
    assert dict(store.creates) == creates and dict(store.updates) == updates

    moved = {**PROFILE, "role": "Data Engineer", "department": "Consulting", "skills": ["dbt"], "certifications": []}
    KantataHook("kantata_test").upsert_person("bamboohr", "601", moved)
    assert _profile_of(sandbox, PERSON["email"]) == {
        "role": "Data Engineer",
        "department": "Consulting",
        "geography": "Utrecht",
        "skills": ["dbt"],
        "certifications": [],
    }
    assert store.creates["roles"] == 1 and len(store.organization_memberships) == 1


def test_skills_whose_answer_is_lost_are_not_given_twice(hook, sandbox, monkeypatch):
    """Kantata refuses a skill the user already holds (422): a blind retry of the bulk POST would
    fail the person. After the lost answer the hook reads what the user holds and sends nothing more."""
    monkeypatch.setenv("BACKBONE_HTTP_TIMEOUT_SECONDS", "1")
    slow = FaultRule(kind="slow_response", path_contains="/kantata/api/v1/skill_memberships", method="POST", delay_seconds=2.5, times=1)
    sandbox.state.faults.arm([slow])
    KantataHook("kantata_test").upsert_person("bamboohr", "602", PROFILE)
    assert sandbox.state.faults.fired.get("slow_response") == 1
    assert sandbox.state.kantata.creates["skill_memberships"] == 1
    assert _profile_of(sandbox, PERSON["email"])["skills"] == ["Python", "dbt"]


def test_a_department_kantata_does_not_have_leaves_the_person_where_they_are(hook, sandbox, caplog):
    """Departments and geographies are trees Kantata's administrators keep: the hook never grows
    them. The role and skills still arrive; the log says what was not placed."""
    hook.upsert_person("bamboohr", "603", {**PROFILE, "department": "Legal"})
    profile = _profile_of(sandbox, PERSON["email"])
    assert profile["department"] is None and profile["role"] == "Analytics Engineer" and profile["skills"] == ["Python", "dbt"]
    assert "department 'Legal'" in caplog.text and not sandbox.state.kantata.organization_memberships
