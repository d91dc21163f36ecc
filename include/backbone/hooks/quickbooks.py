"""QuickBooks Online Accounting API v3: OAuth2 with rotating refresh tokens, idempotent writes, query paging.

Everything QuickBooks-specific lives here: the ``/v3/company/{realmId}/...`` paths, ``minorversion``,
``?requestid=`` on writes (a repeated id returns the original answer, never a second object),
``STARTPOSITION``/``MAXRESULTS`` paging, ``Fault`` bodies, 500 requests a minute and 10 at once,
and ``/batch`` (30 operations a call, 40 calls a minute) for new time activities.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cached_property
from typing import Any
from urllib.parse import quote

from backbone.accounting_mapping import normalise
from backbone.hooks.accounting import (
    AccountingPayment,
    ActualsJournal,
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
from backbone.http import FatalApiError, RateLimiter, RetriableApiError
from backbone.paging import OffsetPaginator, pages
from backbone.settings import load_settings

log = logging.getLogger(__name__)

INTUIT_TOKEN_URL = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
QUERY_PAGE_MAX = 1000
REQUEST_ID_MAX = 50
BATCH_MAX_ITEMS = 30
"""Intuit's "API call limits and throttles": at most 30 payloads per batch, 40 batch calls a minute per company."""
ID_BATCH = 100
SALES_ENTITY = {"invoice": "Invoice", "credit_note": "CreditMemo"}
"""The outbox's invoice kinds → QuickBooks sales transactions."""
TIME_ENTITY = "TimeActivity"
EXPENSE_ENTITY: dict[ExpenseKind, str] = {"bill": "Bill", "purchase": "Purchase"}
"""A reimbursable expense is a Bill to the employee's Vendor record; a company-paid one a Purchase
paid by credit card from the mapping's ``paid_from`` account."""


class QuickBooksHook(RotatingOAuthMixin, JsonApiHook):
    """QuickBooks Online with OAuth2 (authorization-code app, refreshed with a refresh token).

    Connection (``quickbooks_default``): ``host`` = API base URL (``https://quickbooks.api.intuit.com``
    or ``https://sandbox-quickbooks.api.intuit.com``), ``login`` = OAuth client id, ``password`` =
    client secret. Extras: ``realm_id`` (company id, required), ``refresh_token`` (the first one;
    rotated tokens are kept by the token store), ``token_url`` (default Intuit's),
    ``minor_version`` (default 75), ``requests_per_minute``, ``max_concurrency``, ``batch_size``
    and ``batch_requests_per_minute`` (else the ``BACKBONE_QBO_*`` settings; every hook reads its
    budget this way: extra, setting, vendor default).
    """

    conn_name_attr = "quickbooks_conn_id"
    default_conn_name = "quickbooks_default"
    conn_type = "quickbooks"
    hook_name = "QuickBooks Online"
    system_name = "QuickBooks"
    system = "quickbooks"
    default_base_url = "https://quickbooks.api.intuit.com"
    default_token_url = INTUIT_TOKEN_URL

    def __init__(self, quickbooks_conn_id: str = default_conn_name, *, token_store: TokenStore | None = None, **kwargs: Any):
        super().__init__(quickbooks_conn_id, **kwargs)
        self.token_store = token_store or AirflowVariableTokenStore()
        self._token_lock = threading.Lock()

    @cached_property
    def limiter(self) -> RateLimiter:
        """QuickBooks allows 500 requests a minute per company: extra ``requests_per_minute``, else
        ``BACKBONE_QBO_REQUESTS_PER_MINUTE`` (480)."""
        return RateLimiter(self.budget("requests_per_minute", setting=load_settings().qbo_requests_per_minute, default=480) / 60.0)

    @cached_property
    def batch_limiter(self) -> RateLimiter:
        """QuickBooks allows 40 batch calls a minute per company, apart from the 500 single calls:
        extra ``batch_requests_per_minute``, else ``BACKBONE_QBO_BATCH_REQUESTS_PER_MINUTE`` (38)."""
        per_minute = self.budget("batch_requests_per_minute", setting=load_settings().qbo_batch_requests_per_minute, default=38)
        return RateLimiter(per_minute / 60.0)

    @cached_property
    def time_batch_size(self) -> int:
        """New time activities per batch call: extra ``batch_size``, else ``BACKBONE_QBO_BATCH_SIZE``
        (30, Intuit's maximum); 1 turns batching off."""
        size = int(self.budget("batch_size", setting=load_settings().qbo_batch_size, default=BATCH_MAX_ITEMS))
        return max(1, min(size, BATCH_MAX_ITEMS))

    @cached_property
    def concurrency(self) -> threading.BoundedSemaphore:
        """At most 10 calls at once per company: extra ``max_concurrency``, else ``BACKBONE_QBO_MAX_CONCURRENCY`` (4)."""
        return threading.BoundedSemaphore(
            max(1, min(int(self.budget("max_concurrency", setting=load_settings().qbo_max_concurrency, default=4)), 10))
        )

    # --- connection and tokens ------------------------------------------------------------------
    @cached_property
    def realm_id(self) -> str:
        realm = str(self.extras.get("realm_id") or "")
        if not realm:
            raise ValueError(f"Connection {self.conn_id!r} has no realm_id extra: set it to the QuickBooks company id")
        return realm

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.call("GET", "/companyinfo/" + quote(self.realm_id))
        except Exception as exc:  # noqa: BLE001 - reported to the UI, not raised
            return False, str(exc)
        return True, "QuickBooks answered"

    # --- calls ----------------------------------------------------------------------------------
    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        description: str | None = None,
        limiter: RateLimiter | None = None,
    ) -> Any:
        """One company-scoped call through the hook's request pipeline (budget, at most
        ``max_concurrency`` at once, one token refresh on 401, retries); ``limiter`` is the
        budget it draws on (the single-call one unless told, e.g. batch calls have their own)."""
        query = {"minorversion": self.extras.get("minor_version", 75), **(params or {})}
        return self.request(
            method,
            f"/v3/company/{quote(self.realm_id)}{path}",
            params=query,
            json=json,
            limiter=limiter or self.limiter,
            concurrency=self.concurrency,
            description=description or f"QuickBooks {method} {path}",
        )

    def query_all(self, entity: str, where: str | None = None, *, page_size: int = QUERY_PAGE_MAX) -> Iterator[list[dict[str, Any]]]:
        """Every ``entity`` row matching ``where`` (a QuickBooks query condition), page by page
        (``STARTPOSITION`` from 1 until a short page)."""
        page_size = min(page_size, QUERY_PAGE_MAX)
        condition = f" WHERE {where}" if where else ""

        def fetch(start: int | None) -> Any:
            statement = f"SELECT * FROM {entity}{condition} ORDERBY Id STARTPOSITION {start} MAXRESULTS {page_size}"
            return self.call("GET", "/query", params={"query": statement}, description=f"QuickBooks query {entity} from {start}")

        paginator = OffsetPaginator(page_size=page_size, first=1, description=f"QuickBooks query {entity}")
        yield from pages(paginator, fetch, lambda body: ((body or {}).get("QueryResponse") or {}).get(entity))

    def create(self, entity: str, body: dict[str, Any], *, request_id: str) -> PostedObject:
        return self._write(entity, body, request_id)

    def update(self, entity: str, object_id: str, body: dict[str, Any], *, request_id: str) -> PostedObject:
        """Full update with the object's current ``SyncToken`` (read first: someone may have edited it)."""
        current = self.read(entity, object_id)
        return self._write(entity, {**body, "Id": object_id, "SyncToken": current["SyncToken"]}, request_id)

    def read(self, entity: str, object_id: str) -> dict[str, Any]:
        body = self.call("GET", f"/{entity.lower()}/{quote(object_id)}")
        return body[entity]

    def find_by_doc_number(self, entity: str, doc_number: str) -> dict[str, Any] | None:
        """The transaction with this DocNumber, if one exists (how a repost past the requestid window stays single)."""
        quoted = doc_number.replace("\\", "\\\\").replace("'", "\\'")
        for page in self.query_all(entity, f"DocNumber = '{quoted}'"):
            return page[0]
        return None

    def void(self, entity: str, object_id: str, *, request_id: str) -> PostedObject:
        """Void a transaction (its amounts become zero; the record and its number stay)."""
        current = self.read(entity, object_id)
        answer = self.call(
            "POST",
            f"/{entity.lower()}",
            params={"operation": "void", "requestid": request_id},
            json={"Id": object_id, "SyncToken": current["SyncToken"]},
            description=f"QuickBooks void {entity} {object_id}",
        )
        record = answer[entity]
        return PostedObject(entity=entity, object_id=str(record["Id"]), sync_token=str(record.get("SyncToken", "0")), body=record)

    def _write(self, entity: str, body: dict[str, Any], request_id: str) -> PostedObject:
        if len(request_id) > REQUEST_ID_MAX:
            raise ValueError(f"requestid {request_id!r} is longer than {REQUEST_ID_MAX} characters")
        answer = self.call(
            "POST", f"/{entity.lower()}", params={"requestid": request_id}, json=body, description=f"QuickBooks {entity} write {request_id}"
        )
        record = answer[entity]
        return PostedObject(entity=entity, object_id=str(record["Id"]), sync_token=str(record.get("SyncToken", "0")), body=record)

    # --- the accounting interface the flows use (backbone.hooks.accounting.AccountingSystem) ----
    def reference_records(self) -> Iterator[ReferenceRecord]:
        for entity in ("Customer", "Employee", "Vendor", "Item", "TaxCode"):
            for page in self.query_all(entity, "Active = true"):
                for record in page:
                    if entity in ("Employee", "Vendor"):
                        key = normalise(((record.get("PrimaryEmailAddr") or {}).get("Address")) or "")
                    else:
                        key = normalise(record.get("DisplayName") or record.get("Name") or "")
                    extra = {}
                    if entity == "Item":
                        extra["income_account"] = (record.get("IncomeAccountRef") or {}).get("name")
                    if entity == "Customer":
                        extra["currency"] = (record.get("CurrencyRef") or {}).get("value")
                    name = str(record.get("DisplayName") or record.get("Name") or "")
                    yield ReferenceRecord(entity, key, str(record["Id"]), name, extra)
        for page in self.query_all("Account", "Active = true"):
            for record in page:
                name = account_name(record)
                yield ReferenceRecord("Account", normalise(name), str(record["Id"]), name, {"type": record.get("AccountType")})

    def post_time_entry(self, line: OutboxLine, *, target: str | None, request_id: str) -> PostedObject:
        body = time_activity_body(line)
        if target is not None:
            return self.update(TIME_ENTITY, target, body, request_id=request_id)
        return self.create(TIME_ENTITY, body, request_id=request_id)

    def create_time_entries(self, lines: list[OutboxLine]) -> list[PostedObject | FatalApiError]:
        """Create new time activities in one ``POST /batch`` call: one answer per line, in order,
        each the created object or the ``RejectedByAccounting`` its item's ``Fault`` names (one
        refused item leaves the others standing). The call's ``requestid`` is derived from the
        lines' own, so a retry of a batch whose answer was lost replays it (Intuit supports
        requestid on batch calls) instead of creating twice."""
        if not lines:
            return []
        if len(lines) > BATCH_MAX_ITEMS:
            raise ValueError(f"a QuickBooks batch holds at most {BATCH_MAX_ITEMS} items, not {len(lines)}")
        items = [{"bId": str(n), "operation": "create", TIME_ENTITY: time_activity_body(line)} for n, line in enumerate(lines)]
        request_id = request_id_for("batch", *(str(line["request_id"]) for line in lines))
        answer = self.call(
            "POST",
            "/batch",
            params={"requestid": request_id},
            json={"BatchItemRequest": items},
            limiter=self.batch_limiter,
            description=f"QuickBooks batch of {len(items)} TimeActivity creates",
        )
        by_id = {str(item.get("bId")): item for item in (answer or {}).get("BatchItemResponse") or []}
        missing = [str(n) for n in range(len(lines)) if str(n) not in by_id]
        if missing:  # an answer that does not say what became of an item: the lines stay pending and are looked up next time
            raise RetriableApiError(f"QuickBooks batch answer lacks items {', '.join(missing)}")
        results: list[PostedObject | FatalApiError] = []
        for n in range(len(lines)):
            item = by_id[str(n)]
            if "Fault" in item:
                errors = (item["Fault"] or {}).get("Error") or [{}]
                message = "; ".join(f"{e.get('Message', 'rejected')}: {e.get('Detail', '')} (code {e.get('code', '?')})" for e in errors)
                results.append(FatalApiError(f"QuickBooks refused the TimeActivity: {message}", status=400))
                continue
            record = item[TIME_ENTITY]
            results.append(PostedObject(TIME_ENTITY, str(record["Id"]), str(record.get("SyncToken", "0")), record))
        return results

    def find_time_entry(self, line: OutboxLine) -> PostedObject | None:
        """The TimeActivity of this entry version, looked up on its work date by the description's
        key. QuickBooks keeps requestids for a limited time only, so a create whose answer was lost
        is looked up before it is sent again (as invoices are by DocNumber)."""
        marker = time_entry_marker(line)
        work_date = line["work_date"].isoformat() if isinstance(line["work_date"], date) else str(line["work_date"])
        for page in self.query_all(TIME_ENTITY, f"TxnDate = '{work_date}'"):
            for record in page:
                if str(record.get("Description") or "").startswith(marker):
                    return PostedObject(TIME_ENTITY, str(record["Id"]), str(record.get("SyncToken")), record)
        return None

    def delete_time_entry(self, object_id: str, *, request_id: str) -> bool:
        return self.delete_transaction(TIME_ENTITY, object_id, request_id=request_id)

    def delete_transaction(self, entity: str, object_id: str, *, request_id: str) -> bool:
        """``POST /{entity}?operation=delete`` with the current ``SyncToken``; an object already
        gone (QuickBooks answers 400 "Object Not Found", code 610) counts as deleted before."""
        try:
            current = self.read(entity, object_id)
        except FatalApiError as exc:
            if "Object Not Found" in str(exc):
                return False
            raise
        self.call(
            "POST",
            f"/{entity.lower()}",
            params={"operation": "delete", "requestid": request_id},
            json={"Id": object_id, "SyncToken": current["SyncToken"]},
            description=f"QuickBooks delete {entity} {object_id}",
        )
        return True

    def post_expense(self, line: ExpenseLine, *, target: str | None, request_id: str) -> PostedObject:
        entity, body = EXPENSE_ENTITY[line["kind"]], expense_body(line)
        if target is not None:
            return self.update(entity, target, body, request_id=request_id)
        return self.create(entity, body, request_id=request_id)

    def find_expense(self, line: ExpenseLine) -> PostedObject | None:
        entity = EXPENSE_ENTITY[line["kind"]]
        found = self.find_by_doc_number(entity, line["doc_number"])
        return PostedObject(entity, str(found["Id"]), str(found.get("SyncToken", "0")), found) if found is not None else None

    def delete_expense(self, kind: ExpenseKind, object_id: str, *, request_id: str) -> bool:
        return self.delete_transaction(EXPENSE_ENTITY[kind], object_id, request_id=request_id)

    def find_journal(self, journal: ActualsJournal) -> str | None:
        found = self.find_by_doc_number("JournalEntry", journal["doc_number"])
        return str(found["Id"]) if found is not None else None

    def create_journal(self, journal: ActualsJournal, *, request_id: str) -> PostedObject:
        return self.create("JournalEntry", journal_entry_body(journal), request_id=request_id)

    def project_budgets(self, start: date, end: date) -> Iterator[ProjectBudget]:
        """Active ``Budget`` details dated in ``[start, end)`` that name a class (QuickBooks tracks
        projects by class here), summed per class and month over their accounts."""
        amounts: dict[tuple[str, str], tuple[Decimal, str]] = {}
        for page in self.query_all("Budget", "Active = true"):
            for budget in page:
                for detail in budget.get("BudgetDetail") or []:
                    day, klass = str(detail.get("BudgetDate") or "")[:10], (detail.get("ClassRef") or {}).get("name")
                    if not klass or not day or not (start.isoformat() <= day < end.isoformat()):
                        continue
                    key = (str(klass).split()[0], day[:7])
                    amount, _ = amounts.get(key, (Decimal(0), ""))
                    amounts[key] = (amount + Decimal(str(detail.get("Amount") or 0)), str(budget.get("Name") or ""))
        for (project_id, period), (amount, name) in sorted(amounts.items()):
            yield ProjectBudget(project_id, period, amount, name)

    def find_invoice(self, kind: InvoiceKind, number: str) -> tuple[str, Decimal] | None:
        found = self.find_by_doc_number(SALES_ENTITY[kind], number)
        return (str(found["Id"]), Decimal(str(found.get("TotalAmt", 0)))) if found is not None else None

    def create_invoice(
        self, kind: InvoiceKind, row: InvoiceRow, lines: list[InvoiceLine], tax_ref_id: str | None, *, request_id: str
    ) -> PostedObject:
        return self.create(SALES_ENTITY[kind], invoice_body(row, lines, tax_ref_id), request_id=request_id)

    def void_invoice(self, kind: InvoiceKind, object_id: str, *, request_id: str) -> PostedObject:
        """An invoice is voided (``operation=void``: amounts zero, record and number kept). QuickBooks
        has **no void for a CreditMemo**: its API reference lists create, read, query, update,
        delete, send and PDF for it, and Intuit-listed python-quickbooks gives ``CreditMemo`` a
        delete but no void (its void map: Invoice, Payment, SalesReceipt, BillPayment). So a credit
        note the PSA voided is deleted (``operation=delete``), which takes its amount off the books
        as a void would; one already gone counts as done."""
        entity = SALES_ENTITY[kind]
        if entity == "CreditMemo":
            self.delete_transaction(entity, object_id, request_id=request_id)
            return PostedObject(entity=entity, object_id=object_id, sync_token="", body={"status": "Deleted", "Id": object_id})
        return self.void(entity, object_id, request_id=request_id)

    def payments_since(self, moment: datetime) -> Iterator[AccountingPayment]:
        since = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S-00:00")
        for page in self.query_all("Payment", f"MetaData.LastUpdatedTime >= '{since}'"):
            for record in page:
                linked = sorted(
                    {
                        str(t["TxnId"])
                        for line in record.get("Line") or []
                        for t in line.get("LinkedTxn") or []
                        if t.get("TxnType") == "Invoice"
                    }
                )
                yield AccountingPayment(
                    accounting_id=str(record["Id"]),
                    customer_ref_id=(record.get("CustomerRef") or {}).get("value"),
                    amount=Decimal(str(record.get("TotalAmt", 0))),
                    currency=(record.get("CurrencyRef") or {}).get("value"),
                    txn_date=date.fromisoformat(record["TxnDate"]) if record.get("TxnDate") else None,
                    invoice_accounting_ids=linked,
                    last_updated=datetime.fromisoformat(record["MetaData"]["LastUpdatedTime"]),
                )

    def invoice_balances(self, invoice_ids: Iterable[str]) -> dict[str, Decimal]:
        ids = [i for i in dict.fromkeys(invoice_ids) if i.isdigit()]
        balances: dict[str, Decimal] = {}
        for start in range(0, len(ids), ID_BATCH):
            quoted = ", ".join(f"'{i}'" for i in ids[start : start + ID_BATCH])
            for page in self.query_all("Invoice", f"Id IN ({quoted})"):
                balances.update({str(r["Id"]): Decimal(str(r.get("Balance", 0))) for r in page})
        return balances


def account_name(record: dict[str, Any]) -> str:
    """An Account as the mapping names GL accounts: ``"<AcctNum> <Name>"`` (just the name when it
    already starts with its number, or has none)."""
    name, number = str(record.get("Name") or ""), str(record.get("AcctNum") or "")
    return f"{number} {name}" if number and not name.startswith(number) else name


def time_activity_body(line: OutboxLine) -> dict[str, Any]:
    """An outbox line → QuickBooks ``TimeActivity`` (element names from Finance.xsd)."""
    ref_field = "VendorRef" if line["name_of"] == "Vendor" else "EmployeeRef"
    minutes = int(line["minutes"])
    return {
        "TxnDate": line["work_date"].isoformat() if isinstance(line["work_date"], date) else str(line["work_date"]),
        "NameOf": "Vendor" if line["name_of"] == "Vendor" else "Employee",
        ref_field: {"value": line["person_ref_id"], "name": line["person_name"]},
        "CustomerRef": {"value": line["customer_ref_id"], "name": line["client_name"]},
        "ItemRef": {"value": line["item_ref_id"], "name": line["item_name"]},
        "BillableStatus": line["billable_status"],
        "HourlyRate": float(line["hourly_rate"]),
        "Hours": minutes // 60,
        "Minutes": minutes % 60,
        "Description": time_entry_description(line)[:4000],
    }


def expense_body(line: ExpenseLine) -> dict[str, Any]:
    """An expense outbox line → QuickBooks ``Bill`` or ``Purchase`` with one account-based line
    (amounts tax included: ``GlobalTaxCalculation`` TaxInclusive). A billable expense names the
    customer and is ``Billable``, so QuickBooks offers it on the customer's next invoice."""
    detail: dict[str, Any] = {
        "AccountRef": {"value": line["account_ref_id"]},
        "BillableStatus": "Billable" if line["billable"] else "NotBillable",
    }
    if line["billable"] and line.get("customer_ref_id"):
        detail["CustomerRef"] = {"value": line["customer_ref_id"], "name": line.get("client_name")}
    if line.get("tax_ref_id"):
        detail["TaxCodeRef"] = {"value": line["tax_ref_id"]}
    spent = line["spent_date"]
    body: dict[str, Any] = {
        "DocNumber": line["doc_number"],
        "TxnDate": spent.isoformat() if isinstance(spent, date) else str(spent),
        "CurrencyRef": {"value": line["currency"]},
        "GlobalTaxCalculation": "TaxInclusive",
        "PrivateNote": line["description"][:4000],
        "Line": [
            {
                "Amount": float(line["amount"]),
                "Description": line["description"][:4000],
                "DetailType": "AccountBasedExpenseLineDetail",
                "AccountBasedExpenseLineDetail": detail,
            }
        ],
    }
    if line.get("exchange_rate") is not None:
        body["ExchangeRate"] = float(line["exchange_rate"])  # type: ignore[arg-type]
    if line["kind"] == "bill":
        body["VendorRef"] = {"value": line["payee_ref_id"], "name": line.get("person_name")}
    else:
        body.update(PaymentType="CreditCard", AccountRef={"value": line["paid_from_ref_id"]})
    return body


def journal_entry_body(journal: ActualsJournal) -> dict[str, Any]:
    """A QuickBooks ``JournalEntry`` of two lines: debit and credit of the same amount (a negative
    journal swaps them, as QuickBooks amounts are positive), the debit naming the project's customer
    (``JournalEntryLineDetail.Entity``) so reports by customer show the project's cost."""
    amount = Decimal(str(journal["amount"]))
    debit, credit = journal["debit_account_ref_id"], journal["credit_account_ref_id"]
    if amount < 0:
        debit, credit = credit, debit
    customer = journal.get("customer_ref_id")

    def line(posting: str, account: str, with_customer: bool) -> dict[str, Any]:
        detail: dict[str, Any] = {"PostingType": posting, "AccountRef": {"value": account}}
        if with_customer and customer:
            detail["Entity"] = {"Type": "Customer", "EntityRef": {"value": customer}}
        return {
            "Amount": float(abs(amount)),
            "Description": journal["description"][:4000],
            "DetailType": "JournalEntryLineDetail",
            "JournalEntryLineDetail": detail,
        }

    return {
        "DocNumber": journal["doc_number"],
        "TxnDate": str(journal["journal_date"]),
        "PrivateNote": journal["description"][:4000],
        "Line": [line("Debit", debit, amount >= 0), line("Credit", credit, amount < 0)],
    }


def invoice_body(row: InvoiceRow, lines: list[InvoiceLine], tax_ref_id: str | None) -> dict[str, Any]:
    """An outbox invoice → QuickBooks ``Invoice`` / ``CreditMemo`` (SalesTransaction names from Finance.xsd)."""
    body: dict[str, Any] = {
        "DocNumber": row["number"],
        "TxnDate": row["issue_date"].isoformat(),
        "CustomerRef": {"value": row["customer_ref_id"], "name": row["client_name"]},
        "CurrencyRef": {"value": row["currency"]},
        "PrivateNote": invoice_note(row),
        "Line": [
            {
                "LineNum": n,
                "Amount": float(line["amount"]),
                "Description": (line["description"] or "")[:4000],
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {
                    "ItemRef": {"value": line["item_ref_id"]},
                    "Qty": float(line["quantity"]),
                    "UnitPrice": float(line["rate"]),
                    **({"TaxCodeRef": {"value": tax_ref_id}} if tax_ref_id else {}),
                },
            }
            for n, line in enumerate(lines, start=1)
        ],
        "TxnTaxDetail": {"TotalTax": float(row["tax_amount"])},
    }
    if row["kind"] == "invoice":
        body["DueDate"] = row["due_date"].isoformat()
    return body
