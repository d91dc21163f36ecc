"""Vendor faults on the flows and vendors the first fault suite did not cover: month-end invoicing,
payments back and milestones back (QuickBooks, the PSA, HubSpot), and the Salesforce + Xero pair.

Each flow runs under a mix of throttling, server errors, answers slower than the timeout (after
the vendor did the work) and dropped connections; afterwards what the vendor holds must equal
what the warehouse says was sent, once, and the run's counts must add up.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from backbone_sandbox.faults import FaultRule
from tests import reliability
from tests.conftest import ANCHOR
from tests.helpers import rows, run_dag, scalar

pytestmark = pytest.mark.e2e
INVOICES, PAYMENTS, MILESTONES, TIMESHEETS, CLOSED_WON = (
    "invoices_month_end_to_accounting",
    "payments_to_psa",
    "psa_milestones_to_crm",
    "timesheets_weekly_to_accounting",
    "crm_closed_won_to_psa",
)


def fault_mix(path: str, method: str | None = None) -> list[FaultRule]:
    return [
        # One of each: a single call meets at most these four in a row, within the hooks' six attempts.
        FaultRule(kind="status", status=429, retry_after=1, times=1, path_contains=path, method=method),
        FaultRule(kind="status", status=503, times=1, path_contains=path, method=method),
        FaultRule(kind="slow_response", delay_seconds=2.5, times=1, path_contains=path, method=method),
        FaultRule(kind="reset", times=1, path_contains=path, method=method),
    ]


def run(dagbag, flow, logical_date) -> None:
    dag_run = run_dag(dagbag, flow, logical_date)
    assert dag_run.state == "success", f"{flow} {logical_date}: {dag_run.state}"


def fired(state) -> int:
    return sum(state.faults.fired.values())


def test_month_end_payments_and_milestones_under_vendor_faults(dagbag, sandbox, accounting_warehouse, psa_warehouse, monkeypatch):
    monkeypatch.setenv("BACKBONE_HTTP_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("BACKBONE_MONTH_END_WAITS_FOR_TIME_EXPORT", "false")  # the wait itself: test_month_end_e2e
    state = sandbox.state
    weeks = state.psa_time.week_ends()
    for week_end in weeks:
        run(dagbag, TIMESHEETS, week_end)
    for week_end in (weeks[0], weeks[-1]):  # the second run catches up the weeks between: T&M invoices re-bill them
        run(dagbag, "expenses_weekly_to_accounting", week_end)

    state.faults.arm(fault_mix("/quickbooks/v3/", "POST") + fault_mix("/psa/api/v1/invoices"))
    run(dagbag, INVOICES, ANCHOR)
    posted = rows(accounting_warehouse, "SELECT number, kind, accounting_id, total FROM acct.invoice WHERE posting_status = 'posted'")
    in_qbo = [*state.qbo.entities["Invoice"].values(), *state.qbo.entities["CreditMemo"].values()]
    assert len(posted) == len(in_qbo) > 0
    assert not [n for n, c in Counter(d["DocNumber"] for d in in_qbo).items() if c > 1]  # nothing twice
    assert {r.number for r in posted} == {d["DocNumber"] for d in in_qbo}
    held = dict(rows(accounting_warehouse, "SELECT psa_invoice_id, hold_rule FROM acct.invoice WHERE posting_status = 'held'"))
    assert set(held) == set(state.billing.bad_invoices)
    faults = fired(state)

    invoice = next(r for r in posted if r.kind == "invoice")
    state.qbo.pay(invoice.accounting_id, Decimal("100.00"))
    state.faults.clear()
    state.faults.arm(fault_mix("/quickbooks/v3/") + fault_mix("/psa/api/v1/"))
    payments_day = datetime.now(UTC) + timedelta(days=1)
    run(dagbag, PAYMENTS, payments_day)
    assert scalar(accounting_warehouse, "SELECT count(*) FROM acct.payment") == 1
    assert any(s.get("amount_paid") == "100.00" for s in state.billing.payment_status.values())
    faults += fired(state)

    state.faults.clear()
    state.faults.arm(fault_mix("/hubspot/") + fault_mix("/psa/api/v1/milestones"))
    run(dagbag, MILESTONES, ANCHOR)
    recent = state.billing.milestones[-1]
    assert state.crm.objects["deals"][recent["crm_deal_id"]]["properties"]["psa_last_milestone"] == recent["name"]
    faults += fired(state)
    versions = state.crm.version
    state.faults.clear()
    run(dagbag, MILESTONES, ANCHOR)
    assert state.crm.version == versions  # the retries changed nothing twice
    assert faults >= 12
    reliability.count(faults_injected=faults, survived=faults, rows_compared=len(posted))


def test_salesforce_and_xero_under_vendor_faults(dagbag, salesforce_sandbox, accounting_warehouse, psa_warehouse, monkeypatch):
    monkeypatch.setenv("BACKBONE_HTTP_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("BACKBONE_CRM_CONN_ID", "salesforce_default")
    monkeypatch.setenv("BACKBONE_ACCOUNTING_CONN_ID", "xero_default")
    state = salesforce_sandbox.state

    state.faults.arm(fault_mix("/salesforce/"))
    run(dagbag, CLOSED_WON, ANCHOR)
    record = rows(psa_warehouse, "SELECT extracted, loaded, quarantined FROM ops.flow_run WHERE flow = :f", f=CLOSED_WON)[0]
    assert record.extracted == record.loaded + record.quarantined and record.loaded > 0
    assert record.quarantined == len(state.crm.bad_deals)
    faults = fired(state)

    state.faults.clear()
    state.faults.arm(fault_mix("/xero/projects.xro/", "POST") + fault_mix("/xero/api.xro/"))
    week_end = state.psa_time.week_ends()[-1]
    run(dagbag, TIMESHEETS, week_end)
    posted = scalar(accounting_warehouse, "SELECT count(*) FROM acct.time_export WHERE posting_status = 'posted'")
    entries = list(state.xero.time_entries.values())
    assert posted == len(entries) > 0
    duplicates = sum(n - 1 for n in Counter(e["description"] for e in entries).values() if n > 1)
    assert duplicates == 0
    faults += fired(state)
    assert faults >= 8
    reliability.count(faults_injected=faults, survived=faults, duplicates=duplicates, rows_compared=posted + record.extracted)
