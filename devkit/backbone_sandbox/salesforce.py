"""Salesforce REST API (``/services/oauth2/token``, ``/services/data/vXX.X/query``, sObject PATCH)
over the same CRM records the HubSpot sandbox serves: one business, seen through either CRM.

Opportunities, Accounts, Contacts, OpportunityContactRoles and OpportunityStages are views of the
HubSpot store; a PATCH of an Opportunity writes the HubSpot deal, so both CRMs stay one. Ids are
real-looking 18-character Salesforce ids derived from the HubSpot ids.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import JSONResponse, Response

from backbone.hooks.crm import crm_mapping
from backbone_sandbox import soql
from backbone_sandbox.errors import answer_bad_requests
from backbone_sandbox.seed import PIPELINES
from backbone_sandbox.store import client_authenticated

CLIENT_ID = "sandbox-salesforce-consumer-key"
CLIENT_SECRET = "sandbox-salesforce-consumer-secret"
DAILY_API_LIMIT = 15_000
DEFAULT_BATCH = 2000
MIN_BATCH = 1  # Salesforce's own minimum is 200; the sandbox lets tests page in smaller steps
PREFIX = {"Opportunity": "006", "Account": "001", "Contact": "003", "OpportunityContactRole": "00K", "OpportunityStage": "01J"}
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
NUMBER_FIELDS = frozenset({"Amount", "Estimated_Hours__c", "Payment_Terms_Days__c"})


def salesforce_id(sobject: str, number: int) -> str:
    """A valid 18-character id: key prefix, then the number in base 62, then the case checksum."""
    digits = ""
    while True:
        number, rest = divmod(number, 62)
        digits = ALPHABET[rest] + digits
        if number == 0:
            break
    short = PREFIX[sobject] + "000" + digits.rjust(9, "0")
    suffix = ""
    for chunk in range(3):
        bits = sum(1 << i for i, ch in enumerate(short[chunk * 5 : chunk * 5 + 5]) if "A" <= ch <= "Z")
        suffix += "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"[bits]
    return short + suffix


def number_of(salesforce: str) -> int:
    """The number a :func:`salesforce_id` was made from."""
    value = 0
    for ch in salesforce[6:15]:
        value = value * 62 + ALPHABET.index(ch)
    return value


class SalesforceError(Exception):
    def __init__(self, status: int, code: str, message: str):
        self.status, self.code, self.message = status, code, message


def _stages() -> dict[str, dict[str, Any]]:
    """Stage id → its label and flags, across pipelines (Salesforce has one picklist of stages)."""
    return {
        stage_id: {
            "label": label,
            "closed": closed == "true",
            "won": closed == "true" and float(p) >= 1.0,
            "probability": round(float(p) * 100),
            "pipelines": {pl["id"]},
        }
        for pl in PIPELINES
        for stage_id, label, closed, p in pl["stages"]
    }


def _known_in_pipeline(pipeline: str, stage: str) -> bool:
    return any(pl["id"] == pipeline and any(s[0] == stage for s in pl["stages"]) for pl in PIPELINES)


def _number(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None  # a typed Salesforce field cannot hold text: the value is simply empty


def _stamp(hubspot_iso: str | None) -> str | None:
    """HubSpot's millisecond stamp → Salesforce's second-precision ``...000+0000`` form."""
    if not hubspot_iso:
        return None
    moment = datetime.fromisoformat(hubspot_iso.replace("Z", "+00:00"))
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


class SalesforceView:
    """The HubSpot store's records as Salesforce sObjects."""

    def __init__(self, state: Any):
        self.state = state
        mapping = crm_mapping()["systems"]
        self.fields = {
            kind: {
                mapping["salesforce"][kind][name]: path.removeprefix("properties.")
                for name, path in mapping["hubspot"][kind].items()
                if path.startswith("properties.") and name in mapping["salesforce"][kind]
            }
            for kind in ("deal", "company", "contact")
        }  # Salesforce field → HubSpot property, per kind of record
        self.deal_fields = self.fields["deal"]
        self.stages = _stages()

    def _translated(self, sobject: str, kind: str, store: str, object_id: str) -> dict[str, Any] | None:
        """A HubSpot company or contact as a Salesforce Account or Contact (fields from crm_mapping.yaml)."""
        obj = self.state.crm.objects[store].get(object_id)
        if obj is None:
            return None
        p = obj["properties"]
        return {
            "Id": salesforce_id(sobject, int(object_id)),
            **{field: p.get(prop) for field, prop in self.fields[kind].items()},
            "SystemModstamp": _stamp(p.get("hs_lastmodifieddate")),
        }

    def account(self, company_id: str) -> dict[str, Any] | None:
        return self._translated("Account", "company", "companies", company_id)

    def contact(self, contact_id: str) -> dict[str, Any] | None:
        return self._translated("Contact", "contact", "contacts", contact_id)

    def opportunity(self, deal_id: str) -> dict[str, Any]:
        deal = self.state.crm.objects["deals"][deal_id]
        p = deal["properties"]
        stage = self.stages.get(p.get("dealstage") or "")
        record: dict[str, Any] = {"Id": salesforce_id("Opportunity", int(deal_id))}
        for field_name, prop in self.deal_fields.items():
            value = p.get(prop)
            record[field_name] = _number(value) if field_name in NUMBER_FIELDS else value
        known = stage is not None and _known_in_pipeline(p.get("pipeline") or "", p.get("dealstage") or "")
        record["StageName"] = stage["label"] if known and stage else p.get("dealstage")
        record["IsWon"] = bool(stage and stage["won"])
        record["IsClosed"] = bool(stage and stage["closed"])
        record["Probability"] = stage["probability"] if stage else 0  # a percent, from the stage's DefaultProbability
        record["CloseDate"] = (p.get("closedate") or "")[:10] or None
        record["SystemModstamp"] = record["LastModifiedDate"] = _stamp(p.get("hs_lastmodifieddate"))
        record["CreatedDate"] = _stamp(p.get("createdate"))
        companies = self.state.crm.associations[("deals", "companies")].get(deal_id) or []
        record["AccountId"] = salesforce_id("Account", int(companies[0])) if companies else None
        record["Account"] = self.account(companies[0]) if companies else None
        return record

    def records(self, sobject: str) -> list[dict[str, Any]]:
        crm = self.state.crm
        if sobject == "Opportunity":
            return [self.opportunity(i) for i in crm.objects["deals"]]
        if sobject == "Account":
            return [a for i in crm.objects["companies"] if (a := self.account(i))]
        if sobject == "Contact":
            return [c for i in crm.objects["contacts"] if (c := self.contact(i))]
        if sobject == "OpportunityContactRole":
            roles = []
            for deal_id, contact_ids in crm.associations[("deals", "contacts")].items():
                for n, contact_id in enumerate(contact_ids):
                    contact = self.contact(contact_id)
                    if contact is None:
                        continue
                    roles.append(
                        {
                            "Id": salesforce_id("OpportunityContactRole", int(deal_id) * 10 + n),
                            "OpportunityId": salesforce_id("Opportunity", int(deal_id)),
                            "ContactId": contact["Id"],
                            "IsPrimary": n == 0,
                            "Role": "Decision Maker" if n == 0 else "Evaluator",
                            "Contact": contact,
                        }
                    )
            return roles
        if sobject == "OpportunityStage":
            return [
                {
                    "Id": salesforce_id("OpportunityStage", n),
                    "ApiName": s["label"],
                    "MasterLabel": s["label"],
                    "IsActive": True,
                    "IsClosed": s["closed"],
                    "IsWon": s["won"],
                    "DefaultProbability": s["probability"],
                }
                for n, s in enumerate(self.stages.values())
            ]
        raise SalesforceError(400, "INVALID_TYPE", f"sObject type '{sobject}' is not supported.")

    def update_opportunity(self, opportunity_id: str, fields: dict[str, Any], now: datetime) -> None:
        unknown = sorted(set(fields) - set(self.deal_fields))
        if unknown:
            raise SalesforceError(400, "INVALID_FIELD", f"No such column '{unknown[0]}' on sobject of type Opportunity")
        deal_id = str(number_of(opportunity_id))
        if (
            len(opportunity_id) != 18
            or salesforce_id("Opportunity", int(deal_id)) != opportunity_id
            or deal_id not in self.state.crm.objects["deals"]
        ):
            raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")
        self.state.crm.update("deals", deal_id, {self.deal_fields[k]: v for k, v in fields.items()}, now)


def render(record: dict[str, Any], sobject: str, fields: list[str], version: str) -> dict[str, Any]:
    out: dict[str, Any] = {"attributes": {"type": sobject, "url": f"/services/data/v{version}/sobjects/{sobject}/{record['Id']}"}}
    for name in fields:
        head, _, rest = name.partition(".")
        if not rest:
            out[head] = record.get(head)
            continue
        related = record.get(head)
        if related is None:
            out[head] = None
            continue
        target = out.setdefault(
            head, {"attributes": {"type": head, "url": f"/services/data/v{version}/sobjects/{head}/{related.get('Id')}"}}
        )
        if target is not None:
            target[rest] = soql.read_field(related, rest)
    return out


def _batch_size(request: Request) -> int:
    options = request.headers.get("sforce-query-options", "")
    for part in options.split(","):
        name, _, value = part.strip().partition("=")
        if name == "batchSize" and value.isdigit():
            return max(MIN_BATCH, min(int(value), DEFAULT_BATCH))
    return DEFAULT_BATCH


def build_salesforce_app(state: Any) -> FastAPI:
    """The Salesforce REST API as a sub-application (mounted at ``/salesforce``)."""
    app = FastAPI(title="Salesforce (sandbox)", docs_url=None, redoc_url=None)
    view = SalesforceView(state)
    store = view
    tokens: set[str] = set()
    cursors: dict[str, tuple[list[dict[str, Any]], int, int]] = {}
    usage = {"calls": 0}
    lock = threading.Lock()

    @app.exception_handler(SalesforceError)
    async def _error(_: Request, exc: SalesforceError) -> JSONResponse:
        return JSONResponse([{"message": exc.message, "errorCode": exc.code}], status_code=exc.status)

    answer_bad_requests(
        app,
        lambda request, detail: JSONResponse(
            [{"message": detail, "errorCode": "MALFORMED_QUERY" if "/query" in request.url.path else "JSON_PARSER_ERROR"}],
            status_code=400,
        ),
        not_found=lambda _, detail: JSONResponse([{"errorCode": "NOT_FOUND", "message": detail}], status_code=404),
    )

    @app.middleware("http")
    async def api_usage(request: Request, call_next):  # noqa: ANN001, ANN202 - starlette signature
        response = await call_next(request)
        if "/services/data/" in request.url.path:
            with lock:
                usage["calls"] += 1
                state.salesforce_calls = usage["calls"]
            response.headers["Sforce-Limit-Info"] = f"api-usage={usage['calls']}/{DAILY_API_LIMIT}"
        return response

    def authorised(request: Request) -> None:
        header = request.headers.get("authorization", "")
        if header.removeprefix("Bearer ") not in tokens:
            raise SalesforceError(401, "INVALID_SESSION_ID", "Session expired or invalid")

    @app.post("/services/oauth2/token")
    def token(
        request: Request,
        grant_type: str = Form(...),
        client_id: str = Form(""),
        client_secret: str = Form(""),
        refresh_token: str = Form(""),
    ) -> JSONResponse:
        authenticated = client_authenticated(
            request.headers.get("authorization"), (client_id, client_secret), client_id=CLIENT_ID, client_secret=CLIENT_SECRET
        )  # Salesforce takes the client in the form body or in HTTP Basic (RFC 6749 §2.3.1)
        if grant_type not in ("client_credentials", "refresh_token") or not authenticated:
            return JSONResponse({"error": "invalid_client", "error_description": "invalid client credentials"}, status_code=400)
        if grant_type == "refresh_token" and not refresh_token:
            return JSONResponse({"error": "invalid_grant", "error_description": "expired access/refresh token"}, status_code=400)
        access = f"00D000000000001!{secrets.token_hex(24)}"
        tokens.add(access)
        instance = str(request.base_url).rstrip("/") + request.scope.get("root_path", "")
        return JSONResponse(
            {
                "access_token": access,
                "instance_url": instance,
                "id": f"{instance}/id/00D000000000001EAA/005000000000001AAA",
                "token_type": "Bearer",
                "scope": "api",
                "issued_at": str(int(datetime.now().timestamp() * 1000)),
                "signature": secrets.token_urlsafe(32),
            }
        )

    def page(records: list[dict[str, Any]], start: int, batch: int, version: str) -> dict[str, Any]:
        chunk = records[start : start + batch]
        body: dict[str, Any] = {"totalSize": len(records), "done": start + batch >= len(records), "records": chunk}
        if not body["done"]:
            locator = f"01g{uuid.uuid4().hex[:15]}-{start + batch}"
            with lock:
                cursors[locator] = (records, start + batch, batch)
            body["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}"
        return body

    _add_queries(app, state, store, authorised, page, view, cursors, lock)
    _add_updates(app, state, store, authorised, page, view, cursors, lock)
    return app


def _add_queries(app: FastAPI, state: Any, store: Any, authorised: Any, page: Any, view: Any, cursors: Any, lock: Any) -> None:
    @app.get("/services/data/v{version}/query")
    @app.get("/services/data/v{version}/query/")
    def query(version: str, request: Request, q: str = "") -> dict[str, Any]:
        authorised(request)
        try:
            parsed = soql.parse(q)
            found = soql.run(parsed, view.records(parsed.sobject))
        except soql.SoqlError as exc:
            raise SalesforceError(400, "MALFORMED_QUERY", str(exc)) from exc
        rendered = [render(r, parsed.sobject, parsed.fields, version) for r in found]
        return page(rendered, 0, _batch_size(request), version)

    @app.get("/services/data/v{version}/query/{locator}")
    def query_more(version: str, locator: str, request: Request) -> dict[str, Any]:
        authorised(request)
        with lock:
            cursor = cursors.pop(locator, None)
        if cursor is None:
            raise SalesforceError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        records, start, batch = cursor
        return page(records, start, batch, version)


def _add_updates(app: FastAPI, state: Any, store: Any, authorised: Any, page: Any, view: Any, cursors: Any, lock: Any) -> None:
    @app.get("/services/data/v{version}/sobjects/{sobject}/{record_id}")
    def retrieve(version: str, sobject: str, record_id: str, request: Request, fields: str | None = None) -> dict[str, Any]:
        """A record by id (REST API "sObject Rows": GET …/sobjects/{type}/{id}; the 15-character
        case-sensitive id and its 18-character form both name it), all fields or ``fields=A,B``."""
        authorised(request)
        if sobject not in ("Opportunity", "Account", "Contact"):
            raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")
        found = next((r for r in view.records(sobject) if r["Id"] in (record_id, record_id[:15]) or r["Id"][:15] == record_id), None)
        if found is None:
            raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")
        names = [f.strip() for f in fields.split(",")] if fields else [k for k in found if not isinstance(found[k], dict)]
        return render(found, sobject, names, version)

    @app.patch("/services/data/v{version}/sobjects/Opportunity/{opportunity_id}")
    async def update(version: str, opportunity_id: str, request: Request) -> Response:
        authorised(request)
        at = request.query_params.get("_at")
        view.update_opportunity(opportunity_id, await request.json(), datetime.fromisoformat(at) if at else datetime.now().astimezone())
        return Response(status_code=204)
