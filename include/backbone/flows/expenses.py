"""Approved PSA expenses → accounting bills and purchases, exactly once per expense version.

extract → validate → load → post, as the weekly time export does it. What a week covers is
decided by **approval time**. Each approved version of an expense is one line of the outbox
``acct.expense_export``, written before anything is posted and never rewritten:

- a **reimbursable** expense (the person paid) is a bill to the person as a supplier (QuickBooks
  ``Bill`` to their Vendor record, Xero ``ACCPAY`` invoice to their contact);
- a **company-paid** one is a purchase from the mapping's ``paid_from`` account (QuickBooks
  ``Purchase`` by credit card, Xero ``SPEND`` bank transaction).

The category gives the GL account and the tax code (``accounting_mapping.yaml``, ``expenses``).
Posting carries an idempotency key derived from the expense and version (QuickBooks ``requestid``,
Xero ``Idempotency-Key``), and a line tried before is first looked up by its document number, so
a retry or a rerun never posts twice. An expense edited after export comes back as a new version
and rewrites the record its earlier version made (a kind that changed — company card to
reimbursable — removes the old record and makes the new one); one withdrawn in the PSA (deleted or
un-approved) is removed from accounting.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from backbone.accounting_mapping import AccountingMapping, AccountingReferences, load_mapping, normalise
from backbone.data_dictionary import load_entity
from backbone.flows.outbox import VersionedOutbox
from backbone.flows.references import load_references, refresh_references
from backbone.flows.timesheets import count_staged, entry_key, stage_withdrawals, version_below
from backbone.hooks.accounting import RejectedByAccounting, expense_doc_number, request_id_for
from backbone.hooks.oauth import ReauthorisationRequired
from backbone.validation import RuleFailure, SchemaDrift, validate_rows
from backbone.warehouse import ops
from backbone.warehouse.ops import QuarantineRow, RunRef

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from backbone.hooks.accounting import AccountingSystem, PostedObject
    from backbone.hooks.psa import PsaExpenseSource

log = logging.getLogger(__name__)

FLOW = "expenses_weekly_to_accounting"
ENTITY = "expense"
WITHDRAWAL = "expense_withdrawal"
EXPENSE_KEY_NAMESPACE = "Expense"
PSA_EXPENSE_FIELDS = frozenset(
    {
        "id",
        "version",
        "spent_date",
        "category",
        "amount",
        "currency",
        "exchange_rate",
        "billable",
        "reimbursable",
        "receipt",
        "approval_status",
        "approved_at",
        "updated_at",
        "notes",
        "user",
        "client",
        "project",
    }
)
"""The fields of a PSA expense this flow reads or expects; others are reported as schema drift."""
HEALABLE_RULES = frozenset(
    {
        "expense.category.mapped",
        "expense.account.exists",
        "expense.tax_code.exists",
        "expense.paid_from.exists",
        "expense.client.mapped",
        "expense.payee.mapped",
        "expense.spent_date.not_future",
    }
)
"""Exceptions whose cause can go away without a new version (finance adds the mapping, the
account, the customer or the supplier record): every run judges them again."""
OUTBOX_FIELDS = (
    "expense_id",
    "expense_version",
    "content_hash",
    "kind",
    "doc_number",
    "person_id",
    "person_name",
    "payee_ref_id",
    "client_id",
    "client_name",
    "customer_ref_id",
    "project_id",
    "project_name",
    "category",
    "gl_account",
    "account_ref_id",
    "paid_from_ref_id",
    "tax_code",
    "tax_ref_id",
    "spent_date",
    "amount",
    "currency",
    "exchange_rate",
    "billable",
    "receipt_id",
    "description",
)
EXPENSE_OUTBOX = VersionedOutbox(
    table_name="expense_export",
    id_column="expense_id",
    version_column="expense_version",
    key_namespace=EXPENSE_KEY_NAMESPACE,
    fields=OUTBOX_FIELDS,
    date_column="spent_date",
    negated=("amount",),
)


# --- extract -------------------------------------------------------------------------------------
def extract_expenses(
    psa: PsaExpenseSource, accounting: AccountingSystem, warehouse: Engine, run: RunRef, *, page_size: int
) -> dict[str, int]:
    """Refresh the accounting reference lists, then stage every expense approved in the interval."""
    references = refresh_references(accounting, warehouse, run)
    with warehouse.begin() as connection:
        ops.clear_staging(connection, run)
    withdrawn = stage_withdrawals(
        psa.iter_withdrawn_expenses(run.extract_from, run.interval_end, page_size=page_size),
        warehouse,
        run,
        entity=ENTITY,
        withdrawal=WITHDRAWAL,
        noun="expenses",
    )
    received = conflicts = 0
    for page in psa.iter_approved_expenses(run.extract_from, run.interval_end, page_size=page_size):
        records = [
            (entry_key(str(e.get("id")), e.get("version")), e)
            for e in page
            if not version_below(e.get("version"), withdrawn.get(str(e.get("id"))))
        ]
        with warehouse.begin() as connection:
            conflicts += ops.stage_unique(connection, run, ENTITY, records)
        received += len(records)
    with warehouse.begin() as connection:
        rechecks = ops.open_exceptions_to_recheck(connection, run, ENTITY, HEALABLE_RULES)
        conflicts += ops.stage_unique(connection, run, ENTITY, rechecks)
    staged = count_staged(warehouse, run, entity=ENTITY)
    with warehouse.begin() as connection:
        ops.record_run(
            connection,
            run,
            extracted=staged,
            details={
                "expenses_received": received,
                "withdrawn_in_psa": len(withdrawn),
                "exceptions_rechecked": len(rechecks),
                "conflicting_repeats": conflicts,
                "accounting_references": references,
            },
        )
    log.info("extracted %d expenses approved %s → %s (%d judged again)", received, run.extract_from, run.interval_end, len(rechecks))
    return {"extracted": staged, "conflicts": conflicts}


# --- map + validate ------------------------------------------------------------------------------
def map_expense(expense: dict[str, Any]) -> dict[str, Any]:
    """A PSA expense → the dictionary's ``expense`` row (text values, as validated)."""
    user, client, project, category, receipt = (
        expense.get(k) if isinstance(expense.get(k), dict) else {} for k in ("user", "client", "project", "category", "receipt")
    )

    def flag(value: Any) -> Any:
        return str(value).lower() if isinstance(value, bool) else value

    return {
        "expense_key": entry_key(str(expense.get("id")), expense.get("version")),
        "expense_id": expense.get("id"),
        "expense_version": expense.get("version"),
        "person_id": user.get("id"),
        "person_name": user.get("name"),
        "person_email": user.get("email"),
        "person_type": user.get("type"),
        "project_id": project.get("id"),
        "project_name": project.get("name"),
        "client_id": client.get("id"),
        "client_name": client.get("name"),
        "category": category.get("code"),
        "spent_date": expense.get("spent_date"),
        "amount": expense.get("amount"),
        "currency": expense.get("currency"),
        "exchange_rate": expense.get("exchange_rate"),
        "billable": flag(expense.get("billable")),
        "reimbursable": flag(expense.get("reimbursable")),
        "receipt_id": receipt.get("id"),
        "approval_status": expense.get("approval_status"),
        "approved_at": expense.get("approved_at"),
        "notes": expense.get("notes"),
    }


def content_hash(row: dict[str, Any]) -> str:
    """What must not change within one expense version."""
    fields = (
        "person_id",
        "person_email",
        "project_id",
        "client_id",
        "client_name",
        "category",
        "spent_date",
        "amount",
        "currency",
        "exchange_rate",
        "billable",
        "reimbursable",
        "receipt_id",
    )
    return hashlib.sha256(json.dumps([str(row.get(f)) for f in fields]).encode()).hexdigest()


def validate_expenses(warehouse: Engine, run: RunRef, *, company_timezone: str, chunk_size: int) -> dict[str, Any]:
    """Dictionary suite plus the flow's rules; failures become exceptions with their reasons."""
    references = load_references(warehouse)
    last_day = run.interval_end.astimezone(ZoneInfo(company_timezone)).date()
    duplicates = _suspected_duplicates(warehouse, run)
    drift = SchemaDrift(PSA_EXPENSE_FIELDS)

    def judge(chunk: list[dict[str, Any]]) -> tuple[list[ops.Verdict], list[QuarantineRow], dict[str, int]]:
        for row in chunk:
            drift.observe(row["payload"])
        exported = EXPENSE_OUTBOX.exported_hashes(warehouse, [row["source_key"] for row in chunk])
        verdicts, quarantine_rows = judge_chunk(chunk, references, last_day=last_day, exported_hashes=exported, duplicates=duplicates)
        return verdicts, quarantine_rows, {}

    tally = ops.validate_staged(warehouse, run, ENTITY, judge, chunk_size=chunk_size, details=lambda _: {"schema_drift": drift.report()})
    if tally.failed_rules:
        log.warning("%d expenses are exceptions for finance: %s", tally.quarantined, tally.failed_rules)
    return {"valid": tally.valid, "quarantined": tally.quarantined}


def _suspected_duplicates(warehouse: Engine, run: RunRef) -> dict[str, str]:
    """Expense id → the earlier expense it repeats: the same person, day, category, amount and
    currency as another expense of this run or one already exported (a receipt sent in twice)."""
    query = """
        WITH staged AS (
            SELECT payload->>'id' AS id, payload->'user'->>'id' AS person, payload->>'spent_date' AS day,
                   payload->'category'->>'code' AS category, payload->>'currency' AS currency,
                   CASE WHEN payload->>'amount' ~ '^-?[0-9]+(\\.[0-9]+)?$' THEN (payload->>'amount')::numeric END AS amount
            FROM ops.staged_record WHERE flow = %(flow)s AND run_id = %(run_id)s AND entity = %(entity)s AND status <> 'conflict'
        ), exported AS (
            SELECT DISTINCT ON (expense_id) expense_id AS id, person_id AS person, spent_date::text AS day, category, currency,
                   amount, action
            FROM acct.expense_export ORDER BY expense_id, expense_version DESC
        ), known AS (
            SELECT id, person, day, category, currency, amount FROM staged
            UNION
            SELECT id, person, day, category, currency, amount FROM exported e
            WHERE action <> 'delete' AND NOT EXISTS (SELECT 1 FROM staged s WHERE s.id = e.id)
        )
        SELECT s.id, min(k.id) FROM staged s JOIN known k
          ON k.person = s.person AND k.day = s.day AND k.category = s.category AND k.currency = s.currency AND k.amount = s.amount
         AND k.id < s.id
        GROUP BY s.id
    """
    with warehouse.connect() as connection:
        rows = connection.exec_driver_sql(query, {"flow": run.flow, "run_id": run.run_id, "entity": ENTITY}).all()
    return {str(r[0]): str(r[1]) for r in rows}


def judge_chunk(
    chunk: list[dict[str, Any]],
    references: AccountingReferences,
    *,
    last_day: date,
    exported_hashes: dict[str, str],
    duplicates: dict[str, str],
) -> tuple[list[ops.Verdict], list[QuarantineRow]]:
    """Verdicts (key, status, outbox line) and exception rows for one chunk of staged expenses."""
    mapping = load_mapping()
    rows = [map_expense(r["payload"]) for r in chunk]
    outcome = validate_rows(ENTITY, rows)
    verdicts: list[ops.Verdict] = []
    quarantine_rows: list[QuarantineRow] = []
    for index, (staged, row) in enumerate(zip(chunk, rows, strict=True)):
        failures = list(outcome.failures.get(index, []))
        key = staged["source_key"]
        if staged["status"] == "conflict":
            failures.append(
                RuleFailure(
                    "expense.expense_key.conflict",
                    f"expense {row['expense_id']} version {row['expense_version']} was sent twice with different content",
                )
            )
        line: dict[str, Any] | None = None
        if not failures:
            rule_failures, line = expense_rules(
                row, references, mapping, last_day=last_day, duplicate_of=duplicates.get(str(row["expense_id"]))
            )
            failures += rule_failures
        if not failures and line is not None and exported_hashes.get(key, line["content_hash"]) != line["content_hash"]:
            failures.append(
                RuleFailure(
                    "expense.expense_key.exported_differently",
                    f"expense {row['expense_id']} version {row['expense_version']} was already exported with different content; the PSA "
                    "must issue a new version",
                )
            )
        if failures:
            verdicts.append((key, "quarantined", None))
            raw = staged["payload"] if staged["status"] != "conflict" else {"first": staged["payload"], **(staged["canonical"] or {})}
            quarantine_rows += [QuarantineRow(ENTITY, key, f.rule, f.reason, raw) for f in dict.fromkeys(failures)]
        else:
            verdicts.append((key, "valid", line))
    return verdicts, quarantine_rows


def expense_rules(
    row: dict[str, Any], references: AccountingReferences, mapping: AccountingMapping, *, last_day: date, duplicate_of: str | None = None
) -> tuple[list[RuleFailure], dict[str, Any] | None]:
    """Rules beyond single fields — the date, the receipt, the rate, a repeat, and every mapping to
    accounting. Returns the failures, or none and the expense's outbox line (pure)."""
    failures: list[RuleFailure] = []
    expenses = mapping.expenses
    try:
        spent = date.fromisoformat(row["spent_date"])
    except ValueError:
        return [RuleFailure("expense.spent_date.type", f"spent date {row['spent_date']!r} is not a calendar date")], None
    if spent > last_day:
        failures.append(
            RuleFailure("expense.spent_date.not_future", f"spent date {spent} is after the end of the export week ({last_day})")
        )
    max_age = load_entity(ENTITY).fields["spent_date"].max_age_days
    if max_age is not None and spent < last_day - timedelta(days=max_age):
        failures.append(
            RuleFailure("expense.spent_date.plausible", f"spent date {spent} is more than {max_age} days before the end of the export week")
        )
    amount = Decimal(row["amount"])
    if amount > expenses.receipt_required_above and not row["receipt_id"]:
        failures.append(
            RuleFailure(
                "expense.receipt.required",
                f"{amount} {row['currency']} has no receipt (required above {expenses.receipt_required_above}); attach it in the PSA",
            )
        )
    if row["currency"] != expenses.home_currency and not row["exchange_rate"]:
        failures.append(
            RuleFailure(
                "expense.exchange_rate.required",
                f"{row['currency']} is not the home currency {expenses.home_currency} and the PSA sent no exchange rate",
            )
        )
    if duplicate_of:
        failures.append(
            RuleFailure(
                "expense.duplicate.suspected",
                f"same person, day, category and amount as expense {duplicate_of}: a receipt sent in twice? Reject one in the PSA",
            )
        )
    category = expenses.categories.get(row["category"])
    account = tax = None
    if category is None:
        failures.append(
            RuleFailure("expense.category.mapped", f"expense category {row['category']} has no GL account in accounting_mapping.yaml")
        )
    else:
        account = references.accounts.get(normalise(category.gl_account))
        if account is None:
            failures.append(
                RuleFailure(
                    "expense.account.exists",
                    f"category {row['category']} books on {category.gl_account!r}, which the accounting system does not have",
                )
            )
        tax_name, _ = expenses.tax_codes[category.tax_code]
        tax = references.tax_codes.get(normalise(tax_name))
        if tax is None:
            failures.append(
                RuleFailure(
                    "expense.tax_code.exists", f"tax code {tax_name!r} of category {row['category']} is not in the accounting system"
                )
            )
    kind = "bill" if row["reimbursable"] == "true" else "purchase"
    paid_from = references.accounts.get(normalise(expenses.paid_from)) if kind == "purchase" else None
    if kind == "purchase" and paid_from is None:
        failures.append(
            RuleFailure("expense.paid_from.exists", f"the paying account {expenses.paid_from!r} is not in the accounting system")
        )
    payee = references.payees.get(mapping.person_key(row["person_id"], row["person_email"]))
    if payee is None:
        failures.append(
            RuleFailure(
                "expense.payee.mapped",
                f"{row['person_id']} ({row['person_email']}) has no supplier record in accounting to book their expenses on",
            )
        )
    customer = references.customers.get(mapping.customer_key(row["client_id"], row["client_name"]))
    if row["billable"] == "true" and customer is None:
        failures.append(
            RuleFailure(
                "expense.client.mapped", f"billable to client {row['client_id']} ({row['client_name']}), who has no accounting customer"
            )
        )
    if failures:
        return failures, None
    assert category is not None and account is not None and payee is not None
    billable = row["billable"] == "true"
    version = int(row["expense_version"])
    line = dict(
        expense_id=row["expense_id"],
        expense_version=version,
        content_hash=content_hash(row),
        kind=kind,
        doc_number=expense_doc_number(str(row["expense_id"]), version),
        person_id=row["person_id"],
        person_name=row["person_name"],
        payee_ref_id=payee.ref_id,
        client_id=row["client_id"],
        client_name=row["client_name"],
        customer_ref_id=customer.ref_id if customer is not None and billable else None,
        project_id=row["project_id"],
        project_name=row["project_name"],
        category=category.category,
        gl_account=category.gl_account,
        account_ref_id=account.ref_id,
        paid_from_ref_id=paid_from.ref_id if paid_from is not None else None,
        tax_code=category.tax_code,
        tax_ref_id=tax.ref_id if tax is not None else None,
        spent_date=row["spent_date"],
        amount=str(amount),
        currency=row["currency"],
        exchange_rate=row["exchange_rate"] or None,
        billable=billable,
        receipt_id=row["receipt_id"],
        description=_description(row, billable),
    )
    return [], line


def _description(row: dict[str, Any], billable: bool) -> str:
    """What the accounting record says about its PSA origin (and whom it is billed on to)."""
    billed = f" · billable to {row['client_name']}" if billable else ""
    note = f" · {row['notes']}" if row.get("notes") else ""
    project = row["project_name"] or row["project_id"]
    return f"PSA expense {row['expense_id']} v{row['expense_version']} · {row['category']} · {project}{billed}{note}"


# --- load ----------------------------------------------------------------------------------------
def load_expenses(warehouse: Engine, run: RunRef, *, chunk_size: int) -> dict[str, Any]:
    """Write the outbox lines of valid expenses and the reversals of withdrawn ones, in one transaction."""
    withdrawals = [r["payload"] for chunk in ops.iter_staged(warehouse, run, WITHDRAWAL) for r in chunk]
    written = 0
    with warehouse.begin() as connection:
        ops.lock_for_transaction(connection, f"{run.flow}:outbox")
        for chunk in ops.iter_staged(warehouse, run, ENTITY, status="valid", chunk_size=chunk_size):
            written += EXPENSE_OUTBOX.write_lines(connection, run, [r["canonical"] for r in chunk])
        reversals = EXPENSE_OUTBOX.write_reversals(connection, run, withdrawals)
        totals = outbox_totals(connection, run)
        ops.record_run(
            connection, run, loaded=totals["lines"], details={"outbox_lines_written": written, "reversals_written": reversals, **totals}
        )
    log.info("expense outbox: %d new lines, %d reversals; amounts %s", written, reversals, totals["amount_by_currency"])
    return {"loaded": totals["lines"], "outbox_lines_written": written}


def outbox_totals(connection: Connection, run: RunRef) -> dict[str, Any]:
    """Lines, bills, purchases and amount per currency this run's interval exports (what finance reconciles)."""
    query = """
        SELECT currency, count(*), coalesce(sum(amount), 0), count(*) FILTER (WHERE kind = 'bill'),
               count(*) FILTER (WHERE action IN ('update', 'delete'))
        FROM acct.expense_export WHERE run_id = %(run_id)s GROUP BY currency ORDER BY currency
    """
    totals: dict[str, Any] = {"lines": 0, "bills": 0, "purchases": 0, "corrections": 0, "amount_by_currency": {}}
    for currency, lines, amount, bills, corrections in connection.exec_driver_sql(query, {"run_id": run.run_id}).all():
        totals["lines"] += int(lines)
        totals["bills"] += int(bills)
        totals["purchases"] += int(lines) - int(bills)
        totals["corrections"] += int(corrections)
        totals["amount_by_currency"][currency] = str(amount)
    return totals


def pending_lines(warehouse: Engine, run: RunRef) -> int:
    with warehouse.connect() as connection:
        return int(
            connection.exec_driver_sql(
                "SELECT count(*) FROM acct.expense_export WHERE posting_status = 'pending' AND interval_end <= %(end)s",
                {"end": run.interval_end},
            ).scalar_one()
        )


# --- post ----------------------------------------------------------------------------------------
def post_expenses(accounting: AccountingSystem, warehouse: Engine, run: RunRef, *, concurrency: int) -> dict[str, Any]:
    """Post every pending outbox line up to this interval (older leftovers first), expenses in
    parallel and each expense's versions in order. A line accounting refuses (4xx) is failed and an
    exception; one that could not be sent stays pending and fails the task (Airflow retries it
    with the same key)."""
    outcome: dict[str, Any] = {"posted": 0, "rejected": 0}
    error: BaseException | None = None
    groups = list(_pending_by_expense(warehouse, run))
    latest = _latest_posted(warehouse, [versions[0]["expense_id"] for versions in groups])
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="expense") as pool:
        futures = [pool.submit(_post_versions, accounting, _target(latest.get(v[0]["expense_id"]), v[0]), v) for v in groups]
        results: list[dict[str, Any]] = []
        for future in futures:
            try:
                results.extend(future.result())
            except Exception as exc:  # noqa: BLE001 - recorded after what was sent is saved, then raised
                error = error or exc
    _record_results(warehouse, run, results)
    outcome["posted"] = sum(1 for r in results if r["posting_status"] == "posted")
    outcome["rejected"] = sum(1 for r in results if r["posting_status"] == "failed")
    with warehouse.begin() as connection:
        posted_in_run = int(
            connection.exec_driver_sql(
                "SELECT count(*) FROM acct.expense_export WHERE run_id = %(r)s AND posting_status = 'posted'", {"r": run.run_id}
            ).scalar_one()
        )
        ops.record_run(
            connection,
            run,
            written_back=outcome["posted"],
            details={"posted_in_interval": posted_in_run, "rejected_by_accounting": outcome["rejected"]},
        )
    log.info("expenses: %d posted, %d refused by accounting", outcome["posted"], outcome["rejected"])
    if error is not None:
        raise error
    return {**outcome, "posted_in_run": posted_in_run}


def _pending_by_expense(warehouse: Engine, run: RunRef) -> Iterator[list[dict[str, Any]]]:
    """Pending lines up to this interval (and lines this run failed, to try again), grouped by
    expense in version order; the attempt is counted before any call, so a crash mid-call makes
    the next try look first."""
    from sqlalchemy import and_, or_

    from backbone.warehouse.tables import expense_export as t

    postable = or_(
        and_(t.c.posting_status == "pending", t.c.interval_end <= run.interval_end),
        and_(t.c.posting_status == "failed", t.c.run_id == run.run_id),
    )
    with warehouse.begin() as connection:
        picked = connection.execute(t.update().where(postable).values(attempts=t.c.attempts + 1).returning(*t.c))
        lines = [dict(row._mapping) for row in picked]
    by_expense: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in sorted(lines, key=lambda line: (line["expense_id"], line["expense_version"])):
        line["attempts"] -= 1  # tries before this one: a line never tried is created without a lookup
        by_expense[line["expense_id"]].append(line)
    yield from by_expense.values()


def _latest_posted(warehouse: Engine, expense_ids: list[str]) -> dict[str, Any]:
    if not expense_ids:
        return {}
    with warehouse.connect() as connection:
        return {
            row.expense_id: row
            for row in connection.exec_driver_sql(
                "SELECT DISTINCT ON (expense_id) expense_id, expense_version, accounting_id, kind, action FROM acct.expense_export "
                "WHERE expense_id = ANY(%(ids)s) AND posting_status = 'posted' ORDER BY expense_id, expense_version DESC",
                {"ids": expense_ids},
            )
        }


def _target(posted: Any, first_pending: dict[str, Any]) -> tuple[str, str] | None:
    """``(kind, accounting id)`` of the record a pending version rewrites: the newest posted earlier version's, unless deleted."""
    if posted is not None and posted.expense_version < first_pending["expense_version"] and posted.action != "delete":
        return posted.kind, posted.accounting_id
    return None


def _post_versions(accounting: AccountingSystem, target: tuple[str, str] | None, versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One expense's pending versions in order: create, rewrite the earlier record, or remove it."""
    results = []
    for line in versions:
        try:
            if line["action"] == "delete" or (target is not None and target[0] != line["kind"]):
                if target is not None:  # withdrawn, or re-posted as the other kind: the old record goes first
                    request_id = line["request_id"] if line["action"] == "delete" else request_id_for(line["request_id"], "replaced")
                    accounting.delete_expense(target[0], target[1], request_id=request_id)  # type: ignore[arg-type]
                    log.info("expense %s: %s %s removed in accounting", line["expense_id"], target[0], target[1])
                if line["action"] == "delete":
                    results.append(_result(line, "posted", accounting_id=target[1] if target else None, target=target))
                    target = None
                    continue
                target = None
            found: PostedObject | None = accounting.find_expense(line) if target is None and line["attempts"] else None  # type: ignore[arg-type]
            if found is not None:
                log.info(
                    "expense %s v%s already in accounting as %s (an earlier attempt); adopted",
                    line["expense_id"],
                    line["expense_version"],
                    found.object_id,
                )
            answer = found or accounting.post_expense(line, target=target[1] if target else None, request_id=line["request_id"])  # type: ignore[arg-type]
        except ReauthorisationRequired:
            raise
        except RejectedByAccounting as exc:
            results.append(_result(line, "failed", error=str(exc)))
            break  # later versions wait until this one is fixed
        results.append(_result(line, "posted", accounting_id=answer.object_id, target=target))
        target = (line["kind"], answer.object_id)
    return results


def _result(
    line: dict[str, Any], status: str, *, accounting_id: str | None = None, target: tuple[str, str] | None = None, error: str | None = None
) -> dict[str, Any]:
    return {
        "expense_id": line["expense_id"],
        "expense_version": line["expense_version"],
        "posting_status": status,
        "accounting_id": accounting_id,
        "target_ref_id": target[1] if target else None,
        "last_error": error,
        "raw": {k: (str(v) if v is not None else None) for k, v in line.items()} if status == "failed" else None,
    }


def _record_results(warehouse: Engine, run: RunRef, results: list[dict[str, Any]]) -> None:
    if not results:
        return
    with warehouse.begin() as connection:
        connection.exec_driver_sql(
            """
            UPDATE acct.expense_export AS t
               SET posting_status = v.posting_status, accounting_id = coalesce(v.accounting_id, t.accounting_id),
                   target_ref_id = coalesce(v.target_ref_id, t.target_ref_id), last_error = v.last_error,
                   posted_at = CASE WHEN v.posting_status = 'posted' THEN now() ELSE t.posted_at END
            FROM (SELECT unnest(%(expense_id)s::text[]) AS expense_id, unnest(%(expense_version)s::int[]) AS expense_version,
                         unnest(%(posting_status)s::text[]) AS posting_status, unnest(%(accounting_id)s::text[]) AS accounting_id,
                         unnest(%(target_ref_id)s::text[]) AS target_ref_id, unnest(%(last_error)s::text[]) AS last_error) AS v
            WHERE t.expense_id = v.expense_id AND t.expense_version = v.expense_version
            """,
            {
                k: [r[k] for r in results]
                for k in ("expense_id", "expense_version", "posting_status", "accounting_id", "target_ref_id", "last_error")
            },
        )
        ops.add_quarantine(
            connection,
            run,
            [
                QuarantineRow(
                    "expense_posting",
                    entry_key(r["expense_id"], r["expense_version"]),
                    "accounting.rejected",
                    r["last_error"] or "rejected",
                    r["raw"],
                )
                for r in results
                if r["posting_status"] == "failed"
            ],
        )
