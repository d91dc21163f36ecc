"""HubSpot CRM v3/v4 endpoints the hooks use, with HubSpot's limits, shapes and errors."""

from __future__ import annotations

import base64
import bisect
import json
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import Body, Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from backbone_sandbox.errors import answer_bad_requests
from backbone_sandbox.limits import SlidingWindowLimit, retry_after_header
from backbone_sandbox.seed import PIPELINES, CrmSeed, iso_millis

SEARCH_CAP = 10_000
MAX_PAGE = 100
OBJECT_TYPES = {"0-3": "deals", "deals": "deals", "0-2": "companies", "companies": "companies", "0-1": "contacts", "contacts": "contacts"}
DATE_PROPERTIES = frozenset({"hs_lastmodifieddate", "createdate", "closedate"})
DEFAULT_PROPERTIES = {
    "deals": ["dealname", "amount", "closedate", "pipeline", "dealstage", "createdate", "hs_lastmodifieddate", "hs_object_id"],
    "companies": ["name", "domain", "createdate", "hs_lastmodifieddate", "hs_object_id"],
    "contacts": ["firstname", "lastname", "email", "createdate", "lastmodifieddate", "hs_object_id"],
}
ASSOCIATION_TYPES = {("deals", "companies"): (5, "Primary"), ("deals", "contacts"): (3, None)}


class HubSpotError(Exception):
    def __init__(self, status: int, message: str, category: str, headers: dict[str, str] | None = None):
        self.status, self.message, self.category, self.headers = status, message, category, headers or {}


def error_response(exc: HubSpotError) -> JSONResponse:
    return JSONResponse(
        {"status": "error", "message": exc.message, "correlationId": str(uuid.uuid4()), "category": exc.category},
        status_code=exc.status,
        headers=exc.headers,
    )


def _to_millis(value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000
    except ValueError:
        return None


def _comparable(prop: str, value: str | None) -> Any:
    if value is None:
        return None
    if prop in DATE_PROPERTIES:
        return _to_millis(value)
    try:
        return float(value)
    except ValueError:
        return value.lower()


def _matches(obj: dict[str, Any], flt: dict[str, Any]) -> bool:
    prop, op = flt["propertyName"], flt["operator"]
    raw = obj["properties"].get(prop)
    if op == "HAS_PROPERTY":
        return raw not in (None, "")
    if op == "NOT_HAS_PROPERTY":
        return raw in (None, "")
    value = _comparable(prop, raw)
    if op in ("IN", "NOT_IN"):
        wanted = {_comparable(prop, str(v)) for v in flt.get("values", [])}
        return (value in wanted) == (op == "IN")
    target = _comparable(prop, str(flt.get("value"))) if flt.get("value") is not None else None
    if op == "EQ":
        return value == target
    if op == "NEQ":
        return value != target
    if op == "CONTAINS_TOKEN":
        return str(flt.get("value", "")).lower().strip("*") in str(raw or "").lower()
    if op == "NOT_CONTAINS_TOKEN":
        return str(flt.get("value", "")).lower().strip("*") not in str(raw or "").lower()
    if value is None or target is None or type(value) is not type(target):
        return False
    if op == "BETWEEN":
        high = _comparable(prop, str(flt.get("highValue")))
        return target <= value <= high
    return {"GT": value > target, "GTE": value >= target, "LT": value < target, "LTE": value <= target}[op]


class CrmStore:
    """Objects by type and id, kept in id order so searches and windows are cheap."""

    def __init__(self, seed: CrmSeed):
        self.objects = {"deals": seed.deals, "companies": seed.companies, "contacts": seed.contacts}
        self.sorted_ids = {t: sorted(int(i) for i in objs) for t, objs in self.objects.items()}
        self.associations = {("deals", "companies"): seed.deal_companies, ("deals", "contacts"): seed.deal_contacts}
        self.bad_deals = seed.bad_deals
        self.bad_contacts = seed.bad_contacts
        self.version = 0
        self._match_cache: dict[tuple[str, str, int], list[int]] = {}
        self._lock = threading.RLock()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_match_cache")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()
        self._match_cache = {}

    def search(self, object_type: str, body: dict[str, Any]) -> dict[str, Any]:
        limit = int(body.get("limit") or 10)
        if limit > MAX_PAGE or limit < 1:
            raise HubSpotError(400, f"limit must be between 1 and {MAX_PAGE}", "VALIDATION_ERROR")
        after = int(body.get("after") or 0)
        if after + limit > SEARCH_CAP:
            raise HubSpotError(
                400, f"The search API cannot page past {SEARCH_CAP} results (after={after}, limit={limit})", "VALIDATION_ERROR"
            )
        groups = body.get("filterGroups") or []
        if len(groups) > 5 or sum(len(g.get("filters", [])) for g in groups) > 25:
            raise HubSpotError(400, "at most 5 filterGroups and 25 filters", "VALIDATION_ERROR")
        matched = self._matching_ids(object_type, groups)
        page_ids = matched[after : after + limit]
        properties = body.get("properties") or DEFAULT_PROPERTIES[object_type]
        results = [self.render(object_type, str(i), properties) for i in page_ids]
        response: dict[str, Any] = {"total": len(matched), "results": results}
        if after + limit < len(matched):
            response["paging"] = {"next": {"after": str(after + limit), "link": f"?after={after + limit}"}}
        return response

    def _matching_ids(self, object_type: str, groups: list[dict[str, Any]]) -> list[int]:
        key = (object_type, json.dumps(groups, sort_keys=True), self.version)
        with self._lock:
            if key in self._match_cache:
                return self._match_cache[key]
            ids = self.sorted_ids[object_type]
            start = 0
            if len(groups) == 1:  # jump straight to an hs_object_id window
                for flt in groups[0].get("filters", []):
                    if flt.get("propertyName") == "hs_object_id" and flt.get("operator") in ("GT", "GTE"):
                        bound = int(float(flt["value"]))
                        start = max(start, (bisect.bisect_right if flt["operator"] == "GT" else bisect.bisect_left)(ids, bound))
            objects = self.objects[object_type]
            matched = [
                i for i in ids[start:] if not groups or any(all(_matches(objects[str(i)], f) for f in g.get("filters", [])) for g in groups)
            ]
            if len(self._match_cache) > 64:
                self._match_cache.clear()
            self._match_cache[key] = matched
            return matched

    def render(self, object_type: str, object_id: str, properties: list[str] | None) -> dict[str, Any]:
        obj = self.objects[object_type][object_id]
        wanted = properties or DEFAULT_PROPERTIES[object_type]
        props = {p: obj["properties"].get(p) for p in dict.fromkeys([*wanted, "hs_object_id", "createdate", "hs_lastmodifieddate"])}
        return {**{k: v for k, v in obj.items() if k != "properties"}, "properties": props}

    def update(self, object_type: str, object_id: str, properties: dict[str, Any], now: datetime) -> dict[str, Any]:
        with self._lock:
            obj = self.objects[object_type].get(object_id)
            if obj is None:
                raise HubSpotError(404, f"resource not found: {object_type} {object_id}", "OBJECT_NOT_FOUND")
            stamp = iso_millis(now)
            obj["properties"].update({k: (None if v is None else str(v)) for k, v in properties.items()})
            obj["properties"]["hs_lastmodifieddate"] = stamp
            obj["updatedAt"] = stamp
            self.version += 1
            return self.render(object_type, object_id, list(obj["properties"]))


def build_hubspot_app(state: Any) -> FastAPI:
    """The HubSpot API as a sub-application (mounted at ``/hubspot``)."""
    app = FastAPI(title="HubSpot CRM (sandbox)", docs_url=None, redoc_url=None)
    store = state.crm
    search_limit = SlidingWindowLimit(state.config.hubspot_search_per_second, 1.0)
    general_limit = SlidingWindowLimit(state.config.hubspot_calls_per_ten_seconds, 10.0)
    state.limits["hubspot_search"] = search_limit
    state.limits["hubspot_general"] = general_limit

    @app.exception_handler(HubSpotError)
    async def _hubspot_error(_: Request, exc: HubSpotError) -> JSONResponse:
        return error_response(exc)

    answer_bad_requests(
        app,
        lambda _, detail: error_response(HubSpotError(400, f"Invalid input JSON: {detail}", "VALIDATION_ERROR")),
        not_found=lambda _, detail: error_response(HubSpotError(404, detail, "OBJECT_NOT_FOUND")),
    )

    daily = SlidingWindowLimit(HUBSPOT_DAILY_LIMIT, 86_400.0)

    @app.middleware("http")
    async def rate_limit_headers(request: Request, call_next):  # noqa: ANN001, ANN202 - starlette signature
        """HubSpot's documented rate-limit headers on every answer but search's
        (https://developers.hubspot.com/docs/api/usage-details)."""
        response = await call_next(request)
        if not request.url.path.endswith("/search"):
            token = request.headers.get("authorization", "").removeprefix("Bearer ")
            daily.check(token)
            response.headers["X-HubSpot-RateLimit-Daily"] = str(HUBSPOT_DAILY_LIMIT)
            response.headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(daily.remaining(token))
            response.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] = "10000"
            response.headers["X-HubSpot-RateLimit-Max"] = str(general_limit.calls)
            response.headers["X-HubSpot-RateLimit-Remaining"] = str(general_limit.remaining(token))
        return response

    def authorised(request: Request) -> str:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer ") or header.removeprefix("Bearer ") != state.config.token:
            raise HubSpotError(
                401,
                "Authentication credentials not found. This API supports OAuth 2.0 authentication and private app access tokens.",
                "INVALID_AUTHENTICATION",
            )
        token = header.removeprefix("Bearer ")
        wait = general_limit.check(token)
        if wait is not None:
            raise HubSpotError(
                429, "You have reached your ten_secondly_rolling limit.", "RATE_LIMITS", {"Retry-After": retry_after_header(wait)}
            )
        return token

    def object_type(name: str) -> str:
        if name not in OBJECT_TYPES:
            raise HubSpotError(400, f"Unable to infer object type from: {name}", "VALIDATION_ERROR")
        return OBJECT_TYPES[name]

    _add_pipelines_and_search(app, state, store, authorised, object_type, search_limit)
    _add_objects(app, state, store, authorised, object_type, search_limit)
    _add_associations(app, state, store, authorised, object_type, search_limit)
    return app


def _add_pipelines_and_search(app: FastAPI, state: Any, store: Any, authorised: Any, object_type: Any, search_limit: Any) -> None:
    @app.get("/crm/v3/pipelines/{object_type_name}")
    def pipelines(object_type_name: str, _: str = Depends(authorised)) -> dict[str, Any]:
        if object_type(object_type_name) != "deals":
            return {"results": []}
        results = []
        for p in PIPELINES:
            stages = [
                {
                    "id": sid,
                    "label": label,
                    "displayOrder": n,
                    "metadata": {"isClosed": closed, "probability": prob},
                    "createdAt": "2025-01-01T00:00:00Z",
                    "updatedAt": "2025-01-01T00:00:00Z",
                    "archived": False,
                }
                for n, (sid, label, closed, prob) in enumerate(p["stages"])
            ]
            results.append(
                {
                    "id": p["id"],
                    "label": p["label"],
                    "displayOrder": p["displayOrder"],
                    "stages": stages,
                    "createdAt": "2025-01-01T00:00:00Z",
                    "updatedAt": "2025-01-01T00:00:00Z",
                    "archived": False,
                }
            )
        return {"results": results}

    @app.post("/crm/v3/objects/{object_type_name}/search")
    def search(
        object_type_name: str, request: Request, body: dict[str, Any] = Body(...), token: str = Depends(authorised)
    ) -> dict[str, Any]:
        wait = search_limit.check(token)
        if wait is not None:
            raise HubSpotError(429, "You have reached your secondly limit.", "RATE_LIMITS", {"Retry-After": retry_after_header(wait)})
        kind = object_type(object_type_name)
        response = state.crm.search(kind, body)
        if state.faults.take(request.method, request.url.path, kinds=("empty_page",)):
            response["results"] = []
        if body.get("after") and state.faults.take(request.method, request.url.path, kinds=("repeat_cursor",)):
            response["paging"] = {"next": {"after": str(body["after"]), "link": f"?after={body['after']}"}}
        return response


def _add_objects(app: FastAPI, state: Any, store: Any, authorised: Any, object_type: Any, search_limit: Any) -> None:
    @app.get("/crm/v3/objects/{object_type_name}/{object_id}")
    def read(
        object_type_name: str, object_id: str, properties: str | None = None, associations: str | None = None, _: str = Depends(authorised)
    ) -> dict[str, Any]:
        kind = object_type(object_type_name)
        if object_id not in state.crm.objects[kind]:
            raise HubSpotError(404, "Object not found.  objectId are usually numeric.", "OBJECT_NOT_FOUND")
        obj = state.crm.render(kind, object_id, properties.split(",") if properties else None)
        if associations and kind == "deals":
            obj["associations"] = {
                to: {"results": [{"id": t, "type": f"deal_to_{to[:-1]}"} for t in state.crm.associations[("deals", to)].get(object_id, [])]}
                for to in associations.split(",")
                if ("deals", to) in state.crm.associations
            }
        return obj

    @app.patch("/crm/v3/objects/{object_type_name}/{object_id}")
    def update(object_type_name: str, object_id: str, body: dict[str, Any] = Body(...), _: str = Depends(authorised)) -> dict[str, Any]:
        properties = body.get("properties")
        if not isinstance(properties, dict):
            raise HubSpotError(400, "properties is required", "VALIDATION_ERROR")
        state.crm_writes += 1
        return state.crm.update(object_type(object_type_name), object_id, properties, datetime.now(UTC))

    @app.post("/crm/v3/objects/{object_type_name}/batch/read")
    def batch_read(object_type_name: str, body: dict[str, Any] = Body(...), _: str = Depends(authorised)) -> JSONResponse:
        kind = object_type(object_type_name)
        inputs = body.get("inputs") or []
        if len(inputs) > MAX_PAGE:
            raise HubSpotError(400, f"at most {MAX_PAGE} inputs per batch", "VALIDATION_ERROR")
        started = iso_millis(datetime.now(UTC))
        found, missing = [], []
        for item in inputs:
            oid = str(item.get("id"))
            (found if oid in state.crm.objects[kind] else missing).append(oid)
        payload: dict[str, Any] = {
            "status": "COMPLETE",
            "results": [state.crm.render(kind, oid, body.get("properties")) for oid in found],
            "startedAt": started,
            "completedAt": iso_millis(datetime.now(UTC)),
        }
        if missing:
            payload["numErrors"] = 1
            payload["errors"] = [
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": "Could not get some objects, they may be deleted or not exist.",
                    "context": {"ids": missing},
                }
            ]
            return JSONResponse(payload, status_code=207)
        return JSONResponse(payload)


HUBSPOT_DAILY_LIMIT = 650_000
"""Daily calls of a private app on a Professional account (HubSpot's usage guidelines)."""
ASSOCIATION_BATCH_INPUTS = 1000
"""HubSpot's limit on ``inputs`` of an associations batch read since 2025-02-10 (developer changelog
"Bug Fix: Batch Read Limit for HubSpot Associations API")."""
ASSOCIATIONS_PAGE = 500
"""Associations per object in one batch-read answer (the sandbox's choice; HubSpot pages them and
says so with ``paging.next.after``, "present only if there are more pages")."""


def _association_offset(after: Any) -> int:
    if not after:
        return 0
    try:
        text = base64.urlsafe_b64decode(str(after).encode()).decode()
        return int(text.removeprefix("assoc-"))
    except (ValueError, UnicodeDecodeError):
        raise HubSpotError(400, f"Invalid after token: {after}", "VALIDATION_ERROR") from None


def _add_associations(app: FastAPI, state: Any, store: Any, authorised: Any, object_type: Any, search_limit: Any) -> None:
    @app.post("/crm/v4/associations/{from_type}/{to_type}/batch/read")
    def associations(from_type: str, to_type: str, body: dict[str, Any] = Body(...), _: str = Depends(authorised)) -> dict[str, Any]:
        pair = (object_type(from_type), object_type(to_type))
        links = state.crm.associations.get(pair, {})
        type_id, label = ASSOCIATION_TYPES.get(pair, (1, None))
        inputs = body.get("inputs") or []
        if len(inputs) > ASSOCIATION_BATCH_INPUTS:
            raise HubSpotError(400, f"Batch read may not exceed {ASSOCIATION_BATCH_INPUTS} inputs (got {len(inputs)})", "VALIDATION_ERROR")
        results = []
        for item in inputs:
            oid = str(item.get("id"))
            start = _association_offset(item.get("after"))
            targets = links.get(oid, [])[start : start + ASSOCIATIONS_PAGE]
            if not targets:
                continue
            result: dict[str, Any] = {
                "from": {"id": oid},
                "to": [
                    {
                        "toObjectId": int(t),
                        "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": label}]
                        + ([{"category": "HUBSPOT_DEFINED", "typeId": 341, "label": None}] if label else []),
                    }
                    for t in targets
                ],
            }
            if start + ASSOCIATIONS_PAGE < len(links.get(oid, [])):  # "paging" only when there are more pages
                after = base64.urlsafe_b64encode(f"assoc-{start + ASSOCIATIONS_PAGE}".encode()).decode()
                result["paging"] = {"next": {"after": after, "link": None}}
            results.append(result)
        now = iso_millis(datetime.now(UTC))
        return {"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}
