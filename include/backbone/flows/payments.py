"""Payments and balances from accounting → invoice status in the PSA warehouse and the PSA.

Status is derived from accounting's own numbers, so repeating a run changes nothing:
voided (we voided it), paid (balance 0), partially paid (0 < balance < total), overdue (balance
left after the due date, judged at the end of the run's interval), open otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from backbone.warehouse import ops

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from backbone.hooks.accounting import AccountingSystem
    from backbone.hooks.psa import PsaBilling
    from backbone.warehouse.ops import RunRef

log = logging.getLogger(__name__)

FLOW = "payments_to_psa"


def payment_status(*, posting_status: str, total: Decimal, balance: Decimal, due_date: date, as_of: date) -> str:
    if posting_status == "voided":
        return "voided"
    if balance <= 0 and total > 0:
        return "paid"
    if balance > 0 and due_date < as_of:
        return "overdue"
    if 0 < balance < total:
        return "partially_paid"
    return "open"


def _checkable(payment: dict[str, object]) -> dict[str, object]:
    """The payment as JSON-like values, so ``backbone.storable`` judges every field (a Decimal NaN included)."""
    return {k: float(v) if isinstance(v, Decimal) else v.isoformat() if isinstance(v, date) else v for k, v in payment.items()}


def sync_payments(
    accounting: AccountingSystem,
    psa: PsaBilling,
    accounting_warehouse: Engine,
    psa_warehouse: Engine,
    run: RunRef,
    *,
    overlap: timedelta,
    company_timezone: str,
    pilot: bool = False,
) -> dict[str, int]:
    """Read payments changed since the interval start (minus overlap) and the balance of every open
    posted invoice; write statuses to both warehouses and to the PSA where they changed.

    ``pilot``: read and judge as always, but keep nothing and send nothing — the warehouse changes
    are rolled back (what the PSA is sent depends on them, so the next real run must find them still
    to do) and the report says what would have changed (``backbone.pilot``)."""
    from sqlalchemy import select

    from backbone.warehouse.db import upsert
    from backbone.warehouse.tables import invoice, invoice_status, payment

    payments = [{**asdict(p), "last_run_id": run.run_id} for p in accounting.payments_since(run.extract_from - overlap)]
    with accounting_warehouse.begin() as connection:  # a payment PostgreSQL cannot hold is an exception, not a failed run
        storable = {
            key
            for key, _ in ops.set_aside_unstorable(connection, run, "payment", [(str(p["accounting_id"]), _checkable(p)) for p in payments])
        }
    payments = [p for p in payments if str(p["accounting_id"]) in storable]
    with accounting_warehouse.connect() as connection:
        tracked = [
            dict(r._mapping)
            for r in connection.execute(
                select(invoice).where(
                    invoice.c.kind == "invoice",
                    invoice.c.posting_status.in_(("posted", "voided")),
                    invoice.c.payment_status.is_distinct_from("paid"),
                    invoice.c.payment_status.is_distinct_from("voided"),
                )
            )
        ]
    balances = accounting.invoice_balances(row["accounting_id"] for row in tracked if row["posting_status"] == "posted")
    as_of = run.interval_end.astimezone(ZoneInfo(company_timezone)).date()
    changed = psa_updates = 0
    statuses = []
    with _transaction(accounting_warehouse, keep=not pilot) as connection:
        upsert(connection, payment, payments, key=["accounting_id"])
        for row in tracked:
            balance = balances.get(row["accounting_id"] or "")
            if row["posting_status"] == "posted" and balance is None:
                log.warning("invoice %s (accounting id %s) was not found in accounting", row["number"], row["accounting_id"])
                continue
            balance = balance if balance is not None else Decimal(0)
            status = payment_status(
                posting_status=row["posting_status"], total=row["total"], balance=balance, due_date=row["due_date"], as_of=as_of
            )
            paid = Decimal(0) if status == "voided" else row["total"] - balance
            if (row["payment_status"], row["balance"], row["amount_paid"]) != (status, balance, paid):
                connection.execute(
                    invoice.update()
                    .where(invoice.c.psa_invoice_id == row["psa_invoice_id"])
                    .values(payment_status=status, balance=balance, amount_paid=paid)
                )
                changed += 1
            statuses.append(
                {
                    "psa_invoice_id": row["psa_invoice_id"],
                    "number": row["number"],
                    "status": status,
                    "currency": row["currency"],
                    "total": row["total"],
                    "amount_paid": paid,
                    "balance": balance,
                    "accounting_id": row["accounting_id"],
                    "last_run_id": run.run_id,
                }
            )
        ops.record_run(
            connection,
            run,
            extracted=len(payments) + len(tracked),
            loaded=changed,
            details={"payments_read": len(payments), "invoices_checked": len(tracked)},
        )
    if pilot:
        return _record_pilot(accounting_warehouse, run, payments=len(payments), tracked=len(tracked), changed=changed, statuses=statuses)
    with psa_warehouse.begin() as connection:
        upsert(connection, invoice_status, statuses, key=["psa_invoice_id"])
    for status in statuses:
        body = {
            k: (str(v) if isinstance(v, Decimal) else v)
            for k, v in status.items()
            if k in ("status", "amount_paid", "balance", "currency", "accounting_id")
        }
        psa_updates += psa.set_invoice_payment_status(status["psa_invoice_id"], body)
    with accounting_warehouse.begin() as connection:
        ops.record_run(connection, run, written_back=psa_updates, details={"statuses_changed": changed, "psa_updates": psa_updates})
    log.info(
        "payments: %d read, %d invoices checked, %d statuses changed, %d PSA updates", len(payments), len(tracked), changed, psa_updates
    )
    return {"payments": len(payments), "statuses_changed": changed, "psa_updates": psa_updates}


@contextmanager
def _transaction(engine: Engine, *, keep: bool) -> Iterator[Connection]:
    """A transaction committed when ``keep``, else rolled back (a pilot's warehouse changes)."""
    with engine.connect() as connection:
        transaction = connection.begin()
        try:
            yield connection
        except BaseException:
            transaction.rollback()
            raise
        if keep:
            transaction.commit()
        else:
            transaction.rollback()


def _record_pilot(
    engine: Engine, run: RunRef, *, payments: int, tracked: int, changed: int, statuses: list[dict[str, Any]]
) -> dict[str, int]:
    report = {
        "would_post": len(statuses),
        "unit": "PSA invoice payment statuses",
        "by_action": {"set payment status": len(statuses)},
        "statuses_that_would_change": changed,
    }
    with engine.begin() as connection:
        ops.record_run(
            connection,
            run,
            extracted=payments + tracked,
            loaded=0,
            written_back=0,
            details={"payments_read": payments, "invoices_checked": tracked, "pilot": report, ops.WRITES_SKIPPED: True},
        )
    log.warning("payments_to_psa is in PILOT mode: nothing kept or sent; %d statuses would change, %d PSA updates", changed, len(statuses))
    return {"payments": payments, "statuses_changed": 0, "psa_updates": 0, "would_post": len(statuses)}
