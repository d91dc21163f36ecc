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
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from backbone.accounting_mapping import AccountingReferences, load_mapping, normalise
from backbone.flows.references import load_references, refresh_references
from backbone.hooks.accounting import request_id_for
from backbone.hooks.oauth import ReauthorisationRequired
from backbone.http import FatalApiError
from backbone.validation import RuleFailure, as_dict, validate_rows
from backbone.warehouse import ops
from backbone.warehouse.ops import QuarantineRow, RunRef

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from backbone.hooks.accounting import AccountingSystem
    from backbone.hooks.crm import CrmSystem
    from backbone.hooks.psa import PsaBilling

log = logging.getLogger(__name__)

FLOW = "invoices_month_end_to_accounting"
ENTITY = "invoice"
CENT = Decimal("0.01")
POSTED_STATES = ("posted", "void_pending", "voided")


def billing_period(run: RunRef, company_timezone: str) -> str:
    """``YYYY-MM`` of the run's interval, which must be exactly one calendar month in company time."""
    zone = ZoneInfo(company_timezone)
    start, end = run.interval_start.astimezone(zone), run.interval_end.astimezone(zone)
    next_month = (start.replace(day=28).date().replace(day=1) + timedelta(days=32)).replace(day=1)
    if (start.day, start.hour, start.minute) != (1, 0, 0) or end.date() != next_month or (end.hour, end.minute) != (0, 0):
        raise ValueError(f"{FLOW} needs a data interval of one calendar month in {company_timezone}; got {start} → {end}")
    return start.strftime("%Y-%m")


# --- extract -------------------------------------------------------------------------------------
def extract_invoices(psa: PsaBilling, accounting: AccountingSystem, crm: CrmSystem, warehouse: Engine, run: RunRef, *, period: str) -> dict[str, int]:
    """Stage the period's PSA invoices and the CRM deals their fixed fees are bounded by."""
    references = refresh_references(accounting, warehouse, run)
    with warehouse.begin() as connection:
        ops.clear_staging(connection, run)
    extracted = 0
    deal_ids: set[str] = set()
    for page in psa.iter_invoices(period):
        with warehouse.begin() as connection:
            ops.stage_unique(connection, run, ENTITY, [(str(i.get("id")), i) for i in page])
        extracted += len(page)
        deal_ids |= {str((i.get("project") or {}).get("crm_deal_id")) for i in page if (i.get("project") or {}).get("crm_deal_id")}
    deals = crm.read_deals(sorted(deal_ids)) if deal_ids else {}
    with warehouse.begin() as connection:
        ops.stage(connection, run, "deal", [(deal_id, deal) for deal_id, deal in deals.items()])
        ops.record_run(connection, run, extracted=extracted, details={"period": period, "crm_deals_read": len(deals), "accounting_references": references})
    log.info("extracted %d PSA invoices of %s and %d CRM deals", extracted, period, len(deals))
    return {"extracted": extracted}


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


def check_invoices(warehouse: Engine, run: RunRef, *, period: str) -> dict[str, Any]:
    """Every check on every invoice; results in ``acct.reconciliation``, failures held with reasons."""
    references = load_references(warehouse)
    staged = [row for chunk in ops.iter_staged(warehouse, run, ENTITY) for row in chunk]
    contracts = {row["source_key"]: row["payload"] for chunk in ops.iter_staged(warehouse, run, "deal") for row in chunk}
    with warehouse.connect() as connection:
        context = CheckContext.load(connection, staged, contracts, period)
    verdicts: list[tuple[str, str, dict[str, Any] | None]] = []
    quarantine_rows: list[QuarantineRow] = []
    checks: list[dict[str, Any]] = []
    outcome = validate_rows(ENTITY, [header_row(r["payload"]) for r in staged])
    for index, row in enumerate(staged):
        invoice = row["payload"]
        failures = list(outcome.failures.get(index, []))
        if row["status"] == "conflict":
            failures.append(RuleFailure("invoice.psa_invoice_id.conflict", f"invoice {row['source_key']} was sent twice with different content"))
        results, canonical = judge_invoice(invoice, references, context, structurally_valid=not failures)
        failures += [RuleFailure(r["rule"], r["detail"]) for r in results if not r["passed"]]
        checks += [{**r, "psa_invoice_id": row["source_key"], "run_id": run.run_id} for r in results]
        canonical.update(hold_rule=failures[0].rule if failures else None, hold_reason="; ".join(dict.fromkeys(f.reason for f in failures)) or None)
        verdicts.append((row["source_key"], "quarantined" if failures else "valid", canonical))
        quarantine_rows += [QuarantineRow(ENTITY, row["source_key"], f.rule, f.reason, invoice) for f in dict.fromkeys(failures)]
    _save_checks(warehouse, checks)
    with warehouse.begin() as connection:
        ops.set_verdicts(connection, run, ENTITY, verdicts)
        ops.add_quarantine(connection, run, quarantine_rows)
        counts = {"valid": sum(1 for v in verdicts if v[1] == "valid"), "quarantined": sum(1 for v in verdicts if v[1] == "quarantined")}
        ops.record_run(connection, run, **counts, details={"held": counts["quarantined"], "failed_checks": _count_rules(quarantine_rows)})
    if quarantine_rows:
        log.warning("%d invoices held for finance: %s", counts["quarantined"], _count_rules(quarantine_rows))
    return counts


def _count_rules(rows: list[QuarantineRow]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[row.rule] += 1
    return dict(counts)


class CheckContext:
    """What the checks compare against: exported time, billed-to-date, known numbers, contracts."""

    def __init__(self) -> None:
        self.exported_time: dict[str, tuple[Decimal, Decimal]] = {}
        self.billed_fixed: dict[str, Decimal] = defaultdict(Decimal)
        self.known_numbers: dict[str, tuple[str, str, str]] = {}
        self.staged_hashes: dict[str, set[str]] = defaultdict(set)
        self.contracts: dict[str, Decimal | None] = {}
        self.period = ""

    @classmethod
    def load(cls, connection: Connection, staged: list[dict[str, Any]], contracts: dict[str, Any], period: str) -> CheckContext:
        context = cls()
        context.period = period
        month_start = date.fromisoformat(f"{period}-01")
        month_end = (month_start.replace(day=28) + timedelta(days=4)).replace(day=1)
        context.exported_time = {
            project: (hours, amount)
            for project, hours, amount in connection.exec_driver_sql(
                """
                SELECT project_id, sum(hours), sum(amount) FROM (
                    SELECT DISTINCT ON (entry_id) project_id, hours, amount, billable_status, posting_status, work_date
                    FROM acct.time_export ORDER BY entry_id, entry_version DESC
                ) latest
                WHERE posting_status = 'posted' AND billable_status = 'Billable' AND work_date >= %(start)s AND work_date < %(end)s
                GROUP BY project_id
                """,
                {"start": month_start, "end": month_end},
            )
        }
        for deal_id, kind, subtotal, invoice_id in connection.exec_driver_sql(
            "SELECT crm_deal_id, kind, subtotal, psa_invoice_id FROM acct.invoice "
            "WHERE billing_type = 'fixed_fee' AND posting_status IN ('posted', 'void_pending') AND crm_deal_id IS NOT NULL"
        ):
            context.billed_fixed[f"{deal_id}|{invoice_id}"] = subtotal if kind == "invoice" else -subtotal
        context.known_numbers = {
            number: (invoice_id, content, status)
            for number, invoice_id, content, status in connection.exec_driver_sql("SELECT number, psa_invoice_id, content_hash, posting_status FROM acct.invoice")
        }
        for row in staged:
            context.staged_hashes[str(row["payload"].get("number"))].add(content_hash(row["payload"]))
        for deal_id, deal in contracts.items():
            context.contracts[deal_id] = _decimal(deal.get("contract_value"))
        return context

    def billed_to_date(self, deal_id: str, excluding: str) -> Decimal:
        return sum((v for k, v in self.billed_fixed.items() if k.startswith(f"{deal_id}|") and not k.endswith(f"|{excluding}")), Decimal(0))


def judge_invoice(invoice: dict[str, Any], references: AccountingReferences, context: CheckContext, *, structurally_valid: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(check results, the outbox row with its lines) for one invoice."""
    mapping = load_mapping().invoicing
    header = header_row(invoice)
    results: list[dict[str, Any]] = []

    def check(rule: str, passed: bool, *, expected: Any = None, actual: Any = None, detail: str = "") -> None:
        results.append({"rule": rule, "check_name": rule.removeprefix("invoice."), "passed": bool(passed), "expected": None if expected is None else str(expected),
                        "actual": None if actual is None else str(actual), "detail": detail})  # fmt: skip

    lines = []
    line_sum = Decimal(0)
    time_hours = time_amount = Decimal(0)
    time_lines = 0
    raw_lines = invoice_lines(invoice)
    if raw_lines is None:
        check("invoice.lines.shape", False, detail=f"invoice {header['number']} has no readable lines (lines is {type(invoice.get('lines')).__name__})")
    for line in raw_lines or []:
        qty, rate, amount = _decimal(line.get("quantity")), _decimal(line.get("rate")), _decimal(line.get("amount"))
        if qty is None or rate is None or amount is None:
            check("invoice.line.numbers", False, detail=f"line {line.get('line_id')}: quantity, rate and amount must be numbers")
            continue
        if qty < 0 or amount < 0:
            check("invoice.line.quantity_not_negative", False, actual=qty, detail=f"line {line.get('line_id')} has a negative quantity or amount ({qty} × {rate} = {amount}); use a credit note")
        if abs(qty * rate - amount) > CENT:
            check("invoice.line.amount", False, expected=qty * rate, actual=amount, detail=f"line {line.get('line_id')}: {qty} × {rate} is not {amount}")
        line_sum += amount
        if line.get("kind") == "time":
            time_hours += qty
            time_amount += amount
            time_lines += 1
        lines.append({"line_id": str(line.get("line_id")), "kind": str(line.get("kind")), "description": line.get("description"), "person_id": as_dict(line.get("person")).get("id"),
                      "milestone_id": as_dict(line.get("milestone")).get("id"), "quantity": str(qty), "rate": str(rate), "amount": str(amount)})  # fmt: skip

    subtotal, tax, total = (_decimal(header[k]) for k in ("subtotal", "tax_amount", "total"))
    tax_code = mapping.tax_codes.get(str(header["tax_code"]))
    if None not in (subtotal, tax, total):
        expected_tax = (line_sum * tax_code[1]).quantize(CENT) if tax_code else tax
        adds_up = abs(line_sum - subtotal) <= CENT and abs(subtotal + tax - total) <= CENT and abs(expected_tax - tax) <= CENT
        check("invoice.total.adds_up", adds_up, expected=f"lines {line_sum} + tax {expected_tax} = {line_sum + expected_tax}", actual=f"subtotal {subtotal} + tax {tax} = {total}",
              detail="" if adds_up else f"total {total} is not the sum of the lines ({line_sum}) plus tax at {header['tax_code']} ({expected_tax})")  # fmt: skip

    customer = references.customers.get(normalise(load_mapping().client_overrides.get(str(header["client_id"])) or str(header["client_name"] or "")))
    check("invoice.customer.mapped", customer is not None, actual=header["client_name"], detail="" if customer else f"client {header['client_id']} ({header['client_name']}) has no accounting customer")
    if customer is not None and customer.extra.get("currency") and header["currency"] != customer.extra["currency"]:
        check("invoice.customer.currency", False, expected=customer.extra["currency"], actual=header["currency"], detail=f"customer {customer.name} is billed in {customer.extra['currency']}, not {header['currency']}")
    tax_ref = references.tax_codes.get(normalise(tax_code[0])) if tax_code else None
    check("invoice.tax_code.mapped", tax_ref is not None, actual=header["tax_code"], detail="" if tax_ref else f"tax code {header['tax_code']} is not mapped to an accounting tax code")
    if header["currency"] not in mapping.currencies:
        check("invoice.currency.supported", False, actual=header["currency"], detail=f"accounting does not invoice in {header['currency']} (accounting_mapping.yaml: currencies)")
    time_code = load_mapping().billing_codes.get(mapping.time_item)
    item_names = {"time": time_code.item if time_code else None, "fixed_fee": mapping.fixed_fee.item, "adjustment": (load_mapping().billing_codes.get(mapping.adjustment_item) or mapping.fixed_fee).item}
    for line in lines:
        item = references.items.get(normalise(item_names.get(line["kind"]) or ""))
        if item is None:
            check("invoice.item.mapped", False, actual=line["kind"], detail=f"line {line['line_id']} ({line['kind']}) has no accounting item")
        line["item_ref_id"] = item.ref_id if item else ""

    number = str(header["number"])
    reused = len(context.staged_hashes.get(number, ())) > 1
    known = context.known_numbers.get(number)
    this_hash = content_hash(invoice)
    if known and known[0] != header["psa_invoice_id"]:
        reused = True
    check("invoice.number.unique", not reused, actual=number, detail=f"invoice number {number} is used by more than one invoice with different content" if reused else "")
    if known and known[0] == header["psa_invoice_id"] and known[2] in POSTED_STATES and known[1] != this_hash and invoice.get("status") != "voided":
        check("invoice.unchanged_after_posting", False, detail=f"invoice {number} changed in the PSA after it was posted; correct it with a credit note")

    if structurally_valid and header["kind"] == "invoice" and header["billing_type"] == "time_and_materials":
        hours, amount = context.exported_time.get(str(header["project_id"]), (Decimal(0), Decimal(0)))
        tolerance = mapping.amount_tolerance_per_line * max(1, time_lines)
        ok = abs(hours - time_hours) <= mapping.hours_tolerance and abs(amount - time_amount) <= tolerance
        check("invoice.time.reconciles", ok, expected=f"{hours} h, {amount}", actual=f"{time_hours} h, {time_amount}",
              detail="" if ok else f"invoice bills {time_hours} h / {time_amount} but {hours} h / {amount} of billable time was exported for {header['project_id']} in {context.period}")  # fmt: skip
    if structurally_valid and header["kind"] == "invoice" and header["billing_type"] == "fixed_fee":
        deal_id = str(header["crm_deal_id"] or "")
        contract = context.contracts.get(deal_id)
        if contract is None:
            check("invoice.fixed_fee.contract_known", False, detail=f"project {header['project_id']} has no CRM deal with a contract value (deal {deal_id or 'missing'})")
        else:
            billed = context.billed_to_date(deal_id, excluding=str(header["psa_invoice_id"])) + (subtotal or Decimal(0))
            check("invoice.fixed_fee.within_contract", billed <= contract, expected=f"≤ {contract}", actual=billed,
                  detail="" if billed <= contract else f"fixed fees billed to date would be {billed}, above the contract value {contract} of deal {deal_id}")  # fmt: skip
    if header["kind"] == "credit_note":
        target = context.known_numbers.get(str(header["credit_note_for"])) or (str(header["credit_note_for"]) in context.staged_hashes or None)
        check("invoice.credit_note.target_known", bool(target), actual=header["credit_note_for"], detail="" if target else f"credit note {number} refers to unknown invoice {header['credit_note_for']}")

    canonical = {
        **{k: header[k] for k in ("psa_invoice_id", "number", "kind", "psa_status", "billing_type", "project_id", "crm_deal_id", "client_id", "client_name", "currency",
                                  "issue_date", "due_date", "subtotal", "tax_code", "tax_amount", "total", "credit_note_for")},  # fmt: skip
        "hours": str(time_hours),
        "customer_ref_id": customer.ref_id if customer else None,
        "tax_ref_id": tax_ref.ref_id if tax_ref else None,
        "content_hash": this_hash,
        "lines": lines,
    }
    return results, canonical


def _save_checks(warehouse: Engine, checks: list[dict[str, Any]]) -> None:
    from backbone.warehouse.db import upsert
    from backbone.warehouse.tables import reconciliation

    rows = {(c["psa_invoice_id"], c["check_name"]): {k: c[k] for k in ("psa_invoice_id", "check_name", "passed", "expected", "actual", "detail", "run_id")} for c in checks}
    with warehouse.begin() as connection:
        upsert(connection, reconciliation, list(rows.values()), key=["psa_invoice_id", "check_name"], bookkeeping=("run_id",))


# --- load ----------------------------------------------------------------------------------------
def load_invoices(warehouse: Engine, run: RunRef, *, period: str) -> dict[str, Any]:
    """Write the outbox: new and unposted invoices (re)written, posted ones only ever marked for void."""
    from sqlalchemy import select

    from backbone.warehouse.db import upsert
    from backbone.warehouse.tables import invoice, invoice_line

    written = voids = 0
    with warehouse.begin() as connection:
        ops.lock_for_transaction(connection, f"{run.flow}:outbox")
        staged = [row for chunk in ops.iter_staged(warehouse, run, ENTITY) for row in chunk if row["canonical"]]
        existing = {r.psa_invoice_id: r.posting_status for r in connection.execute(select(invoice.c.psa_invoice_id, invoice.c.posting_status))}
        for row in staged:
            canon, held = row["canonical"], row["status"] == "quarantined"
            state = existing.get(canon["psa_invoice_id"])
            if state in POSTED_STATES:
                if canon["psa_status"] == "voided" and state == "posted":
                    connection.execute(invoice.update().where(invoice.c.psa_invoice_id == canon["psa_invoice_id"]).values(posting_status="void_pending"))
                    voids += 1
                continue
            status = "not_posted" if canon["psa_status"] == "voided" else "held" if held else "pending"
            upsert(connection, invoice, [_invoice_row(canon, run, status, period)], key=["psa_invoice_id"], bookkeeping=("run_id",))
            connection.execute(invoice_line.delete().where(invoice_line.c.psa_invoice_id == canon["psa_invoice_id"]))
            if canon["lines"]:
                connection.execute(invoice_line.insert(), [_line_row(canon["psa_invoice_id"], line) for line in canon["lines"]])
            written += 1
        totals = period_totals(connection, run)
        # ``loaded`` is the interval's invoices now in the outbox, whatever an earlier attempt already
        # wrote: the same after a clean run and after a kill and rerun; this attempt's writes are in details.
        ops.record_run(connection, run, loaded=len(staged), details={"voids_requested": voids, "written_by_this_attempt": written, **totals})
    return {"loaded": len(staged), "written_by_this_attempt": written, "voids_requested": voids}


def _invoice_row(canon: dict[str, Any], run: RunRef, status: str, period: str) -> dict[str, Any]:
    def money(key: str) -> Decimal:
        return _decimal(canon[key]) or Decimal(0)

    return {
        **{k: canon[k] for k in ("psa_invoice_id", "number", "kind", "billing_type", "project_id", "crm_deal_id", "client_id", "client_name", "customer_ref_id",
                                 "currency", "tax_code", "credit_note_for", "psa_status", "content_hash")},  # fmt: skip
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
        "accounting_entity": "CreditMemo" if canon["kind"] == "credit_note" else "Invoice",
    }


def _date_or_epoch(value: Any) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        return date(1970, 1, 1)


def _line_row(invoice_id: str, line: dict[str, Any]) -> dict[str, Any]:
    return {"psa_invoice_id": invoice_id, **{k: line[k] for k in ("line_id", "kind", "description", "person_id", "milestone_id", "item_ref_id")},
            "quantity": Decimal(line["quantity"]), "rate": Decimal(line["rate"]), "amount": Decimal(line["amount"])}  # fmt: skip


def period_totals(connection: Connection, run: RunRef) -> dict[str, Any]:
    """Invoice count, held and posted counts, and net amount per currency (invoices − credit notes) of the run."""
    rows = connection.exec_driver_sql(
        """
        SELECT currency, count(*), count(*) FILTER (WHERE posting_status = 'held'), count(*) FILTER (WHERE posting_status IN ('posted', 'void_pending', 'voided')),
               sum(CASE WHEN posting_status IN ('posted', 'pending') THEN CASE WHEN kind = 'credit_note' THEN -total ELSE total END ELSE 0 END)
        FROM acct.invoice WHERE run_id = %(run_id)s GROUP BY currency
        """,
        {"run_id": run.run_id},
    ).all()
    return {
        "invoices": sum(r[1] for r in rows),
        "held": sum(r[2] for r in rows),
        "posted_total": sum(r[3] for r in rows),
        "amount_by_currency": {r[0]: str(r[4]) for r in rows if r[4]},
    }


# --- post ----------------------------------------------------------------------------------------
def post_invoices(accounting: AccountingSystem, warehouse: Engine, run: RunRef) -> dict[str, Any]:
    """Post pending invoices (then credit notes), void what the PSA voided; each exactly once."""
    from sqlalchemy import select

    from backbone.warehouse.tables import invoice, reference

    mapping = load_mapping().invoicing
    posted = adopted = voided = failed = 0
    rejections: list[QuarantineRow] = []
    with ops.exclusive(warehouse, f"{run.flow}:post", what=f"another {run.flow} run is posting invoices right now"):
        with warehouse.connect() as connection:  # read under the lock: nobody else is posting these
            pending = [dict(r._mapping) for r in connection.execute(
                select(invoice).where(invoice.c.posting_status.in_(("pending", "void_pending"))).order_by(invoice.c.kind.desc(), invoice.c.number)
            )]  # fmt: skip
            tax_refs = {r.match_key: r.ref_id for r in connection.execute(select(reference.c.match_key, reference.c.ref_id).where(reference.c.entity == "TaxCode"))}
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
                rejections.append(QuarantineRow(ENTITY, row["psa_invoice_id"], "accounting.rejected", outcome, {k: str(v) for k, v in row.items()}))
    with warehouse.begin() as connection:
        ops.add_quarantine(connection, run, rejections)
        totals = period_totals(connection, run)
        ops.record_run(connection, run, written_back=totals["posted_total"], details={"posted_now": posted, "found_by_number": adopted, "voided_now": voided, "rejected_by_accounting": failed, **totals})
    log.info("invoices: %d posted, %d found already posted by number, %d voided, %d rejected", posted, adopted, voided, failed)
    return {"posted": posted, "found_by_number": adopted, "voided": voided, "rejected": failed}


def _post_one(accounting: AccountingSystem, warehouse: Engine, row: dict[str, Any], tax_refs: dict[str, str], mapping: Any) -> str:
    """Post, adopt or void one outbox invoice; returns what happened, or the rejection's reason."""
    from sqlalchemy import func, select

    from backbone.warehouse.tables import invoice_line

    entity = row["accounting_entity"]
    try:
        if row["posting_status"] == "void_pending":
            accounting.void_invoice(entity, row["accounting_id"], request_id=request_id_for("void", entity, row["psa_invoice_id"]))
            _mark(warehouse, row, posting_status="voided", voided_at=func.now())
            return "voided"
        found = accounting.find_invoice(entity, row["number"])
        if found is not None:
            found_id, found_total = found
            if abs(found_total - row["total"]) > CENT:
                raise FatalApiError(f"{entity} {row['number']} already exists in accounting (id {found_id}) with total {found_total}, not {row['total']}")
            _mark(warehouse, row, posting_status="posted", accounting_id=found_id, posted_at=func.now())
            return "found"
        with warehouse.connect() as connection:
            lines = [dict(r._mapping) for r in connection.execute(select(invoice_line).where(invoice_line.c.psa_invoice_id == row["psa_invoice_id"]).order_by(invoice_line.c.line_id))]
        tax_name = mapping.tax_codes.get(row["tax_code"], ("", Decimal(0)))[0]
        answer = accounting.create_invoice(entity, row, lines, tax_refs.get(normalise(tax_name)), request_id=row["request_id"])
        _mark(warehouse, row, posting_status="posted", accounting_id=answer.object_id, posted_at=func.now())
        return "posted"
    except ReauthorisationRequired:
        raise  # the Connection itself is dead: fail the task now, every invoice stays pending
    except FatalApiError as exc:
        _mark(warehouse, row, posting_status="failed", last_error=str(exc))
        return str(exc)


def _mark(warehouse: Engine, row: dict[str, Any], **values: Any) -> None:
    from backbone.warehouse.tables import invoice

    with warehouse.begin() as connection:
        connection.execute(invoice.update().where(invoice.c.psa_invoice_id == row["psa_invoice_id"]).values(**values))
