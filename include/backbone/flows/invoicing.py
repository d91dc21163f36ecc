"""Month-end invoicing: PM-approved PSA invoices → accounting, exactly once, after checks.

extract → check → load → post. Every invoice is checked before anything is posted: its lines and
tax add up, its customer, items, tax code and currency are mapped, a time-and-materials invoice
reconciles with the billable time already exported for its project and month, a fixed fee never
takes the project past its CRM contract value, and its number is not reused. An invoice that fails
is **held** with its reasons (``acct.invoice.posting_status = 'held'`` plus ``ops.quarantine``).

``acct.invoice`` is the outbox. Posting first looks the number up in accounting (``DocNumber``),
so even a rerun long after the ``requestid`` window cannot create a second invoice; otherwise it
creates with a ``requestid`` derived from the PSA invoice. A PSA void of a posted invoice voids it
in accounting; a credit note becomes a credit memo.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from backbone.accounting_mapping import AccountingReferences, load_mapping, normalise
from backbone.flows.references import load_references, refresh_references
from backbone.hooks.accounting import LEGACY_ENTITY_NAMES, RejectedByAccounting, request_id_for
from backbone.hooks.oauth import ReauthorisationRequired
from backbone.months import first_of_next_month, month_bounds
from backbone.validation import RuleFailure, as_dict, validate_rows
from backbone.warehouse import ops, reconciliation
from backbone.warehouse.ops import QuarantineRow, RunRef

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from backbone.hooks.accounting import AccountingSystem
    from backbone.hooks.crm import CrmSystem
    from backbone.hooks.psa import PsaBilling

log = logging.getLogger(__name__)

FLOW = "invoices_month_end_to_accounting"
DAILY_FLOW = "invoices_to_accounting"
INVOICING_FLOWS = (FLOW, DAILY_FLOW)
ENTITY = "invoice"
HEALABLE_RULES = frozenset(
    {
        "invoice.customer.mapped",
        "invoice.customer.currency",
        "invoice.currency.supported",
        "invoice.item.mapped",
        "invoice.tax_code.mapped",
        "invoice.time.reconciles",
        "invoice.expenses.reconcile",
        "invoice.fixed_fee.contract_known",
        "invoice.fixed_fee.within_contract",
        "invoice.credit_note.target_known",
    }
)
"""Holds whose cause can go away without the PSA changing the invoice: a mapping or customer added,
the month's last time or expenses exported, a contract value corrected in the CRM, the credited invoice posted.
The daily run judges such held invoices again and posts the ones that now pass."""
WAITING_RULE = "invoice.time.awaiting_export"
"""Not an exception: a time-and-materials invoice whose month's time (or re-billed expenses) the
weekly export has not fully covered yet (the 30th and 31st go out with the first Friday after the
month) is **waiting** (``posting_status = 'waiting'``), shown to finance as such, and judged again
by the daily run."""
EXPENSE_FLOW = "expenses_weekly_to_accounting"
CENT = Decimal("0.01")
POSTED_STATES = ("posted", "void_pending", "voided")
OUTBOX_STATUS = {"valid": "pending", "quarantined": "held", "waiting": "waiting"}
"""A judged invoice's verdict → its outbox ``posting_status``."""


def billing_period(run: RunRef, company_timezone: str) -> str:
    """``YYYY-MM`` of the run's interval, which must be exactly one calendar month in company time."""
    zone = ZoneInfo(company_timezone)
    start, end = run.interval_start.astimezone(zone), run.interval_end.astimezone(zone)
    next_month = first_of_next_month(start.date())
    if (start.day, start.hour, start.minute) != (1, 0, 0) or end.date() != next_month or (end.hour, end.minute) != (0, 0):
        raise ValueError(f"{FLOW} needs a data interval of one calendar month in {company_timezone}; got {start} → {end}")
    return start.strftime("%Y-%m")


# --- extract -------------------------------------------------------------------------------------
def extract_invoices(
    psa: PsaBilling,
    accounting: AccountingSystem,
    crm: CrmSystem,
    warehouse: Engine,
    run: RunRef,
    *,
    period: str | None,
    timing: str = "on_pm_approval",
) -> dict[str, int]:
    """Stage PSA invoices and the CRM deals their fixed fees are bounded by.

    Month-end (``period`` given) reads the billing month's invoices. The daily run (``period`` None)
    reads invoices of any month by when they became postable under the invoice-timing policy: PM
    approval (``on_pm_approval``) or finance's release (``after_finance_approval``), so a late
    approval of a closed month goes out with the next daily run; it also judges again the held
    invoices whose cause may have been fixed since."""
    references = refresh_references(accounting, warehouse, run)
    with warehouse.begin() as connection:
        ops.clear_staging(connection, run)
    if period is not None:
        pages = psa.iter_invoices(period)
    else:
        pages = psa.iter_invoices_between(
            "released" if timing == "after_finance_approval" else "approved", run.extract_from, run.interval_end
        )
    extracted = rechecked = 0
    deal_ids: set[str] = set()
    seen: set[str] = set()
    for page in pages:
        postable = [i for i in page if is_postable(i, timing)]
        with warehouse.begin() as connection:
            ops.stage_unique(connection, run, ENTITY, [(str(i.get("id")), i) for i in postable])
        extracted += len(postable)
        deal_ids |= _deal_ids(postable)
        seen |= {str(i.get("id")) for i in postable}
    if period is None:  # the PSA's fresh copy wins over a held one
        with warehouse.begin() as connection:
            again = [(key, raw) for key, raw in _held_to_recheck(connection, run) if key not in seen]
            ops.stage_unique(connection, run, ENTITY, again)
        waiting = [(key, raw) for key, raw in _waiting_to_recheck(psa, warehouse, run, timing) if key not in seen]
        with warehouse.begin() as connection:
            ops.stage_unique(connection, run, ENTITY, waiting)
        rechecked = len(again) + len(waiting)
        deal_ids |= _deal_ids([raw for _, raw in again + waiting])
    deals = crm.read_deals(sorted(deal_ids)) if deal_ids else {}
    details: dict[str, Any] = {"period": period, "invoice_timing": timing, "held_rechecked": rechecked, "crm_deals_read": len(deals)}
    if period is not None:  # the close report: what the month still waits for in the PSA
        details["unapproved_in_psa"] = psa.count_unapproved_invoices(period)
    with warehouse.begin() as connection:
        ops.stage(connection, run, "deal", [(deal_id, deal) for deal_id, deal in deals.items()])
        staged = extracted + rechecked
        ops.record_run(connection, run, extracted=staged, details={**details, "accounting_references": references})
    log.info("extracted %d PSA invoices (%s), %d held ones again, %d CRM deals", extracted, period or timing, rechecked, len(deals))
    return {"extracted": staged}


def is_postable(invoice: dict[str, Any], timing: str) -> bool:
    """Under ``after_finance_approval`` only invoices finance released (or voided ones) go on."""
    return timing != "after_finance_approval" or bool(invoice.get("released_at")) or invoice.get("status") == "voided"


def _deal_ids(invoices: list[dict[str, Any]]) -> set[str]:
    return {str(as_dict(i.get("project")).get("crm_deal_id")) for i in invoices if as_dict(i.get("project")).get("crm_deal_id")}


def _held_to_recheck(connection: Connection, run: RunRef) -> list[tuple[str, dict[str, Any]]]:
    """Open holds of either invoicing flow for healable causes, except invoices the outbox already posted."""
    candidates = ops.open_exceptions_to_recheck(connection, run, ENTITY, HEALABLE_RULES, flows=INVOICING_FLOWS)
    if not candidates:
        return []
    posted = {
        r[0]
        for r in connection.exec_driver_sql(
            "SELECT psa_invoice_id FROM acct.invoice WHERE psa_invoice_id = ANY(%(ids)s) "
            "AND posting_status IN ('posted', 'void_pending', 'voided')",
            {"ids": [key for key, _ in candidates]},
        )
    }
    return [(key, raw) for key, raw in candidates if key not in posted]


def _waiting_to_recheck(psa: PsaBilling, warehouse: Engine, run: RunRef, timing: str) -> list[tuple[str, dict[str, Any]]]:
    """Waiting invoices (of runs up to this one's interval), read again from the PSA by their month:
    the fresh copy is what gets judged, so an edit made while waiting is what goes out."""
    with warehouse.connect() as connection:
        rows = connection.exec_driver_sql(
            """
            SELECT i.period, i.psa_invoice_id FROM acct.invoice i
            WHERE i.posting_status = 'waiting'
              AND EXISTS (SELECT 1 FROM ops.flow_run r WHERE r.flow = ANY(%(flows)s) AND r.run_id = i.run_id AND r.interval_end <= %(end)s)
            """,
            {"flows": list(INVOICING_FLOWS), "end": run.interval_end},
        ).all()
    by_month: dict[str, set[str]] = defaultdict(set)
    for month, invoice_id in rows:
        by_month[month].add(invoice_id)
    found: list[tuple[str, dict[str, Any]]] = []
    for month, ids in sorted(by_month.items()):
        for page in psa.iter_invoices(month):
            found += [(str(i.get("id")), i) for i in page if str(i.get("id")) in ids and is_postable(i, timing)]
    if rows:
        log.info("judging %d waiting invoices again (%d still in the PSA)", len(rows), len(found))
    return found


# --- check ---------------------------------------------------------------------------------------
def invoice_lines(invoice: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The invoice's lines, or None when ``lines`` is not a list of objects."""
    lines = invoice.get("lines")
    if not isinstance(lines, list) or not all(isinstance(line, dict) for line in lines):
        return None
    return lines


def header_row(invoice: dict[str, Any]) -> dict[str, Any]:
    project, client = as_dict(invoice.get("project")), as_dict(invoice.get("client"))
    return {
        "psa_invoice_id": invoice.get("id"),
        "number": invoice.get("number"),
        "kind": invoice.get("type"),
        "psa_status": invoice.get("status"),
        "billing_type": invoice.get("billing_type"),
        "project_id": project.get("id"),
        "crm_deal_id": project.get("crm_deal_id"),
        "client_id": client.get("id"),
        "client_name": client.get("name"),
        "currency": invoice.get("currency"),
        "issue_date": invoice.get("issue_date"),
        "due_date": invoice.get("due_date"),
        "subtotal": invoice.get("subtotal"),
        "tax_code": invoice.get("tax_code"),
        "tax_amount": invoice.get("tax_amount"),
        "total": invoice.get("total"),
        "credit_note_for": invoice.get("credit_note_for"),
    }


def content_hash(invoice: dict[str, Any]) -> str:
    """What may not change once an invoice number is posted (status and approval aside)."""
    relevant = {k: v for k, v in invoice.items() if k not in ("status", "approved_at", "approved_by", "updated_at")}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()


def _decimal(value: Any) -> Decimal | None:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def check_invoices(warehouse: Engine, run: RunRef, *, period: str | None, company_timezone: str | None = None) -> dict[str, Any]:
    """Every check on every invoice; results in ``acct.reconciliation``, failures held with reasons.

    The run's invoices are judged as one chunk (numbers must be unique across all of them), each
    against its own billing month (``period`` for month-end; the invoice's own month for the daily run).
    The daily run (given the company's time zone) also asks whether the weekly export has covered
    each month yet: a T&M invoice that does not reconcile with a month still being exported is
    **waiting** (:data:`WAITING_RULE`), not held. Month-end waited for that export before it started.
    Both runs ask the same of the expense export: re-billed expense lines that do not reconcile with
    a month the expense export has not covered yet wait too."""
    from backbone.flows.runtime import time_export_complete

    references = load_references(warehouse)
    staged = [row for chunk in ops.iter_staged(warehouse, run, ENTITY) for row in chunk]
    contracts = {row["source_key"]: row["payload"] for chunk in ops.iter_staged(warehouse, run, "deal") for row in chunk}
    contexts: dict[str, CheckContext] = {}
    with warehouse.connect() as connection:
        for month in sorted({period or billing_month_of(row["payload"]) for row in staged}):
            contexts[month] = CheckContext.load(connection, staged, contracts, month)
    if company_timezone:
        for month, context in contexts.items():
            if month != "0000-00":
                start, end = month_bounds(month, company_timezone)
                context.expenses_exported = time_export_complete(warehouse, start, end, company_timezone, weekly=EXPENSE_FLOW)
                if period is None:
                    context.time_exported = time_export_complete(warehouse, start, end, company_timezone)

    def judge(chunk: list[dict[str, Any]]) -> tuple[list[ops.Verdict], list[QuarantineRow], dict[str, int]]:
        verdicts: list[ops.Verdict] = []
        quarantine_rows: list[QuarantineRow] = []
        for month, context in contexts.items():
            rows = [row for row in chunk if (period or billing_month_of(row["payload"])) == month]
            got, held, checks = judge_invoices(rows, references, context, run)
            verdicts += got
            quarantine_rows += held
            _save_checks(warehouse, checks)
        return verdicts, quarantine_rows, {"waiting": sum(1 for _, status, _ in verdicts if status == "waiting")}

    tally = ops.validate_staged(
        warehouse,
        run,
        ENTITY,
        judge,
        chunk_size=max(1, len(staged)),
        details=lambda t: {"held": t.quarantined, "waiting": t.extra.get("waiting", 0), "failed_checks": dict(t.failed_rules)},
    )
    if tally.quarantined:
        log.warning("%d invoices held for finance: %s", tally.quarantined, tally.failed_rules)
    if tally.extra.get("waiting"):
        log.info("%d T&M invoices wait for the weekly export of their month's time", tally.extra["waiting"])
    return {"valid": tally.valid, "quarantined": tally.quarantined, "waiting": tally.extra.get("waiting", 0)}


def billing_month_of(invoice: Any) -> str:
    """The invoice's billing month (``YYYY-MM``), or ``0000-00`` when it names none a check could use."""
    period = str(as_dict(invoice).get("period") or "")
    return period if len(period) == 7 and period[4] == "-" and period[:4].isdigit() and period[5:].isdigit() else "0000-00"


def judge_invoices(
    staged: list[dict[str, Any]], references: AccountingReferences, context: CheckContext, run: RunRef
) -> tuple[list[ops.Verdict], list[QuarantineRow], list[dict[str, Any]]]:
    """Verdicts, exception rows and reconciliation rows for staged invoices (no I/O)."""
    verdicts: list[ops.Verdict] = []
    quarantine_rows: list[QuarantineRow] = []
    checks: list[dict[str, Any]] = []
    outcome = validate_rows(ENTITY, [header_row(r["payload"]) for r in staged])
    for index, row in enumerate(staged):
        invoice = row["payload"]
        failures = list(outcome.failures.get(index, []))
        if row["status"] == "conflict":
            failures.append(
                RuleFailure("invoice.psa_invoice_id.conflict", f"invoice {row['source_key']} was sent twice with different content")
            )
        results, canonical = judge_invoice(invoice, references, context, structurally_valid=not failures)
        failures += [RuleFailure(r["rule"], r["detail"]) for r in results if not r["passed"]]
        checks += [{**r, "psa_invoice_id": row["source_key"], "run_id": run.run_id} for r in results]
        holds = [f for f in failures if f.rule != WAITING_RULE]
        shown = holds or failures  # a waiting invoice shows why it waits; a held one only its holds
        canonical.update(hold_rule=shown[0].rule if shown else None, hold_reason="; ".join(dict.fromkeys(f.reason for f in shown)) or None)
        status = "quarantined" if holds else "waiting" if failures else "valid"
        verdicts.append((row["source_key"], status, canonical))
        quarantine_rows += [QuarantineRow(ENTITY, row["source_key"], f.rule, f.reason, invoice) for f in dict.fromkeys(holds)]
    return verdicts, quarantine_rows, checks


class CheckContext:
    """What the checks compare against: exported time, billed-to-date, known numbers, contracts."""

    def __init__(self) -> None:
        self.exported_time: dict[str, tuple[Decimal, Decimal]] = {}
        self.exported_expenses: dict[str, dict[str, tuple[Decimal, str]]] = {}
        """Project → {expense id → (amount, currency)} the expense export posted as billable for the month."""
        self.billed_fixed: dict[str, Decimal] = defaultdict(Decimal)
        self.known_numbers: dict[str, tuple[str, str, str]] = {}
        self.staged_hashes: dict[str, set[str]] = defaultdict(set)
        self.contracts: dict[str, Decimal | None] = {}
        self.period = ""
        self.time_exported = True
        """Has the weekly export covered the whole month? (Only the daily run asks; see :data:`WAITING_RULE`.)"""
        self.expenses_exported = True
        """Has the weekly expense export covered the whole month? (Both runs ask.)"""

    @classmethod
    def load(cls, connection: Connection, staged: list[dict[str, Any]], contracts: dict[str, Any], period: str) -> CheckContext:
        context = cls()
        context.period = period
        month_start = date.fromisoformat(f"{period}-01")
        month_end = first_of_next_month(month_start)
        context.exported_time = reconciliation.exported_billable_time(connection, month_start, month_end)
        context.exported_expenses = reconciliation.exported_billable_expenses(connection, month_start, month_end)
        context.billed_fixed.update(reconciliation.billed_fixed_fee(connection))
        context.known_numbers = reconciliation.known_invoice_numbers(connection)
        for row in staged:
            context.staged_hashes[str(row["payload"].get("number"))].add(content_hash(row["payload"]))
        for deal_id, deal in contracts.items():
            context.contracts[deal_id] = _decimal(deal.get("contract_value"))
        return context

    def billed_to_date(self, deal_id: str, excluding: str) -> Decimal:
        return sum((v for k, v in self.billed_fixed.items() if k.startswith(f"{deal_id}|") and not k.endswith(f"|{excluding}")), Decimal(0))


@dataclass(frozen=True)
class CheckResult:
    """One business check of one invoice: its rule id, whether it passed, and a sentence for finance."""

    rule: str
    passed: bool
    expected: Any = None
    actual: Any = None
    detail: str = ""
    waiting: bool = False
    """Failed only because the data it compares against is not complete yet (:data:`WAITING_RULE`)."""

    def as_row(self) -> dict[str, Any]:
        return {
            "rule": WAITING_RULE if self.waiting else self.rule,
            "check_name": self.rule.removeprefix("invoice."),
            "passed": bool(self.passed),
            "expected": None if self.expected is None else str(self.expected),
            "actual": None if self.actual is None else str(self.actual),
            "detail": self.detail,
        }


def failed(rule: str, detail: str, **values: Any) -> CheckResult:
    return CheckResult(rule, False, detail=detail, **values)


@dataclass
class InvoiceFacts:
    """What the checks read about one invoice, worked out once: header, lines and their sums."""

    invoice: dict[str, Any]
    header: dict[str, Any]
    lines: list[dict[str, Any]]
    line_problems: list[CheckResult]
    line_sum: Decimal
    time_hours: Decimal
    time_amount: Decimal
    time_lines: int
    subtotal: Decimal | None
    tax: Decimal | None
    total: Decimal | None

    @property
    def number(self) -> str:
        return str(self.header["number"])

    @property
    def is_invoice(self) -> bool:
        return self.header["kind"] == "invoice"


def invoice_facts(invoice: dict[str, Any]) -> InvoiceFacts:
    """Header and lines as numbers; a line that cannot be read is a problem, not a crash."""
    header = header_row(invoice)
    lines: list[dict[str, Any]] = []
    problems: list[CheckResult] = []
    line_sum = time_hours = time_amount = Decimal(0)
    time_lines = 0
    raw_lines = invoice_lines(invoice)
    if raw_lines is None:
        kind = type(invoice.get("lines")).__name__
        problems.append(failed("invoice.lines.shape", f"invoice {header['number']} has no readable lines (lines is {kind})"))
    for line in raw_lines or []:
        qty, rate, amount = _decimal(line.get("quantity")), _decimal(line.get("rate")), _decimal(line.get("amount"))
        if qty is None or rate is None or amount is None:
            problems.append(failed("invoice.line.numbers", f"line {line.get('line_id')}: quantity, rate and amount must be numbers"))
            continue
        problems += line_checks(line, qty, rate, amount)
        line_sum += amount
        if line.get("kind") == "time":
            time_hours, time_amount, time_lines = time_hours + qty, time_amount + amount, time_lines + 1
        lines.append(outbox_line(line, qty, rate, amount))
    subtotal, tax, total = (_decimal(header[k]) for k in ("subtotal", "tax_amount", "total"))
    return InvoiceFacts(invoice, header, lines, problems, line_sum, time_hours, time_amount, time_lines, subtotal, tax, total)


def line_checks(line: dict[str, Any], qty: Decimal, rate: Decimal, amount: Decimal) -> list[CheckResult]:
    results = []
    if qty < 0 or amount < 0:
        detail = f"line {line.get('line_id')} has a negative quantity or amount ({qty} × {rate} = {amount}); use a credit note"
        results.append(failed("invoice.line.quantity_not_negative", detail, actual=qty))
    if abs(qty * rate - amount) > CENT:
        results.append(
            failed("invoice.line.amount", f"line {line.get('line_id')}: {qty} × {rate} is not {amount}", expected=qty * rate, actual=amount)
        )
    return results


def outbox_line(line: dict[str, Any], qty: Decimal, rate: Decimal, amount: Decimal) -> dict[str, Any]:
    return {
        "line_id": str(line.get("line_id")),
        "kind": str(line.get("kind")),
        "description": line.get("description"),
        "person_id": as_dict(line.get("person")).get("id"),
        "milestone_id": as_dict(line.get("milestone")).get("id"),
        "expense_id": as_dict(line.get("expense")).get("id"),
        "quantity": str(qty),
        "rate": str(rate),
        "amount": str(amount),
    }


@dataclass(frozen=True)
class Judging:
    """Everything an invoice check may consult besides the invoice itself."""

    references: AccountingReferences
    context: CheckContext
    mapping: Any
    """``accounting_mapping.yaml`` as loaded (``.invoicing`` holds the invoicing part)."""
    structurally_valid: bool


def check_total_adds_up(f: InvoiceFacts, j: Judging) -> list[CheckResult]:
    if None in (f.subtotal, f.tax, f.total):
        return []
    assert f.subtotal is not None and f.tax is not None and f.total is not None
    tax_code = j.mapping.invoicing.tax_codes.get(str(f.header["tax_code"]))
    expected_tax = (f.line_sum * tax_code[1]).quantize(CENT) if tax_code else f.tax
    adds_up = abs(f.line_sum - f.subtotal) <= CENT and abs(f.subtotal + f.tax - f.total) <= CENT and abs(expected_tax - f.tax) <= CENT
    detail = (
        "" if adds_up else f"total {f.total} is not the sum of the lines ({f.line_sum}) plus tax at {f.header['tax_code']} ({expected_tax})"
    )
    return [
        CheckResult(
            "invoice.total.adds_up",
            adds_up,
            expected=f"lines {f.line_sum} + tax {expected_tax} = {f.line_sum + expected_tax}",
            actual=f"subtotal {f.subtotal} + tax {f.tax} = {f.total}",
            detail=detail,
        )
    ]


def customer_of(f: InvoiceFacts, j: Judging) -> Any:
    override = j.mapping.client_overrides.get(str(f.header["client_id"]))
    return j.references.customers.get(normalise(override or str(f.header["client_name"] or "")))


def check_customer(f: InvoiceFacts, j: Judging) -> list[CheckResult]:
    customer = customer_of(f, j)
    h = f.header
    results = [
        CheckResult(
            "invoice.customer.mapped",
            customer is not None,
            actual=h["client_name"],
            detail="" if customer else f"client {h['client_id']} ({h['client_name']}) has no accounting customer",
        )
    ]
    billed_in = customer.extra.get("currency") if customer is not None else None
    if billed_in and h["currency"] != billed_in:
        detail = f"customer {customer.name} is billed in {billed_in}, not {h['currency']}"
        results.append(failed("invoice.customer.currency", detail, expected=billed_in, actual=h["currency"]))
    return results


def tax_ref_of(f: InvoiceFacts, j: Judging) -> Any:
    tax_code = j.mapping.invoicing.tax_codes.get(str(f.header["tax_code"]))
    return j.references.tax_codes.get(normalise(tax_code[0])) if tax_code else None


def check_tax_code(f: InvoiceFacts, j: Judging) -> list[CheckResult]:
    tax_ref = tax_ref_of(f, j)
    detail = "" if tax_ref else f"tax code {f.header['tax_code']} is not mapped to an accounting tax code"
    return [CheckResult("invoice.tax_code.mapped", tax_ref is not None, actual=f.header["tax_code"], detail=detail)]


def check_currency(f: InvoiceFacts, j: Judging) -> list[CheckResult]:
    currency = f.header["currency"]
    if currency in j.mapping.invoicing.currencies:
        return []
    return [
        failed(
            "invoice.currency.supported",
            f"accounting does not invoice in {currency} (accounting_mapping.yaml: currencies)",
            actual=currency,
        )
    ]


def item_refs(f: InvoiceFacts, j: Judging) -> list[str]:
    """The accounting item id of each line, in line order ("" when the line's kind has no item)."""
    invoicing = j.mapping.invoicing
    time_code = j.mapping.billing_codes.get(invoicing.time_item)
    item_names = {
        "time": time_code.item if time_code else None,
        "fixed_fee": invoicing.fixed_fee.item,
        "adjustment": (j.mapping.billing_codes.get(invoicing.adjustment_item) or invoicing.fixed_fee).item,
        "expense": invoicing.rebilled_expenses.item,
    }
    items = (j.references.items.get(normalise(item_names.get(line["kind"]) or "")) for line in f.lines)
    return [item.ref_id if item else "" for item in items]


def check_items(f: InvoiceFacts, j: Judging) -> list[CheckResult]:
    return [
        failed("invoice.item.mapped", f"line {line['line_id']} ({line['kind']}) has no accounting item", actual=line["kind"])
        for line, ref in zip(f.lines, item_refs(f, j), strict=True)
        if not ref
    ]


def check_number(f: InvoiceFacts, j: Judging) -> list[CheckResult]:
    known = j.context.known_numbers.get(f.number)
    reused = len(j.context.staged_hashes.get(f.number, ())) > 1 or bool(known and known[0] != f.header["psa_invoice_id"])
    detail = f"invoice number {f.number} is used by more than one invoice with different content" if reused else ""
    results = [CheckResult("invoice.number.unique", not reused, actual=f.number, detail=detail)]
    posted_before = known and known[0] == f.header["psa_invoice_id"] and known[2] in POSTED_STATES
    if posted_before and known[1] != content_hash(f.invoice) and f.invoice.get("status") != "voided":
        results.append(
            failed(
                "invoice.unchanged_after_posting",
                f"invoice {f.number} changed in the PSA after it was posted; correct it with a credit note",
            )
        )
    return results


def check_time_reconciles(f: InvoiceFacts, j: Judging) -> list[CheckResult]:
    h = f.header
    if not (j.structurally_valid and f.is_invoice and h["billing_type"] == "time_and_materials"):
        return []
    invoicing = j.mapping.invoicing
    hours, amount = j.context.exported_time.get(str(h["project_id"]), (Decimal(0), Decimal(0)))
    tolerance = invoicing.amount_tolerance_per_line * max(1, f.time_lines)
    ok = abs(hours - f.time_hours) <= invoicing.hours_tolerance and abs(amount - f.time_amount) <= tolerance
    detail = (
        ""
        if ok
        else (
            f"invoice bills {f.time_hours} h / {f.time_amount} but {hours} h / {amount} of billable time was exported for "
            f"{h['project_id']} in {j.context.period}"
        )
    )
    waiting = not ok and not j.context.time_exported
    if waiting:
        detail = f"{detail} so far; waiting for the weekly export to cover the rest of {j.context.period}"
    return [
        CheckResult(
            "invoice.time.reconciles",
            ok,
            expected=f"{hours} h, {amount}",
            actual=f"{f.time_hours} h, {f.time_amount}",
            detail=detail,
            waiting=waiting,
        )
    ]


def check_expenses_reconcile(f: InvoiceFacts, j: Judging) -> list[CheckResult]:
    """A T&M invoice's re-billed expense lines are the billable expenses the expense export posted
    for its project and month: each line names one, at its amount and in the invoice's currency, and
    every such expense is billed (once)."""
    h = f.header
    if not (j.structurally_valid and f.is_invoice and h["billing_type"] == "time_and_materials"):
        return []
    exported = j.context.exported_expenses.get(str(h["project_id"]), {})
    lines = [line for line in f.lines if line["kind"] == "expense"]
    if not lines and not exported:
        return []
    problems: list[str] = []
    billed: set[str] = set()
    for line in lines:
        expense_id = str(line.get("expense_id") or "")
        found = exported.get(expense_id)
        if not expense_id:
            problems.append(f"line {line['line_id']} bills an expense without naming it")
        elif expense_id in billed:
            problems.append(f"expense {expense_id} is billed twice")
        elif found is None:
            problems.append(f"line {line['line_id']} bills expense {expense_id}, which was not exported as billable for this project")
        elif abs(found[0] - Decimal(line["amount"])) > CENT or found[1] != h["currency"]:
            problems.append(
                f"line {line['line_id']} bills expense {expense_id} at {line['amount']} {h['currency']}, exported at {found[0]} {found[1]}"
            )
        billed.add(expense_id)
    unbilled = sorted(set(exported) - billed)
    if unbilled:
        problems.append(f"billable expenses exported but not billed: {', '.join(unbilled)}")
    expected_total = sum((amount for amount, _ in exported.values()), Decimal(0))
    actual_total = sum((Decimal(line["amount"]) for line in lines), Decimal(0))
    detail = "; ".join(problems)
    waiting = bool(problems) and not j.context.expenses_exported
    if waiting:
        detail = f"{detail} so far; waiting for the weekly expense export to cover the rest of {j.context.period}"
    return [
        CheckResult(
            "invoice.expenses.reconcile",
            not problems,
            expected=f"{len(exported)} expenses, {expected_total}",
            actual=f"{len(lines)} expense lines, {actual_total}",
            detail=detail,
            waiting=waiting,
        )
    ]


def check_fixed_fee(f: InvoiceFacts, j: Judging) -> list[CheckResult]:
    h = f.header
    if not (j.structurally_valid and f.is_invoice and h["billing_type"] == "fixed_fee"):
        return []
    deal_id = str(h["crm_deal_id"] or "")
    contract = j.context.contracts.get(deal_id)
    if contract is None:
        return [
            failed(
                "invoice.fixed_fee.contract_known",
                f"project {h['project_id']} has no CRM deal with a contract value (deal {deal_id or 'missing'})",
            )
        ]
    billed = j.context.billed_to_date(deal_id, excluding=str(h["psa_invoice_id"])) + (f.subtotal or Decimal(0))
    detail = (
        "" if billed <= contract else f"fixed fees billed to date would be {billed}, above the contract value {contract} of deal {deal_id}"
    )
    return [CheckResult("invoice.fixed_fee.within_contract", billed <= contract, expected=f"≤ {contract}", actual=billed, detail=detail)]


def check_credit_note_target(f: InvoiceFacts, j: Judging) -> list[CheckResult]:
    h = f.header
    if h["kind"] != "credit_note":
        return []
    target = j.context.known_numbers.get(str(h["credit_note_for"])) or (str(h["credit_note_for"]) in j.context.staged_hashes or None)
    detail = "" if target else f"credit note {f.number} refers to unknown invoice {h['credit_note_for']}"
    return [CheckResult("invoice.credit_note.target_known", bool(target), actual=h["credit_note_for"], detail=detail)]


INVOICE_CHECKS: tuple[Callable[[InvoiceFacts, Judging], list[CheckResult]], ...] = (
    check_total_adds_up,
    check_customer,
    check_tax_code,
    check_currency,
    check_items,
    check_number,
    check_time_reconciles,
    check_expenses_reconcile,
    check_fixed_fee,
    check_credit_note_target,
)
"""The business checks of an invoice, in the order their results are recorded."""

CANONICAL_HEADER = (
    "psa_invoice_id",
    "number",
    "kind",
    "psa_status",
    "billing_type",
    "project_id",
    "crm_deal_id",
    "client_id",
    "client_name",
    "currency",
    "issue_date",
    "due_date",
    "subtotal",
    "tax_code",
    "tax_amount",
    "total",
    "credit_note_for",
)


def judge_invoice(
    invoice: dict[str, Any], references: AccountingReferences, context: CheckContext, *, structurally_valid: bool
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(check results, the outbox row with its lines) for one invoice: every check of ``INVOICE_CHECKS``."""
    judging = Judging(references=references, context=context, mapping=load_mapping(), structurally_valid=structurally_valid)
    facts = invoice_facts(invoice)
    results = list(facts.line_problems)
    for check in INVOICE_CHECKS:
        results += check(facts, judging)
    customer, tax_ref, refs = customer_of(facts, judging), tax_ref_of(facts, judging), item_refs(facts, judging)
    canonical = {
        **{k: facts.header[k] for k in CANONICAL_HEADER},
        "hours": str(facts.time_hours),
        "customer_ref_id": customer.ref_id if customer else None,
        "tax_ref_id": tax_ref.ref_id if tax_ref else None,
        "content_hash": content_hash(invoice),
        "lines": [{**line, "item_ref_id": ref} for line, ref in zip(facts.lines, refs, strict=True)],
    }
    return [r.as_row() for r in results], canonical


def _save_checks(warehouse: Engine, checks: list[dict[str, Any]]) -> None:
    from backbone.warehouse.db import upsert
    from backbone.warehouse.tables import reconciliation

    rows = {
        (c["psa_invoice_id"], c["check_name"]): {
            k: c[k] for k in ("psa_invoice_id", "check_name", "passed", "expected", "actual", "detail", "run_id")
        }
        for c in checks
    }
    with warehouse.begin() as connection:
        upsert(connection, reconciliation, list(rows.values()), key=["psa_invoice_id", "check_name"], bookkeeping=("run_id",))


# --- load ----------------------------------------------------------------------------------------
def load_invoices(warehouse: Engine, run: RunRef, *, period: str | None) -> dict[str, Any]:
    """Write the outbox: new and unposted invoices (re)written, posted ones only ever marked for void."""
    from sqlalchemy import select

    from backbone.warehouse.db import upsert
    from backbone.warehouse.tables import invoice, invoice_line

    written = voids = 0
    with warehouse.begin() as connection:
        ops.lock_for_transaction(connection, f"{run.flow}:outbox")
        staged = [row for chunk in ops.iter_staged(warehouse, run, ENTITY) for row in chunk if row["canonical"]]
        existing = {
            r.psa_invoice_id: r.posting_status for r in connection.execute(select(invoice.c.psa_invoice_id, invoice.c.posting_status))
        }
        for row in staged:
            canon = row["canonical"]
            state = existing.get(canon["psa_invoice_id"])
            if state in POSTED_STATES:
                if canon["psa_status"] == "voided" and state == "posted":
                    connection.execute(
                        invoice.update().where(invoice.c.psa_invoice_id == canon["psa_invoice_id"]).values(posting_status="void_pending")
                    )
                    voids += 1
                continue
            status = "not_posted" if canon["psa_status"] == "voided" else OUTBOX_STATUS.get(row["status"], "held")
            month = period or billing_month_of(row["payload"])
            upsert(connection, invoice, [_invoice_row(canon, run, status, month)], key=["psa_invoice_id"], bookkeeping=("run_id",))
            connection.execute(invoice_line.delete().where(invoice_line.c.psa_invoice_id == canon["psa_invoice_id"]))
            if canon["lines"]:
                connection.execute(invoice_line.insert(), [_line_row(canon["psa_invoice_id"], line) for line in canon["lines"]])
            written += 1
        healed = _resolve_holds_of_other_runs(
            connection, run, [row["source_key"] for row in staged if row["status"] in ("valid", "waiting")]
        )
        totals = period_totals(connection, run)
        # ``loaded`` is the interval's invoices now in the outbox, whatever an earlier attempt already
        # wrote: the same after a clean run and after a kill and rerun; this attempt's writes are in details.
        ops.record_run(
            connection,
            run,
            loaded=len(staged),
            details={"voids_requested": voids, "written_by_this_attempt": written, "holds_resolved": healed, **totals},
        )
    return {"loaded": len(staged), "written_by_this_attempt": written, "voids_requested": voids}


def _resolve_holds_of_other_runs(connection: Connection, run: RunRef, accepted: list[str]) -> int:
    """An invoice accepted now closes its open holds in either invoicing flow (a month-end hold the
    daily run healed shows as resolved by the daily run)."""
    if not accepted:
        return 0
    result = connection.exec_driver_sql(
        """
        UPDATE ops.quarantine SET resolved_at = now(), resolved_by_run = %(run_id)s
        WHERE flow = ANY(%(flows)s) AND entity = %(entity)s AND source_key = ANY(%(keys)s) AND resolved_at IS NULL AND run_id <> %(run_id)s
        """,
        {"run_id": run.run_id, "flows": list(INVOICING_FLOWS), "entity": ENTITY, "keys": accepted},
    )
    return result.rowcount


def _invoice_row(canon: dict[str, Any], run: RunRef, status: str, period: str) -> dict[str, Any]:
    def money(key: str) -> Decimal:
        return _decimal(canon[key]) or Decimal(0)

    return {
        **{
            k: canon[k]
            for k in (
                "psa_invoice_id",
                "number",
                "kind",
                "billing_type",
                "project_id",
                "crm_deal_id",
                "client_id",
                "client_name",
                "customer_ref_id",
                "currency",
                "tax_code",
                "credit_note_for",
                "psa_status",
                "content_hash",
            )
        },
        "number": str(canon["number"])[:21],
        "currency": str(canon["currency"])[:3],
        "period": period,
        "issue_date": _date_or_epoch(canon["issue_date"]),
        "due_date": _date_or_epoch(canon["due_date"]),
        "hours": _decimal(canon["hours"]) or Decimal(0),
        "subtotal": money("subtotal"),
        "tax_amount": money("tax_amount"),
        "total": money("total"),
        "run_id": run.run_id,
        "request_id": request_id_for("Invoice", str(canon["psa_invoice_id"])),
        "posting_status": status,
        "hold_rule": canon.get("hold_rule"),
        "hold_reason": canon.get("hold_reason"),
        "accounting_entity": LEGACY_ENTITY_NAMES.get(str(canon["kind"]), "Invoice"),
    }


def _date_or_epoch(value: Any) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        return date(1970, 1, 1)


def _line_row(invoice_id: str, line: dict[str, Any]) -> dict[str, Any]:
    return {
        "psa_invoice_id": invoice_id,
        **{k: line[k] for k in ("line_id", "kind", "description", "person_id", "milestone_id", "expense_id", "item_ref_id")},
        "quantity": Decimal(line["quantity"]),
        "rate": Decimal(line["rate"]),
        "amount": Decimal(line["amount"]),
    }


def period_totals(connection: Connection, run: RunRef) -> dict[str, Any]:
    """Invoice count, held and posted counts, and net amount per currency (invoices − credit notes) of the run."""
    return reconciliation.invoice_totals_of_run(connection, run.run_id)


def pending_invoices(warehouse: Engine) -> int:
    """Outbox invoices waiting to be posted or voided."""
    with warehouse.connect() as connection:
        return int(
            connection.exec_driver_sql("SELECT count(*) FROM acct.invoice WHERE posting_status IN ('pending', 'void_pending')").scalar_one()
        )


# --- post ----------------------------------------------------------------------------------------
def post_invoices(accounting: AccountingSystem, warehouse: Engine, run: RunRef, *, in_scope: Any = None) -> dict[str, Any]:
    """Post pending invoices (then credit notes), void what the PSA voided; each exactly once.
    ``in_scope`` (``backbone.rollout``) leaves invoices outside a rollout scope pending."""
    from sqlalchemy import func, not_, select, true

    from backbone.warehouse.tables import invoice, reference

    mapping = load_mapping().invoicing
    posted = adopted = voided = failed = 0
    rejections: list[QuarantineRow] = []
    with ops.exclusive(warehouse, f"{run.flow}:post", what=f"another {run.flow} run is posting invoices right now"):
        with warehouse.connect() as connection:  # read under the lock: nobody else is posting these
            pending = [
                dict(r._mapping)
                for r in connection.execute(
                    select(invoice)
                    .where(invoice.c.posting_status.in_(("pending", "void_pending")), in_scope if in_scope is not None else true())
                    .order_by(invoice.c.kind.desc(), invoice.c.number)
                )
            ]
            held_back = (
                int(
                    connection.execute(
                        select(func.count()).where(invoice.c.posting_status.in_(("pending", "void_pending")), not_(in_scope))
                    ).scalar_one()
                )
                if in_scope is not None
                else 0
            )
            tax_refs = {
                r.match_key: r.ref_id
                for r in connection.execute(select(reference.c.match_key, reference.c.ref_id).where(reference.c.entity == "TaxCode"))
            }
        for row in pending:
            outcome = _post_one(accounting, warehouse, row, tax_refs, mapping)
            if outcome == "posted":
                posted += 1
            elif outcome == "found":
                adopted += 1
            elif outcome == "voided":
                voided += 1
            else:
                failed += 1
                rejections.append(
                    QuarantineRow(ENTITY, row["psa_invoice_id"], "accounting.rejected", outcome, {k: str(v) for k, v in row.items()})
                )
    with warehouse.begin() as connection:
        ops.add_quarantine(connection, run, rejections)
        totals = period_totals(connection, run)
        ops.record_run(
            connection,
            run,
            written_back=posted + voided,
            details={
                "posted_now": posted,
                "found_by_number": adopted,
                "voided_now": voided,
                "rejected_by_accounting": failed,
                **totals,
                **({"held_back_by_rollout_scope": held_back} if in_scope is not None else {}),
            },
        )
    log.info("invoices: %d posted, %d found already posted by number, %d voided, %d rejected", posted, adopted, voided, failed)
    return {"posted": posted, "found_by_number": adopted, "voided": voided, "rejected": failed}


def _post_one(accounting: AccountingSystem, warehouse: Engine, row: dict[str, Any], tax_refs: dict[str, str], mapping: Any) -> str:
    """Post, adopt or void one outbox invoice; returns what happened, or the rejection's reason."""
    from sqlalchemy import func, select

    from backbone.warehouse.tables import invoice_line

    kind = row["kind"]
    try:
        if row["posting_status"] == "void_pending":
            void_key = request_id_for("void", row["accounting_entity"], row["psa_invoice_id"])
            accounting.void_invoice(kind, row["accounting_id"], request_id=void_key)
            _mark(warehouse, row, posting_status="voided", voided_at=func.now())
            return "voided"
        found = accounting.find_invoice(kind, row["number"])
        if found is not None:
            found_id, found_total = found
            if abs(found_total - row["total"]) > CENT:
                raise RejectedByAccounting(
                    f"{kind.replace('_', ' ')} {row['number']} already exists in accounting (id {found_id}) with total {found_total}, not "
                    f"{row['total']}"
                )
            _mark(warehouse, row, posting_status="posted", accounting_id=found_id, posted_at=func.now())
            return "found"
        with warehouse.connect() as connection:
            lines = [
                dict(r._mapping)
                for r in connection.execute(
                    select(invoice_line).where(invoice_line.c.psa_invoice_id == row["psa_invoice_id"]).order_by(invoice_line.c.line_id)
                )
            ]
        tax_name = mapping.tax_codes.get(row["tax_code"], ("", Decimal(0)))[0]
        answer = accounting.create_invoice(kind, row, lines, tax_refs.get(normalise(tax_name)), request_id=row["request_id"])
        _mark(warehouse, row, posting_status="posted", accounting_id=answer.object_id, posted_at=func.now())
        return "posted"
    except ReauthorisationRequired:
        raise  # the Connection itself is dead: fail the task now, every invoice stays pending
    except RejectedByAccounting as exc:
        _mark(warehouse, row, posting_status="failed", last_error=str(exc))
        return str(exc)


def _mark(warehouse: Engine, row: dict[str, Any], **values: Any) -> None:
    from backbone.warehouse.tables import invoice

    with warehouse.begin() as connection:
        connection.execute(invoice.update().where(invoice.c.psa_invoice_id == row["psa_invoice_id"]).values(**values))
