"""Payments and balances from accounting → invoice status in the PSA warehouse and the PSA.

Status is derived from accounting's own numbers, so repeating a run changes nothing:
voided (we voided it), paid (balance 0), partially paid (0 < balance < total), overdue (balance
left after the due date, judged at the end of the run's interval), open otherwise.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from backbone.warehouse import ops

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from backbone.hooks.psa import PsaBilling
    from backbone.hooks.quickbooks import AccountingClient
    from backbone.warehouse.ops import RunRef

log = logging.getLogger(__name__)

FLOW = "payments_to_psa"
ID_BATCH = 100


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


def _qbo_time(moment: datetime) -> str:
    return moment.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%S-00:00")


def sync_payments(accounting: AccountingClient, psa: PsaBilling, accounting_warehouse: Engine, psa_warehouse: Engine, run: RunRef, *, overlap: timedelta, company_timezone: str) -> dict[str, int]:
    """Read payments changed since the interval start (minus overlap) and the balance of every open
    posted invoice; write statuses to both warehouses and to the PSA where they changed."""
    from sqlalchemy import select

    from backbone.warehouse.db import upsert
    from backbone.warehouse.tables import invoice, invoice_status, payment

    payments = []
    for page in accounting.query_all("Payment", f"MetaData.LastUpdatedTime >= '{_qbo_time(run.interval_start - overlap)}'"):
        for record in page:
            linked = sorted({str(t["TxnId"]) for line in record.get("Line") or [] for t in line.get("LinkedTxn") or [] if t.get("TxnType") == "Invoice"})
            payments.append({
                "accounting_id": str(record["Id"]), "customer_ref_id": (record.get("CustomerRef") or {}).get("value"), "amount": Decimal(str(record.get("TotalAmt", 0))),
                "currency": (record.get("CurrencyRef") or {}).get("value"), "txn_date": date.fromisoformat(record["TxnDate"]) if record.get("TxnDate") else None,
                "invoice_accounting_ids": linked, "last_updated": datetime.fromisoformat(record["MetaData"]["LastUpdatedTime"]), "last_run_id": run.run_id,
            })  # fmt: skip
    with accounting_warehouse.connect() as connection:
        tracked = [dict(r._mapping) for r in connection.execute(
            select(invoice).where(invoice.c.accounting_entity == "Invoice", invoice.c.posting_status.in_(("posted", "voided")),
                                  invoice.c.payment_status.is_distinct_from("paid"), invoice.c.payment_status.is_distinct_from("voided"))
        )]  # fmt: skip
    balances: dict[str, dict[str, Any]] = {}
    ids = [row["accounting_id"] for row in tracked if row["posting_status"] == "posted"]
    for start in range(0, len(ids), ID_BATCH):
        quoted = ", ".join(f"'{i}'" for i in ids[start : start + ID_BATCH] if i.isdigit())
        for page in accounting.query_all("Invoice", f"Id IN ({quoted})"):
            balances.update({str(r["Id"]): r for r in page})
    as_of = run.interval_end.astimezone(ZoneInfo(company_timezone)).date()
    changed = psa_updates = 0
    statuses = []
    with accounting_warehouse.begin() as connection:
        upsert(connection, payment, payments, key=["accounting_id"])
        for row in tracked:
            record = balances.get(row["accounting_id"] or "")
            if row["posting_status"] == "posted" and record is None:
                log.warning("invoice %s (accounting id %s) was not found in accounting", row["number"], row["accounting_id"])
                continue
            balance = Decimal(str(record.get("Balance", 0))) if record else Decimal(0)
            status = payment_status(posting_status=row["posting_status"], total=row["total"], balance=balance, due_date=row["due_date"], as_of=as_of)
            paid = Decimal(0) if status == "voided" else row["total"] - balance
            if (row["payment_status"], row["balance"], row["amount_paid"]) != (status, balance, paid):
                connection.execute(invoice.update().where(invoice.c.psa_invoice_id == row["psa_invoice_id"]).values(payment_status=status, balance=balance, amount_paid=paid))
                changed += 1
            statuses.append({"psa_invoice_id": row["psa_invoice_id"], "number": row["number"], "status": status, "currency": row["currency"], "total": row["total"],
                             "amount_paid": paid, "balance": balance, "accounting_id": row["accounting_id"], "last_run_id": run.run_id})  # fmt: skip
        ops.record_run(connection, run, extracted=len(payments) + len(tracked), loaded=changed, details={"payments_read": len(payments), "invoices_checked": len(tracked)})
    with psa_warehouse.begin() as connection:
        upsert(connection, invoice_status, statuses, key=["psa_invoice_id"])
    for status in statuses:
        body = {k: (str(v) if isinstance(v, Decimal) else v) for k, v in status.items() if k in ("status", "amount_paid", "balance", "currency", "accounting_id")}
        psa_updates += psa.set_invoice_payment_status(status["psa_invoice_id"], body)
    with accounting_warehouse.begin() as connection:
        ops.record_run(connection, run, written_back=psa_updates, details={"statuses_changed": changed, "psa_updates": psa_updates})
    log.info("payments: %d read, %d invoices checked, %d statuses changed, %d PSA updates", len(payments), len(tracked), changed, psa_updates)
    return {"payments": len(payments), "statuses_changed": changed, "psa_updates": psa_updates}
