"""Xero Accounting API 2.0 and Xero Projects API 2.0, spoken on the wire.

Everything Xero-specific lives here: the ``xero-tenant-id`` header on every call, PascalCase bodies
in plural envelopes (``{"Invoices": [...]}``), ``Idempotency-Key`` on every write (a repeated key
returns the first answer, never a second object), MS-JSON dates (``/Date(1573755038314+0000)/``),
``page`` paging, ``If-Modified-Since`` for payments, and the per-tenant budget of 60 calls a minute
and 5 at once. The Accounting API has no timesheets: time goes to Projects as time entries, under
one Xero project per PSA project and one task per billing item.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING, Any

from backbone.accounting_mapping import normalise
from backbone.hooks.accounting import (
    AccountingPayment,
    ActualsJournal,
    DayRecord,
    ExpenseKind,
    ExpenseLine,
    InvoiceKind,
    InvoiceLine,
    InvoiceRow,
    OutboxLine,
    PostedObject,
    ProjectBudget,
    ReferenceRecord,
    invoice_note,
    request_id_for,
    time_entry_description,
    time_entry_marker,
)
from backbone.hooks.base import JsonApiHook
from backbone.hooks.oauth import AirflowVariableTokenStore, RotatingOAuthMixin, TokenStore
from backbone.http import FatalApiError, QuotaExhaustedError, RateLimiter, parse_retry_after
from backbone.paging import PageNumberPaginator, pages
from backbone.settings import load_settings

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

XERO_TOKEN_URL = "https://identity.xero.com/connect/token"
ACCOUNTING_PATH = "/api.xro/2.0"
PROJECTS_PATH = "/projects.xro/2.0"
ACCOUNTING_PAGE = 100
PROJECTS_PAGE = 500
ID_BATCH = 40
IDEMPOTENCY_KEY_MAX = 128
MSDATE = re.compile(r"/Date\((-?\d+)([+-]\d{4})?\)/")
EXPENSE_DOCUMENTS: dict[ExpenseKind, tuple[str, str]] = {
    "bill": ("Invoices", "InvoiceID"),
    "purchase": ("BankTransactions", "BankTransactionID"),
}
"""Expense kinds → (Xero collection, id field): a bill is an ACCPAY invoice, a purchase a SPEND bank transaction."""
SALES_DOCUMENTS = {
    "invoice": ("Invoices", "InvoiceID", "InvoiceNumber", "ACCREC"),
    "credit_note": ("CreditNotes", "CreditNoteID", "CreditNoteNumber", "ACCRECCREDIT"),
}
"""The outbox's invoice kinds → (Xero collection, id field, number field, type)."""


def spread_tax(tax_total: Decimal | str, amounts: list[Decimal]) -> list[Decimal]:
    """The invoice's tax (as the PSA computed it on the subtotal) spread over its lines in
    proportion to their amounts, to the cent, summing exactly to ``tax_total``. Xero computes each
    line's tax and rounds it per line, so an invoice of many lines would otherwise total a few cents
    away from the PSA's; Xero lets a line's ``TaxAmount`` be given instead ("This value can be
    overriden if the calculated <TaxAmount> is not correct", Xero API: Invoices, LineItems)."""
    total, cent = Decimal(str(tax_total)), Decimal("0.01")
    base = sum(amounts, Decimal(0))
    if not amounts:
        return []
    if base == 0:
        return [Decimal(0)] * (len(amounts) - 1) + [total]
    shares = [(total * amount / base).quantize(cent) for amount in amounts]
    largest = max(range(len(amounts)), key=lambda i: abs(amounts[i]))
    shares[largest] += total - sum(shares, Decimal(0))
    return shares


def journal_narration(journal: ActualsJournal) -> str:
    return f"{journal['doc_number']}: {journal['description']}"[:4000]


def parse_msdate(value: str | None) -> datetime | None:
    """``/Date(1573755038314+0000)/`` (or a plain ISO string) → an aware UTC datetime."""
    if not value:
        return None
    match = MSDATE.fullmatch(value.strip())
    if match is None:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC)


def if_modified_since(moment: datetime) -> str:
    """Xero's ``If-Modified-Since``: an RFC 3339 date-time in UTC, no milliseconds
    (``2026-11-28T10:58:30+00:00``): the header is ``format: date-time`` in Xero's OpenAPI
    (xero_accounting.yaml), and Xero's own SDK (xero-python) sends ``datetime.isoformat()``."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


class XeroHook(RotatingOAuthMixin, JsonApiHook):
    """Xero (Accounting and Projects) for one tenant, through an OAuth2 app with rotating refresh tokens.

    Connection (``xero_default``, type ``xero``, or any type with extra ``"vendor": "xero"``):
    ``host`` = API root (default ``https://api.xero.com``), ``login`` = client id, ``password`` =
    client secret. Extras: ``tenant_id`` (required: the organisation's ``xero-tenant-id``),
    ``refresh_token`` (the first one; rotated tokens are kept in the Variable
    ``<conn_id>_refresh_token``), ``token_url`` (default Xero's identity server),
    ``requests_per_minute`` (default 60) and ``max_concurrency`` (default 5), Xero's per-tenant limits,
    and ``time_aggregation`` (``entry`` or ``day``, else ``BACKBONE_XERO_TIME_AGGREGATION``).
    """

    conn_name_attr = "xero_conn_id"
    default_conn_name = "xero_default"
    conn_type = "xero"
    hook_name = "Xero"
    system_name = "Xero"
    system = "xero"
    default_base_url = "https://api.xero.com"
    RATE_LIMIT_HEADERS = (
        ("calls left today", "X-DayLimit-Remaining"),
        ("this minute", "X-MinLimit-Remaining"),
        ("app-wide this minute", "X-AppMinLimit-Remaining"),
    )
    """Xero's limit headers on every answer (https://developer.xero.com/documentation/guides/oauth2/limits/)."""
    REQUIRED_SCOPES = frozenset(
        {"offline_access", "accounting.transactions", "accounting.contacts.read", "accounting.settings.read", "projects"}
    )
    """Invoices, credit notes and payments; contacts; items, accounts and tax rates; projects and time;
    and refresh tokens (https://developer.xero.com/documentation/guides/oauth2/scopes/)."""
    default_token_url = XERO_TOKEN_URL

    def __init__(self, xero_conn_id: str = default_conn_name, *, token_store: TokenStore | None = None, **kwargs: Any):
        super().__init__(xero_conn_id, **kwargs)
        self.token_store = token_store or AirflowVariableTokenStore()
        self._token_lock = threading.Lock()
        self._lookup_lock = threading.Lock()
        self._projects: dict[str, str] = {}
        self._tasks: dict[tuple[str, str], str] = {}

    @cached_property
    def tenant_id(self) -> str:
        tenant = str(self.extras.get("tenant_id") or "")
        if not tenant:
            raise ValueError(f"Connection {self.conn_id!r} has no tenant_id extra: set it to the organisation's xero-tenant-id")
        return tenant

    @cached_property
    def limiter(self) -> RateLimiter:
        return RateLimiter(self.budget("requests_per_minute", setting=None, default=60) / 60.0)

    @cached_property
    def concurrency(self) -> threading.BoundedSemaphore:
        return threading.BoundedSemaphore(max(1, min(int(self.budget("max_concurrency", setting=None, default=5)), 5)))

    @cached_property
    def time_aggregation(self) -> bool:
        """Whether new time goes as one record per person, project, task and day (``day``)."""
        mode = str(self.extras.get("time_aggregation") or load_settings().xero_time_aggregation)
        if mode not in ("entry", "day"):
            raise ValueError(f"Connection {self.conn_id!r}: extra 'time_aggregation' must be 'entry' or 'day', not {mode!r}")
        return mode == "day"

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.call("GET", "/Organisation")
        except Exception as exc:  # noqa: BLE001 - reported to the UI, not raised
            return False, str(exc)
        return True, "Xero answered"

    # --- calls ----------------------------------------------------------------------------------
    def call(
        self,
        method: str,
        path: str,
        *,
        api: str = ACCOUNTING_PATH,
        params: dict[str, Any] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        description: str | None = None,
    ) -> Any:
        """One tenant call through the hook's request pipeline (budget, at most ``max_concurrency`` at
        once, one token refresh on 401, the daily-quota check, retries)."""
        if idempotency_key is not None and len(idempotency_key) > IDEMPOTENCY_KEY_MAX:
            raise ValueError(f"Idempotency-Key {idempotency_key!r} is longer than {IDEMPOTENCY_KEY_MAX} characters")
        fixed = {"xero-tenant-id": self.tenant_id, **({"Idempotency-Key": idempotency_key} if idempotency_key else {}), **(headers or {})}
        return self.request(
            method,
            f"{api}{path}",
            params=params,
            json=json,
            headers=fixed,
            limiter=self.limiter,
            concurrency=self.concurrency,
            description=description or f"Xero {method} {path}",
        )

    def validate_response(self, response: requests.Response) -> Any:
        """Xero's daily quota (429 with ``X-Rate-Limit-Problem: day``) cannot be waited out within a
        task: it stops the run with pending work left pending. Everything else as usual."""
        if response.status_code == 429 and response.headers.get("X-Rate-Limit-Problem", "").lower() == "day":
            raise QuotaExhaustedError(
                "Xero: this tenant's daily API limit (5,000 calls) is used up; Xero says retry in "
                f"{response.headers.get('Retry-After', '?')} s. "
                "Nothing was lost: unsent work stays pending and goes out when the quota resets.",
                status=429,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        return super().validate_response(response)

    def list_all(
        self, collection: str, *, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None, paged: bool = True
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of an Accounting collection (``page`` 1, 2, ... until a short page); ``paged=False``
        for the collections Xero returns whole."""
        description = f"Xero list {collection}"

        def fetch(page: int | None) -> Any:
            query = {**(params or {}), **({"page": page, "pageSize": ACCOUNTING_PAGE} if paged else {})}
            return self.call("GET", f"/{collection}", params=query, headers=headers, description=f"{description} page {page}")

        paginator = PageNumberPaginator(page_size=ACCOUNTING_PAGE if paged else 10**9, description=description)
        yield from pages(paginator, fetch, lambda body: (body or {}).get(collection))

    def projects_all(self, path: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a Projects list (``page``/``pageSize`` up to ``pagination.pageCount``; a page
        the answer says it served twice stops the walk)."""

        def fetch(page: int | None) -> Any:
            return self.call("GET", path, api=PROJECTS_PATH, params={**(params or {}), "page": page, "pageSize": PROJECTS_PAGE}) or {}

        paginator = PageNumberPaginator(
            page_size=PROJECTS_PAGE,
            description=f"Xero Projects {path}",
            page_count=lambda body: int((body.get("pagination") or {}).get("pageCount") or 1),
            served_page=lambda body: int((body.get("pagination") or {}).get("page") or 0) or None,
        )
        for page in pages(paginator, fetch, lambda body: body.get("items")):
            yield from page

    # --- the accounting interface the flows use (backbone.hooks.accounting.AccountingSystem) ----
    def reference_records(self) -> Iterator[ReferenceRecord]:
        for page in self.list_all("Contacts", params={"where": 'ContactStatus=="ACTIVE"'}):
            for contact in page:
                if not (contact.get("IsSupplier") and not contact.get("IsCustomer")):  # Xero's flags: a supplier only is no customer
                    yield ReferenceRecord(
                        "Customer",
                        normalise(contact.get("Name") or ""),
                        str(contact["ContactID"]),
                        str(contact.get("Name") or ""),
                        {"currency": contact.get("DefaultCurrency")},
                    )
                if contact.get("EmailAddress"):  # whom an expense is a bill to, found by e-mail as people are
                    yield ReferenceRecord(
                        "Vendor", normalise(contact["EmailAddress"]), str(contact["ContactID"]), str(contact.get("Name") or ""), {}
                    )
        accounts = {a.get("Code"): a.get("Name") for page in self.list_all("Accounts", paged=False) for a in page}
        for code, name in accounts.items():
            if code:
                yield ReferenceRecord("Account", normalise(f"{code} {name}"), str(code), f"{code} {name}", {})
        for page in self.list_all("Items", paged=False):
            for item in page:
                code = (item.get("SalesDetails") or {}).get("AccountCode")
                income = f"{code} {accounts[code]}" if code in accounts else code
                yield ReferenceRecord(
                    "Item", normalise(item.get("Name") or ""), str(item["Code"]), str(item.get("Name") or ""), {"income_account": income}
                )
        for page in self.list_all("TaxRates", params={"where": 'Status=="ACTIVE"'}, paged=False):
            for rate in page:
                yield ReferenceRecord(
                    "TaxCode",
                    normalise(rate.get("Name") or ""),
                    str(rate["TaxType"]),
                    str(rate.get("Name") or ""),
                    {"rate": rate.get("EffectiveRate")},
                )
        for user in self.projects_all("/ProjectsUsers"):
            yield ReferenceRecord("User", normalise(user.get("email") or ""), str(user["userId"]), str(user.get("name") or ""), {})

    # time entries (Projects API)
    def _project_for(self, line: OutboxLine) -> str:
        """The Xero project of a PSA project: found by name under the customer, else created once."""
        name = f"{line['project_name'] or line['project_id']} ({line['project_id']})"[:100]
        with self._lookup_lock:
            if line["project_id"] not in self._projects:
                found = next(
                    (
                        p
                        for p in self.projects_all("/Projects", {"contactID": line["customer_ref_id"], "states": "INPROGRESS"})
                        if p.get("name") == name
                    ),
                    None,
                )
                if found is None:
                    found = self.call(
                        "POST",
                        "/Projects",
                        api=PROJECTS_PATH,
                        json={"contactId": line["customer_ref_id"], "name": name},
                        idempotency_key=request_id_for("xero-project", line["project_id"]),
                        description=f"Xero create project {name}",
                    )
                self._projects[line["project_id"]] = str(found["projectId"])
            return self._projects[line["project_id"]]

    def _task_for(self, project_id: str, line: OutboxLine) -> str:
        """The task of a billing item in a project (``TIME`` when billable, else ``NON_CHARGEABLE``)."""
        chargeable = line["billable_status"] == "Billable"
        name = line["item_name"] if chargeable else f"{line['item_name']} (non-billable)"
        with self._lookup_lock:
            if (project_id, name) not in self._tasks:
                for task in self.projects_all(f"/Projects/{project_id}/Tasks"):
                    self._tasks[(project_id, str(task.get("name")))] = str(task["taskId"])
            if (project_id, name) not in self._tasks:
                rate = {"currency": line.get("currency") or "EUR", "value": float(line["hourly_rate"]) if chargeable else 0.0}
                body = {"name": name, "rate": rate, "chargeType": "TIME" if chargeable else "NON_CHARGEABLE"}
                task = self.call(
                    "POST",
                    f"/Projects/{project_id}/Tasks",
                    api=PROJECTS_PATH,
                    json=body,
                    idempotency_key=request_id_for("xero-task", project_id, name),
                    description=f"Xero create task {name}",
                )
                self._tasks[(project_id, name)] = str(task["taskId"])
            return self._tasks[(project_id, name)]

    def _time_body(self, project_id: str, line: OutboxLine, minutes: int, description: str) -> dict[str, Any]:
        """A Projects time entry: the person's project user, the item's task, noon UTC on the work date."""
        work_date = line["work_date"] if isinstance(line["work_date"], date) else date.fromisoformat(str(line["work_date"]))
        return {
            "userId": line["person_ref_id"],
            "taskId": self._task_for(project_id, line),
            "dateUtc": f"{work_date.isoformat()}T12:00:00Z",
            "duration": max(1, minutes),
            "description": description,
        }

    def _create_time(self, project_id: str, body: dict[str, Any], request_id: str, description: str) -> dict[str, Any]:
        return self.call(
            "POST", f"/Projects/{project_id}/Time", api=PROJECTS_PATH, json=body, idempotency_key=request_id, description=description
        )

    def _put_time(self, project_id: str, entry_id: str, body: dict[str, Any], request_id: str, description: str) -> None:
        self.call(
            "PUT",
            f"/Projects/{project_id}/Time/{entry_id}",
            api=PROJECTS_PATH,
            json=body,
            idempotency_key=request_id,
            description=description,
        )

    def post_time_entry(self, line: OutboxLine, *, target: str | None, request_id: str) -> PostedObject:
        """Create the time entry, or update ``target`` (``<projectId>/<timeEntryId>``); an entry that
        moved to another project is deleted there and created in the new one."""
        project_id = self._project_for(line)
        body = self._time_body(project_id, line, int(line["minutes"]), time_entry_description(line))
        if target is not None:
            old_project, _, entry_id = target.partition("/")
            if old_project == project_id:
                self._put_time(project_id, entry_id, body, request_id, f"Xero update time entry {entry_id}")
                return PostedObject("TimeEntry", target, str(line["entry_version"]), body)
        # A moved entry: the new one is created first (idempotent, and found again by its key on a
        # replay), then the old one deleted, so a crash between the two leaves the time once in
        # the new project plus an old entry the replay deletes, never no entry at all.
        found = self.find_time_entry(line) if target is not None else None
        if found is None:
            created = self._create_time(project_id, body, request_id, f"Xero time entry {request_id}")
            found = PostedObject("TimeEntry", f"{project_id}/{created['timeEntryId']}", str(line["entry_version"]), created)
        if target is not None:
            self._delete_time_entry(target)
        return found

    def post_day_record(self, record: DayRecord, *, target: str | None, request_id: str) -> PostedObject:
        """Create one time entry for the day record, or ``PUT`` its new duration over ``target``
        (a day record never changes project: its key holds the project)."""
        project_id = self._project_for(record.line)
        body = self._time_body(project_id, record.line, record.minutes, record.description)
        if target is not None:
            _, _, entry_id = target.partition("/")
            self._put_time(project_id, entry_id, body, request_id, f"Xero update day record {entry_id}")
            return PostedObject("TimeEntry", target, record.content_hash, body)
        created = self._create_time(project_id, body, request_id, f"Xero day record {record.key}")
        return PostedObject("TimeEntry", f"{project_id}/{created['timeEntryId']}", record.content_hash, created)

    def find_day_record(self, record: DayRecord) -> PostedObject | None:
        """The day record's time entry, found by its marker in its project on its day."""
        return self._find_by_marker(record.line, record.marker, record.content_hash)

    def delete_time_entry(self, object_id: str, *, request_id: str) -> bool:
        """``DELETE`` the Projects time entry ``<projectId>/<timeEntryId>``; 404 means an earlier attempt deleted it."""
        return self._delete_time_entry(object_id)

    def _delete_time_entry(self, target: str) -> bool:
        project_id, _, entry_id = target.partition("/")
        try:
            self.call(
                "DELETE",
                f"/Projects/{project_id}/Time/{entry_id}",
                api=PROJECTS_PATH,
                description=f"Xero delete time entry {entry_id}",
            )
        except FatalApiError as exc:
            if exc.status != 404:  # already deleted by an attempt whose answer was lost
                raise
            return False
        return True

    def find_time_entry(self, line: OutboxLine) -> PostedObject | None:
        """The Projects time entry of this entry version, found by the description's key in the
        line's project on its work date (Idempotency-Keys are not kept for ever)."""
        return self._find_by_marker(line, time_entry_marker(line), str(line["entry_version"]))

    def _find_by_marker(self, line: OutboxLine, marker: str, sync_token: str) -> PostedObject | None:
        project_id = self._project_for(line)
        work_date = line["work_date"] if isinstance(line["work_date"], date) else date.fromisoformat(str(line["work_date"]))
        params = {"dateAfterUtc": f"{work_date.isoformat()}T00:00:00Z", "dateBeforeUtc": f"{work_date.isoformat()}T23:59:59Z"}
        for entry in self.projects_all(f"/Projects/{project_id}/Time", params):
            if str(entry.get("description") or "").startswith(marker):
                return PostedObject("TimeEntry", f"{project_id}/{entry['timeEntryId']}", sync_token, entry)
        return None

    # invoices and credit notes (Accounting API)
    def find_invoice(self, kind: InvoiceKind, number: str) -> tuple[str, Decimal] | None:
        collection, id_field, number_field, _ = SALES_DOCUMENTS[kind]
        quoted = number.replace("\\", "\\\\").replace('"', '\\"')
        params = {"InvoiceNumbers": number} if kind == "invoice" else {"where": f'{number_field}=="{quoted}"'}
        for page in self.list_all(collection, params=params):
            for record in page:
                if record.get(number_field) == number and record.get("Status") != "DELETED":
                    return str(record[id_field]), Decimal(str(record.get("Total", 0)))
        return None

    def create_invoice(
        self, kind: InvoiceKind, row: InvoiceRow, lines: list[InvoiceLine], tax_ref_id: str | None, *, request_id: str
    ) -> PostedObject:
        collection, id_field, number_field, xero_type = SALES_DOCUMENTS[kind]
        document: dict[str, Any] = {
            "Type": xero_type,
            "Contact": {"ContactID": row["customer_ref_id"]},
            number_field: row["number"],
            "Reference": invoice_note(row)[:255],
            "Date": row["issue_date"].isoformat(),
            "CurrencyCode": row["currency"],
            "Status": "AUTHORISED",
            "LineAmountTypes": "Exclusive",
            "LineItems": [
                {
                    "Description": (line["description"] or "")[:4000] or "-",
                    "Quantity": float(line["quantity"]),
                    "UnitAmount": float(line["rate"]),
                    "ItemCode": line["item_ref_id"],
                    "LineAmount": float(line["amount"]),
                    **({"TaxType": tax_ref_id, "TaxAmount": float(tax)} if tax_ref_id else {}),
                }
                for line, tax in zip(lines, spread_tax(row["tax_amount"], [Decimal(str(line["amount"])) for line in lines]), strict=True)
            ],
        }
        if kind == "invoice":
            document["DueDate"] = row["due_date"].isoformat()
        answer = self.call(
            "PUT",
            f"/{collection}",
            json={collection: [document]},
            idempotency_key=request_id,
            description=f"Xero create {collection} {row['number']}",
        )
        record = answer[collection][0]
        return PostedObject(collection, str(record[id_field]), "0", record)

    def void_invoice(self, kind: InvoiceKind, object_id: str, *, request_id: str) -> PostedObject:
        collection, id_field, _, _ = SALES_DOCUMENTS[kind]
        answer = self.call(
            "POST",
            f"/{collection}/{object_id}",
            json={collection: [{id_field: object_id, "Status": "VOIDED"}]},
            idempotency_key=request_id,
            description=f"Xero void {collection} {object_id}",
        )
        record = answer[collection][0]
        return PostedObject(collection, str(record[id_field]), "0", record)

    # expenses (Accounting API)
    def post_expense(self, line: ExpenseLine, *, target: str | None, request_id: str) -> PostedObject:
        """A reimbursable expense → an ``ACCPAY`` invoice (a bill) to the person's contact; a
        company-paid one → a ``SPEND`` bank transaction from the ``paid_from`` bank account, the
        person's contact as its contact. Amounts tax included (``LineAmountTypes`` Inclusive). An
        update rewrites ``target`` with ``POST /{collection}/{id}``. Xero's API has no billable
        flag on either (its BankTransaction and Invoice line items carry no customer), so a
        billable expense says its client in the line's description and is re-billed by the PSA."""
        collection, id_field = EXPENSE_DOCUMENTS[line["kind"]]
        spent = line["spent_date"]
        document: dict[str, Any] = {
            "Contact": {"ContactID": line["payee_ref_id"]},
            "Date": spent.isoformat() if isinstance(spent, date) else str(spent),
            "CurrencyCode": line["currency"],
            **({"CurrencyRate": float(line["exchange_rate"])} if line.get("exchange_rate") is not None else {}),  # type: ignore[arg-type]
            "Status": "AUTHORISED",
            "LineAmountTypes": "Inclusive",
            "LineItems": [
                {
                    "Description": line["description"][:4000],
                    "Quantity": 1.0,
                    "UnitAmount": float(line["amount"]),
                    "AccountCode": line["account_ref_id"],
                    **({"TaxType": line["tax_ref_id"]} if line.get("tax_ref_id") else {}),
                }
            ],
        }
        if line["kind"] == "bill":
            document.update(Type="ACCPAY", InvoiceNumber=line["doc_number"], Reference=line["doc_number"], DueDate=document["Date"])
        else:
            document.update(Type="SPEND", Reference=line["doc_number"], BankAccount={"Code": line["paid_from_ref_id"]})
        if target is not None:
            document[id_field] = target
        answer = self.call(
            "POST" if target else "PUT",
            f"/{collection}/{target}" if target else f"/{collection}",
            json={collection: [document]},
            idempotency_key=request_id,
            description=f"Xero {'update' if target else 'create'} {collection} {line['doc_number']}",
        )
        record = answer[collection][0]
        return PostedObject(collection, str(record[id_field]), "0", record)

    def find_expense(self, line: ExpenseLine) -> PostedObject | None:
        collection, id_field = EXPENSE_DOCUMENTS[line["kind"]]
        quoted = line["doc_number"].replace("\\", "\\\\").replace('"', '\\"')
        for page in self.list_all(collection, params={"where": f'Reference=="{quoted}"'}):
            for record in page:
                if record.get("Reference") == line["doc_number"] and record.get("Status") not in ("DELETED", "VOIDED"):
                    return PostedObject(collection, str(record[id_field]), "0", record)
        return None

    def delete_expense(self, kind: ExpenseKind, object_id: str, *, request_id: str) -> bool:
        """A bank transaction is deleted (``Status: DELETED``); an authorised bill is voided (Xero
        deletes only drafts). One already gone (404) counts as done before."""
        collection, id_field = EXPENSE_DOCUMENTS[kind]
        status = "DELETED" if kind == "purchase" else "VOIDED"
        change: dict[str, Any] = {id_field: object_id, "Status": status}
        try:
            if kind == "purchase":  # Xero's BankTransaction schema wants Type, BankAccount and LineItems even to delete
                current = self.call("GET", f"/{collection}/{object_id}", description=f"Xero read {collection} {object_id}")
                record = (current or {}).get(collection, [{}])[0]
                change.update({k: record[k] for k in ("Type", "BankAccount", "LineItems", "Contact") if k in record})
            self.call(
                "POST",
                f"/{collection}/{object_id}",
                json={collection: [change]},
                idempotency_key=request_id,
                description=f"Xero {status.lower()} {collection} {object_id}",
            )
        except FatalApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # project actuals (Accounting API)
    def create_journal(self, journal: ActualsJournal, *, request_id: str) -> PostedObject:
        """A ``ManualJournal``, posted: a positive line debits the project's labour cost account, a
        negative one credits the allocation account (Xero's journal lines are signed and must sum to
        zero). Xero's manual journals carry no contact, so the narration names the project and
        client; it starts with the document number, by which a lost answer is found."""
        amount = Decimal(str(journal["amount"]))
        document = {
            "Narration": journal_narration(journal),
            "Date": str(journal["journal_date"]),
            "Status": "POSTED",
            "LineAmountTypes": "NoTax",
            "JournalLines": [
                {"LineAmount": float(amount), "AccountCode": journal["debit_account_ref_id"], "Description": journal["description"][:4000]},
                {
                    "LineAmount": float(-amount),
                    "AccountCode": journal["credit_account_ref_id"],
                    "Description": journal["description"][:4000],
                },
            ],
        }
        answer = self.call(
            "PUT",
            "/ManualJournals",
            json={"ManualJournals": [document]},
            idempotency_key=request_id,
            description=f"Xero create ManualJournals {journal['doc_number']}",
        )
        record = answer["ManualJournals"][0]
        return PostedObject("ManualJournals", str(record["ManualJournalID"]), "0", record)

    def find_journal(self, journal: ActualsJournal) -> str | None:
        narration = journal_narration(journal)
        quoted = narration.replace("\\", "\\\\").replace('"', '\\"')
        for page in self.list_all("ManualJournals", params={"where": f'Narration=="{quoted}"'}):
            for record in page:
                if record.get("Narration") == narration and record.get("Status") not in ("DELETED", "VOIDED"):
                    return str(record["ManualJournalID"])
        return None

    def project_budgets(self, start: date, end: date) -> Iterator[ProjectBudget]:
        """Tracking budgets (``Type`` TRACKING, one per project option of the tracking category),
        each read with its lines for the months in ``[start, end)``, summed per month over accounts."""
        from datetime import timedelta

        window = {"DateFrom": start.isoformat(), "DateTo": (end - timedelta(days=1)).isoformat()}
        listed = self.call("GET", "/Budgets", params=window, description="Xero list Budgets") or {}
        for summary in listed.get("Budgets") or []:
            if summary.get("Type") != "TRACKING" or not summary.get("Tracking"):
                continue
            answer = self.call(
                "GET", f"/Budgets/{summary['BudgetID']}", params=window, description=f"Xero read Budget {summary['BudgetID']}"
            )
            budget = ((answer or {}).get("Budgets") or [{}])[0]
            option = str((budget.get("Tracking") or summary["Tracking"])[0].get("Option") or "").split()
            if not option:
                continue
            project_id = option[0]
            totals: dict[str, Decimal] = {}
            for line in budget.get("BudgetLines") or []:
                for balance in line.get("BudgetBalances") or []:
                    period = str(balance.get("Period") or "")[:7]
                    if start.isoformat()[:7] <= period < end.isoformat()[:7]:
                        totals[period] = totals.get(period, Decimal(0)) + Decimal(str(balance.get("Amount") or 0))
            for period, amount in sorted(totals.items()):
                yield ProjectBudget(project_id, period, amount, str(budget.get("Description") or ""))

    # payments (Accounting API)
    def payments_since(self, moment: datetime) -> Iterator[AccountingPayment]:
        for page in self.list_all("Payments", headers={"If-Modified-Since": if_modified_since(moment)}):
            for record in page:
                invoice = record.get("Invoice") or {}
                paid_on = parse_msdate(record.get("Date"))
                yield AccountingPayment(
                    accounting_id=str(record["PaymentID"]),
                    customer_ref_id=(invoice.get("Contact") or {}).get("ContactID"),
                    amount=Decimal(str(record.get("Amount", 0))) if record.get("Status") != "DELETED" else Decimal(0),
                    currency=invoice.get("CurrencyCode"),
                    txn_date=paid_on.date() if paid_on else None,
                    invoice_accounting_ids=[str(invoice["InvoiceID"])] if invoice.get("InvoiceID") else [],
                    last_updated=parse_msdate(record.get("UpdatedDateUTC")) or moment,
                )

    def invoice_balances(self, invoice_ids: Iterable[str]) -> dict[str, Decimal]:
        ids = [i for i in dict.fromkeys(invoice_ids) if i]
        balances: dict[str, Decimal] = {}
        for start in range(0, len(ids), ID_BATCH):
            for page in self.list_all("Invoices", params={"IDs": ",".join(ids[start : start + ID_BATCH])}):
                balances.update({str(r["InvoiceID"]): Decimal(str(r.get("AmountDue", 0))) for r in page})
        return balances
