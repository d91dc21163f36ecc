"""The same business on both PSAs: our PSA API and Kantata OX.

Closed-won and every week of the Friday export run for real (``dag.test()``), once with the PSA
Connection on our PSA API and once on Kantata, each on a fresh sandbox seeded with the same
business. The warehouses must end up the same apart from the PSA's ids, and Kantata must hold one
workspace per loaded deal, linked to it by external reference. A second pass over the same
intervals on Kantata changes nothing. The HR roster's people and time off reach both alike.

Left out of the comparison, on purpose: the records our PSA API's seed plants that Kantata's wire
cannot carry (``NOT_ON_KANTATA``: the same entry id served twice with different content, which
Kantata's id-keyed answers make impossible, and a rate that is not a number, where Kantata's
``rate_in_cents`` is an integer), and the invoices it cannot carry (``KantataBillingView.left_out``:
a credit note, tax or totals other than its tax rate makes, time lines that are not the invoice's
time entries, a client other than the project's, one number used twice).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from backbone_sandbox.kantata_billing import KantataBillingView, kantata_invoice_id
from backbone_sandbox.kantata_time import NOT_ON_KANTATA
from tests.conftest import ANCHOR, SANDBOX_PORT, forget_rotated_tokens, start_sandbox
from tests.helpers import rows, run_dag
from tests.test_vendor_pairs_e2e import empty

pytestmark = pytest.mark.e2e
CLOSED_WON, TIMESHEETS = "crm_closed_won_to_psa", "timesheets_weekly_to_accounting"
LEFT_OUT = ", ".join(f"'{rule}'" for rule in sorted(NOT_ON_KANTATA))

PSA_QUERIES = {
    "projects": "SELECT project_name, deal_stage, estimated_hours, contract_value, currency, billing_type, contract_start_date, "
    "contract_end_date, payment_terms_days FROM psa.project ORDER BY 1, 4, 7",
    "linked projects": "SELECT count(*), count(DISTINCT psa_project_id) FROM psa.project WHERE psa_project_id IS NOT NULL",
    "time entries": "SELECT person_email, billing_code, work_date, hours, billable, hourly_rate, currency, approved_at FROM psa.time_entry "
    "ORDER BY 1, 3, 2, 4, 8",
}
ACCOUNTING_QUERIES = {
    "time export": "SELECT person_name, name_of, person_ref_id, client_name, customer_ref_id, project_name, billing_code, item_ref_id, "
    "gl_account, work_date, hours, minutes, hourly_rate, amount, currency, billable_status, action, posting_status, interval_end "
    "FROM acct.time_export ORDER BY 1, 10, 7, 11, 6, 19",
    "exceptions": f"SELECT flow, entity, rule, count(*) FROM ops.quarantine WHERE rule NOT IN ({LEFT_OUT}) "
    "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
}


def run_flows(dagbag, sandbox, monkeypatch, psa_conn_id: str) -> None:
    monkeypatch.setenv("BACKBONE_PSA_CONN_ID", psa_conn_id)
    for flow, logical_date in [(CLOSED_WON, ANCHOR), *((TIMESHEETS, end) for end in sandbox.state.psa_time.week_ends())]:
        dag_run = run_dag(dagbag, flow, logical_date, retries=0)
        assert dag_run.state == "success", f"{flow} {logical_date} on {psa_conn_id}: {dag_run.state}"


def snapshot(psa_warehouse, accounting_warehouse) -> dict[str, list[tuple]]:
    state = {name: [tuple(r) for r in rows(psa_warehouse, query)] for name, query in PSA_QUERIES.items()}
    return state | {name: [tuple(r) for r in rows(accounting_warehouse, query)] for name, query in ACCOUNTING_QUERIES.items()}


def test_closed_won_and_the_weekly_export_give_the_same_warehouses_on_kantata(dagbag, psa_warehouse, accounting_warehouse, monkeypatch):
    running, server, thread = start_sandbox(SANDBOX_PORT)
    try:
        run_flows(dagbag, running, monkeypatch, "psa_default")
        expected = snapshot(psa_warehouse, accounting_warehouse)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    empty(psa_warehouse, accounting_warehouse)
    forget_rotated_tokens()

    running, server, thread = start_sandbox(SANDBOX_PORT)
    try:
        run_flows(dagbag, running, monkeypatch, "kantata_default")
        got = snapshot(psa_warehouse, accounting_warehouse)
        for name in expected:
            assert got[name] == expected[name], name
        posted = [r for r in got["time export"] if r[17] == "posted"]
        assert len(expected["projects"]) == 75 and len(posted) > 100

        # One workspace per loaded deal, each found again by its deal's external reference.
        kantata = running.state.kantata
        linked = rows(psa_warehouse, "SELECT crm_deal_id, psa_project_id FROM psa.project")
        assert len(kantata.workspaces) == kantata.creates["workspaces"] and len({p for _, p in linked}) == len(linked)
        assert len(kantata.workspaces) + len(kantata.seeded_workspaces) >= len(linked)  # a seeded fixed-fee project is its deal's
        references = {(r["service_model_ref"], r["subject_id"]) for r in kantata.external_references.values()}
        assert {(deal, project) for deal, project in linked} <= references

        # The same intervals again: nothing new in Kantata, nothing new posted, the same warehouses.
        creates, time_activities = dict(kantata.creates), len(running.state.qbo.entities["TimeActivity"])
        run_flows(dagbag, running, monkeypatch, "kantata_default")
        assert dict(kantata.creates) == creates and len(running.state.qbo.entities["TimeActivity"]) == time_activities
        assert snapshot(psa_warehouse, accounting_warehouse) == got
    finally:
        server.should_exit = True
        thread.join(timeout=10)


HR_FLOW = "hr_roster_pto_to_psa"
HR_RUN_DAY = datetime(2026, 11, 2, 4, 0, tzinfo=UTC)  # Monday 05:00 Amsterdam


def psa_api_people(state) -> dict[str, dict]:
    """Our PSA API's people, by e-mail address: their role, department, location, skills,
    certifications and time off."""
    out = {}
    for key, person in state.psa.people.items():
        out[person["email"].lower()] = {
            "role": person["role"],
            "department": person["department"],
            "geography": person["location"],
            "skills": sorted(person["skills"]),
            "certifications": sorted(c["name"] for c in person["certifications"]),
            "time_off": {day: Decimal(hours) for day, hours in state.psa.time_off.get(key, {}).items()},
        }
    return out


def kantata_people(state) -> dict[str, dict]:
    """Kantata's users linked to an HR id, by e-mail address: the same, read from their account
    membership, organization membership, skill memberships and time off entries."""
    from backbone_sandbox.kantata_people import account_users
    from backbone_sandbox.kantata_profiles import KantataProfiles
    from backbone_sandbox.kantata_time import KantataTimeView

    view = KantataTimeView(state)
    users, profiles = account_users(view, state.kantata), KantataProfiles(state.kantata, view)
    linked = {r["subject_id"] for r in state.kantata.external_references.values() if r["subject_type"] == "User"}
    out = {users[u]["email_address"].lower(): {**profiles.profile(u), "time_off": {}} for u in linked}
    for entry in state.kantata.time_off_entries.values():
        out[users[entry["user_id"]]["email_address"].lower()]["time_off"][entry["requested_date"]] = Decimal(str(entry["hours"]))
    return out


def test_hr_people_and_time_off_reach_kantata_as_they_reach_the_psa_api(dagbag, hr_warehouse, monkeypatch):
    """The HR roster run once on each PSA: every person the PSA API got is a linked Kantata user
    (the seed's time keepers found by e-mail, the others invited once), each with the same role,
    department, location, skills, certifications and days off. A rerun on Kantata invites no one,
    makes no role or skill and changes nothing."""
    results = {}
    for conn_id, read in (("psa_default", psa_api_people), ("kantata_default", kantata_people)):
        running, server, thread = start_sandbox(SANDBOX_PORT)
        try:
            monkeypatch.setenv("BACKBONE_PSA_CONN_ID", conn_id)
            assert run_dag(dagbag, HR_FLOW, HR_RUN_DAY, retries=0).state == "success"
            results[conn_id] = read(running.state)
            if conn_id == "kantata_default":
                kantata = running.state.kantata
                creates, updates, people = dict(kantata.creates), dict(kantata.updates), read(running.state)
                assert run_dag(dagbag, HR_FLOW, HR_RUN_DAY + timedelta(days=1), retries=0).state == "success"
                assert dict(kantata.creates) == creates and dict(kantata.updates) == updates and read(running.state) == people
                keepers = {p["email"].lower() for p in running.state.psa_time.people.values()}
                invited = {u["email_address"].lower() for u in kantata.invited_users.values()}
                assert invited and not invited & keepers
        finally:
            server.should_exit = True
            thread.join(timeout=10)
        with hr_warehouse.begin() as connection:
            connection.execute(
                text(
                    "TRUNCATE hr.person, hr.person_history, hr.department, hr.skill, hr.certification, hr.time_off_day, "
                    "hr.company_holiday, hr.capacity, ops.flow_run, ops.flow_run_attempt, ops.staged_record, ops.quarantine, "
                    "ops.deadline_alert"
                )
            )
    assert results["kantata_default"] == results["psa_default"]
    assert sum(len(p["time_off"]) for p in results["psa_default"].values()) > 10
    assert sum(len(p["certifications"]) for p in results["psa_default"].values()) > 3


def test_time_sent_back_on_kantata_after_export_is_reversed_in_accounting_once(
    dagbag, sandbox, accounting_warehouse, psa_warehouse, monkeypatch
):
    """Approved time a PM sends back (a rejected submission) or cancels after the export is
    reversed in accounting by the next week's run, once; running that week again reverses nothing."""
    monkeypatch.setenv("BACKBONE_PSA_CONN_ID", "kantata_default")
    state = sandbox.state
    week_end = state.psa_time.week_end
    assert run_dag(dagbag, TIMESHEETS, week_end, retries=0).state == "success"
    exported = rows(accounting_warehouse, "SELECT entry_id, accounting_id FROM acct.time_export ORDER BY entry_id LIMIT 2")
    (rejected, rejected_record), (cancelled, cancelled_record) = exported
    state.psa_time.withdraw(f"TE-{int(rejected):08d}", at=week_end + timedelta(days=2), reason="unapproved")
    state.psa_time.withdraw(f"TE-{int(cancelled):08d}", at=week_end + timedelta(days=3), reason="deleted")

    next_end = week_end + timedelta(days=7)
    assert run_dag(dagbag, TIMESHEETS, next_end, retries=0).state == "success"
    assert rejected_record not in state.qbo.entities["TimeActivity"] and cancelled_record not in state.qbo.entities["TimeActivity"]
    assert state.qbo.deletes["TimeActivity"] == 2
    actions = rows(
        accounting_warehouse, "SELECT action, posting_status FROM acct.time_export WHERE entry_id = :e ORDER BY entry_version", e=rejected
    )
    assert [tuple(a) for a in actions] == [("create", "posted"), ("delete", "posted")]

    assert run_dag(dagbag, TIMESHEETS, next_end, retries=0).state == "success"
    assert state.qbo.deletes["TimeActivity"] == 2


INVOICES, PAYMENTS, MILESTONES = "invoices_month_end_to_accounting", "payments_to_psa", "psa_milestones_to_crm"
EXPENSES = "expenses_weekly_to_accounting"
INVOICE_COLUMNS = (
    "kind, billing_type, period, client_name, currency, issue_date, due_date, hours, subtotal, tax_code, tax_amount, total, "
    "posting_status, hold_rule"
)


def month_end_on(dagbag, monkeypatch, psa_warehouse, accounting_warehouse, conn_id: str) -> dict:
    """October's weeks and month-end, one invoice paid in accounting and read back, milestones to
    the CRM, on a fresh sandbox: the outcome by Kantata invoice id, the planted invoices Kantata
    never had left out."""
    running, server, thread = start_sandbox(SANDBOX_PORT)
    try:
        monkeypatch.setenv("BACKBONE_PSA_CONN_ID", conn_id)
        state = running.state
        left_out = KantataBillingView(state).left_out()
        weeks = state.psa_time.week_ends()
        # The PSA API's expenses are exported too (T&M invoices re-bill them and month-end reconciles
        # them); Kantata's are not read yet, and its invoices carry them as additional items.
        expenses = [(EXPENSES, weeks[0]), (EXPENSES, weeks[-1] + timedelta(days=7))] if conn_id == "psa_default" else []
        for flow, logical_date in [*((TIMESHEETS, end) for end in [*weeks, weeks[-1] + timedelta(days=7)]), *expenses, (INVOICES, ANCHOR)]:
            assert run_dag(dagbag, flow, logical_date, retries=0).state == "success", f"{flow} {logical_date} on {conn_id}"
        key = (lambda i: i) if conn_id == "kantata_default" else kantata_invoice_id
        invoices = {
            key(r[0]): tuple(r[1:])
            for r in rows(accounting_warehouse, f"SELECT psa_invoice_id, {INVOICE_COLUMNS} FROM acct.invoice")
            if r[0] not in left_out
        }
        paid_seed = next(i for i in state.billing.invoices if i["status"] == "approved" and i["id"] not in state.billing.bad_invoices)
        paid_id = kantata_invoice_id(paid_seed["id"]) if conn_id == "kantata_default" else paid_seed["id"]
        ref, total = rows(accounting_warehouse, "SELECT accounting_id, total FROM acct.invoice WHERE psa_invoice_id = :i", i=paid_id)[0]
        state.qbo.pay(ref, total)
        payments_day = datetime.now(UTC) + timedelta(days=1)  # the sandbox stamps payments with the real clock
        assert run_dag(dagbag, PAYMENTS, payments_day, retries=0).state == "success"
        assert run_dag(dagbag, MILESTONES, ANCHOR, retries=0).state == "success"
        statuses = {
            key(r[0]): r[1] for r in rows(psa_warehouse, "SELECT psa_invoice_id, status FROM psa.invoice_status") if r[0] not in left_out
        }
        deals = {
            m["crm_deal_id"]: {k: v for k, v in state.crm.objects["deals"][m["crm_deal_id"]]["properties"].items() if k.startswith("psa_")}
            for m in state.billing.milestones
        }
        outcome = {"invoices": invoices, "statuses": statuses, "deals": deals, "paid": kantata_invoice_id(paid_seed["id"])}
        if conn_id == "kantata_default":
            view = KantataBillingView(state)
            assert view.invoices()[outcome["paid"]]["status"] == "accepted payment"
            assert [p["invoice_id"] for p in view.payments().values()] == [outcome["paid"]]
            # Again: nothing posted twice, nothing written back twice, no CRM write.
            objects, creates, crm = len(state.qbo.entities["Invoice"]), dict(state.kantata.creates), state.crm.version
            assert run_dag(dagbag, INVOICES, ANCHOR, retries=0).state == "success"
            assert run_dag(dagbag, PAYMENTS, payments_day, retries=0).state == "success"
            assert run_dag(dagbag, MILESTONES, ANCHOR, retries=0).state == "success"
            assert (len(state.qbo.entities["Invoice"]), dict(state.kantata.creates), state.crm.version) == (objects, creates, crm)
        return outcome
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_month_end_payments_and_milestones_give_the_same_outcome_on_kantata(dagbag, psa_warehouse, accounting_warehouse, monkeypatch):
    """Month-end on each PSA posts and holds the same invoices for the same reasons, with the same
    amounts; the same payment reaches the PSA; the same milestones reach the CRM's deals."""
    expected = month_end_on(dagbag, monkeypatch, psa_warehouse, accounting_warehouse, "psa_default")
    empty(psa_warehouse, accounting_warehouse)
    forget_rotated_tokens()
    got = month_end_on(dagbag, monkeypatch, psa_warehouse, accounting_warehouse, "kantata_default")
    assert got["invoices"] == expected["invoices"]
    assert got["statuses"] == expected["statuses"] and got["statuses"][got["paid"]] == "paid"
    assert got["deals"] == expected["deals"] and any(d.get("psa_last_milestone") for d in got["deals"].values())
    outcomes = {r[12] for r in got["invoices"].values()}
    assert {"posted", "held", "not_posted"} <= outcomes
