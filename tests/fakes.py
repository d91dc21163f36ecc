"""In-memory stand-ins for the vendor protocols, so flow tests need no sandbox and no network.

``FakeAccounting`` implements ``backbone.hooks.accounting.AccountingSystem`` the way a vendor
behaves where the flows care: it creates a time record per call (it has no idempotency memory at
all, the worst case), finds records by the description's key, and can be told to refuse or to
lose its Connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from backbone.hooks.accounting import (
    AccountingPayment,
    InvoiceLine,
    InvoiceRow,
    OutboxLine,
    PostedObject,
    ReferenceRecord,
    RejectedByAccounting,
    time_entry_description,
    time_entry_marker,
)


@dataclass
class FakeAccounting:
    """Accounting in a dict. ``refuse`` maps an entry id to the message a 4xx would carry;
    ``dead_connection`` makes every call raise that exception (e.g. ``ReauthorisationRequired``)."""

    time_records: dict[str, dict[str, Any]] = field(default_factory=dict)
    creates: int = 0
    updates: int = 0
    lookups: int = 0
    refuse: dict[str, str] = field(default_factory=dict)
    dead_connection: BaseException | None = None
    references: list[ReferenceRecord] = field(default_factory=list)

    def _alive(self) -> None:
        if self.dead_connection is not None:
            raise self.dead_connection

    def reference_records(self) -> Iterator[ReferenceRecord]:
        self._alive()
        yield from self.references

    def post_time_entry(self, line: OutboxLine, *, target: str | None, request_id: str) -> PostedObject:
        self._alive()
        if line["entry_id"] in self.refuse:
            raise RejectedByAccounting(self.refuse[line["entry_id"]], status=400)
        body = {"Description": time_entry_description(line), "Minutes": int(line["minutes"]), "TxnDate": str(line["work_date"])}
        if target is not None:
            self.updates += 1
            self.time_records[target] = body
            return PostedObject("TimeRecord", target, str(line["entry_version"]), body)
        self.creates += 1
        object_id = str(self.creates)
        self.time_records[object_id] = body
        return PostedObject("TimeRecord", object_id, "0", body)

    def find_time_entry(self, line: OutboxLine) -> PostedObject | None:
        self._alive()
        self.lookups += 1
        marker = time_entry_marker(line)
        for object_id, body in self.time_records.items():
            if body["Description"].startswith(marker):
                return PostedObject("TimeRecord", object_id, "0", body)
        return None

    def delete_time_entry(self, object_id: str, *, request_id: str) -> bool:
        self._alive()
        return self.time_records.pop(object_id, None) is not None

    def find_invoice(self, kind: str, number: str) -> tuple[str, Decimal] | None:
        self._alive()
        return None

    def create_invoice(
        self, kind: str, row: InvoiceRow, lines: list[InvoiceLine], tax_ref_id: str | None, *, request_id: str
    ) -> PostedObject:
        raise NotImplementedError("invoices are not faked yet")

    def void_invoice(self, kind: str, object_id: str, *, request_id: str) -> PostedObject:
        raise NotImplementedError("invoices are not faked yet")

    def payments_since(self, moment: datetime) -> Iterator[AccountingPayment]:
        self._alive()
        return iter(())

    def invoice_balances(self, invoice_ids: Iterable[str]) -> dict[str, Decimal]:
        self._alive()
        return {}


@dataclass
class FakeBatchAccounting(FakeAccounting):
    """``FakeAccounting`` that also creates new time records in batch calls (``TimeBatchPoster``),
    refusing single items the way QuickBooks' batch answers a ``Fault`` for one item."""

    time_batch_size: int = 3
    batch_calls: list[int] = field(default_factory=list)

    def create_time_entries(self, lines: list[OutboxLine]) -> list[PostedObject | RejectedByAccounting]:
        self._alive()
        self.batch_calls.append(len(lines))
        answers: list[PostedObject | RejectedByAccounting] = []
        for line in lines:
            try:
                answers.append(self.post_time_entry(line, target=None, request_id=line["request_id"]))
            except RejectedByAccounting as refused:
                answers.append(refused)
        return answers
