"""The PSA's billing side: PM-approved invoices of a month, credit notes, voids, milestones.

Seeded from the time seed so that time-and-materials invoices reconcile with the approved billable
time of their project and month (and bill on, at cost, the month's approved billable expenses of the
project: one ``expense`` line each, naming the expense), and from the CRM seed so that fixed-fee projects carry the deal
whose amount is their contract value. ``BillingSeed.bad_invoices`` names each invoice planted to be
held and the check that must hold it.
"""

from __future__ import annotations

import copy
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from backbone_sandbox.psa_expenses import ExpenseSeed
from backbone_sandbox.psa_time import NON_BILLABLE_CODES, TimeSeed
from backbone_sandbox.seed import CrmSeed, iso_millis
from backbone_sandbox.store import PicklableLockMixin

CENT = Decimal("0.01")
TAX = {"EUR": ("VAT21", Decimal("0.21")), "USD": ("EXEMPT", Decimal("0"))}
MILESTONES = ["Kick-off", "Design sign-off", "Go-live", "Closure"]


def last_closed_month(anchor: datetime, timezone: str) -> date:
    """The first day of the last calendar month that has ended at ``anchor`` (company time)."""
    local = anchor.astimezone(ZoneInfo(timezone)).date()
    return (local.replace(day=1) - timedelta(days=1)).replace(day=1)


def _money(value: Decimal) -> str:
    return str(value.quantize(CENT, rounding=ROUND_HALF_UP))


@dataclass
class BillingSeed:
    period: str
    invoices: list[dict[str, Any]] = field(default_factory=list)
    milestones: list[dict[str, Any]] = field(default_factory=list)
    project_deals: dict[str, str] = field(default_factory=dict)
    bad_invoices: dict[str, str] = field(default_factory=dict)
    """PSA invoice id → the check that must hold it."""


def project_budgets(time_seed: TimeSeed, anchor: datetime) -> dict[tuple[str, str], dict[str, Decimal]]:
    """(project id, name) → month → budgeted cost, for the last closed month and the one after it:
    what a company that keeps budgets in accounting has there (``BACKBONE_BUDGET_SOURCE=accounting``)."""
    month = last_closed_month(anchor, time_seed.timezone)
    following = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    return {
        (project_id, project["name"]): {
            month.strftime("%Y-%m"): Decimal(15000 + 750 * n),
            following.strftime("%Y-%m"): Decimal(15500 + 750 * n),
        }
        for n, (project_id, project) in enumerate(sorted(time_seed.projects.items()))
    }


def seed_billing(time_seed: TimeSeed, crm: CrmSeed, *, anchor: datetime, expenses: ExpenseSeed | None = None) -> BillingSeed:
    zone = ZoneInfo(time_seed.timezone)
    month = last_closed_month(anchor, time_seed.timezone)
    period = month.strftime("%Y-%m")
    out = BillingSeed(period=period)
    issue = (month.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)  # last day of the month
    approved_at = iso_millis(datetime.combine(issue + timedelta(days=1), time(10), tzinfo=zone).astimezone(UTC))
    won = [
        d
        for d, o in sorted(crm.deals.items())
        if o["properties"]["dealstage"] in ("closedwon", "renewal_signed") and d not in crm.bad_deals
    ]
    fixed = [d for d in won if crm.deals[d]["properties"]["billing_type"] == "fixed_fee"]
    tm_deals = [d for d in won if d not in fixed]
    for n, project_id in enumerate(sorted(time_seed.projects)):
        if tm_deals:
            out.project_deals[project_id] = tm_deals[n % len(tm_deals)]

    serial = 0

    def invoice(
        project_id: str, client: dict[str, Any], billing_type: str, lines: list[dict[str, Any]], **overrides: Any
    ) -> dict[str, Any]:
        nonlocal serial
        serial += 1
        currency = client["currency"]
        tax_code, tax_rate = TAX.get(currency, ("EXEMPT", Decimal("0")))
        subtotal = sum((Decimal(line["amount"]) for line in lines), Decimal(0))
        tax = (subtotal * tax_rate).quantize(CENT, rounding=ROUND_HALF_UP)
        record = {
            "id": f"PINV-{serial:05d}",
            "number": f"{period}-{serial:04d}",
            "type": "invoice",
            "status": "approved",
            "period": period,
            "billing_type": billing_type,
            "project": {"id": project_id, "name": project_name(project_id), "crm_deal_id": out.project_deals.get(project_id)},
            "client": {"id": client["id"], "name": client["name"]},
            "currency": currency,
            "issue_date": issue.isoformat(),
            "due_date": (issue + timedelta(days=30)).isoformat(),
            "lines": lines,
            "subtotal": _money(subtotal),
            "tax_code": tax_code,
            "tax_amount": _money(tax),
            "total": _money(subtotal + tax),
            "credit_note_for": None,
            "approved_at": approved_at,
            "approved_by": "pm@ourfirm.example",
            "released_at": None,
        }
        record.update(overrides)
        out.invoices.append(record)
        return record

    projects = dict(time_seed.projects)

    def project_name(project_id: str) -> str:
        return projects[project_id]["name"] if project_id in projects else project_id

    # Time and materials: one invoice per project and month, one line per person.
    hours: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for entry in time_seed.entries:
        if entry["id"] in time_seed.bad_entries or entry["approval_status"] != "approved" or not entry["billable"]:
            continue
        if entry["task"]["billing_code"] in NON_BILLABLE_CODES or not entry["spent_date"].startswith(period):
            continue
        hours[entry["project"]["id"]][entry["user"]["id"]] += Decimal(entry["hours"])
    rebillable = _rebillable_by_project(expenses, period)
    tm_invoices = []
    for project_id in sorted(hours):
        client = time_seed.clients[projects[project_id]["client_id"]]
        lines = []
        for line_no, (person_id, person_hours) in enumerate(sorted(hours[project_id].items()), start=1):
            person = time_seed.people[person_id]
            rate = Decimal(person["rate"])
            lines.append(
                {
                    "line_id": f"L{line_no}",
                    "kind": "time",
                    "description": f"{person['name']} — consulting",
                    "person": {"id": person_id, "name": person["name"]},
                    "quantity": str(person_hours),
                    "rate": _money(rate),
                    "amount": _money(person_hours * rate),
                    "milestone": None,
                }
            )
        lines += _rebilled_expense_lines(rebillable.get(project_id, []), start=len(lines) + 1)
        tm_invoices.append(invoice(project_id, client, "time_and_materials", lines))

    # Fixed fee: milestones of deals sold at a fixed price, billed when completed in the month.
    first_client = next(iter(time_seed.clients.values()))
    for k, deal_id in enumerate(fixed[:4]):
        deal = crm.deals[deal_id]["properties"]
        contract = Decimal(deal["amount"])
        project_id = f"PJ-F{k + 1:04d}"
        projects[project_id] = {"id": project_id, "name": f"{deal['dealname']} (fixed fee)", "client_id": first_client["id"]}
        out.project_deals[project_id] = deal_id
        share = Decimal("0.6") if k == 1 else Decimal("0.3")  # k == 1 bills 120% of its contract over two milestones
        lines = []
        for m, name in enumerate(MILESTONES[:2]):
            completed = month + timedelta(days=4 + 10 * m)
            milestone = {
                "id": f"MS-{k + 1:03d}-{m + 1}",
                "project_id": project_id,
                "project_name": projects[project_id]["name"],
                "crm_deal_id": deal_id,
                "name": name,
                "completed_at": iso_millis(datetime.combine(completed, time(16), tzinfo=zone).astimezone(UTC)),
                "amount": _money(contract * share),
            }
            out.milestones.append(milestone)
            lines.append(
                {
                    "line_id": f"L{m + 1}",
                    "kind": "fixed_fee",
                    "description": f"Milestone: {name}",
                    "person": None,
                    "quantity": "1",
                    "rate": milestone["amount"],
                    "amount": milestone["amount"],
                    "milestone": {"id": milestone["id"], "name": name},
                }
            )
        record = invoice(project_id, first_client, "fixed_fee", lines)
        if k == 1:
            out.bad_invoices[record["id"]] = "invoice.fixed_fee.within_contract"
    # A milestone reached the day before the anchor (for the daily milestones → CRM flow).
    if fixed:
        recent = anchor.astimezone(zone).date() - timedelta(days=1)
        out.milestones.append(
            {
                "id": "MS-001-3",
                "project_id": "PJ-F0001",
                "project_name": projects["PJ-F0001"]["name"],
                "crm_deal_id": fixed[0],
                "name": "Go-live",
                "completed_at": iso_millis(datetime.combine(recent, time(11), tzinfo=zone).astimezone(UTC)),
                "amount": "0.00",
            }
        )

    if len(tm_invoices) >= 8:
        _plant(out, tm_invoices, time_seed, invoice)
    return out


def _rebillable_by_project(expenses: ExpenseSeed | None, period: str) -> dict[str, list[dict[str, Any]]]:
    """Each project's approved billable expenses spent in ``period`` (the planted bad ones left out),
    in one pass: a scan per project made a 100,000-person seed take minutes."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if expenses is None:
        return found
    for e in expenses.expenses:
        if (
            e["billable"]
            and e["approval_status"] == "approved"
            and e["spent_date"].startswith(period)
            and e["id"] not in expenses.bad_expenses
        ):
            found[e["project"]["id"]].append(e)
    return found


def _rebilled_expense_lines(billed: list[dict[str, Any]], *, start: int) -> list[dict[str, Any]]:
    """A project's re-billable expenses as invoice lines, billed on at cost."""
    return [
        {
            "line_id": f"L{line_no}",
            "kind": "expense",
            "description": f"{e['category']['name']}, {e['spent_date']} ({e['user']['name']})",
            "person": {"id": e["user"]["id"], "name": e["user"]["name"]},
            "quantity": "1",
            "rate": e["amount"],
            "amount": e["amount"],
            "milestone": None,
            "expense": {"id": e["id"], "category": e["category"]["code"]},
        }
        for line_no, e in enumerate(sorted(billed, key=lambda e: e["id"]), start=start)
    ]


def _plant(out: BillingSeed, tm: list[dict[str, Any]], time_seed: TimeSeed, invoice: Any) -> None:
    """A credit note, a voided invoice and the bad invoices the checks must hold."""
    credited = tm[0]
    invoice(
        credited["project"]["id"],
        time_seed.clients[_client_of(time_seed, credited)],
        "time_and_materials",
        [
            {
                "line_id": "L1",
                "kind": "adjustment",
                "description": "Goodwill credit",
                "person": None,
                "quantity": "1",
                "rate": "100.00",
                "amount": "100.00",
                "milestone": None,
            }
        ],
        type="credit_note",
        credit_note_for=credited["number"],
    )
    tm[1]["status"] = "voided"  # voided by the PM before month end: never posted

    def bad(record: dict[str, Any], check: str) -> None:
        out.bad_invoices[record["id"]] = check

    skewed = tm[2]
    line = skewed["lines"][0]
    extra = Decimal(line["quantity"]) + 2
    line.update(quantity=str(extra), amount=_money(extra * Decimal(line["rate"])))
    _retotal(skewed)
    bad(skewed, "invoice.time.reconciles")

    negative = tm[3]
    negative["lines"].append(
        {
            "line_id": "LX",
            "kind": "adjustment",
            "description": "Correction",
            "person": None,
            "quantity": "-1",
            "rate": "100.00",
            "amount": "-100.00",
            "milestone": None,
        }
    )
    _retotal(negative)
    bad(negative, "invoice.line.quantity_not_negative")

    wrong_tax = tm[4]
    wrong_tax["tax_amount"] = _money(Decimal(wrong_tax["tax_amount"]) + Decimal("5"))
    wrong_tax["total"] = _money(Decimal(wrong_tax["total"]) + Decimal("7"))
    bad(wrong_tax, "invoice.total.adds_up")

    odd_currency = tm[5]
    odd_currency["currency"] = "XBT"
    bad(odd_currency, "invoice.currency.allowed_values")

    orphan = next(iter(time_seed.unmapped_client_ids), None)
    if orphan:
        stray = copy.deepcopy(tm[-1])
        stray.update(id="PINV-09001", number=f"{out.period}-9001", client={"id": orphan, "name": time_seed.clients[orphan]["name"]})
        out.invoices.append(stray)
        bad(stray, "invoice.customer.mapped")
    twin = copy.deepcopy(tm[-1])
    twin.update(id="PINV-09002", total=_money(Decimal(twin["total"]) + 1))  # the same number, other content
    out.invoices.append(twin)
    bad(twin, "invoice.number.unique")
    out.bad_invoices.setdefault(tm[-1]["id"], "invoice.number.unique")


def _client_of(time_seed: TimeSeed, record: dict[str, Any]) -> str:
    return record["client"]["id"]


def _retotal(record: dict[str, Any]) -> None:
    subtotal = sum((Decimal(line["amount"]) for line in record["lines"]), Decimal(0))
    rate = TAX.get(record["currency"], ("EXEMPT", Decimal(0)))[1]
    tax = (subtotal * rate).quantize(CENT, rounding=ROUND_HALF_UP)
    record.update(subtotal=_money(subtotal), tax_amount=_money(tax), total=_money(subtotal + tax))


class BillingStore(PicklableLockMixin):
    def __init__(self, seed: BillingSeed):
        self.period = seed.period
        self.invoices = seed.invoices
        self.milestones = seed.milestones
        self.project_deals = seed.project_deals
        self.bad_invoices = seed.bad_invoices
        self.payment_status: dict[str, dict[str, Any]] = {}
        self.payment_writes = 0
        self._lock = threading.Lock()

    def for_period(self, period: str, *, unapproved: bool = False) -> list[dict[str, Any]]:
        """The month's approved and voided invoices, or (``unapproved``) those still waiting for the PM."""
        wanted = ("submitted",) if unapproved else ("approved", "voided")
        return [i for i in self.invoices if i["period"] == period and i["status"] in wanted]

    def changed_between(self, field: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Invoices of any period PM-approved (``approved_at``) or released by finance (``released_at``)
        in ``[start, end)``, and those voided in it, in that time's order."""

        def when(record: dict[str, Any], key: str) -> datetime | None:
            value = record.get(key)
            return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None

        found = []
        for record in self.invoices:
            moments = [when(record, field)] if record["status"] in ("approved", "voided") else []
            moments.append(when(record, "voided_at"))
            hits = [m for m in moments if m is not None and start <= m < end]
            if hits:
                found.append((min(hits), record["id"], record))
        return [record for _, _, record in sorted(found, key=lambda item: (item[0], item[1]))]

    def _record(self, invoice_id: str) -> dict[str, Any]:
        for record in self.invoices:
            if record["id"] == invoice_id:
                return record
        raise KeyError(invoice_id)

    def submit(self, invoice_id: str) -> None:
        """Back to the PM: not approved (yet)."""
        with self._lock:
            self._record(invoice_id).update(status="submitted", approved_at=None, released_at=None)

    def approve(self, invoice_id: str, *, at: datetime) -> None:
        """The PM approves the invoice at ``at``."""
        with self._lock:
            self._record(invoice_id).update(status="approved", approved_at=iso_millis(at))

    def release(self, invoice_id: str, *, at: datetime) -> None:
        """Finance releases an approved invoice for posting at ``at``."""
        with self._lock:
            self._record(invoice_id)["released_at"] = iso_millis(at)

    def void(self, invoice_id: str, *, at: datetime | None = None) -> None:
        with self._lock:
            self._record(invoice_id).update(status="voided", voided_at=iso_millis(at or datetime.now(UTC)))

    def set_payment_status(self, invoice_id: str, status: dict[str, Any]) -> bool:
        """Store the status; True when it changed (a repeat is a no-op)."""
        with self._lock:
            if self.payment_status.get(invoice_id) == status:
                return False
            self.payment_status[invoice_id] = status
            self.payment_writes += 1
            return True
