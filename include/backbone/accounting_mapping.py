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
    tax_codes: dict[str, tuple[str, Decimal]]
    """PSA tax code → (QuickBooks TaxCode name, rate)."""
    currencies: tuple[str, ...]
    hours_tolerance: Decimal
    amount_tolerance_per_line: Decimal


@dataclass(frozen=True)
class AccountingMapping:
    system: str
    billing_codes: dict[str, BillingCodeMapping]
    invoicing: InvoicingMapping
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
        tax_codes={str(code): (str(t["name"]), Decimal(str(t["rate"]))) for code, t in inv["tax_codes"].items()},
        currencies=tuple(str(c) for c in inv["currencies"]),
        hours_tolerance=Decimal(str(inv["reconciliation"]["hours_tolerance"])),
        amount_tolerance_per_line=Decimal(str(inv["reconciliation"]["amount_tolerance_per_line"])),
    )
    return AccountingMapping(
        system=raw["system"],
        billing_codes=codes,
        invoicing=invoicing,
        client_overrides={str(k): str(v) for k, v in ((raw.get("clients") or {}).get("overrides") or {}).items()},
        person_overrides={str(k): str(v) for k, v in ((raw.get("people") or {}).get("overrides") or {}).items()},
        billable_status=dict(raw.get("billable_status") or {"billable": "Billable", "not_billable": "NotBillable"}),
    )


@dataclass(frozen=True)
class AccountingRef:
    entity: str
    ref_id: str
    name: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class AccountingReferences:
    """The accounting system's customers, employees, vendors and items, keyed the way the mapping matches them."""

    customers: dict[str, AccountingRef] = field(default_factory=dict)
    people: dict[str, AccountingRef] = field(default_factory=dict)
    items: dict[str, AccountingRef] = field(default_factory=dict)
    tax_codes: dict[str, AccountingRef] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]]) -> AccountingReferences:
        """From ``acct.reference`` rows (entity, match_key, ref_id, name, extra)."""
        refs = cls()
        for row in rows:
            ref = AccountingRef(row["entity"], row["ref_id"], row["name"], row.get("extra") or {})
            target = {
                "Customer": refs.customers,
                "Employee": refs.people,
                "Vendor": refs.people,
                "User": refs.people,
                "Item": refs.items,
                "TaxCode": refs.tax_codes,
            }.get(row["entity"])
            if target is not None:
                target.setdefault(row["match_key"], ref)
        return refs
