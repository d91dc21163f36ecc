"""What the flows need from an accounting system (the factory that picks a vendor's hook is ``backbone.hooks.vendors``).

The timesheet, month-end and payments flows speak in outbox lines, outbox invoices and canonical
payments; each vendor hook turns those into its own wire format (QuickBooks ``TimeActivity`` and
``Invoice``, Xero Projects time entries and ``Invoices``). Pick the vendor with the Connection's
type (``quickbooks`` or ``xero``) or, for a generic Connection type, its ``vendor`` extra.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable

from backbone.http import FatalApiError

RejectedByAccounting = FatalApiError
"""Accounting refused this one request for good (a validation error, a missing reference, a number in use):
the protocol-level error flows catch to record the line or invoice as failed and go on with the others.
Transport trouble (timeouts, throttling, 5xx) is retried inside the hooks and never reaches a flow as this."""


InvoiceKind = Literal["invoice", "credit_note"]
"""The outbox's own names for what a hook posts: each vendor hook names its object (QuickBooks
``Invoice`` / ``CreditMemo``, Xero ``Invoices`` / ``CreditNotes``)."""

LEGACY_ENTITY_NAMES: dict[str, str] = {"invoice": "Invoice", "credit_note": "CreditMemo"}
"""What ``acct.invoice.accounting_entity`` holds per kind. The column predates vendor-neutral
names and is part of every void's idempotency key already sent, so its values stay as they are."""


class OutboxLine(TypedDict, total=False):
    """One line of the time-export outbox (``acct.time_export``) as the hooks receive it."""

    entry_id: str
    entry_version: int
    request_id: str
    attempts: int
    person_id: str
    person_name: str | None
    name_of: str
    """``Employee`` or ``Vendor`` (``User`` where the system does not tell them apart)."""
    person_ref_id: str
    client_id: str
    client_name: str
    customer_ref_id: str
    project_id: str
    project_name: str | None
    billing_code: str
    item_ref_id: str
    item_name: str
    gl_account: str
    work_date: date | str
    hours: Decimal | str
    minutes: int
    hourly_rate: Decimal | str
    amount: Decimal | str
    currency: str
    billable_status: str


class InvoiceRow(TypedDict, total=False):
    """One outbox invoice or credit note (``acct.invoice``) as the hooks receive it."""

    psa_invoice_id: str
    number: str
    kind: str
    project_id: str
    client_name: str
    customer_ref_id: str
    currency: str
    issue_date: date
    due_date: date
    subtotal: Decimal
    tax_amount: Decimal
    total: Decimal
    request_id: str


class InvoiceLine(TypedDict, total=False):
    """One line of an outbox invoice (``acct.invoice_line``)."""

    line_id: str
    kind: str
    description: str | None
    quantity: Decimal | str
    rate: Decimal | str
    amount: Decimal | str
    item_ref_id: str


ExpenseKind = Literal["bill", "purchase"]
"""A reimbursable expense is a ``bill`` to the person as a supplier; a company-paid one a ``purchase``
from the paying account. Each vendor hook names its object (QuickBooks ``Bill`` / ``Purchase``,
Xero ``Invoices`` ACCPAY / ``BankTransactions`` SPEND)."""


class ExpenseLine(TypedDict, total=False):
    """One line of the expense outbox (``acct.expense_export``) as the hooks receive it."""

    expense_id: str
    expense_version: int
    request_id: str
    attempts: int
    kind: ExpenseKind
    doc_number: str
    """Our key on the posted record (QuickBooks ``DocNumber``, Xero ``Reference``/``InvoiceNumber``): how a lost answer is found."""
    person_id: str
    person_name: str | None
    payee_ref_id: str | None
    """The supplier record a bill goes to (a Vendor / a contact with the person's e-mail)."""
    customer_ref_id: str | None
    client_name: str | None
    project_name: str | None
    category: str
    account_ref_id: str
    paid_from_ref_id: str | None
    tax_ref_id: str | None
    spent_date: date | str
    amount: Decimal | str
    currency: str
    exchange_rate: Decimal | str | None
    billable: bool
    description: str


class ActualsJournal(TypedDict, total=False):
    """One journal of the actuals outbox (``acct.actuals_journal``) with the accounts it moves
    labour cost between: debit ``debit_account_ref_id`` (the project's labour cost, naming its
    customer), credit ``credit_account_ref_id``; a negative ``amount`` (a correction downwards)
    swaps the two."""

    project_id: str
    period: str
    seq: int
    doc_number: str
    """Our key on the journal (QuickBooks ``DocNumber``, the start of Xero's ``Narration``)."""
    description: str
    customer_ref_id: str | None
    debit_account_ref_id: str
    credit_account_ref_id: str
    amount: Decimal | str
    currency: str
    journal_date: date | str


@dataclass(frozen=True)
class ProjectBudget:
    """One project's budget for one month, as accounting keeps it (the amounts of all its accounts)."""

    project_id: str
    """The first word of the QuickBooks class / Xero tracking option the budget is kept by: the PSA project id."""
    period: str
    amount: Decimal
    budget_name: str


ACCOUNTING_SYSTEMS = ("quickbooks", "xero")


@dataclass(frozen=True)
class PostedObject:
    entity: str
    object_id: str
    sync_token: str
    body: dict[str, Any]


@dataclass(frozen=True)
class ReferenceRecord:
    """One customer, person, item or tax code of the accounting system, keyed as the mapping matches.

    ``entity`` is Customer, Employee, Vendor, Item or TaxCode; a system that does not tell employees
    from contractors lists people as ``User``.
    """

    entity: str
    match_key: str
    ref_id: str
    name: str
    extra: dict[str, Any]


@dataclass(frozen=True)
class AccountingPayment:
    accounting_id: str
    customer_ref_id: str | None
    amount: Decimal
    currency: str | None
    txn_date: date | None
    invoice_accounting_ids: list[str]
    last_updated: datetime


def request_id_for(*parts: str) -> str:
    """A deterministic idempotency key for one logical write: QuickBooks ``requestid`` (≤ 50
    characters) and Xero ``Idempotency-Key`` (≤ 128) alike."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]
    return f"bb-{digest}"


def time_entry_marker(line: OutboxLine) -> str:
    """The start of every posted time record's description: our key for finding it again."""
    return f"PSA {line['entry_id']} v{line['entry_version']} · "


def time_entry_description(line: OutboxLine) -> str:
    """What a posted time record says about its PSA origin (entry, version, code, project)."""
    return f"{time_entry_marker(line)}{line['billing_code']} · {line['project_name'] or line['project_id']}"


def expense_doc_number(expense_id: str, version: int) -> str:
    """The expense version's number on its accounting record: ``<id>v<version>`` when that fits
    QuickBooks' 21 characters, else a digest of it (the same for every attempt)."""
    plain = f"{expense_id}v{version}"
    return plain if len(plain) <= 21 else "X" + hashlib.sha256(plain.encode()).hexdigest()[:20]


def invoice_note(row: dict[str, Any]) -> str:
    """What a posted invoice says about its PSA origin."""
    return f"PSA {row['kind'].replace('_', ' ')} {row['psa_invoice_id']} · project {row['project_id']}"


class AccountingSystem(Protocol):
    """An accounting system as the flows use it. Writes carry ``request_id``: repeating one never
    creates a second object."""

    system: str

    def reference_records(self) -> Iterator[ReferenceRecord]:
        """Active customers, people, items (with their income account) and tax codes."""
        ...

    def post_time_entry(self, line: OutboxLine, *, target: str | None, request_id: str) -> PostedObject:
        """Create the time record of an outbox line, or update ``target`` (an earlier version's record)."""
        ...

    def find_time_entry(self, line: OutboxLine) -> PostedObject | None:
        """The time record an earlier attempt at this outbox line created, found by our own key
        (``time_entry_description``'s ``PSA <entry> v<version> ·`` prefix), or None: how a replay
        past the vendor's idempotency memory stays single."""
        ...

    def delete_time_entry(self, object_id: str, *, request_id: str) -> bool:
        """Remove a time record the PSA withdrew (deleted or un-approved after export). True when it
        was deleted now, False when accounting no longer had it (an earlier attempt deleted it)."""
        ...

    def post_expense(self, line: ExpenseLine, *, target: str | None, request_id: str) -> PostedObject:
        """Create the bill or purchase of an expense outbox line, or rewrite ``target`` (the record
        of an earlier version of the same kind)."""
        ...

    def find_expense(self, line: ExpenseLine) -> PostedObject | None:
        """The bill or purchase an earlier attempt at this line created, found by ``doc_number``."""
        ...

    def delete_expense(self, kind: ExpenseKind, object_id: str, *, request_id: str) -> bool:
        """Take an exported expense off the books (withdrawn in the PSA, or re-posted as the other
        kind). True when done now, False when accounting no longer had it."""
        ...

    def find_journal(self, journal: ActualsJournal) -> str | None:
        """The id of the journal an earlier attempt at this one created, found by ``doc_number``."""
        ...

    def create_journal(self, journal: ActualsJournal, *, request_id: str) -> PostedObject:
        """Post an actuals journal (QuickBooks ``JournalEntry``, Xero ``ManualJournal``)."""
        ...

    def project_budgets(self, start: date, end: date) -> Iterator[ProjectBudget]:
        """Project budgets for the months in ``[start, end)``: QuickBooks ``Budget`` details by class,
        Xero tracking budgets by tracking option; each named by its project id."""
        ...

    def find_invoice(self, kind: InvoiceKind, number: str) -> tuple[str, Decimal] | None:
        """``(id, total)`` of the invoice or credit memo with this number, if accounting has one."""
        ...

    def create_invoice(
        self, kind: InvoiceKind, row: InvoiceRow, lines: list[InvoiceLine], tax_ref_id: str | None, *, request_id: str
    ) -> PostedObject:
        """Create an outbox invoice (``kind`` invoice) or credit note (``kind`` credit_note) as the vendor's own object."""
        ...

    def void_invoice(self, kind: InvoiceKind, object_id: str, *, request_id: str) -> PostedObject: ...

    def payments_since(self, moment: datetime) -> Iterator[AccountingPayment]:
        """Customer payments created or changed at or after ``moment``."""
        ...

    def invoice_balances(self, invoice_ids: Iterable[str]) -> dict[str, Decimal]:
        """Amount still due per invoice id (ids accounting does not know are absent)."""
        ...


@runtime_checkable
class TimeBatchPoster(Protocol):
    """An accounting system that creates many new time records in one call (QuickBooks' ``/batch``).
    The weekly flow sends an entry's first create this way when nothing was tried for it before;
    updates, deletions and retries (which look up first) keep the one-call path."""

    time_batch_size: int

    def create_time_entries(self, lines: list[OutboxLine]) -> list[PostedObject | RejectedByAccounting]:
        """One answer per line, in order: the created record, or the refusal of that line alone."""
        ...


DAY_RECORD_KEY_FIELDS = ("person_ref_id", "customer_ref_id", "project_id", "item_ref_id", "billable_status", "work_date")
"""What one day record sums: a person's time on one project, task (billing item and billable
status) and day. A change to any of these moves an entry to another day record."""


def day_record_key(line: OutboxLine) -> str:
    """The stable key of the day record an outbox line belongs to (a digest of its key fields)."""
    parts = "\x1f".join(str(line[field]) for field in DAY_RECORD_KEY_FIELDS)  # type: ignore[literal-required]
    return hashlib.sha256(parts.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class DayRecord:
    """One accounting time record summing several PSA entries (``BACKBONE_XERO_TIME_AGGREGATION=day``).

    ``line`` is a representative outbox line (the key fields, names and rate), ``entries`` the
    member entries as ``{entry_id: minutes}``; the outbox keeps which entry versions it holds.
    """

    key: str
    line: OutboxLine
    entries: dict[str, int]

    @property
    def minutes(self) -> int:
        return sum(self.entries.values())

    @property
    def content_hash(self) -> str:
        members = ",".join(f"{entry}={minutes}" for entry, minutes in sorted(self.entries.items()))
        return hashlib.sha256(members.encode()).hexdigest()[:16]

    @property
    def marker(self) -> str:
        """The start of the record's description: our key for finding it again."""
        return f"PSA day {self.key} · "

    @property
    def description(self) -> str:
        shown = ", ".join(sorted(self.entries)[:5]) + (", …" if len(self.entries) > 5 else "")
        line = self.line
        return f"{self.marker}{len(self.entries)} entries ({shown}) · {line['billing_code']} · {line['project_name'] or line['project_id']}"


@runtime_checkable
class TimeDayPoster(Protocol):
    """An accounting system that can take a person's day on one task as one time record (Xero's
    Projects API, where every call counts against 60 a minute and 5,000 a day). The weekly flow
    uses it only when ``time_aggregation`` is on; the outbox still keeps one line per entry."""

    time_aggregation: bool

    def post_day_record(self, record: DayRecord, *, target: str | None, request_id: str) -> PostedObject:
        """Create the day record, or replace ``target``'s duration and description."""
        ...

    def find_day_record(self, record: DayRecord) -> PostedObject | None:
        """The day record created by an earlier attempt whose answer was lost, found by its marker."""
        ...

    def delete_time_entry(self, object_id: str, *, request_id: str) -> bool:
        """Remove a time record (a day record whose entries all left it)."""
        ...
