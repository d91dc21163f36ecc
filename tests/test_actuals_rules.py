"""Project actuals without a database: pricing, document numbers and the two vendors' journal bodies."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from backbone.flows.actuals import journal_doc_number, labour_cost
from backbone.hooks.quickbooks import journal_entry_body

RATES = {("CONSULT", "EUR"): Decimal("62.00"), ("PM", "EUR"): Decimal("60.00"), ("CONSULT", "USD"): Decimal("68.00")}


def test_labour_is_priced_at_the_codes_rate_in_the_home_currency_and_unpriced_hours_are_named():
    cost, unpriced, missing = labour_cost({"CONSULT": Decimal("10.5"), "PM": Decimal("2"), "SNACKS": Decimal("3")}, RATES, "EUR")
    assert (cost, unpriced, missing) == (Decimal("771.00"), Decimal("3"), ["SNACKS"])


def test_document_numbers_fit_quickbooks_and_name_the_correction():
    assert journal_doc_number("PJ-00001", "2026-10", 1) == "ACT202610-PJ-00001"
    assert journal_doc_number("PJ-00001", "2026-10", 2) == "ACT202610-PJ-00001-2"
    assert all(len(journal_doc_number("P" * 40, "2026-10", seq)) <= 21 for seq in (1, 2, 99))


def journal(amount: str) -> dict:
    return {
        "doc_number": "ACT202610-PJ-00001",
        "description": "Labour actuals 2026-10: PJ-00001",
        "customer_ref_id": "58",
        "debit_account_ref_id": "101",
        "credit_account_ref_id": "102",
        "amount": Decimal(amount),
        "journal_date": date(2026, 10, 31),
    }


def test_a_quickbooks_journal_debits_labour_for_the_customer_and_a_negative_one_swaps_the_sides():
    body = journal_entry_body(journal("771.00"))
    debit, credit = body["Line"]
    assert body["DocNumber"] == "ACT202610-PJ-00001" and body["TxnDate"] == "2026-10-31"
    assert debit["JournalEntryLineDetail"] == {
        "PostingType": "Debit",
        "AccountRef": {"value": "101"},
        "Entity": {"Type": "Customer", "EntityRef": {"value": "58"}},
    }
    assert credit["JournalEntryLineDetail"] == {"PostingType": "Credit", "AccountRef": {"value": "102"}}
    assert debit["Amount"] == credit["Amount"] == 771.0
    debit, credit = journal_entry_body(journal("-124.00"))["Line"]
    assert (debit["JournalEntryLineDetail"]["AccountRef"], credit["JournalEntryLineDetail"]["AccountRef"]) == (
        {"value": "102"},
        {"value": "101"},
    )
    assert credit["JournalEntryLineDetail"]["Entity"]["EntityRef"] == {"value": "58"} and debit["Amount"] == 124.0
