"""The sandbox server: vendor APIs mounted side by side, plus ``/_sandbox`` controls for tests."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from backbone_sandbox.bamboohr import HrStore, build_bamboohr_app, seed_hr
from backbone_sandbox.crm import CrmStore, build_hubspot_app
from backbone_sandbox.faults import FaultBoard, FaultRule, apply_transport_fault
from backbone_sandbox.kantata import KantataStore, build_kantata_app
from backbone_sandbox.limits import SlidingWindowLimit
from backbone_sandbox.psa import PsaStore, build_psa_app
from backbone_sandbox.psa_billing import BillingStore, project_budgets, seed_billing
from backbone_sandbox.psa_expenses import ExpenseSeed, ExpenseStore, seed_expenses
from backbone_sandbox.psa_time import TimeStore, seed_time, weeks_back_to_last_closed_month
from backbone_sandbox.quickbooks import REALM_ID as QBO_REALM_ID
from backbone_sandbox.quickbooks import (
    QuickBooksStore,
    build_quickbooks_app,
    seed_quickbooks,
    seed_quickbooks_budgets,
    seed_quickbooks_expenses,
)
from backbone_sandbox.salesforce import build_salesforce_app, salesforce_id
from backbone_sandbox.seed import default_anchor, iso_millis, seed_crm
from backbone_sandbox.xero import TENANT_ID as XERO_TENANT_ID
from backbone_sandbox.xero import XeroStore, build_xero_app, seed_xero, seed_xero_budgets, seed_xero_expenses

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SandboxConfig:
    deals: int = 120
    seed: int = 20261127
    anchor: datetime | None = None
    token: str = "sandbox-token"
    hubspot_search_per_second: int = 4
    hubspot_calls_per_ten_seconds: int = 150
    people: int = 12
    hr_people: int = 30
    weeks: int | None = None
    """Weeks of time to seed; by default back to the first day of the last closed month."""
    timezone: str = field(default_factory=lambda: os.environ.get("BACKBONE_COMPANY_TIMEZONE", "Europe/Amsterdam"))
    qbo_requests_per_minute: int = 500
    qbo_max_concurrent: int = 10
    qbo_batch_requests_per_minute: int = 40
    xero_requests_per_minute: int = 60
    xero_requests_per_day: int = 5000
    xero_max_concurrent: int = 5
    kantata_requests_per_minute: int = 600
    """Kantata throttles per account with a bare 429 (no Retry-After); it publishes no single figure
    for every endpoint, so this is a stand-in the hook must live with, not Kantata's number."""
    crm: str = field(default_factory=lambda: os.environ.get("BACKBONE_SANDBOX_CRM", "hubspot"))
    """Which CRM the PSA's projects were created from (``hubspot`` or ``salesforce``): the deal ids
    PSA invoices and milestones carry. Both CRM APIs are served either way."""
    state_file: Path | None = None


@dataclass
class SandboxState:
    config: SandboxConfig
    anchor: datetime
    crm: CrmStore
    psa: PsaStore
    psa_time: TimeStore
    qbo: QuickBooksStore
    billing: BillingStore
    hr: HrStore
    xero: XeroStore
    psa_expenses: ExpenseStore = field(default_factory=lambda: ExpenseStore(ExpenseSeed()))
    kantata: KantataStore = field(default_factory=KantataStore)
    qbo_in_flight: dict[str, int] = field(default_factory=lambda: {"count": 0, "rejected": 0})
    faults: FaultBoard = field(default_factory=FaultBoard)
    limits: dict[str, SlidingWindowLimit] = field(default_factory=dict)
    crm_writes: int = 0
    salesforce_calls: int = 0
    xero_concurrency_rejected: int = 0
    xero_calls: int = 0
    """Xero API calls that passed its limits (what counts against 60 a minute and 5,000 a day)."""
    resumed: bool = False
    """True when the state came from the state file (issued OAuth tokens are still valid)."""

    @classmethod
    def fresh(cls, config: SandboxConfig) -> SandboxState:
        from backbone.accounting_mapping import load_mapping

        anchor = config.anchor or default_anchor()
        weeks = config.weeks or weeks_back_to_last_closed_month(anchor, config.timezone)
        time_seed = seed_time(people=config.people, weeks=weeks, anchor=anchor, timezone=config.timezone, seed=config.seed)
        qbo = QuickBooksStore()
        mapping = load_mapping()
        items = {code: {"item": m.item, "gl_account": m.gl_account} for code, m in mapping.billing_codes.items()}
        for invoiced in (mapping.invoicing.fixed_fee, mapping.invoicing.rebilled_expenses):
            items[invoiced.code] = {"item": invoiced.item, "gl_account": invoiced.gl_account}
        tax_codes = {code: name for code, (name, _) in mapping.invoicing.tax_codes.items()}
        seed_quickbooks(qbo, time_seed, items, at=anchor - timedelta(days=60), tax_codes=tax_codes)
        xero = XeroStore()
        seed_xero(xero, time_seed, items, at=anchor - timedelta(days=60), tax_codes=dict(mapping.invoicing.tax_codes))
        expense_seed = seed_expenses(time_seed, weeks=weeks, seed=config.seed)
        payees = [time_seed.people[p] for p in sorted(expense_seed.payee_ids)]
        seed_quickbooks_expenses(qbo, mapping.expenses, payees, at=anchor - timedelta(days=60), actuals=mapping.actuals)
        seed_xero_expenses(xero, mapping.expenses, payees, at=anchor - timedelta(days=60), actuals=mapping.actuals)
        budgets = project_budgets(time_seed, anchor)
        seed_quickbooks_budgets(qbo, budgets, mapping.actuals.labour_cost_account, at=anchor - timedelta(days=60))
        seed_xero_budgets(xero, budgets, mapping.actuals.labour_cost_account, at=anchor - timedelta(days=60))
        crm_seed = seed_crm(deals=config.deals, anchor=anchor, seed=config.seed)
        billing_seed = seed_billing(time_seed, crm_seed, anchor=anchor, expenses=expense_seed)
        if config.crm == "salesforce":
            billing_seed.project_deals = {
                project: salesforce_id("Opportunity", int(deal)) for project, deal in billing_seed.project_deals.items()
            }
            for record in [*billing_seed.milestones, *(i["project"] for i in billing_seed.invoices)]:
                if str(record.get("crm_deal_id") or "").isdigit():
                    record["crm_deal_id"] = salesforce_id("Opportunity", int(record["crm_deal_id"]))
        billing = BillingStore(billing_seed)
        return cls(
            config=config,
            anchor=anchor,
            billing=billing,
            hr=HrStore(
                seed_hr(
                    people=config.hr_people,
                    anchor=anchor,
                    timezone=config.timezone,
                    seed=config.seed,
                    time_keepers=[p for p in time_seed.people.values() if not p["email"].startswith("pat.unknown")],
                )
            ),
            crm=CrmStore(crm_seed),
            psa=PsaStore(),
            psa_time=TimeStore(time_seed),
            psa_expenses=ExpenseStore(expense_seed),
            qbo=qbo,
            xero=xero,
        )

    @classmethod
    def load_or_fresh(cls, config: SandboxConfig) -> SandboxState:
        path = config.state_file
        if path is not None and path.exists():
            with path.open("rb") as fh:
                saved = pickle.load(fh)
            log.info("sandbox: resumed state from %s (anchor %s)", path, saved["anchor"])
            if "xero" in saved:
                return cls(
                    config=config,
                    anchor=saved["anchor"],
                    crm=saved["crm"],
                    psa=saved["psa"],
                    psa_time=saved["psa_time"],
                    qbo=saved["qbo"],
                    billing=saved["billing"],
                    hr=saved["hr"],
                    xero=saved["xero"],
                    psa_expenses=saved.get("psa_expenses") or ExpenseStore(ExpenseSeed()),
                    kantata=saved.get("kantata") or KantataStore(),
                    crm_writes=saved.get("crm_writes", 0),
                    resumed=True,
                )
            log.warning("sandbox: %s predates the time and accounting APIs; starting fresh", path)
        return cls.fresh(config)

    def save(self) -> None:
        path = self.config.state_file
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            pickle.dump(
                {
                    "anchor": self.anchor,
                    "crm": self.crm,
                    "psa": self.psa,
                    "psa_time": self.psa_time,
                    "qbo": self.qbo,
                    "billing": self.billing,
                    "hr": self.hr,
                    "xero": self.xero,
                    "psa_expenses": self.psa_expenses,
                    "kantata": self.kantata,
                    "crm_writes": self.crm_writes,
                },
                fh,
            )
        tmp.replace(path)

    def info(self) -> dict[str, Any]:
        return {
            "anchor": iso_millis(self.anchor),
            "resumed": self.resumed,
            "deals": len(self.crm.objects["deals"]),
            "companies": len(self.crm.objects["companies"]),
            "contacts": len(self.crm.objects["contacts"]),
            "bad_deals": self.crm.bad_deals,
            "bad_contacts": self.crm.bad_contacts,
            "psa_projects": len(self.psa.projects),
            "psa_creates": self.psa.creates,
            "psa_writes": self.psa.writes,
            "crm_writes": self.crm_writes,
            "crm": self.config.crm,
            "salesforce_calls": self.salesforce_calls,
            "time_entries": len(self.psa_time.entries),
            "time_week_end": iso_millis(self.psa_time.week_end),
            "time_week_ends": [iso_millis(end) for end in self.psa_time.week_ends()],
            "bad_time_entries": self.psa_time.bad_entries,
            "expenses": len(self.psa_expenses.entries),
            "bad_expenses": self.psa_expenses.bad_expenses,
            "billing_period": self.billing.period,
            "psa_invoices": len(self.billing.invoices),
            "bad_invoices": self.billing.bad_invoices,
            "psa_payment_status_writes": self.billing.payment_writes,
            "hr_employees": len(self.hr.employees),
            "hr_time_off_requests": len(self.hr.requests),
            "hr_bad_requests": self.hr.bad_requests,
            "hr_cases": self.hr.cases,
            "psa_people": len(self.psa.people),
            "qbo_realm_id": QBO_REALM_ID,
            "qbo_creates": dict(self.qbo.creates),
            "qbo_updates": dict(self.qbo.updates),
            "qbo_requestid_replays": self.qbo.replays,
            "qbo_token_refreshes": self.qbo.token_refreshes,
            "kantata_creates": dict(self.kantata.creates),
            "kantata_workspaces": len(self.kantata.workspaces),
            "xero_tenant_id": XERO_TENANT_ID,
            "xero_creates": dict(self.xero.creates),
            "xero_idempotent_replays": self.xero.replays,
            "xero_calls": self.xero_calls,
            "xero_token_refreshes": self.xero.token_refreshes,
            "faults_fired": dict(self.faults.fired),
            "rate_limited": {
                **{name: limit.rejected for name, limit in self.limits.items()},
                "quickbooks_concurrency": self.qbo_in_flight["rejected"],
                "xero_concurrency": self.xero_concurrency_rejected,
            },
        }


def build_app(state: SandboxState) -> FastAPI:
    app = FastAPI(title="Vendor sandbox", docs_url=None, redoc_url=None)
    app.state.sandbox = state

    @app.middleware("http")
    async def inject_faults(request: Request, call_next):  # noqa: ANN001, ANN202 - starlette signature
        if request.url.path.startswith("/_sandbox"):
            return await call_next(request)
        fault = await apply_transport_fault(state.faults, request)
        if fault is not None:
            return fault
        late = state.faults.take(request.method, request.url.path, kinds=("slow_response",))
        response = await call_next(request)
        if late is not None:
            await asyncio.sleep(late.delay_seconds)
        return response

    @app.get("/_sandbox/info")
    def info() -> dict[str, Any]:
        return state.info()

    @app.post("/_sandbox/faults")
    def arm_faults(rules: list[FaultRule]) -> dict[str, Any]:
        state.faults.arm(rules)
        return {"armed": len(rules)}

    @app.delete("/_sandbox/faults")
    def clear_faults() -> dict[str, Any]:
        state.faults.clear()
        return {"cleared": True}

    @app.patch("/_sandbox/crm/{object_type}/{object_id}")
    def edit_crm_object(object_type: str, object_id: str, properties: dict[str, Any], request: Request) -> JSONResponse:
        """Edit a record as a salesperson would in the CRM UI (moves hs_lastmodifieddate)."""

        at = request.query_params.get("at")
        when = datetime.fromisoformat(at.replace("Z", "+00:00")) if at else datetime.now(UTC)
        return JSONResponse(state.crm.update(object_type, object_id, properties, when))

    @app.post("/_sandbox/quickbooks/record-payments")
    def record_payments() -> dict[str, Any]:
        """Finance records customer payments once: the first open invoice paid in full, the second in part."""
        from decimal import Decimal

        if state.qbo.entities["Payment"]:
            return {"payments": sorted(state.qbo.entities["Payment"]), "already_recorded": True}
        open_invoices = sorted(
            (i for i in state.qbo.entities["Invoice"].values() if Decimal(str(i.get("Balance", 0))) > 0), key=lambda i: int(i["Id"])
        )
        applied = []
        for invoice, share in zip(open_invoices, (Decimal(1), Decimal("0.5")), strict=False):
            amount = (Decimal(str(invoice["Balance"])) * share).quantize(Decimal("0.01"))
            applied.append(state.qbo.pay(invoice["Id"], amount)["Id"])
        return {"payments": applied}

    @app.post("/_sandbox/xero/record-payments")
    def record_xero_payments() -> dict[str, Any]:
        """Finance records customer payments once in Xero: the first open invoice in full, the second in part."""
        from decimal import Decimal

        with state.xero._lock:
            if state.xero.records["Payments"]:
                return {"payments": sorted(state.xero.records["Payments"]), "already_recorded": True}
            open_invoices = sorted(
                (i for i in state.xero.records["Invoices"].values() if i["Status"] == "AUTHORISED" and Decimal(str(i["AmountDue"])) > 0),
                key=lambda i: i["InvoiceNumber"],
            )
            applied = []
            for invoice, share in zip(open_invoices, (Decimal(1), Decimal("0.5")), strict=False):
                amount = (Decimal(str(invoice["AmountDue"])) * share).quantize(Decimal("0.01"))
                applied.append(state.xero.pay(invoice["InvoiceID"], amount, now=datetime.now(UTC))["PaymentID"])
        return {"payments": applied}

    app.mount("/hubspot", build_hubspot_app(state))
    app.mount("/salesforce", build_salesforce_app(state))
    app.mount("/psa", build_psa_app(state))
    app.mount("/quickbooks", build_quickbooks_app(state))
    app.mount("/bamboohr", build_bamboohr_app(state))
    app.mount("/xero", build_xero_app(state))
    app.mount("/kantata", build_kantata_app(state))
    return app
