"""Xero Accounting 2.0 and Projects 2.0 endpoints the hook uses, shaped by Xero's OpenAPI files.

Tenant header, OAuth2 with rotating refresh tokens, ``Idempotency-Key`` replay, MS-JSON dates,
``page``/``pageSize`` paging, ``If-Modified-Since`` and the per-tenant limits (calls a minute and
at once, 429 with ``Retry-After`` and ``X-Rate-Limit-Problem``). Every response the hook reads is
checked against ``xero_accounting.yaml`` / ``xero-projects.yaml`` in ``tests/test_xero.py``.
"""

from __future__ import annotations

import re
import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from backbone_sandbox.errors import answer_bad_requests
from backbone_sandbox.limits import SlidingWindowLimit, retry_after_header
from backbone_sandbox.store import PicklableLockMixin, RotatingTokenIssuer, add_refresh_token_route

TENANT_ID = "7a513ee1-b13c-4f3a-9c3e-4b3a2e1b0c51"
CLIENT_ID = "sandbox-xero-client"
CLIENT_SECRET = "sandbox-xero-secret"
INITIAL_REFRESH_TOKEN = "sandbox-xero-refresh-0"
NAMESPACE = uuid.UUID("3f0b6a52-8a1e-4c55-9f7e-0d7f4b1e2a90")
CENT = Decimal("0.01")
COLLECTIONS = (
    "Contacts",
    "Accounts",
    "Items",
    "TaxRates",
    "Invoices",
    "CreditNotes",
    "Payments",
    "BankTransactions",
    "ManualJournals",
    "Budgets",
)


def request_date(value: Any, field: str) -> date:
    """A date in a request body as Xero accepts it: ``2026-10-31``, ``2026-10-31T00:00:00`` or the
    MS-JSON ``/Date(1793404800000+0000)/`` its SDKs send; anything else is a validation error (400),
    never a server error."""
    text = str(value or "").strip()
    match = re.fullmatch(r"/Date\((-?\d+)(?:[+-]\d{4})?\)/", text)
    if match:
        return datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC).date()
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).date() if "T" in text else date.fromisoformat(text)
    except ValueError:
        raise XeroError(400, "A validation exception occurred", errors=[f"{field} {text!r} is not a valid date"]) from None


def msdate(moment: datetime | date) -> str:
    """Xero's MS-JSON date: ``/Date(<epoch ms>+0000)/``."""
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    return f"/Date({int(moment.timestamp() * 1000)}+0000)/"


def _id(kind: str, key: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{kind}:{key}"))


def _money(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


class XeroError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "ValidationException",
        headers: dict[str, str] | None = None,
        errors: list[str] | None = None,
    ):
        self.status, self.message, self.kind, self.headers, self.errors = status, message, kind, headers or {}, errors or []

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ErrorNumber": {400: 10, 401: 16, 403: 403, 404: 404, 429: 429}.get(self.status, 500),
            "Type": self.kind,
            "Message": self.message,
        }
        if self.errors:
            body["Elements"] = [{"ValidationErrors": [{"Message": e} for e in self.errors]}]
        return body


def where_matches(record: dict[str, Any], where: str | None) -> bool:
    """Xero ``where`` filters of the form ``Field=="text"`` / ``Field==true`` joined with ``&&`` or ``AND``."""
    if not where:
        return True
    for clause in re.split(r"\s*(?:&&|\bAND\b)\s*", where.strip()):
        match = re.fullmatch(r'\s*([A-Za-z.]+)\s*(==|!=)\s*(?:"((?:[^"\\]|\\.)*)"|(true|false))\s*', clause)
        if match is None:
            raise XeroError(400, f"Unsupported where clause: {clause}")
        name, op, text, flag = match.groups()
        value: Any = record
        for step in name.split("."):
            value = value.get(step) if isinstance(value, dict) else None
        wanted: Any = (flag == "true") if flag else text.replace('\\"', '"').replace("\\\\", "\\")
        if (value == wanted) != (op == "=="):
            return False
    return True


class XeroStore(RotatingTokenIssuer, PicklableLockMixin):
    """One organisation (tenant): its records, issued tokens and the Idempotency-Key memory."""

    token_prefix = "xero"
    access_lifetime = timedelta(minutes=30)
    refresh_grace = timedelta(minutes=30)
    token_answer = {
        "id_token": "",
        "token_type": "Bearer",
        "scope": "offline_access accounting.transactions accounting.contacts.read accounting.settings.read projects",
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in COLLECTIONS}
        self.users: dict[str, dict[str, Any]] = {}
        self.projects: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.time_entries: dict[str, dict[str, Any]] = {}
        self.idempotent: dict[str, tuple[int, Any]] = {}
        self.refresh_tokens = {INITIAL_REFRESH_TOKEN}
        self.access_tokens: dict[str, datetime] = {}
        self.creates: dict[str, int] = {}
        self.updates: dict[str, int] = {}
        self.deletes: dict[str, int] = {}
        self.replays = 0
        self.token_refreshes = 0

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for name in COLLECTIONS:  # a state saved before a collection was served has none of it
            self.records.setdefault(name, {})

    # --- records --------------------------------------------------------------------------------
    def add(self, collection: str, record: dict[str, Any], *, id_field: str, key: str, at: datetime) -> dict[str, Any]:
        record = {id_field: _id(collection, key), **record, "UpdatedDateUTC": msdate(at)}
        self.records[collection][record[id_field]] = record
        return record

    def remember(self, key: str | None, scope: str, answer: Any, status: int = 200) -> None:
        if key:
            self.idempotent[f"{scope}|{key}"] = (status, answer)

    def replay(self, key: str | None, scope: str) -> tuple[int, Any] | None:
        if not key:
            return None
        found = self.idempotent.get(f"{scope}|{key}")
        if found is not None:
            self.replays += 1
        return found

    def tax_rate(self, tax_type: str | None) -> Decimal:
        for rate in self.records["TaxRates"].values():
            if rate["TaxType"] == tax_type:
                return Decimal(str(rate["EffectiveRate"])) / 100
        return Decimal(0)

    def _priced_lines(self, document: dict[str, Any], *, purchase: bool) -> tuple[list[dict[str, Any]], list[str], dict[str, Decimal]]:
        """Line items priced as Xero prices them (``Exclusive`` or ``Inclusive`` of tax), the
        validation errors Xero would answer, and the document's SubTotal, TotalTax and Total."""
        errors = []
        items = {i["Code"]: i for i in self.records["Items"].values()}
        accounts = {a["Code"] for a in self.records["Accounts"].values()}
        inclusive = (document.get("LineAmountTypes") or "Exclusive") == "Inclusive"
        lines = []
        for line in document.get("LineItems") or []:
            if line.get("ItemCode") and line["ItemCode"] not in items:
                errors.append(f"Item code '{line['ItemCode']}' is not valid")
            if line.get("AccountCode") and line["AccountCode"] not in accounts:
                errors.append(f"Account code '{line['AccountCode']}' is not a valid code for this document.")
            rate = next((r for r in self.records["TaxRates"].values() if r["TaxType"] == line.get("TaxType")), None)
            if line.get("TaxType") and (rate is None or (purchase and not rate.get("CanApplyToExpenses"))):
                errors.append(f"The TaxType code '{line['TaxType']}' does not exist or cannot be used for this type of transaction.")
            amount = (
                _money(line["LineAmount"])
                if line.get("LineAmount") is not None
                else _money(Decimal(str(line.get("Quantity", 1))) * Decimal(str(line.get("UnitAmount", 0))))
            )
            tax_rate = self.tax_rate(line.get("TaxType"))
            tax = _money(amount - amount / (1 + tax_rate)) if inclusive else _money(amount * tax_rate)
            if line.get("TaxAmount") is not None:  # given: Xero keeps it instead of its own per-line figure
                tax = _money(line["TaxAmount"])
            lines.append({**line, "LineItemID": str(uuid.uuid4()), "LineAmount": float(amount), "TaxAmount": float(tax)})
        line_total = sum((Decimal(str(line["LineAmount"])) for line in lines), Decimal(0))
        tax_total = sum((Decimal(str(line["TaxAmount"])) for line in lines), Decimal(0))
        subtotal = line_total - tax_total if inclusive else line_total
        return lines, errors, {"SubTotal": subtotal, "TotalTax": tax_total, "Total": subtotal + tax_total}

    def create_document(self, collection: str, document: dict[str, Any], *, now: datetime, replacing: str | None = None) -> dict[str, Any]:
        """Validate and store an invoice or bill (``Invoices``, ACCREC or ACCPAY) or credit note
        (``CreditNotes``) as Xero computes it; ``replacing`` names the one an update rewrites."""
        id_field, number_field = ("InvoiceID", "InvoiceNumber") if collection == "Invoices" else ("CreditNoteID", "CreditNoteNumber")
        errors = []
        contact = self.records["Contacts"].get(str((document.get("Contact") or {}).get("ContactID")))
        if contact is None:
            errors.append(
                "The Contact must contain at least 1 of the following elements to identify the contact: Name, ContactID, ContactNumber"
            )
        lines, line_errors, totals = self._priced_lines(document, purchase=document.get("Type") == "ACCPAY")
        errors += line_errors
        number = document.get(number_field)
        if number and any(
            r.get(number_field) == number and r["Status"] not in ("DELETED", "VOIDED") and r[id_field] != replacing
            for r in self.records[collection].values()
        ):
            errors.append(f"{number_field} must be unique.")
        if errors:
            raise XeroError(400, "A validation exception occurred", errors=errors)
        assert contact is not None
        total = totals["Total"]
        record = {
            "Type": document.get("Type"),
            id_field: replacing or str(uuid.uuid4()),
            number_field: number,
            "Reference": document.get("Reference") or "",
            "Contact": {"ContactID": contact["ContactID"], "Name": contact["Name"]},
            "Date": msdate(request_date(document.get("Date"), "Date")),
            "CurrencyCode": document.get("CurrencyCode"),
            **({"CurrencyRate": document["CurrencyRate"]} if document.get("CurrencyRate") is not None else {}),
            "Status": document.get("Status") or "DRAFT",
            "LineAmountTypes": document.get("LineAmountTypes") or "Exclusive",
            "LineItems": lines,
            **{k: float(v) for k, v in totals.items()},
            "UpdatedDateUTC": msdate(now),
        }
        if collection == "Invoices":
            record.update(
                DueDate=msdate(request_date(document["DueDate"], "DueDate")) if document.get("DueDate") else None,
                AmountDue=float(total),
                AmountPaid=0.0,
                AmountCredited=0.0,
            )
            record = {k: v for k, v in record.items() if v is not None}
        else:
            record["RemainingCredit"] = float(total)
        self.records[collection][record[id_field]] = record
        if replacing is None:
            self.creates[collection] = self.creates.get(collection, 0) + 1
        return record

    def update_document(self, collection: str, object_id: str, document: dict[str, Any], *, now: datetime) -> dict[str, Any]:
        """``POST /Invoices/{id}`` with a whole document: an unpaid bill or invoice is rewritten in place."""
        current = self.records[collection].get(object_id)
        if current is None:
            raise XeroError(404, "The resource you're looking for cannot be found", kind="NotFound")
        if current["Status"] in ("PAID", "VOIDED", "DELETED") or Decimal(str(current.get("AmountPaid", 0))) > 0:
            raise XeroError(400, "A validation exception occurred", errors=["Invoice not of valid status for modification"])
        record = self.create_document(collection, {**current, **document}, now=now, replacing=object_id)
        self._count("updates", collection)
        return record

    def create_manual_journal(self, document: dict[str, Any], *, now: datetime) -> dict[str, Any]:
        """Validate and store a manual journal as Xero does: a narration, at least two lines on
        known accounts, lines that sum to zero (positive debits, negative credits)."""
        errors = []
        if not document.get("Narration"):
            errors.append("Narration cannot be empty")
        lines = document.get("JournalLines") or []
        codes = {a["Code"] for a in self.records["Accounts"].values()}
        for line in lines:
            if line.get("AccountCode") not in codes:
                errors.append(f"Account code '{line.get('AccountCode')}' is not a valid code for this document.")
        if len(lines) < 2:
            errors.append("Journal must have at least two lines")
        elif sum((_money(line.get("LineAmount", 0)) for line in lines), Decimal(0)) != 0:
            errors.append("The total debits must equal the total credits")
        if errors:
            raise XeroError(400, "A validation exception occurred", errors=errors)
        record = {
            "ManualJournalID": str(uuid.uuid4()),
            "Narration": document["Narration"],
            "Date": msdate(request_date(document.get("Date"), "Date")),
            "Status": document.get("Status") or "DRAFT",
            "LineAmountTypes": document.get("LineAmountTypes") or "NoTax",
            "JournalLines": [{**line, "LineAmount": float(_money(line["LineAmount"]))} for line in lines],
            "ShowOnCashBasisReports": True,
            "HasAttachments": False,
            "UpdatedDateUTC": msdate(now),
        }
        self.records["ManualJournals"][record["ManualJournalID"]] = record
        self._count("creates", "ManualJournals")
        return record

    def save_bank_transaction(self, document: dict[str, Any], *, now: datetime, object_id: str | None = None) -> dict[str, Any]:
        """Create (``PUT``) or rewrite (``POST /BankTransactions/{id}``) a SPEND or RECEIVE bank
        transaction; ``Status: DELETED`` deletes it. Xero needs the type, a contact, a bank account and lines."""
        collection = "BankTransactions"
        current = self.records[collection].get(object_id) if object_id else None
        if object_id and current is None:
            raise XeroError(404, "The resource you're looking for cannot be found", kind="NotFound")
        if current is not None and document.get("Status") == "DELETED":
            current.update(Status="DELETED", UpdatedDateUTC=msdate(now))
            self._count("deletes", collection)
            return current
        document = {**(current or {}), **document}
        errors = []
        if document.get("Type") not in ("SPEND", "RECEIVE"):
            errors.append("Type must be SPEND or RECEIVE (overpayments and prepayments are not supported here)")
        contact = self.records["Contacts"].get(str((document.get("Contact") or {}).get("ContactID")))
        if contact is None:
            errors.append("A Contact must be specified for this type of transaction")
        bank = next(
            (
                a
                for a in self.records["Accounts"].values()
                if a["Type"] == "BANK" and a["Code"] == (document.get("BankAccount") or {}).get("Code")
            ),
            None,
        )
        if bank is None:
            errors.append("A valid BankAccount must be specified (a bank account's Code or AccountID)")
        lines, line_errors, totals = self._priced_lines(document, purchase=document.get("Type") == "SPEND")
        errors += line_errors if lines else ["At least one line item is required"]
        if errors:
            raise XeroError(400, "A validation exception occurred", errors=errors)
        assert contact is not None and bank is not None
        record = {
            "BankTransactionID": object_id or str(uuid.uuid4()),
            "Type": document["Type"],
            "Contact": {"ContactID": contact["ContactID"], "Name": contact["Name"]},
            "BankAccount": {"AccountID": bank["AccountID"], "Code": bank["Code"], "Name": bank["Name"]},
            "Date": msdate(request_date(document.get("Date"), "Date")),
            "Reference": document.get("Reference") or "",
            "CurrencyCode": document.get("CurrencyCode"),
            **({"CurrencyRate": document["CurrencyRate"]} if document.get("CurrencyRate") is not None else {}),
            "Status": "AUTHORISED",
            "IsReconciled": False,
            "LineAmountTypes": document.get("LineAmountTypes") or "Exclusive",
            "LineItems": lines,
            **{k: float(v) for k, v in totals.items()},
            "UpdatedDateUTC": msdate(now),
        }
        self.records[collection][record["BankTransactionID"]] = record
        self._count("updates" if object_id else "creates", collection)
        return record

    def _count(self, counter: str, collection: str) -> None:
        counts = self.__dict__.setdefault(counter, {})  # a state saved before this counter existed has none
        counts[collection] = counts.get(collection, 0) + 1

    def void(self, collection: str, object_id: str, *, now: datetime) -> dict[str, Any]:
        record = self.records[collection].get(object_id)
        if record is None:
            raise XeroError(404, "The resource you're looking for cannot be found", kind="NotFound")
        if Decimal(str(record.get("AmountPaid", 0))) > 0:
            raise XeroError(
                400,
                "A validation exception occurred",
                errors=["Invoice not of valid status for modification. This document has payments allocated to it."],
            )
        record.update(Status="VOIDED", UpdatedDateUTC=msdate(now))
        if collection == "Invoices":
            record["AmountDue"] = 0.0
        return record

    def pay(self, invoice_id: str, amount: Decimal, *, now: datetime) -> dict[str, Any]:
        invoice = self.records["Invoices"][invoice_id]
        due = _money(invoice["AmountDue"]) - amount
        invoice.update(AmountDue=float(due), AmountPaid=float(_money(invoice["AmountPaid"]) + amount), UpdatedDateUTC=msdate(now))
        if due <= 0:
            invoice["Status"] = "PAID"
            invoice["FullyPaidOnDate"] = msdate(now.date())
        payment = {
            "PaymentID": str(uuid.uuid4()),
            "Date": msdate(now.date()),
            "Amount": float(amount),
            "Reference": f"Payment of {invoice['InvoiceNumber']}",
            "Status": "AUTHORISED",
            "PaymentType": "ACCRECPAYMENT",
            "UpdatedDateUTC": msdate(now),
            "IsReconciled": False,
            "Invoice": {
                "InvoiceID": invoice_id,
                "InvoiceNumber": invoice["InvoiceNumber"],
                "Type": "ACCREC",
                "CurrencyCode": invoice["CurrencyCode"],
                "Contact": invoice["Contact"],
            },
        }
        self.records["Payments"][payment["PaymentID"]] = payment
        return payment


def seed_xero(
    store: XeroStore, time_seed: Any, billing_items: dict[str, dict[str, Any]], *, at: datetime, tax_codes: dict[str, tuple[str, Decimal]]
) -> None:
    """The organisation's accounts, items, tax rates, contacts and project users, matching the PSA's seed
    (the seed's unmapped client and unknown person are left out on purpose, as in QuickBooks)."""
    for code, mapping in sorted(billing_items.items()):
        number, _, name = mapping["gl_account"].partition(" ")
        if not any(a["Code"] == number for a in store.records["Accounts"].values()):
            store.add(
                "Accounts",
                {"Code": number, "Name": name, "Type": "REVENUE", "Status": "ACTIVE", "Class": "REVENUE"},
                id_field="AccountID",
                key=number,
                at=at,
            )
        store.add(
            "Items",
            {
                "Code": code,
                "Name": mapping["item"],
                "IsSold": True,
                "IsPurchased": False,
                "SalesDetails": {"AccountCode": number, "UnitPrice": 0.0},
            },
            id_field="ItemID",
            key=code,
            at=at,
        )
    for code, (name, rate) in sorted(tax_codes.items()):
        percent = float(Decimal(str(rate)) * 100)
        tax_type = "EXEMPTOUTPUT" if percent == 0 else f"OUTPUT{int(percent)}"
        store.records["TaxRates"][tax_type] = {
            "Name": name,
            "TaxType": tax_type,
            "Status": "ACTIVE",
            "ReportTaxType": "OUTPUT",
            "CanApplyToRevenue": True,
            "DisplayTaxRate": percent,
            "EffectiveRate": percent,
            "TaxComponents": [{"Name": code, "Rate": percent, "IsCompound": False}],
        }
    for client_id, client in sorted(time_seed.clients.items()):
        if client_id in time_seed.unmapped_client_ids:
            continue
        store.add(
            "Contacts",
            {
                "Name": client["name"],
                "ContactStatus": "ACTIVE",
                "IsCustomer": True,
                "IsSupplier": False,
                "DefaultCurrency": client["currency"],
            },
            id_field="ContactID",
            key=client_id,
            at=at,
        )
    for key, customer in sorted(getattr(time_seed, "accounting_only_customers", {}).items()):
        store.add(
            "Contacts",
            {
                "Name": customer["name"],
                "ContactStatus": "ACTIVE",
                "IsCustomer": True,
                "IsSupplier": False,
                "DefaultCurrency": customer["currency"],
            },
            id_field="ContactID",
            key=f"accounting-only:{key}",
            at=at,
        )
    for person_id, person in sorted(time_seed.people.items()):
        if person_id in time_seed.unknown_person_ids:
            continue
        user_id = _id("user", person_id)
        store.users[user_id] = {"userId": user_id, "name": person["name"], "email": person["email"]}


def _page(items: list[Any], request: Request, default_size: int, maximum: int) -> tuple[list[Any], dict[str, int]]:
    page = max(1, int(request.query_params.get("page") or 1))
    size = max(1, min(int(request.query_params.get("pageSize") or default_size), maximum))
    chunk = items[(page - 1) * size : page * size]
    return chunk, {"page": page, "pageSize": size, "pageCount": max(1, -(-len(items) // size)), "itemCount": len(items)}


def _now() -> datetime:
    return datetime.now(UTC)


def _since(request: Request) -> datetime | None:
    value = request.headers.get("if-modified-since")
    if not value:
        return None
    try:  # ISO 8601 with or without an offset (Xero's docs and SDK), or an HTTP date (RFC 9110)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            raise XeroError(400, f"If-Modified-Since {value!r} is not a date and time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _updated(record: dict[str, Any]) -> datetime:
    match = re.fullmatch(r"/Date\((-?\d+)(?:[+-]\d{4})?\)/", record.get("UpdatedDateUTC") or "/Date(0)/")
    return datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC) if match else datetime.min.replace(tzinfo=UTC)


def _listing(store: Any, collection: str, request: Request, *, paged: bool, filters: dict[str, Any] | None = None) -> dict[str, Any]:
    with store._lock:
        records = list(store.records[collection].values())
    where = request.query_params.get("where")
    changed_since = _since(request)
    chosen = [r for r in records if where_matches(r, where) and (changed_since is None or _updated(r) >= changed_since)]
    for name, wanted in (filters or {}).items():
        if wanted:
            chosen = [r for r in chosen if str(r.get(name)) in wanted]
    if not paged:
        return {collection: chosen}
    chunk, pagination = _page(chosen, request, 100, 1000)
    return {"pagination": pagination, collection: chunk}


async def _create_documents(store: Any, collection: str, request: Request) -> JSONResponse:
    key = request.headers.get("idempotency-key")
    body = await request.json()
    with store._lock:
        replayed = store.replay(key, f"PUT {collection}")
        if replayed is not None:
            return JSONResponse(replayed[1], status_code=replayed[0])
        created = [store.create_document(collection, document, now=_now()) for document in body.get(collection) or []]
        answer = {collection: created}
        store.remember(key, f"PUT {collection}", answer)
    return JSONResponse(answer)


async def _void_document(store: Any, collection: str, object_id: str, request: Request) -> JSONResponse:
    """``POST /{collection}/{id}``: ``Status: VOIDED`` voids; a whole document rewrites an unpaid
    invoice or bill (Xero updates documents this way)."""
    key = request.headers.get("idempotency-key")
    body = await request.json()
    wanted = (body.get(collection) or [{}])[0]
    with store._lock:
        replayed = store.replay(key, f"POST {collection}/{object_id}")
        if replayed is not None:
            return JSONResponse(replayed[1], status_code=replayed[0])
        if wanted.get("Status") == "VOIDED":
            answer = {collection: [store.void(collection, object_id, now=_now())]}
        elif collection == "Invoices":
            answer = {collection: [store.update_document(collection, object_id, wanted, now=_now())]}
        else:
            raise XeroError(400, "A validation exception occurred", errors=["The sandbox only voids credit notes through this call"])
        store.remember(key, f"POST {collection}/{object_id}", answer)
    return JSONResponse(answer)


async def _save_bank_transactions(store: Any, request: Request, object_id: str | None = None) -> JSONResponse:
    key = request.headers.get("idempotency-key")
    scope = f"POST BankTransactions/{object_id}" if object_id else "PUT BankTransactions"
    body = await request.json()
    with store._lock:
        replayed = store.replay(key, scope)
        if replayed is not None:
            return JSONResponse(replayed[1], status_code=replayed[0])
        documents = body.get("BankTransactions") or []
        answer = {"BankTransactions": [store.save_bank_transaction(d, now=_now(), object_id=object_id) for d in documents]}
        store.remember(key, scope, answer)
    return JSONResponse(answer)


def _projects_page(items: list[dict[str, Any]], request: Request) -> dict[str, Any]:
    chunk, pagination = _page(items, request, 50, 500)
    return {"pagination": pagination, "items": chunk}


def _with_idempotency(store: Any, scope: str, key: str | None, make: Any, status: int) -> JSONResponse:
    with store._lock:
        replayed = store.replay(key, scope)
        if replayed is not None:
            return JSONResponse(replayed[1], status_code=replayed[0])
        answer = make()
        store.remember(key, scope, answer, status)
    return JSONResponse(answer, status_code=status)


def _project_of(store: Any, project_id: str) -> dict[str, Any]:
    project = store.projects.get(project_id)
    if project is None:
        raise XeroError(404, "Project not found", kind="NotFound")
    return project


def _checked_entry(store: Any, project_id: str, body: dict[str, Any]) -> dict[str, Any]:
    missing = [f for f in ("userId", "taskId", "dateUtc", "duration") if body.get(f) in (None, "")]
    if missing:
        raise XeroError(400, f"Missing required fields: {', '.join(missing)}")
    if body["userId"] not in store.users:
        raise XeroError(400, f"User {body['userId']} is not a user of the organisation")
    task = store.tasks.get(body["taskId"])
    if task is None or task["projectId"] != project_id:
        raise XeroError(400, f"Task {body['taskId']} is not a task of project {project_id}")
    if not isinstance(body["duration"], int) or not 1 <= body["duration"] <= 59940:
        raise XeroError(400, "duration must be between 1 and 59940 minutes")
    return body


def build_xero_app(state: Any) -> FastAPI:
    """Xero's identity server, Accounting API and Projects API as one sub-application (``/xero``)."""
    app = FastAPI(title="Xero (sandbox)", docs_url=None, redoc_url=None)
    store: XeroStore = state.xero

    @app.exception_handler(XeroError)
    async def _error(_: Request, exc: XeroError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    answer_bad_requests(app, lambda _, detail: JSONResponse(XeroError(400, detail).body(), status_code=400))

    _add_tenant_limits(app, state, store)
    _add_identity(app, state, store)
    _add_accounting(app, state, store)
    _add_manual_journals(app, store)
    _add_projects(app, state, store)
    _add_project_time(app, state, store)
    return app


def _add_tenant_limits(app: FastAPI, state: Any, store: Any) -> None:
    """Bearer token, tenant header, and Xero's per-day, per-minute and concurrent-call limits."""
    in_flight = {"count": 0}
    in_flight_lock = threading.Lock()
    per_minute = SlidingWindowLimit(state.config.xero_requests_per_minute, 60.0)
    per_day = SlidingWindowLimit(state.config.xero_requests_per_day, 86_400.0)
    state.limits["xero_minute"] = per_minute
    state.limits["xero_day"] = per_day

    @app.middleware("http")
    async def tenant_limits(request: Request, call_next):  # noqa: ANN001, ANN202 - starlette signature
        if request.url.path.endswith("/connect/token"):
            return await call_next(request)
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer ") or not store.token_valid(header.removeprefix("Bearer ")):
            return JSONResponse(
                {"Type": None, "Title": "Unauthorized", "Status": 401, "Detail": "TokenExpired: token expired"}, status_code=401
            )
        if request.headers.get("xero-tenant-id") != TENANT_ID:
            return JSONResponse(
                {"Type": None, "Title": "Forbidden", "Status": 403, "Detail": "AuthenticationUnsuccessful"}, status_code=403
            )
        wait = per_day.check(TENANT_ID)
        if wait is not None:
            return JSONResponse(
                XeroError(429, "Daily rate limit exceeded").body(),
                status_code=429,
                headers={"Retry-After": retry_after_header(wait), "X-Rate-Limit-Problem": "day"},
            )
        wait = per_minute.check(TENANT_ID)
        if wait is not None:
            return JSONResponse(
                XeroError(429, "Rate limit exceeded").body(),
                status_code=429,
                headers={"Retry-After": retry_after_header(wait), "X-Rate-Limit-Problem": "minute"},
            )
        with in_flight_lock:
            if in_flight["count"] >= state.config.xero_max_concurrent:
                state.xero_concurrency_rejected += 1
                return JSONResponse(
                    XeroError(429, "Concurrent request limit exceeded").body(),
                    status_code=429,
                    headers={"Retry-After": "1", "X-Rate-Limit-Problem": "concurrent"},
                )
            in_flight["count"] += 1
            state.xero_calls += 1
        try:
            response = await call_next(request)
        finally:
            with in_flight_lock:
                in_flight["count"] -= 1
        # Xero's documented limit headers (developer.xero.com/documentation/guides/oauth2/limits/)
        response.headers["X-DayLimit-Remaining"] = str(per_day.remaining(TENANT_ID))
        response.headers["X-MinLimit-Remaining"] = str(per_minute.remaining(TENANT_ID))
        response.headers["X-AppMinLimit-Remaining"] = str(
            max(0, 10_000 - (state.config.xero_requests_per_minute - per_minute.remaining(TENANT_ID)))
        )
        return response


def _add_identity(app: FastAPI, state: Any, store: Any) -> None:
    add_refresh_token_route(app, "/connect/token", store, client=(CLIENT_ID, CLIENT_SECRET), bad_client_status=400)


def _add_accounting(app: FastAPI, state: Any, store: Any) -> None:
    # --- Accounting API -----------------------------------------------------------------------
    @app.get("/api.xro/2.0/Organisation")
    def organisation() -> dict[str, Any]:
        return {
            "Organisations": [
                {"Name": "Backbone Services B.V. (sandbox)", "BaseCurrency": "EUR", "CountryCode": "NL", "OrganisationID": TENANT_ID}
            ]
        }

    def lister(collection: str, paged: bool) -> Any:
        def handler(request: Request) -> dict[str, Any]:
            return _listing(store, collection, request, paged=paged)

        return handler

    for collection, paged in (
        ("Contacts", True),
        ("Accounts", False),
        ("Items", False),
        ("TaxRates", False),
        ("CreditNotes", True),
        ("Payments", True),
        ("BankTransactions", True),
        ("ManualJournals", True),
    ):
        app.add_api_route(f"/api.xro/2.0/{collection}", lister(collection, paged), methods=["GET"], name=f"list {collection}")

    @app.get("/api.xro/2.0/Invoices")
    def invoices(request: Request) -> dict[str, Any]:
        ids = {i for i in (request.query_params.get("IDs") or "").split(",") if i}
        numbers = {n for n in (request.query_params.get("InvoiceNumbers") or "").split(",") if n}
        return _listing(store, "Invoices", request, paged=True, filters={"InvoiceID": ids, "InvoiceNumber": numbers})

    @app.put("/api.xro/2.0/Invoices")
    async def create_invoices(request: Request) -> JSONResponse:
        return await _create_documents(store, "Invoices", request)

    @app.put("/api.xro/2.0/CreditNotes")
    async def create_credit_notes(request: Request) -> JSONResponse:
        return await _create_documents(store, "CreditNotes", request)

    @app.post("/api.xro/2.0/Invoices/{invoice_id}")
    async def update_invoice(invoice_id: str, request: Request) -> JSONResponse:
        return await _void_document(store, "Invoices", invoice_id, request)

    @app.put("/api.xro/2.0/BankTransactions")
    async def create_bank_transactions(request: Request) -> JSONResponse:
        return await _save_bank_transactions(store, request)

    @app.get("/api.xro/2.0/BankTransactions/{bank_transaction_id}")
    def read_bank_transaction(bank_transaction_id: str) -> dict[str, Any]:
        with store._lock:
            record = store.records["BankTransactions"].get(bank_transaction_id)
        if record is None:
            raise XeroError(404, "The resource you're looking for cannot be found", kind="NotFound")
        return {"BankTransactions": [record]}

    @app.post("/api.xro/2.0/BankTransactions/{bank_transaction_id}")
    async def update_bank_transaction(bank_transaction_id: str, request: Request) -> JSONResponse:
        return await _save_bank_transactions(store, request, bank_transaction_id)

    @app.post("/api.xro/2.0/CreditNotes/{credit_note_id}")
    async def update_credit_note(credit_note_id: str, request: Request) -> JSONResponse:
        return await _void_document(store, "CreditNotes", credit_note_id, request)


def _add_manual_journals(app: FastAPI, store: Any) -> None:
    @app.get("/api.xro/2.0/Budgets")
    def list_budgets(request: Request) -> dict[str, Any]:
        """Budgets without their lines, as Xero lists them (``GET /Budgets/{id}`` has the lines)."""
        with store._lock:
            budgets = [{k: v for k, v in b.items() if k != "BudgetLines"} for b in store.records["Budgets"].values()]
        return {"Budgets": budgets}

    @app.get("/api.xro/2.0/Budgets/{budget_id}")
    def read_budget(budget_id: str, request: Request) -> dict[str, Any]:
        """One budget with its lines, the balances cut to ``DateFrom``…``DateTo`` (months)."""
        with store._lock:
            budget = store.records["Budgets"].get(budget_id)
        if budget is None:
            raise XeroError(404, "The resource you're looking for cannot be found", kind="NotFound")
        low, high = (request.query_params.get("DateFrom") or "")[:7], (request.query_params.get("DateTo") or "9999-12")[:7]
        lines = [
            {**line, "BudgetBalances": [b for b in line["BudgetBalances"] if low <= b["Period"] <= high]} for line in budget["BudgetLines"]
        ]
        return {"Budgets": [{**budget, "BudgetLines": lines}]}

    @app.put("/api.xro/2.0/ManualJournals")
    async def create_manual_journals(request: Request) -> JSONResponse:
        key = request.headers.get("idempotency-key")
        body = await request.json()
        with store._lock:
            replayed = store.replay(key, "PUT ManualJournals")
            if replayed is not None:
                return JSONResponse(replayed[1], status_code=replayed[0])
            answer = {"ManualJournals": [store.create_manual_journal(d, now=_now()) for d in body.get("ManualJournals") or []]}
            store.remember(key, "PUT ManualJournals", answer)
        return JSONResponse(answer)


def _add_projects(app: FastAPI, state: Any, store: Any) -> None:
    # --- Projects API -------------------------------------------------------------------------

    @app.get("/projects.xro/2.0/ProjectsUsers")
    def project_users(request: Request) -> dict[str, Any]:
        return _projects_page(sorted(store.users.values(), key=lambda u: u["name"]), request)

    @app.get("/projects.xro/2.0/Projects")
    def list_projects(request: Request, contactID: str | None = None, states: str | None = None) -> dict[str, Any]:  # noqa: N803 - Xero's name
        chosen = [
            p
            for p in store.projects.values()
            if (not contactID or p["contactId"] == contactID) and (not states or p["status"] in states.split(","))
        ]
        return _projects_page(chosen, request)

    @app.post("/projects.xro/2.0/Projects")
    async def create_project(request: Request) -> JSONResponse:
        body = await request.json()
        contact = store.records["Contacts"].get(str(body.get("contactId")))
        if not body.get("name") or contact is None:
            raise XeroError(400, "name is required and contactId must be a contact of the organisation")

        def make() -> dict[str, Any]:
            project_id = str(uuid.uuid4())
            currency = contact.get("DefaultCurrency") or "EUR"
            zero = {"currency": currency, "value": 0.0}
            store.projects[project_id] = {
                "projectId": project_id,
                "contactId": contact["ContactID"],
                "name": body["name"],
                "currencyCode": currency,
                "minutesLogged": 0,
                "totalTaskAmount": zero,
                "estimate": {"currency": currency, "value": float(body.get("estimateAmount") or 0)},
                "status": "INPROGRESS",
            }
            store.creates["Projects"] = store.creates.get("Projects", 0) + 1
            return store.projects[project_id]

        return _with_idempotency(store, "POST Projects", request.headers.get("idempotency-key"), make, 201)

    @app.get("/projects.xro/2.0/Projects/{project_id}/Tasks")
    def list_tasks(project_id: str, request: Request) -> dict[str, Any]:
        _project_of(store, project_id)
        return _projects_page([t for t in store.tasks.values() if t["projectId"] == project_id], request)

    @app.post("/projects.xro/2.0/Projects/{project_id}/Tasks")
    async def create_task(project_id: str, request: Request) -> JSONResponse:
        _project_of(store, project_id)
        body = await request.json()
        rate = body.get("rate")
        if (
            not body.get("name")
            or body.get("chargeType") not in ("TIME", "FIXED", "NON_CHARGEABLE")
            or not isinstance(rate, dict)
            or rate.get("value") is None
        ):
            raise XeroError(400, "name, rate ({currency, value}) and chargeType (TIME, FIXED or NON_CHARGEABLE) are required")

        def make() -> dict[str, Any]:
            task_id = str(uuid.uuid4())
            store.tasks[task_id] = {
                "taskId": task_id,
                "projectId": project_id,
                "name": body["name"],
                "rate": {"currency": rate.get("currency") or "EUR", "value": float(rate["value"])},
                "chargeType": body["chargeType"],
                "estimateMinutes": int(body.get("estimateMinutes") or 0),
                "totalMinutes": 0,
                "status": "ACTIVE",
            }
            return store.tasks[task_id]

        return _with_idempotency(store, f"POST Tasks {project_id}", request.headers.get("idempotency-key"), make, 201)


def _add_project_time(app: FastAPI, state: Any, store: Any) -> None:
    @app.get("/projects.xro/2.0/Projects/{project_id}/Time")
    def list_time(project_id: str, request: Request) -> dict[str, Any]:
        _project_of(store, project_id)
        return _projects_page([e for e in store.time_entries.values() if e["projectId"] == project_id], request)

    @app.post("/projects.xro/2.0/Projects/{project_id}/Time")
    async def create_time(project_id: str, request: Request) -> JSONResponse:
        _project_of(store, project_id)
        body = _checked_entry(store, project_id, await request.json())

        def make() -> dict[str, Any]:
            entry_id = str(uuid.uuid4())
            store.time_entries[entry_id] = {
                "timeEntryId": entry_id,
                "userId": body["userId"],
                "projectId": project_id,
                "taskId": body["taskId"],
                "dateUtc": body["dateUtc"],
                "dateEnteredUtc": _now().strftime("%Y-%m-%dT%H:%M:%SZ"),
                "duration": body["duration"],
                "description": body.get("description") or "",
                "status": "ACTIVE",
            }
            store.creates["TimeEntries"] = store.creates.get("TimeEntries", 0) + 1
            return store.time_entries[entry_id]

        return _with_idempotency(store, f"POST Time {project_id}", request.headers.get("idempotency-key"), make, 200)

    @app.get("/projects.xro/2.0/Projects/{project_id}/Time/{entry_id}")
    def read_time(project_id: str, entry_id: str) -> dict[str, Any]:
        entry = store.time_entries.get(entry_id)
        if entry is None or entry["projectId"] != project_id:
            raise XeroError(404, "Time entry not found", kind="NotFound")
        return entry

    @app.put("/projects.xro/2.0/Projects/{project_id}/Time/{entry_id}")
    async def update_time(project_id: str, entry_id: str, request: Request) -> Response:
        body = _checked_entry(store, project_id, await request.json())
        with store._lock:
            entry = store.time_entries.get(entry_id)
            if entry is None or entry["projectId"] != project_id:
                raise XeroError(404, "Time entry not found", kind="NotFound")
            entry.update({k: body[k] for k in ("userId", "taskId", "dateUtc", "duration")}, description=body.get("description") or "")
            store.creates["TimeEntryUpdates"] = store.creates.get("TimeEntryUpdates", 0) + 1
        return Response(status_code=204)

    @app.delete("/projects.xro/2.0/Projects/{project_id}/Time/{entry_id}")
    def delete_time(project_id: str, entry_id: str) -> Response:
        with store._lock:
            entry = store.time_entries.get(entry_id)
            if entry is not None and entry["projectId"] == project_id:
                del store.time_entries[entry_id]
        return Response(status_code=204)


def seed_xero_budgets(store: XeroStore, budgets: dict[tuple[str, str], dict[str, Any]], account: str, *, at: datetime) -> None:
    """A tracking budget per project (an option of the "Project" tracking category), by month, on the labour cost account."""
    code = account.partition(" ")[0]
    labour = next((a for a in store.records["Accounts"].values() if a["Code"] == code), None)
    category = str(uuid.uuid5(uuid.NAMESPACE_URL, "xero-sandbox/tracking/Project"))
    for (project_id, name), months in sorted(budgets.items()):
        budget_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"xero-sandbox/budget/{project_id}"))
        store.records["Budgets"][budget_id] = {
            "BudgetID": budget_id,
            "Type": "TRACKING",
            "Description": f"Project budget {project_id}",
            "UpdatedDateUTC": msdate(at),
            "BudgetLines": [
                {
                    **({"AccountID": labour["AccountID"]} if labour else {}),
                    "AccountCode": code,
                    "BudgetBalances": [{"Period": period, "Amount": float(amount)} for period, amount in sorted(months.items())],
                }
            ],
            "Tracking": [
                {
                    "TrackingCategoryID": category,
                    "TrackingOptionID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"xero-sandbox/tracking/{project_id}")),
                    "Name": "Project",
                    "Option": f"{project_id} {name}"[:100],
                }
            ],
        }


def seed_xero_expenses(store: XeroStore, expenses: Any, payees: list[dict[str, Any]], *, at: datetime, actuals: Any = None) -> None:
    """The expense accounts, the company card (a BANK account), purchase tax rates (they apply to
    expenses) and a contact per employee who is reimbursed, with their e-mail; the actuals journals' two accounts."""
    for account in (actuals.labour_cost_account, actuals.labour_allocated_account) if actuals else ():
        number, _, name = account.partition(" ")
        store.add(
            "Accounts",
            {"Code": number, "Name": name, "Type": "DIRECTCOSTS", "Status": "ACTIVE", "Class": "EXPENSE"},
            id_field="AccountID",
            key=number,
            at=at,
        )
    for account in sorted({c.gl_account for c in expenses.categories.values()}):
        number, _, name = account.partition(" ")
        store.add(
            "Accounts",
            {"Code": number, "Name": name, "Type": "EXPENSE", "Status": "ACTIVE", "Class": "EXPENSE"},
            id_field="AccountID",
            key=number,
            at=at,
        )
    number, _, name = expenses.paid_from.partition(" ")
    store.add(
        "Accounts",
        {"Code": number, "Name": name, "Type": "BANK", "Status": "ACTIVE", "Class": "ASSET", "BankAccountType": "CREDITCARD"},
        id_field="AccountID",
        key=number,
        at=at,
    )
    for code, (name, rate) in sorted(expenses.tax_codes.items()):
        percent = float(Decimal(str(rate)) * 100)
        tax_type = "EXEMPTINPUT" if percent == 0 else f"INPUT{int(percent)}"
        store.records["TaxRates"][tax_type] = {
            "Name": name,
            "TaxType": tax_type,
            "Status": "ACTIVE",
            "ReportTaxType": "INPUT",
            "CanApplyToExpenses": True,
            "CanApplyToRevenue": False,
            "DisplayTaxRate": percent,
            "EffectiveRate": percent,
            "TaxComponents": [{"Name": code, "Rate": percent, "IsCompound": False}],
        }
    for person in payees:
        store.add(
            "Contacts",
            {
                "Name": f"{person['name']} (expenses)",
                "EmailAddress": person["email"],
                "ContactStatus": "ACTIVE",
                "IsCustomer": False,
                "IsSupplier": True,
            },
            id_field="ContactID",
            key=f"payee:{person['id']}",
            at=at,
        )
