"""Month boundaries, payment status and the QuickBooks invoice body, without Airflow."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from backbone.flows.invoicing import billing_period
from backbone.flows.payments import payment_status
from backbone.hooks.quickbooks import invoice_body
from backbone.warehouse.ops import RunRef


def month(start: datetime, end: datetime) -> RunRef:
    return RunRef(flow="invoices_month_end_to_accounting", run_id="x", interval_start=start, interval_end=end)


def test_the_period_is_the_calendar_month_in_company_time():
    # October 2026 in Amsterdam: starts in summer time (UTC+2) and ends in winter time (UTC+1).
    assert (
        billing_period(month(datetime(2026, 9, 30, 22, tzinfo=UTC), datetime(2026, 10, 31, 23, tzinfo=UTC)), "Europe/Amsterdam")
        == "2026-10"
    )
    assert billing_period(month(datetime(2026, 2, 1, 5, tzinfo=UTC), datetime(2026, 3, 1, 5, tzinfo=UTC)), "America/New_York") == "2026-02"


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (datetime(2026, 10, 1, 0, tzinfo=UTC), datetime(2026, 11, 1, 0, tzinfo=UTC)),  # UTC midnights are not Amsterdam's
        (datetime(2026, 9, 30, 22, tzinfo=UTC), datetime(2026, 10, 7, 22, tzinfo=UTC)),  # a week is not a month
    ],
)
def test_an_interval_that_is_not_a_local_month_is_refused(start, end):
    with pytest.raises(ValueError, match="one calendar month"):
        billing_period(month(start, end), "Europe/Amsterdam")


@pytest.mark.parametrize(
    ("posting", "total", "balance", "due", "status"),
    [
        ("posted", "100", "100", date(2026, 12, 1), "open"),
        ("posted", "100", "40", date(2026, 12, 1), "partially_paid"),
        ("posted", "100", "0", date(2026, 12, 1), "paid"),
        ("posted", "100", "40", date(2026, 11, 1), "overdue"),
        ("voided", "100", "0", date(2026, 11, 1), "voided"),
    ],
)
def test_payment_status_follows_accountings_numbers(posting, total, balance, due, status):
    assert (
        payment_status(posting_status=posting, total=Decimal(total), balance=Decimal(balance), due_date=due, as_of=date(2026, 11, 15))
        == status
    )


def test_invoice_body_uses_quickbooks_names():
    row = {
        "number": "2026-10-0001",
        "issue_date": date(2026, 10, 31),
        "due_date": date(2026, 11, 30),
        "customer_ref_id": "7",
        "client_name": "Acme",
        "currency": "EUR",
        "kind": "invoice",
        "psa_invoice_id": "PINV-1",
        "project_id": "PJ-1",
        "tax_amount": Decimal("21.00"),
    }
    lines = [
        {
            "amount": Decimal("100.00"),
            "description": "Ann — consulting",
            "item_ref_id": "41",
            "quantity": Decimal("1"),
            "rate": Decimal("100.00"),
        }
    ]
    body = invoice_body(row, lines, "3")
    assert body["DocNumber"] == "2026-10-0001" and body["DueDate"] == "2026-11-30"
    assert body["Line"][0]["SalesItemLineDetail"] == {
        "ItemRef": {"value": "41"},
        "Qty": 1.0,
        "UnitPrice": 100.0,
        "TaxCodeRef": {"value": "3"},
    }
    assert body["TxnTaxDetail"] == {"TotalTax": 21.0}
    assert "DueDate" not in invoice_body({**row, "kind": "credit_note"}, lines, None)


def tm_invoice_judged(*, exported_hours: str, time_exported: bool):
    from backbone.accounting_mapping import AccountingReferences, normalise
    from backbone.flows.invoicing import CheckContext, judge_invoices
    from tests.test_reliability_properties import GOOD_INVOICE

    refs = AccountingReferences.from_rows(
        [
            {"entity": "Customer", "match_key": normalise("Acme B.V."), "ref_id": "11", "name": "Acme B.V.", "extra": {}},
            {"entity": "Item", "match_key": normalise("Consulting Services"), "ref_id": "41", "name": "Consulting Services", "extra": {}},
            {"entity": "TaxCode", "match_key": normalise("VAT 21%"), "ref_id": "7", "name": "VAT 21%", "extra": {}},
        ]
    )
    context = CheckContext()
    context.period = "2026-10"
    context.exported_time = {"PJ-1": (Decimal(exported_hours), Decimal(exported_hours) * 100)}
    context.time_exported = time_exported
    run = RunRef(flow="invoices_to_accounting", run_id="r", interval_start=datetime(2026, 11, 3, tzinfo=UTC), interval_end=datetime.max)
    staged = [{"source_key": "PINV-1", "status": "new", "payload": GOOD_INVOICE}]
    verdicts, held, checks = judge_invoices(staged, refs, context, run)
    return verdicts[0], held, {c["check_name"]: c for c in checks}


def test_a_t_and_m_invoice_short_of_exported_time_waits_while_its_month_is_still_being_exported():
    (_, status, canonical), held, checks = tm_invoice_judged(exported_hours="8", time_exported=False)
    assert status == "waiting" and held == []  # not an exception
    assert canonical["hold_rule"] == "invoice.time.awaiting_export" and "waiting for the weekly export" in canonical["hold_reason"]
    assert checks["time.reconciles"]["passed"] is False  # the reconciliation row keeps its own name


def test_once_the_month_is_exported_a_t_and_m_invoice_that_still_differs_is_held():
    (_, status, canonical), held, _ = tm_invoice_judged(exported_hours="8", time_exported=True)
    assert status == "quarantined" and [h.rule for h in held] == ["invoice.time.reconciles"]
    (_, status, _), held, _ = tm_invoice_judged(exported_hours="10", time_exported=False)
    assert status == "valid" and held == []  # a month still being exported does not hold what already reconciles


def rebilled_invoice(*expense_lines: tuple[str | None, str]) -> dict:
    """GOOD_INVOICE with expense lines (expense id, amount) after its time line, totals redone."""
    from tests.test_reliability_properties import GOOD_INVOICE

    lines = [*GOOD_INVOICE["lines"]]
    for n, (expense_id, amount) in enumerate(expense_lines, start=2):
        expense = {"id": expense_id, "category": "TRAVEL"} if expense_id else None
        lines.append({"line_id": f"L{n}", "kind": "expense", "quantity": "1", "rate": amount, "amount": amount, "expense": expense})
    subtotal = sum(Decimal(line["amount"]) for line in lines)
    tax = (subtotal * Decimal("0.21")).quantize(Decimal("0.01"))
    return {**GOOD_INVOICE, "lines": lines, "subtotal": str(subtotal), "tax_amount": str(tax), "total": str(subtotal + tax)}


def judged_with_expenses(invoice: dict, exported: dict[str, tuple[str, str]], *, expenses_exported: bool = True):
    from backbone.accounting_mapping import AccountingReferences, normalise
    from backbone.flows.invoicing import CheckContext, judge_invoices

    refs = AccountingReferences.from_rows(
        [
            {"entity": "Customer", "match_key": normalise("Acme B.V."), "ref_id": "11", "name": "Acme B.V.", "extra": {}},
            {"entity": "Item", "match_key": normalise("Consulting Services"), "ref_id": "41", "name": "Consulting Services", "extra": {}},
            {"entity": "Item", "match_key": normalise("Re-billed Expenses"), "ref_id": "44", "name": "Re-billed Expenses", "extra": {}},
            {"entity": "TaxCode", "match_key": normalise("VAT 21%"), "ref_id": "7", "name": "VAT 21%", "extra": {}},
        ]
    )
    context = CheckContext()
    context.period = "2026-10"
    context.exported_time = {"PJ-1": (Decimal("10"), Decimal("1000.00"))}
    context.exported_expenses = {"PJ-1": {k: (Decimal(a), c) for k, (a, c) in exported.items()}} if exported else {}
    context.expenses_exported = expenses_exported
    run = RunRef(
        flow="invoices_month_end_to_accounting", run_id="r", interval_start=datetime(2026, 10, 1, tzinfo=UTC), interval_end=datetime.max
    )
    verdicts, held, checks = judge_invoices([{"source_key": "PINV-1", "status": "new", "payload": invoice}], refs, context, run)
    return verdicts[0], [h.rule for h in held], {c["check_name"]: c for c in checks}


def test_re_billed_expense_lines_that_are_the_exported_expenses_pass_and_post_to_the_re_billed_item():
    invoice = rebilled_invoice(("EX-1", "42.50"), ("EX-2", "12.40"))
    (_, status, canonical), held, checks = judged_with_expenses(invoice, {"EX-1": ("42.50", "EUR"), "EX-2": ("12.40", "EUR")})
    assert status == "valid" and held == []
    assert checks["expenses.reconcile"]["passed"] is True and checks["expenses.reconcile"]["expected"] == "2 expenses, 54.90"
    assert [(line["kind"], line["expense_id"], line["item_ref_id"]) for line in canonical["lines"]] == [
        ("time", None, "41"),
        ("expense", "EX-1", "44"),
        ("expense", "EX-2", "44"),
    ]
    # An invoice with no expense lines for a project that exported none has nothing to reconcile.
    assert "expenses.reconcile" not in judged_with_expenses(rebilled_invoice(), {})[2]


@pytest.mark.parametrize(
    ("lines", "exported", "says"),
    [
        ((("EX-1", "42.50"),), {"EX-1": ("40.00", "EUR")}, "bills expense EX-1 at 42.50 EUR, exported at 40.00 EUR"),
        ((("EX-1", "42.50"),), {"EX-1": ("42.50", "USD")}, "exported at 42.50 USD"),
        ((("EX-9", "42.50"),), {}, "EX-9, which was not exported as billable"),
        ((("EX-1", "42.50"), ("EX-1", "42.50")), {"EX-1": ("42.50", "EUR")}, "expense EX-1 is billed twice"),
        (((None, "42.50"),), {}, "bills an expense without naming it"),
        ((), {"EX-1": ("42.50", "EUR")}, "exported but not billed: EX-1"),
    ],
)
def test_re_billed_expenses_that_differ_from_the_export_hold_the_invoice_with_the_difference(lines, exported, says):
    (_, status, canonical), held, checks = judged_with_expenses(rebilled_invoice(*lines), exported)
    assert status == "quarantined" and held == ["invoice.expenses.reconcile"]
    assert says in canonical["hold_reason"] and checks["expenses.reconcile"]["passed"] is False


def test_re_billed_expenses_of_a_month_the_expense_export_has_not_covered_wait():
    (_, status, canonical), held, _ = judged_with_expenses(rebilled_invoice(("EX-1", "42.50")), {}, expenses_exported=False)
    assert status == "waiting" and held == []
    assert "waiting for the weekly expense export" in canonical["hold_reason"]


@pytest.mark.parametrize(
    ("tax", "amounts"),
    [
        ("6749.94", ["1234.56", "987.65", "42.50", "12.40", "31.63", "29835.44"]),
        ("0.00", ["100.00", "50.00"]),
        ("21.00", ["0.00"]),
        ("0.03", ["0.05", "0.05", "0.05"]),
    ],
)
def test_xero_lines_carry_the_psas_tax_to_the_cent(tax, amounts):
    """Xero rounds tax per line unless the line gives its TaxAmount; the hook gives it, so the
    invoice's total in Xero is the PSA's total however many lines it has."""
    from backbone.hooks.xero import spread_tax

    shares = spread_tax(tax, [Decimal(a) for a in amounts])
    assert sum(shares) == Decimal(tax) and all(s == s.quantize(Decimal("0.01")) for s in shares)
    if Decimal(tax) == 0:
        assert all(s == 0 for s in shares)
