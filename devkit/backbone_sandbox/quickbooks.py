"""QuickBooks Online Accounting API (v3) as the hooks meet it: OAuth2, entities, query, limits.

Wire format follows Intuit's XSDs (``../shared/specs/quickbooks``): entity element names as JSON
keys, attributes as plain keys (``QueryResponse.startPosition``), references as
``{"value": id, "name": ...}``, errors as ``{"Fault": {"Error": [{"Message", "Detail", "code"}],
"type"}}``. Behaviour from Intuit's docs: ``?requestid=`` makes a repeated write return the
original response without a second object; 500 requests a minute and 10 concurrent requests per
company, else 429; ``POST /batch`` with up to 30 items a call and 40 batch calls a minute (Intuit's
"API call limits and throttles" page; its batch page names 10 items as a guideline), each item
answered on its own (an object or a ``Fault``), the whole batch replayed for a known requestid;
query pages of at most 1000 with ``STARTPOSITION``/``MAXRESULTS``; OAuth refresh tokens rotate
(here on every refresh, and the old one stops working).
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from backbone_devtools.localenv import QBO_CLIENT_ID as CLIENT_ID
from backbone_devtools.localenv import QBO_CLIENT_SECRET as CLIENT_SECRET
from backbone_devtools.localenv import QBO_INITIAL_REFRESH_TOKEN as INITIAL_REFRESH_TOKEN
from backbone_devtools.localenv import QBO_REALM_ID as REALM_ID
from backbone_sandbox.errors import answer_bad_requests
from backbone_sandbox.limits import SlidingWindowLimit
from backbone_sandbox.store import PicklableLockMixin, RotatingTokenIssuer, add_refresh_token_route

ENTITIES = {
    "timeactivity": "TimeActivity",
    "customer": "Customer",
    "employee": "Employee",
    "vendor": "Vendor",
    "item": "Item",
    "account": "Account",
    "invoice": "Invoice",
    "creditmemo": "CreditMemo",
    "payment": "Payment",
    "taxcode": "TaxCode",
    "purchase": "Purchase",
    "bill": "Bill",
    "journalentry": "JournalEntry",
    "budget": "Budget",
}
MAX_RESULTS = 1000
BATCH_MAX_ITEMS = 30
"""Intuit's limits page: "Recommended maximum number of payloads in a single batch request is 30"."""
BATCH_OPERATIONS = ("create", "update", "delete", "void")
QUERY = re.compile(
    r"^\s*select\s+(?P<what>\*(?:\s*,\s*[\w.]+)*|count\(\*\)|[\w.]+(?:\s*,\s*[\w.]+)*)\s+from\s+(?P<entity>\w+)"
    r"(?:\s+where\s+(?P<where>.+?))?"
    r"(?:\s+orderby\s+(?P<order>[\w.]+)(?:\s+(?P<direction>asc|desc))?)?"
    r"(?:\s+startposition\s+(?P<start>\d+))?"
    r"(?:\s+maxresults\s+(?P<max>\d+))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
CONDITION = re.compile(
    r"^\s*(?P<field>[\w.]+)\s*(?P<op><=|>=|<>|=|<|>|\bin\b|\blike\b)\s*(?P<value>'(?:[^'\\]|\\.)*'|\(.*\)|\S+)\s*$", re.IGNORECASE
)


class QboFault(Exception):
    def __init__(self, status: int, code: str, message: str, detail: str, fault_type: str = "ValidationFault"):
        self.status, self.code, self.message, self.detail, self.fault_type = status, code, message, detail, fault_type


def fault_body(exc: QboFault) -> dict[str, Any]:
    return {"Error": [{"Message": exc.message, "Detail": exc.detail, "code": exc.code}], "type": exc.fault_type}


def fault_response(exc: QboFault) -> JSONResponse:
    return JSONResponse({"Fault": fault_body(exc), "time": _now_text()}, status_code=exc.status)


def _now_text() -> str:
    return datetime.now(UTC).astimezone().isoformat(timespec="milliseconds")


class QuickBooksStore(RotatingTokenIssuer, PicklableLockMixin):
    """One company (realm): its entities, issued tokens and the requestid memory."""

    token_prefix = "qbo"
    access_lifetime = timedelta(hours=1)
    token_answer = {"token_type": "bearer", "x_refresh_token_expires_in": 8726400}

    def __init__(self) -> None:
        self.entities: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in ENTITIES.values()}
        self.next_id = 1
        self.request_results: dict[str, tuple[int, dict[str, Any]]] = {}
        self.refresh_tokens = {INITIAL_REFRESH_TOKEN}
        self.access_tokens: dict[str, datetime] = {}
        self.creates: dict[str, int] = {}
        self.updates: dict[str, int] = {}
        self.deletes: dict[str, int] = {}
        self.replays = 0
        self.batches = 0
        self.token_refreshes = 0
        self._lock = threading.Lock()

    # --- reference data -------------------------------------------------------------------------
    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for name in ENTITIES.values():  # a state saved before an entity was served has none of it
            self.entities.setdefault(name, {})

    def add(self, entity: str, fields: dict[str, Any], *, at: datetime | None = None) -> dict[str, Any]:
        with self._lock:
            return self._insert(entity, fields, at or datetime.now(UTC))

    def _insert(self, entity: str, fields: dict[str, Any], at: datetime) -> dict[str, Any]:
        record = {
            **fields,
            "Id": str(self.next_id),
            "SyncToken": "0",
            "domain": "QBO",
            "sparse": False,
            "MetaData": {"CreateTime": _qbo_time(at), "LastUpdatedTime": _qbo_time(at)},
        }
        self.next_id += 1
        self.entities[entity][record["Id"]] = record
        return record

    # --- writes ---------------------------------------------------------------------------------
    def write(
        self, entity: str, body: dict[str, Any], request_id: str | None, *, operation: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Create (no ``Id``), full-update (``Id`` + current ``SyncToken``) or void; a known requestid replays."""
        with self._lock:
            if request_id and request_id in self.request_results:
                self.replays += 1
                return self.request_results[request_id]
            now = datetime.now(UTC)
            if operation == "void":
                return self._void(entity, body, request_id, now)
            if operation == "delete":
                return self._delete(entity, body, request_id)
            self._check_references(entity, body)
            body = self._derive_totals(entity, body)
            if body.get("Id"):
                current = self.entities[entity].get(str(body["Id"]))
                if current is None:
                    raise QboFault(
                        400,
                        "610",
                        "Object Not Found",
                        "Object Not Found : Something you're trying to use has been made inactive. Check the fields with accounts, "
                        f"customers, items, vendors or employees. ({entity} {body['Id']})",
                    )
                if str(body.get("SyncToken")) != current["SyncToken"]:
                    raise QboFault(
                        400,
                        "5010",
                        "Stale Object Error",
                        f"Stale Object Error : You and {current['SyncToken']} were working on this at the same time. SyncToken "
                        f"{body.get('SyncToken')} is not the current one.",
                    )
                record = {
                    **body,
                    "Id": current["Id"],
                    "SyncToken": str(int(current["SyncToken"]) + 1),
                    "domain": "QBO",
                    "sparse": False,
                    "MetaData": {"CreateTime": current["MetaData"]["CreateTime"], "LastUpdatedTime": _qbo_time(now)},
                }
                self.entities[entity][record["Id"]] = record
                self.updates[entity] = self.updates.get(entity, 0) + 1
            else:
                record = self._insert(entity, {k: v for k, v in body.items() if k not in ("Id", "SyncToken", "MetaData")}, now)
                self.creates[entity] = self.creates.get(entity, 0) + 1
            result = (200, {entity: record, "time": _now_text()})
            if request_id:
                self.request_results[request_id] = result
            return result

    def _current(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        """The object a void or delete names, refused as QuickBooks does when it is unknown or the SyncToken is stale."""
        current = self.entities[entity].get(str(body.get("Id")))
        if current is None:
            raise QboFault(400, "610", "Object Not Found", f"Object Not Found : {entity} {body.get('Id')}")
        if str(body.get("SyncToken")) != current["SyncToken"]:
            raise QboFault(
                400, "5010", "Stale Object Error", f"Stale Object Error : SyncToken {body.get('SyncToken')} is not the current one."
            )
        return current

    VOIDABLE = frozenset({"Invoice", "Payment", "SalesReceipt", "BillPayment"})
    """Entities QuickBooks can void (its API reference; python-quickbooks' void map is the same).
    A CreditMemo cannot: it is deleted instead."""

    def _void(self, entity: str, body: dict[str, Any], request_id: str | None, now: datetime) -> tuple[int, dict[str, Any]]:
        if entity not in self.VOIDABLE:
            raise QboFault(400, "2010", "Request has invalid or unsupported property", f"Operation void is not supported for {entity}")
        current = self._current(entity, body)
        current.update(TotalAmt=0, Balance=0, PrivateNote="Voided", SyncToken=str(int(current["SyncToken"]) + 1))
        current["MetaData"]["LastUpdatedTime"] = _qbo_time(now)
        self.updates[entity] = self.updates.get(entity, 0) + 1
        result = (200, {entity: current, "time": _now_text()})
        if request_id:
            self.request_results[request_id] = result
        return result

    def _delete(self, entity: str, body: dict[str, Any], request_id: str | None) -> tuple[int, dict[str, Any]]:
        """``?operation=delete`` (transactions such as TimeActivity): the object is gone; the answer
        names it with ``status: Deleted``, as QuickBooks does."""
        current = self._current(entity, body)
        del self.entities[entity][current["Id"]]
        self.deletes[entity] = self.deletes.get(entity, 0) + 1
        result = (200, {entity: {"status": "Deleted", "domain": "QBO", "Id": current["Id"]}, "time": _now_text()})
        if request_id:
            self.request_results[request_id] = result
        return result

    def batch(self, items: list[dict[str, Any]], request_id: str | None) -> dict[str, Any]:
        """``POST /batch``: the items one after another, each answered with its object (or its query
        result) or its own ``Fault``; one item's fault never undoes the others. A known requestid
        replays the whole answer."""
        if request_id and request_id in self.request_results:
            with self._lock:
                self.replays += 1
            return self.request_results[request_id][1]
        result = {"BatchItemResponse": [{"bId": item.get("bId"), **self._batch_item(item)} for item in items], "time": _now_text()}
        with self._lock:
            if request_id:
                self.request_results[request_id] = (200, result)
            self.batches = getattr(self, "batches", 0) + 1  # a state saved before batches existed has no counter
        return result

    def _batch_item(self, item: dict[str, Any]) -> dict[str, Any]:
        try:
            if "Query" in item:
                return self.query(str(item["Query"]))
            entities = [key for key in item if key in ENTITIES.values()]
            operation = str(item.get("operation") or "")
            if len(entities) != 1 or operation not in BATCH_OPERATIONS:
                raise QboFault(
                    400, "2010", "Request has invalid or unsupported property", "a batch item needs bId, operation and one entity"
                )
            entity = entities[0]
            body = item[entity]
            if operation == "create" and body.get("Id"):
                raise QboFault(400, "2010", "Request has invalid or unsupported property", "a create carries no Id")
            _, payload = self.write(entity, body, None, operation=operation if operation in ("delete", "void") else None)
            return {entity: payload[entity]}
        except QboFault as fault:
            return {"Fault": fault_body(fault)}

    def _derive_totals(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        if entity not in ("Invoice", "CreditMemo"):
            return body
        lines = [line for line in body.get("Line") or [] if line.get("DetailType") == "SalesItemLineDetail"]
        subtotal = sum(Decimal(str(line.get("Amount", 0))) for line in lines)
        tax = Decimal(str((body.get("TxnTaxDetail") or {}).get("TotalTax", 0)))
        total = subtotal + tax
        derived = {**body, "TotalAmt": float(total)}
        if entity == "Invoice":
            derived["Balance"] = float(total)
            if "DocNumber" in body and any(
                i.get("DocNumber") == body["DocNumber"] and i["Id"] != str(body.get("Id")) for i in self.entities["Invoice"].values()
            ):
                raise QboFault(
                    400,
                    "6140",
                    "Duplicate Document Number Error",
                    "Duplicate Document Number Error : You must specify a different number. This number has already been used. "
                    f"DocNumber={body['DocNumber']}",
                )
        else:
            derived["RemainingCredit"] = float(total)
        return derived

    def pay(self, invoice_id: str, amount: Decimal, *, at: datetime | None = None) -> dict[str, Any]:
        """A customer payment applied to one invoice (what finance records in QuickBooks)."""
        with self._lock:
            now = at or datetime.now(UTC)
            invoice = self.entities["Invoice"][invoice_id]
            payment = self._insert(
                "Payment",
                {
                    "CustomerRef": invoice["CustomerRef"],
                    "TotalAmt": float(amount),
                    "CurrencyRef": invoice.get("CurrencyRef"),
                    "TxnDate": now.date().isoformat(),
                    "Line": [{"Amount": float(amount), "LinkedTxn": [{"TxnId": invoice_id, "TxnType": "Invoice"}]}],
                },
                now,
            )
            invoice["Balance"] = float(Decimal(str(invoice["Balance"])) - amount)
            invoice["SyncToken"] = str(int(invoice["SyncToken"]) + 1)
            invoice.setdefault("LinkedTxn", []).append({"TxnId": payment["Id"], "TxnType": "Payment"})
            invoice["MetaData"]["LastUpdatedTime"] = _qbo_time(now)
            return payment

    def _check_references(self, entity: str, body: dict[str, Any]) -> None:
        if entity in ("Invoice", "CreditMemo"):
            self._check_sales(body)
        elif entity in ("Purchase", "Bill"):
            self._check_expense(entity, body)
        elif entity == "JournalEntry":
            self._check_journal(body)
        elif entity == "TimeActivity":
            self._check_time_activity(body)

    def _check_sales(self, body: dict[str, Any]) -> None:
        customer = (body.get("CustomerRef") or {}).get("value")
        if str(customer) not in self.entities["Customer"]:
            raise QboFault(400, "2500", "Invalid Reference Id", f"Invalid Reference Id : Customer {customer} does not exist")
        for line in body.get("Line") or []:
            detail = line.get("SalesItemLineDetail") or {}
            item = (detail.get("ItemRef") or {}).get("value")
            if line.get("DetailType") == "SalesItemLineDetail" and str(item) not in self.entities["Item"]:
                raise QboFault(400, "2500", "Invalid Reference Id", f"Invalid Reference Id : Item {item} does not exist")
            tax_code = (detail.get("TaxCodeRef") or {}).get("value")
            if tax_code is not None and str(tax_code) not in self.entities["TaxCode"]:
                raise QboFault(400, "2500", "Invalid Reference Id", f"Invalid Reference Id : TaxCode {tax_code} does not exist")

    def _check_time_activity(self, body: dict[str, Any]) -> None:
        name_of = body.get("NameOf")
        if name_of not in ("Employee", "Vendor"):
            raise QboFault(
                400,
                "2020",
                "Required param missing, need to supply the required value for the API",
                "Required parameter NameOf (Employee or Vendor) is missing in the request",
            )
        ref_field = "EmployeeRef" if name_of == "Employee" else "VendorRef"
        for field, target in ((ref_field, name_of), ("CustomerRef", "Customer"), ("ItemRef", "Item")):
            value = (body.get(field) or {}).get("value")
            if field == ref_field and value is None:
                raise QboFault(
                    400,
                    "2020",
                    "Required param missing, need to supply the required value for the API",
                    f"Required parameter {field} is missing in the request",
                )
            if value is not None and str(value) not in self.entities[target]:
                raise QboFault(
                    400,
                    "2500",
                    "Invalid Reference Id",
                    f"Invalid Reference Id : {target} assigned to this transaction has been deleted or does not exist ({value})",
                )
        for field in ("Hours", "Minutes"):
            if field in body and (not isinstance(body[field], int) or body[field] < 0):
                raise QboFault(400, "2030", "Invalid ID", f"{field} must be a whole number of at least 0")
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(body.get("TxnDate") or "")):
            raise QboFault(400, "2030", "Invalid date", f"TxnDate {body.get('TxnDate')!r} is not a date (YYYY-MM-DD)")

    def _check_journal(self, body: dict[str, Any]) -> None:
        """What QuickBooks refuses on a JournalEntry: a line that is not a journal line, an unknown
        account or customer, a posting type other than Debit or Credit, debits and credits that differ."""
        totals = {"Debit": Decimal(0), "Credit": Decimal(0)}
        for line in body.get("Line") or []:
            detail = line.get("JournalEntryLineDetail") or {}
            if line.get("DetailType") != "JournalEntryLineDetail" or detail.get("PostingType") not in totals:
                raise QboFault(
                    400,
                    "2020",
                    "Required param missing, need to supply the required value for the API",
                    "Required parameter Line.JournalEntryLineDetail.PostingType is missing in the request",
                )
            account = (detail.get("AccountRef") or {}).get("value")
            if str(account) not in self.entities["Account"]:
                raise QboFault(400, "2500", "Invalid Reference Id", f"Invalid Reference Id : Account {account} does not exist")
            entity_ref = ((detail.get("Entity") or {}).get("EntityRef") or {}).get("value")
            if entity_ref is not None and str(entity_ref) not in self.entities["Customer"]:
                raise QboFault(400, "2500", "Invalid Reference Id", f"Invalid Reference Id : Customer {entity_ref} does not exist")
            totals[detail["PostingType"]] += Decimal(str(line.get("Amount", 0)))
        if not body.get("Line") or totals["Debit"] != totals["Credit"]:
            raise QboFault(
                400,
                "6000",
                "A business validation error has occurred while processing your request",
                "Business Validation Error: Transactions must balance: debits and credits are not equal",
            )

    def _check_expense(self, entity: str, body: dict[str, Any]) -> None:
        """What QuickBooks refuses on a Purchase or Bill: a missing or unknown payee, paying
        account, line account, customer or tax code, and a line that is not account-based."""

        def known(ref: Any, target: str, field: str) -> None:
            value = (ref or {}).get("value")
            if value is None:
                raise QboFault(
                    400,
                    "2020",
                    "Required param missing, need to supply the required value for the API",
                    f"Required parameter {field} is missing",
                )
            if str(value) not in self.entities[target]:
                raise QboFault(400, "2500", "Invalid Reference Id", f"Invalid Reference Id : {target} {value} does not exist ({field})")

        if entity == "Bill":
            known(body.get("VendorRef"), "Vendor", "VendorRef")
        else:
            if body.get("PaymentType") not in ("Cash", "Check", "CreditCard"):
                raise QboFault(400, "2020", "Required param missing, need to supply the required value for the API", "PaymentType")
            known(body.get("AccountRef"), "Account", "AccountRef")
        lines = body.get("Line") or []
        if not lines:
            raise QboFault(400, "2020", "Required param missing, need to supply the required value for the API", "Line")
        for line in lines:
            if line.get("DetailType") != "AccountBasedExpenseLineDetail":
                raise QboFault(400, "2010", "Request has invalid or unsupported property", f"DetailType {line.get('DetailType')!r}")
            detail = line.get("AccountBasedExpenseLineDetail") or {}
            known(detail.get("AccountRef"), "Account", "AccountBasedExpenseLineDetail.AccountRef")
            if detail.get("CustomerRef") is not None:
                known(detail["CustomerRef"], "Customer", "CustomerRef")
            if detail.get("TaxCodeRef") is not None:
                known(detail["TaxCodeRef"], "TaxCode", "TaxCodeRef")
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(body.get("TxnDate") or "")):
            raise QboFault(400, "2030", "Invalid date", f"TxnDate {body.get('TxnDate')!r} is not a date (YYYY-MM-DD)")
        if len(str(body.get("DocNumber") or "")) > 21:
            raise QboFault(400, "2050", "String length is either shorter or longer than supported by specification", "DocNumber: max 21")

    # --- query ----------------------------------------------------------------------------------
    def query(self, statement: str) -> dict[str, Any]:
        match = QUERY.match(statement)
        if not match:
            raise QboFault(400, "4000", "Error parsing query", f"QueryParserError: Encountered an unexpected token in {statement!r}")
        entity = next((name for name in self.entities if name.lower() == match["entity"].lower()), None)
        if entity is None:
            raise QboFault(400, "4001", "Invalid query", f"QueryValidationError: unknown entity {match['entity']}")
        conditions = [_condition(part) for part in _split_and(match["where"])] if match["where"] else []
        with self._lock:
            rows = [r for r in self.entities[entity].values() if all(_holds(r, c) for c in conditions)]
        if match["what"].lower().startswith("count"):
            return {"QueryResponse": {"totalCount": len(rows)}, "time": _now_text()}
        order = match["order"] or "Id"
        rows.sort(key=lambda r: _sortable(_field(r, order)), reverse=(match["direction"] or "").lower() == "desc")
        start = int(match["start"] or 1)
        max_results = int(match["max"] or 100)
        if max_results > MAX_RESULTS:
            raise QboFault(400, "4001", "Invalid query", f"QueryValidationError: MAXRESULTS may be at most {MAX_RESULTS}")
        page = rows[start - 1 : start - 1 + max_results]
        fields = [f.strip() for f in match["what"].split(",")]
        if "*" not in fields:  # a field list: those fields and the Id, marked sparse (as QuickBooks answers)
            page = [{"Id": r.get("Id"), **{f: r[f] for f in fields if f in r}, "sparse": True} for r in page]
        if not page:
            return {"QueryResponse": {}, "time": _now_text()}
        return {"QueryResponse": {entity: page, "startPosition": start, "maxResults": len(page)}, "time": _now_text()}


def _split_and(where: str) -> list[str]:
    """A WHERE clause's conditions: split on AND outside quoted values (``DisplayName = 'Smith and Sons'``
    is one condition; a quote inside a value is escaped with a backslash)."""
    parts, current, quoted, escaped = [], [], False, False
    i = 0
    while i < len(where):
        ch = where[i]
        if not quoted and re.match(r"\s+and\s+", where[i:], re.IGNORECASE) and (i == 0 or where[i].isspace()):
            gap = re.match(r"\s+and\s+", where[i:], re.IGNORECASE)
            parts.append("".join(current))
            current = []
            i += gap.end()
            continue
        current.append(ch)
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "'":
            quoted = not quoted
        i += 1
    parts.append("".join(current))
    return parts


def _qbo_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + "-00:00"


def _field(record: dict[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, dict) and "value" in value:
        return value["value"]
    return value


def _sortable(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, str) and value.isdigit():
        return (1, int(value))
    return (2, str(value))


def _condition(text: str) -> tuple[str, str, Any]:
    match = CONDITION.match(text)
    if not match:
        raise QboFault(400, "4000", "Error parsing query", f"QueryParserError: cannot read condition {text!r}")
    raw = match["value"]
    if raw.startswith("("):
        value: Any = [v.strip().strip("'") for v in raw[1:-1].split(",")]
    else:
        value = raw.strip("'").replace("\\'", "'")
    return match["field"], match["op"].lower(), value


def _comparable(value: Any) -> Any:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}T.*", value):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            return value
    return str(value) if value is not None else None


def _holds(record: dict[str, Any], condition: tuple[str, str, Any]) -> bool:
    field, op, wanted = condition
    actual = _comparable(_field(record, field))
    if op == "in":
        return actual in {_comparable(w) for w in wanted}
    if op == "like":
        pattern = "^" + re.escape(str(wanted)).replace("%", ".*") + "$"
        return actual is not None and re.match(pattern, str(actual), re.IGNORECASE) is not None
    target = _comparable(wanted)
    if actual is None:
        return False
    try:
        return {
            "=": actual == target,
            "<>": actual != target,
            "<": actual < target,
            ">": actual > target,
            "<=": actual <= target,
            ">=": actual >= target,
        }[op]
    except TypeError:
        return False


def build_quickbooks_app(state: Any) -> FastAPI:
    app = FastAPI(title="QuickBooks Online Accounting API (sandbox)", docs_url=None, redoc_url=None)
    store: QuickBooksStore = state.qbo
    in_flight = state.qbo_in_flight
    in_flight_lock = threading.Lock()

    @app.exception_handler(QboFault)
    async def _fault(_: Request, exc: QboFault) -> JSONResponse:
        return fault_response(exc)

    answer_bad_requests(app, lambda _, detail: fault_response(QboFault(400, "2010", "Request has invalid or unsupported property", detail)))

    add_refresh_token_route(app, "/oauth2/v1/tokens/bearer", store, client=(CLIENT_ID, CLIENT_SECRET), bad_client_status=401)

    def guard(request: Request, realm_id: str, *, batch: bool = False) -> None:
        if realm_id != REALM_ID:
            raise QboFault(
                403,
                "3100",
                "ApplicationAuthorizationFailed",
                f"message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403; realm {realm_id}",
                "AuthorizationFault",
            )
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer ") or not store.token_valid(header.removeprefix("Bearer ")):
            raise QboFault(
                401, "3200", "message=AuthenticationFailed; errorCode=003200; statusCode=401", "Token expired or invalid", "AUTHENTICATION"
            )
        # Batch calls have their own budget (40 a minute per company), beside the 500 of single calls.
        name = "quickbooks-batch" if batch else "quickbooks"
        per_minute = state.config.qbo_batch_requests_per_minute if batch else state.config.qbo_requests_per_minute
        wait = state.limits.setdefault(name, SlidingWindowLimit(per_minute, 60.0)).check(realm_id)
        if wait is not None:
            raise QboFault(
                429,
                "3001",
                "message=ThrottleExceeded; errorCode=003001; statusCode=429",
                f"The request limit of {'batch ' if batch else ''}requests per minute was reached",
                "SERVICE",
            )

    _add_concurrency_limit(app, state, store, guard, in_flight, in_flight_lock)
    _add_batch(app, store, guard)
    _add_api(app, state, store, guard, in_flight, in_flight_lock)
    return app


def _check_request_id(requestid: str | None) -> None:
    if requestid is not None and len(requestid) > 50:
        raise QboFault(400, "6000", "A business validation error has occurred", "requestid must be at most 50 characters")


def _add_batch(app: FastAPI, store: Any, guard: Any) -> None:
    @app.post("/v3/company/{realm_id}/batch")
    def batch(
        realm_id: str, request: Request, body: dict[str, Any], requestid: str | None = None, minorversion: int | None = None
    ) -> dict[str, Any]:
        """Several operations in one call: ``{"BatchItemRequest": [{"bId", "operation", <Entity>: {...}}
        or {"bId", "Query": "SELECT ..."}]}`` → ``{"BatchItemResponse": [{"bId", <Entity> | "QueryResponse" | "Fault"}]}``."""
        guard(request, realm_id, batch=True)
        items = body.get("BatchItemRequest")
        if not isinstance(items, list) or not items:
            raise QboFault(400, "2010", "Request has invalid or unsupported property", "BatchItemRequest must list at least one item")
        if len(items) > BATCH_MAX_ITEMS:
            raise QboFault(
                400, "6000", "A business validation error has occurred", f"a batch holds at most {BATCH_MAX_ITEMS} items, not {len(items)}"
            )
        ids = [str(item.get("bId") or "") for item in items if isinstance(item, dict)]
        if len(ids) != len(items) or "" in ids or len(set(ids)) != len(ids):
            raise QboFault(400, "2010", "Request has invalid or unsupported property", "every batch item needs its own bId")
        _check_request_id(requestid)
        return store.batch(items, requestid)


def _add_concurrency_limit(app: FastAPI, state: Any, store: Any, guard: Any, in_flight: Any, in_flight_lock: Any) -> None:
    @app.middleware("http")
    async def limit_concurrency(request: Request, call_next):  # noqa: ANN001, ANN202 - starlette signature
        if not request.url.path.startswith("/v3/"):
            return await call_next(request)
        with in_flight_lock:
            busy = in_flight["count"] >= state.config.qbo_max_concurrent
            if busy:
                in_flight["rejected"] += 1
            else:
                in_flight["count"] += 1
        if busy:
            return fault_response(
                QboFault(
                    429, "3001", "message=ThrottleExceeded; errorCode=003001; statusCode=429", "Too many concurrent requests", "SERVICE"
                )
            )
        try:
            return await call_next(request)
        finally:
            with in_flight_lock:
                in_flight["count"] -= 1


def _add_api(app: FastAPI, state: Any, store: Any, guard: Any, in_flight: Any, in_flight_lock: Any) -> None:
    @app.get("/.well-known/openid_sandbox_configuration")
    @app.get("/.well-known/openid_sandbox_configuration/")
    @app.get("/.well-known/openid_configuration")
    @app.get("/.well-known/openid_configuration/")
    def discovery(request: Request) -> dict[str, Any]:
        """Intuit's OpenID discovery document (what ``intuit-oauth``'s AuthClient reads first), its
        endpoints pointing at this sandbox."""
        base = str(request.base_url).rstrip("/") + request.scope.get("root_path", "")
        return {
            "issuer": "https://oauth.platform.intuit.com/op/v1",
            "authorization_endpoint": "https://appcenter.intuit.com/connect/oauth2",
            "token_endpoint": f"{base}/oauth2/v1/tokens/bearer",
            "userinfo_endpoint": f"{base}/v1/openid_connect/userinfo",
            "revocation_endpoint": f"{base}/oauth2/v1/tokens/revoke",
            "jwks_uri": f"{base}/oauth2/v1/keys",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile", "address", "phone", "com.intuit.quickbooks.accounting"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "claims_supported": ["aud", "exp", "iat", "iss", "realmid", "sub"],
        }

    @app.get("/v3/company/{realm_id}/query")
    def query(realm_id: str, request: Request, query: str, minorversion: int | None = None) -> dict[str, Any]:
        guard(request, realm_id)
        return store.query(query)

    @app.post("/v3/company/{realm_id}/query")
    async def query_in_body(realm_id: str, request: Request, minorversion: int | None = None) -> dict[str, Any]:
        """The same query as the body of a POST with ``Content-Type: application/text`` (what
        Intuit's SDKs send for long queries)."""
        guard(request, realm_id)
        statement = (await request.body()).decode("utf-8", errors="replace").strip()
        if not statement:
            raise QboFault(400, "4000", "Error parsing query", "QueryParserError: the request body holds no query")
        return store.query(statement)

    @app.post("/v3/company/{realm_id}/{entity_name}")
    def write(
        realm_id: str,
        entity_name: str,
        request: Request,
        body: dict[str, Any],
        requestid: str | None = None,
        operation: str | None = None,
        minorversion: int | None = None,
    ) -> JSONResponse:
        guard(request, realm_id)
        entity = ENTITIES.get(entity_name.lower())
        if entity is None:
            raise QboFault(400, "4001", "Unsupported Operation", f"Operation on {entity_name} is not supported")
        _check_request_id(requestid)
        status, payload = store.write(entity, body, requestid, operation=operation)
        return JSONResponse(payload, status_code=status)

    @app.get("/v3/company/{realm_id}/{entity_name}/{entity_id}")
    def read(realm_id: str, entity_name: str, entity_id: str, request: Request, minorversion: int | None = None) -> dict[str, Any]:
        guard(request, realm_id)
        if entity_name.lower() == "companyinfo" and entity_id == realm_id:  # GET …/companyinfo/{realmId}: the company itself
            return {"CompanyInfo": company_info(realm_id), "time": _now_text()}
        entity = ENTITIES.get(entity_name.lower())
        record = store.entities.get(entity or "", {}).get(entity_id)
        if record is None:
            raise QboFault(400, "610", "Object Not Found", f"Object Not Found : {entity_name} {entity_id}")
        return {entity: record, "time": _now_text()}


def company_info(realm_id: str) -> dict[str, Any]:
    """The sandbox company as QuickBooks' CompanyInfo entity describes a company (the fields a reader needs)."""
    return {
        "Id": realm_id,
        "CompanyName": "Backbone Sandbox B.V.",
        "LegalName": "Backbone Sandbox B.V.",
        "Country": "NL",
        "FiscalYearStartMonth": "January",
        "SupportedLanguages": "en",
        "SyncToken": "0",
        "MetaData": {"CreateTime": "2026-01-01T00:00:00-08:00", "LastUpdatedTime": "2026-01-01T00:00:00-08:00"},
    }


def seed_quickbooks(
    store: QuickBooksStore,
    time_seed: Any,
    billing_items: dict[str, dict[str, Any]],
    *,
    at: datetime,
    tax_codes: dict[str, str] | None = None,
) -> None:
    """The company's customers, employees, vendors, items and accounts, matching the PSA's seed.

    The seed's unmapped client and unknown person are left out on purpose.
    """
    for mapping in sorted(billing_items.values(), key=lambda m: m["item"]):
        account = store.add(
            "Account",
            {"Name": mapping["gl_account"], "AccountType": "Income", "AcctNum": mapping["gl_account"].split()[0], "Active": True},
            at=at,
        )
        store.add(
            "Item",
            {
                "Name": mapping["item"],
                "Type": "Service",
                "Active": True,
                "IncomeAccountRef": {"value": account["Id"], "name": account["Name"]},
            },
            at=at,
        )
    for name in sorted((tax_codes or {}).values()):
        store.add("TaxCode", {"Name": name, "Active": True, "Taxable": name != "Exempt"}, at=at)
    for client_id, client in sorted(time_seed.clients.items()):
        if client_id in time_seed.unmapped_client_ids:
            continue
        store.add(
            "Customer",
            {"DisplayName": client["name"], "CompanyName": client["name"], "Active": True, "CurrencyRef": {"value": client["currency"]}},
            at=at,
        )
    for _, customer in sorted(getattr(time_seed, "accounting_only_customers", {}).items()):
        store.add(
            "Customer",
            {
                "DisplayName": customer["name"],
                "CompanyName": customer["name"],
                "Active": True,
                "CurrencyRef": {"value": customer["currency"]},
            },
            at=at,
        )
    for person_id, person in sorted(time_seed.people.items()):
        if person_id in time_seed.unknown_person_ids:
            continue
        entity = "Vendor" if person["type"] == "contractor" else "Employee"
        given, _, family = person["name"].partition(" ")
        store.add(
            entity,
            {
                "DisplayName": person["name"],
                "GivenName": given,
                "FamilyName": family,
                "Active": True,
                "PrimaryEmailAddr": {"Address": person["email"]},
            },
            at=at,
        )


def seed_quickbooks_budgets(store: QuickBooksStore, budgets: dict[tuple[str, str], dict[str, Any]], account: str, *, at: datetime) -> None:
    """One monthly profit-and-loss budget with a detail per project (its class) and month, on the labour cost account."""
    labour = next((a for a in store.entities["Account"].values() if a["Name"] == account), None)
    details = [
        {
            "BudgetDate": f"{period}-01",
            "Amount": float(amount),
            **({"AccountRef": {"value": labour["Id"], "name": labour["Name"]}} if labour else {}),
            "ClassRef": {"value": str(n + 1), "name": f"{project_id} {name}"},
        }
        for n, ((project_id, name), months) in enumerate(sorted(budgets.items()))
        for period, amount in sorted(months.items())
    ]
    periods = sorted({d["BudgetDate"] for d in details})
    if details:
        store.add(
            "Budget",
            {
                "Name": "Project budgets",
                "StartDate": periods[0],
                "EndDate": periods[-1],
                "BudgetType": "ProfitAndLoss",
                "BudgetEntryType": "Monthly",
                "Active": True,
                "BudgetDetail": details,
            },
            at=at,
        )


def seed_quickbooks_expenses(
    store: QuickBooksStore, expenses: Any, payees: list[dict[str, Any]], *, at: datetime, actuals: Any = None
) -> None:
    """What the expense export needs in the company (and the actuals journals' two accounts): the categories' expense accounts, the company
    card, the purchase tax codes and a supplier record per employee who is reimbursed (QuickBooks
    bills go to vendors, so an employee to be reimbursed is a vendor too, with the same e-mail)."""
    for category in sorted({c.gl_account for c in expenses.categories.values()}):
        store.add("Account", {"Name": category, "AccountType": "Expense", "AcctNum": category.split()[0], "Active": True}, at=at)
    for account in (actuals.labour_cost_account, actuals.labour_allocated_account) if actuals else ():
        store.add("Account", {"Name": account, "AccountType": "Cost of Goods Sold", "AcctNum": account.split()[0], "Active": True}, at=at)
    store.add(
        "Account",
        {"Name": expenses.paid_from, "AccountType": "Credit Card", "AcctNum": expenses.paid_from.split()[0], "Active": True},
        at=at,
    )
    for name, _ in sorted(expenses.tax_codes.values()):
        store.add("TaxCode", {"Name": name, "Active": True, "Taxable": not name.startswith("Exempt")}, at=at)
    for person in payees:
        given, _, family = person["name"].partition(" ")
        store.add(
            "Vendor",
            {
                "DisplayName": f"{person['name']} (expenses)",  # display names are unique across employees and vendors
                "GivenName": given,
                "FamilyName": family,
                "Active": True,
                "PrimaryEmailAddr": {"Address": person["email"]},
            },
            at=at,
        )
