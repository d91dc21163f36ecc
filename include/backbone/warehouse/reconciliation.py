"""What the accounting warehouse already holds, read for the month-end checks and totals.

The SQL of reconciliation lives here, beside the tables it reads; the invoicing flow's checks
stay pure and get these answers as plain dictionaries.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Connection


def exported_billable_time(connection: Connection, start: date, end: date) -> dict[str, tuple[Decimal, Decimal]]:
    """Project → (hours, amount) of billable time posted to accounting for work dates in
    ``[start, end)``, counting each entry's latest version once (nothing for an entry whose latest
    line reverses it: withdrawn in the PSA after export)."""
    query = """
        SELECT project_id, sum(hours), sum(amount) FROM (
            SELECT DISTINCT ON (entry_id) project_id, hours, amount, billable_status, posting_status, work_date, action
            FROM acct.time_export ORDER BY entry_id, entry_version DESC
        ) latest
        WHERE posting_status = 'posted' AND action <> 'delete' AND billable_status = 'Billable'
          AND work_date >= %(start)s AND work_date < %(end)s
        GROUP BY project_id
    """
    return {project: (hours, amount) for project, hours, amount in connection.exec_driver_sql(query, {"start": start, "end": end})}


def exported_billable_expenses(connection: Connection, start: date, end: date) -> dict[str, dict[str, tuple[Decimal, str]]]:
    """Project → {expense id → (amount, currency)} of the billable expenses the weekly expense export
    posted for spend dates in ``[start, end)``: each expense's latest version once, nothing for one
    withdrawn after export (its latest line reverses it)."""
    query = """
        SELECT project_id, expense_id, amount, currency FROM (
            SELECT DISTINCT ON (expense_id) expense_id, project_id, amount, currency, billable, posting_status, spent_date, action
            FROM acct.expense_export ORDER BY expense_id, expense_version DESC
        ) latest
        WHERE posting_status = 'posted' AND action <> 'delete' AND billable AND spent_date >= %(start)s AND spent_date < %(end)s
    """
    found: dict[str, dict[str, tuple[Decimal, str]]] = {}
    for project, expense_id, amount, currency in connection.exec_driver_sql(query, {"start": start, "end": end}):
        found.setdefault(project, {})[expense_id] = (amount, currency)
    return found


def billed_fixed_fee(connection: Connection) -> dict[str, Decimal]:
    """``<deal id>|<PSA invoice id>`` → signed subtotal of every posted fixed-fee invoice (credit notes negative)."""
    rows = connection.exec_driver_sql(
        "SELECT crm_deal_id, kind, subtotal, psa_invoice_id FROM acct.invoice "
        "WHERE billing_type = 'fixed_fee' AND posting_status IN ('posted', 'void_pending') AND crm_deal_id IS NOT NULL"
    )
    return {f"{deal_id}|{invoice_id}": subtotal if kind == "invoice" else -subtotal for deal_id, kind, subtotal, invoice_id in rows}


def known_invoice_numbers(connection: Connection) -> dict[str, tuple[str, str, str]]:
    """Invoice number → (PSA invoice id, content hash, posting status) of everything the warehouse knows."""
    rows = connection.exec_driver_sql("SELECT number, psa_invoice_id, content_hash, posting_status FROM acct.invoice")
    return {number: (invoice_id, content, status) for number, invoice_id, content, status in rows}


def invoice_totals_of_run(connection: Connection, run_id: str) -> dict[str, object]:
    """Invoice count, held and posted counts, and net amount per currency (invoices − credit notes) of one run."""
    rows = connection.exec_driver_sql(
        """
        SELECT currency,
               count(*),
               count(*) FILTER (WHERE posting_status = 'held'),
               count(*) FILTER (WHERE posting_status IN ('posted', 'void_pending', 'voided')),
               sum(CASE WHEN posting_status IN ('posted', 'pending')
                        THEN CASE WHEN kind = 'credit_note' THEN -total ELSE total END ELSE 0 END)
        FROM acct.invoice WHERE run_id = %(run_id)s GROUP BY currency
        """,
        {"run_id": run_id},
    ).all()
    return {
        "invoices": sum(r[1] for r in rows),
        "held": sum(r[2] for r in rows),
        "posted_total": sum(r[3] for r in rows),
        "amount_by_currency": {r[0]: str(r[4]) for r in rows if r[4]},
    }
