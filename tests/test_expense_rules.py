"""Expense mapping and rules without Airflow or PostgreSQL: every bad expense gets its reason, a
good one its outbox line, and the vendor bodies say what the vendors' references ask for."""

from __future__ import annotations

import copy
from datetime import date

import pytest

from backbone.accounting_mapping import AccountingReferences, load_mapping, normalise
from backbone.flows.expenses import judge_chunk
from backbone.hooks.accounting import expense_doc_number
from backbone.hooks.quickbooks import expense_body

PERSON = {"id": "EMP-1", "name": "Ann Smith", "email": "ann@people.example", "type": "employee"}


def ref(entity: str, key: str, ref_id: str) -> dict:
    return {"entity": entity, "match_key": normalise(key), "ref_id": ref_id, "name": key, "extra": {}}


REFS = AccountingReferences.from_rows(
    [
        ref("Customer", "Acme B.V.", "11"),
        ref("Employee", PERSON["email"], "21"),
        ref("Vendor", PERSON["email"], "22"),  # the same person as a supplier, to reimburse
        ref("Account", "6200 Travel Expenses", "61"),
        ref("Account", "6300 Software Subscriptions", "63"),
        ref("Account", "1010 Company Credit Card", "10"),
        ref("TaxCode", "VAT 21% Purchases", "7"),
    ]
)
GOOD = {
    "id": "EX-1",
    "version": 1,
    "spent_date": "2026-10-26",
    "category": {"code": "TRAVEL", "name": "Train and taxi"},
    "amount": "42.50",
    "currency": "EUR",
    "exchange_rate": None,
    "billable": True,
    "reimbursable": True,
    "receipt": {"id": "RC-1", "file_name": "r.pdf"},
    "approval_status": "approved",
    "approved_at": "2026-10-30T14:00:00.000Z",
    "updated_at": "2026-10-30T13:00:00.000Z",
    "notes": "Train to the client",
    "user": PERSON,
    "client": {"id": "CL-1", "name": "Acme B.V."},
    "project": {"id": "PJ-1", "name": "Acme — Data platform"},
}
LAST_DAY = date(2026, 10, 30)


def expense(**changes) -> dict:
    record = copy.deepcopy(GOOD)
    for path, value in changes.items():
        target = record
        *parents, leaf = path.split("__")
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    return record


def judge(*records: dict, duplicates: dict[str, str] | None = None, references: AccountingReferences = REFS):
    chunk = [{"source_key": f"{r['id']}:v{r['version']}", "payload": r, "status": "new", "canonical": None} for r in records]
    return judge_chunk(chunk, references, last_day=LAST_DAY, exported_hashes={}, duplicates=duplicates or {})


def test_the_persons_employee_record_still_books_time_and_the_supplier_record_takes_bills():
    assert REFS.people[PERSON["email"]].entity == "Employee"
    assert REFS.payees[PERSON["email"]].ref_id == "22"


def test_a_reimbursable_billable_expense_is_a_bill_naming_the_customer():
    verdicts, exceptions = judge(expense())
    assert exceptions == []
    ((_, status, line),) = verdicts
    assert status == "valid"
    assert (line["kind"], line["payee_ref_id"], line["customer_ref_id"], line["account_ref_id"], line["tax_ref_id"]) == (
        "bill",
        "22",
        "11",
        "61",
        "7",
    )
    body = expense_body({**line, "spent_date": line["spent_date"]})
    detail = body["Line"][0]["AccountBasedExpenseLineDetail"]
    assert body["VendorRef"]["value"] == "22" and body["GlobalTaxCalculation"] == "TaxInclusive"
    assert detail == {
        "AccountRef": {"value": "61"},
        "BillableStatus": "Billable",
        "CustomerRef": {"value": "11", "name": "Acme B.V."},
        "TaxCodeRef": {"value": "7"},
    }
    assert body["DocNumber"] == "EX-1v1"


def test_a_company_paid_expense_is_a_credit_card_purchase_without_a_customer_when_not_billable():
    verdicts, exceptions = judge(expense(category={"code": "SOFTWARE"}, reimbursable=False, billable=False))
    assert exceptions == []
    line = verdicts[0][2]
    assert (line["kind"], line["paid_from_ref_id"], line["customer_ref_id"]) == ("purchase", "10", None)
    body = expense_body(line)
    assert (body["PaymentType"], body["AccountRef"]) == ("CreditCard", {"value": "10"})
    assert body["Line"][0]["AccountBasedExpenseLineDetail"]["BillableStatus"] == "NotBillable"


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"category__code": "GIFTS"}, "expense.category.mapped"),
        ({"category__code": "LODGING"}, "expense.account.exists"),  # 6210 Lodging is not in accounting
        ({"amount": "180.00", "receipt": None}, "expense.receipt.required"),
        ({"currency": "USD"}, "expense.exchange_rate.required"),
        ({"amount": "0"}, "expense.amount.range"),
        ({"amount": "abc"}, "expense.amount.type"),
        ({"spent_date": "2026-11-12"}, "expense.spent_date.not_future"),
        ({"user__email": "nobody@people.example"}, "expense.payee.mapped"),
        ({"client__name": "Unknown Ventures"}, "expense.client.mapped"),
        ({"reimbursable": "maybe"}, "expense.reimbursable.allowed_values"),
    ],
)
def test_a_bad_expense_is_an_exception_with_its_reason(changes, rule):
    verdicts, exceptions = judge(expense(**changes))
    assert verdicts[0][1] == "quarantined"
    assert rule in {e.rule for e in exceptions}, [(e.rule, e.reason) for e in exceptions]
    assert all(e.reason for e in exceptions)


def test_a_small_receipt_less_expense_and_a_foreign_one_with_its_rate_pass():
    verdicts, exceptions = judge(expense(amount="12.00", receipt=None), expense(id="EX-2", currency="USD", exchange_rate="0.92"))
    assert exceptions == [] and [v[1] for v in verdicts] == ["valid", "valid"]
    assert verdicts[1][2]["exchange_rate"] == "0.92"


def test_a_suspected_duplicate_names_the_expense_it_repeats():
    _, exceptions = judge(expense(id="EX-2"), duplicates={"EX-2": "EX-1"})
    (failure,) = exceptions
    assert failure.rule == "expense.duplicate.suspected" and "EX-1" in failure.reason


def test_a_non_billable_expense_needs_no_customer():
    verdicts, _ = judge(expense(billable=False, client__name="Unknown Ventures"))
    assert verdicts[0][1] == "valid" and verdicts[0][2]["customer_ref_id"] is None


def test_doc_numbers_fit_quickbooks_and_stay_the_same_for_every_attempt():
    assert expense_doc_number("EX-0000001", 3) == "EX-0000001v3"
    long = expense_doc_number("E" * 40, 2)
    assert len(long) == 21 and long == expense_doc_number("E" * 40, 2) != expense_doc_number("E" * 40, 3)


def test_every_category_names_a_tax_code_the_mapping_defines():
    mapping = load_mapping().expenses
    assert mapping.categories and all(c.tax_code in mapping.tax_codes for c in mapping.categories.values())
