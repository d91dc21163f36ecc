"""PSA codes → accounting references, read from the dictionary's ``accounting_mapping.yaml``.

The file says *how* things match (billing code → item and GL account, client name → customer,
person e-mail → employee or vendor); the accounting system's own lists say *which* record matches.
:class:`AccountingReferences` holds those lists for one run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import Any

import yaml

from backbone.data_dictionary import DICTIONARY_DIR

MAPPING_FILE = DICTIONARY_DIR / "accounting_mapping.yaml"


@dataclass(frozen=True)
class BillingCodeMapping:
    code: str
    item: str
    gl_account: str
    billable: bool


@dataclass(frozen=True)
class InvoicingMapping:
    time_item: str
    adjustment_item: str
    fixed_fee: BillingCodeMapping
    rebilled_expenses: BillingCodeMapping
    """The item a T&M invoice's re-billed expense lines (``kind: expense``) post to."""
    tax_codes: dict[str, tuple[str, Decimal]]
    """PSA tax code → (QuickBooks TaxCode name, rate)."""
    currencies: tuple[str, ...]
    hours_tolerance: Decimal
    amount_tolerance_per_line: Decimal


@dataclass(frozen=True)
class ExpenseCategoryMapping:
    category: str
    gl_account: str
    tax_code: str
    """A key of :attr:`ExpenseMapping.tax_codes`."""


@dataclass(frozen=True)
class ExpenseMapping:
    home_currency: str
    paid_from: str
    """The account company-paid expenses are paid from (QuickBooks Purchase ``AccountRef``, Xero ``BankAccount``)."""
    receipt_required_above: Decimal
    categories: dict[str, ExpenseCategoryMapping]
    tax_codes: dict[str, tuple[str, Decimal]]
    """PSA tax code → (accounting purchase tax code name, rate)."""


@dataclass(frozen=True)
class ActualsMapping:
    labour_cost_account: str
    """Debited with a project's labour actuals (hours × standard cost rate), naming its customer."""
    labour_allocated_account: str
    """Credited: the payroll cost moved onto projects."""


NO_ACTUALS = ActualsMapping(labour_cost_account="", labour_allocated_account="")

NO_EXPENSES = ExpenseMapping(home_currency="EUR", paid_from="", receipt_required_above=Decimal(0), categories={}, tax_codes={})


@dataclass(frozen=True)
class AccountingMapping:
    system: str
    billing_codes: dict[str, BillingCodeMapping]
    invoicing: InvoicingMapping
    expenses: ExpenseMapping = NO_EXPENSES
    actuals: ActualsMapping = NO_ACTUALS
    client_overrides: dict[str, str] = field(default_factory=dict)
    person_overrides: dict[str, str] = field(default_factory=dict)
    billable_status: dict[str, str] = field(default_factory=dict)

    def customer_key(self, client_id: str, client_name: str | None) -> str:
        """What the client is looked up by in the accounting customer list (normalised display name)."""
        return normalise(self.client_overrides.get(str(client_id)) or client_name or "")

    def person_key(self, person_id: str, email: str | None) -> str:
        return normalise(self.person_overrides.get(str(person_id)) or email or "")

    def billable_status_of(self, entry_billable: bool, code: BillingCodeMapping) -> str:
        return self.billable_status["billable" if entry_billable and code.billable else "not_billable"]


def normalise(text: object) -> str:
    return " ".join(str(text).split()).casefold()


@cache
def load_mapping() -> AccountingMapping:
    raw = yaml.safe_load(MAPPING_FILE.read_text(encoding="utf-8"))
    codes = {
        str(code): BillingCodeMapping(code=str(code), item=str(m["item"]), gl_account=str(m["gl_account"]), billable=bool(m["billable"]))
        for code, m in (raw.get("billing_codes") or {}).items()
    }
    inv = raw["invoicing"]
    invoicing = InvoicingMapping(
        time_item=str(inv["time_item"]),
        adjustment_item=str(inv["adjustment_item"]),
        fixed_fee=BillingCodeMapping(
            code="FIXED_FEE", item=str(inv["fixed_fee"]["item"]), gl_account=str(inv["fixed_fee"]["gl_account"]), billable=True
        ),
        rebilled_expenses=BillingCodeMapping(
            code="REBILLED_EXPENSES",
            item=str(inv["rebilled_expenses"]["item"]),
            gl_account=str(inv["rebilled_expenses"]["gl_account"]),
            billable=True,
        ),
        tax_codes={str(code): (str(t["name"]), Decimal(str(t["rate"]))) for code, t in inv["tax_codes"].items()},
        currencies=tuple(str(c) for c in inv["currencies"]),
        hours_tolerance=Decimal(str(inv["reconciliation"]["hours_tolerance"])),
        amount_tolerance_per_line=Decimal(str(inv["reconciliation"]["amount_tolerance_per_line"])),
    )
    return AccountingMapping(
        system=raw["system"],
        billing_codes=codes,
        invoicing=invoicing,
        expenses=_expense_mapping(raw.get("expenses")),
        actuals=ActualsMapping(
            labour_cost_account=str((raw.get("actuals") or {}).get("labour_cost_account") or ""),
            labour_allocated_account=str((raw.get("actuals") or {}).get("labour_allocated_account") or ""),
        ),
        client_overrides={str(k): str(v) for k, v in ((raw.get("clients") or {}).get("overrides") or {}).items()},
        person_overrides={str(k): str(v) for k, v in ((raw.get("people") or {}).get("overrides") or {}).items()},
        billable_status=dict(raw.get("billable_status") or {"billable": "Billable", "not_billable": "NotBillable"}),
    )


def _expense_mapping(raw: dict[str, Any] | None) -> ExpenseMapping:
    if not raw:
        return NO_EXPENSES
    tax_codes = {str(code): (str(t["name"]), Decimal(str(t["rate"]))) for code, t in (raw.get("tax_codes") or {}).items()}
    categories = {}
    for category, m in (raw.get("categories") or {}).items():
        if str(m["tax_code"]) not in tax_codes:
            raise ValueError(
                f"accounting_mapping.yaml: expense category {category} names tax code {m['tax_code']!r}, not in expenses.tax_codes"
            )
        categories[str(category)] = ExpenseCategoryMapping(str(category), str(m["gl_account"]), str(m["tax_code"]))
    return ExpenseMapping(
        home_currency=str(raw.get("home_currency") or "EUR"),
        paid_from=str(raw["paid_from"]),
        receipt_required_above=Decimal(str(raw.get("receipt_required_above", 0))),
        categories=categories,
        tax_codes=tax_codes,
    )


@dataclass(frozen=True)
class AccountingRef:
    entity: str
    ref_id: str
    name: str
    extra: dict[str, Any] = field(default_factory=dict)


PERSON_PRECEDENCE = {"Employee": 0, "User": 1, "Vendor": 2}
"""Which record a person's e-mail finds for time when several share it."""


@dataclass
class AccountingReferences:
    """The accounting system's customers, employees, vendors and items, keyed the way the mapping matches them."""

    customers: dict[str, AccountingRef] = field(default_factory=dict)
    people: dict[str, AccountingRef] = field(default_factory=dict)
    items: dict[str, AccountingRef] = field(default_factory=dict)
    tax_codes: dict[str, AccountingRef] = field(default_factory=dict)
    accounts: dict[str, AccountingRef] = field(default_factory=dict)
    """GL accounts by ``"<number> <name>"`` (normalised), as the mapping names them."""
    payees: dict[str, AccountingRef] = field(default_factory=dict)
    """Suppliers by e-mail: whom a reimbursable expense is a bill to (an employee is a supplier there too)."""
    items_by_id: dict[str, AccountingRef] = field(default_factory=dict)
    """Items by accounting id: how a renamed item is still found."""

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]]) -> AccountingReferences:
        """From ``acct.reference`` rows (entity, match_key, ref_id, name, extra). A person who is both
        an employee and a supplier (to be reimbursed) is the employee for time and the supplier for bills."""
        refs = cls()
        for row in sorted(rows, key=lambda r: PERSON_PRECEDENCE.get(r["entity"], 0)):
            ref = AccountingRef(row["entity"], row["ref_id"], row["name"], row.get("extra") or {})
            if row["entity"] == "Vendor":
                refs.payees.setdefault(row["match_key"], ref)
            if row["entity"] == "Item":
                refs.items_by_id.setdefault(row["ref_id"], ref)
            target = {
                "Customer": refs.customers,
                "Employee": refs.people,
                "Vendor": refs.people,
                "User": refs.people,
                "Item": refs.items,
                "TaxCode": refs.tax_codes,
                "Account": refs.accounts,
            }.get(row["entity"])
            if target is not None:
                target.setdefault(row["match_key"], ref)
        return refs
