"""Kantata OX (formerly Mavenlink) API v1 as the PSA hook meets it: projects (workspaces) and their
external references, for now; the rest of the PSA side follows (issue 21).

Restated from Kantata's published reference (developer.kantata.com; its Swagger document at
app.mavenlink.com/oas/specification, mirrored in the public repository ``api-evangelist/mavenlink``),
not copied: that document reserves Kantata's copyright. What the sandbox holds the hook to:

- ``/api/v1/<collection>`` (the ``.json`` suffix optional), a bearer token (OAuth 2.0).
- The answer envelope: ``count``, ``meta`` (``count``, ``page_count``, ``page_number``,
  ``page_size``), ``results`` (``[{"key": <collection>, "id": "<id>"}]``, the canonical order),
  and one id-keyed object per collection. Objects asked for with ``include=`` are side-loaded
  into their own collections (``external_references`` here); a collection may hold objects that
  are not in ``results``, so a reader follows ``results``, never the collection's keys.
- Paging by ``page`` and ``per_page`` (default 20, at most 200).
- ``only=<ids>`` returns the objects among those ids the caller can see, with no 404 for the
  others. The show route (``GET /workspaces/<id>``) answers 404 for an archived project, which
  default filters hide (``include_archived`` defaults to false).
- No idempotency key on any POST: a repeated create makes a second project. External references
  link an object to an id in another system: given in the create body (``external_reference``,
  made with the object) or through ``/external_references/create_or_update``.
- Errors as ``{"errors": [{"type", "message"}]}``; throttling as 429 with no ``Retry-After``.
"""

from __future__ import annotations

import math
import re
import threading
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from backbone_sandbox.limits import SlidingWindowLimit
from backbone_sandbox.store import PicklableLockMixin

PER_PAGE_DEFAULT = 20
PER_PAGE_MAX = 200
WORKSPACE_FIELDS = ("title", "description", "budgeted", "price", "currency", "start_date", "due_date", "archived")
REFERENCE_FIELDS = (
    "subject_type",
    "subject_id",
    "service_name",
    "service_model",
    "service_model_ref",
    "external_status",
    "external_message",
    "status",
)


class KantataError(Exception):
    def __init__(self, status: int, message: str, kind: str = "system"):
        self.status, self.message, self.kind = status, message, kind


def error_response(status: int, message: str, kind: str = "system") -> JSONResponse:
    return JSONResponse({"errors": [{"type": kind, "message": message}]}, status_code=status)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class KantataStore(PicklableLockMixin):
    """One Kantata account: its projects and external references, with integer ids as Kantata's."""

    def __init__(self) -> None:
        self.workspaces: dict[str, dict[str, Any]] = {}
        self.external_references: dict[str, dict[str, Any]] = {}
        self.next_id = 1000
        self.creates: dict[str, int] = {}
        self.updates: dict[str, int] = {}
        self.invited_users: dict[str, dict[str, Any]] = {}
        self.time_off_entries: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def _new_id(self) -> str:
        self.next_id += 1
        return str(self.next_id)

    def create_workspace(self, fields: dict[str, Any]) -> dict[str, Any]:
        """A new workspace; an ``external_reference`` in the body is created with it, in the same step."""
        if not str(fields.get("title") or "").strip():
            raise KantataError(422, "Title can't be blank", "validation")
        link = fields.get("external_reference")
        if link is not None and not (
            isinstance(link, dict) and all(link.get(k) for k in ("service_name", "service_model", "service_model_ref"))
        ):
            raise KantataError(422, "external_reference needs service_name, service_model and service_model_ref", "validation")
        with self._lock:
            now = _now()
            record = {
                "id": self._new_id(),
                **{k: fields.get(k) for k in WORKSPACE_FIELDS},
                "budgeted": bool(fields.get("budgeted", True)),
                "archived": bool(fields.get("archived", False)),
                "created_at": now,
                "updated_at": now,
            }
            self.workspaces[record["id"]] = record
            self.creates["workspaces"] = self.creates.get("workspaces", 0) + 1
        if link is not None:
            self.reference({**link, "subject_type": "Workspace", "subject_id": record["id"]})
        return record

    @property
    def seeded_workspaces(self) -> dict[str, dict[str, Any]]:
        """Workspaces the account had before the backbone came (the seed's fixed-fee projects):
        updatable like the rest, kept apart from those made through the API."""
        return self.__dict__.setdefault("_seeded_workspaces", {})

    def workspace(self, workspace_id: str) -> dict[str, Any] | None:
        return self.workspaces.get(workspace_id) or self.seeded_workspaces.get(workspace_id)

    def all_workspaces(self) -> list[dict[str, Any]]:
        return [*self.workspaces.values(), *self.seeded_workspaces.values()]

    def update_workspace(self, workspace_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            record = self.workspace(workspace_id)
            if record is None:
                raise KantataError(404, "Not found")
            changes = {k: v for k, v in fields.items() if k in WORKSPACE_FIELDS and record.get(k) != v}
            if changes:
                record.update(changes, updated_at=_now())
                self.updates["workspaces"] = self.updates.get("workspaces", 0) + 1
            return record

    def reference(self, fields: dict[str, Any]) -> dict[str, Any]:
        """``create_or_update``: one reference per (subject, service name, service model)."""
        for name in ("subject_type", "subject_id", "service_name", "service_model", "service_model_ref"):
            if not str(fields.get(name) or "").strip():
                raise KantataError(422, f"{name} can't be blank", "validation")
        with self._lock:
            key = tuple(str(fields[n]) for n in ("subject_type", "subject_id", "service_name", "service_model"))
            for record in self.external_references.values():
                if tuple(str(record[n]) for n in ("subject_type", "subject_id", "service_name", "service_model")) == key:
                    record.update({k: fields[k] for k in REFERENCE_FIELDS if k in fields}, updated_at=_now())
                    return record
            now = _now()
            record = {
                "id": self._new_id(),
                **{k: (str(fields[k]) if fields.get(k) is not None else None) for k in REFERENCE_FIELDS},
                "status": fields.get("status") or "successful",
                "created_at": now,
                "updated_at": now,
                "last_synced_at": now,
            }
            self.external_references[record["id"]] = record
            self.creates["external_references"] = self.creates.get("external_references", 0) + 1
            return record


SEARCH_TERM = re.compile(r"(\w+):'([^']*)'|(\S+)")


def _matches(record: dict[str, Any], search: str) -> bool:
    """Kantata's ``search``: every term matches a whole word; ``field:'words'`` looks in that field
    only (``title``, ``description``), a bare term in the title or the description."""
    for field_name, quoted, bare in SEARCH_TERM.findall(search):
        fields = [field_name] if field_name else ["title", "description"]
        words = (quoted or bare).lower().split()
        text = " ".join(str(record.get(f) or "") for f in fields).lower()
        if not all(word in re.findall(r"\w+", text) for word in words):
            return False
    return True


def _workspace_out(record: dict[str, Any]) -> dict[str, Any]:
    """Kantata takes ``price`` in whole units and answers it as a string beside ``price_in_cents``."""
    if record.get("price") is None:
        return record
    return {**record, "price": str(record["price"]), "price_in_cents": int(record["price"]) * 100}


def _reference_out(record: dict[str, Any]) -> dict[str, Any]:
    """``subject_id`` is an integer in Kantata's answers (every other id is a string)."""
    return {**record, "subject_id": int(record["subject_id"])}


PRESENT = {"workspaces": _workspace_out, "external_references": _reference_out}
"""How a stored object is written in an answer, where the two differ."""


def envelope(
    collection: str, records: list[dict[str, Any]], *, page: int, per_page: int, side: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Kantata's list answer: the page's ids in ``results`` order, the objects keyed by id, side-loads beside them."""
    total = len(records)
    chunk = records[(page - 1) * per_page : page * per_page]
    answer: dict[str, Any] = {
        "count": total,
        "meta": {"count": total, "page_count": max(1, math.ceil(total / per_page)), "page_number": page, "page_size": per_page},
        "results": [{"key": collection, "id": r["id"]} for r in chunk],
        collection: {r["id"]: r for r in chunk},
    }
    for name, objects in (side or {}).items():
        answer.setdefault(name, {}).update(objects)
    for name, present in PRESENT.items():
        if name in answer:
            answer[name] = {key: present(value) for key, value in answer[name].items()}
    return answer


def build_kantata_app(state: Any) -> FastAPI:
    app = FastAPI(title="Kantata OX API v1 (sandbox)", docs_url=None, redoc_url=None)
    store: KantataStore = state.kantata

    @app.exception_handler(KantataError)
    async def _error(_: Request, exc: KantataError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.kind)

    @app.middleware("http")
    async def guard(request: Request, call_next):  # noqa: ANN001, ANN202 - starlette signature
        if request.headers.get("authorization") != f"Bearer {state.config.token}":
            return error_response(401, "You must be logged in to access this resource.")
        limit = state.limits.setdefault("kantata", SlidingWindowLimit(state.config.kantata_requests_per_minute, 60.0))
        if limit.check("account") is not None:  # Kantata throttles with a bare 429: no Retry-After
            return error_response(429, "Rate limit exceeded")
        return await call_next(request)

    from backbone_sandbox.kantata_billing import KantataBillingView, add_billing_routes
    from backbone_sandbox.kantata_people import add_people_routes
    from backbone_sandbox.kantata_profiles import add_profile_routes
    from backbone_sandbox.kantata_time import KantataTimeView, add_time_routes

    view = KantataTimeView(state)
    billing = KantataBillingView(state)
    billing.open_account()
    _add_workspaces(app, store, view)
    _add_references(app, store, view, billing)
    add_time_routes(app, view)
    add_people_routes(app, store, view)
    add_profile_routes(app, store, view)
    add_billing_routes(app, billing)
    return app


def paging(request: Request) -> tuple[int, int]:
    try:
        page = int(request.query_params.get("page") or 1)
        per_page = int(request.query_params.get("per_page") or PER_PAGE_DEFAULT)
    except ValueError as exc:
        raise KantataError(400, f"invalid paging: {exc}") from exc
    if page < 1 or not 1 <= per_page <= PER_PAGE_MAX:
        raise KantataError(400, f"per_page must be between 1 and {PER_PAGE_MAX}")
    return page, per_page


def filter_workspaces(records: list[dict[str, Any]], query: Any) -> list[dict[str, Any]]:
    """The list filters the hook uses: ``only``, ``include_archived``, ``updated_after``, ``search``, ``order``."""
    if (only := query.get("only")) is not None:
        wanted = {part.strip() for part in only.split(",") if part.strip()}
        records = [r for r in records if r["id"] in wanted]
    if query.get("include_archived", "false").lower() != "true":
        records = [r for r in records if not r["archived"]]
    if after := query.get("updated_after"):
        records = [r for r in records if r["updated_at"] > after.replace("+00:00", "Z")]
    if search := query.get("search"):
        records = [r for r in records if _matches(r, search)]
    if query.get("order") == "created_at:desc":
        records.sort(key=lambda r: (r["created_at"], r["id"]), reverse=True)
    return records


def _add_workspaces(app: FastAPI, store: KantataStore, view: Any) -> None:
    from backbone_sandbox.kantata_time import includes, shown

    @app.get("/api/v1/workspaces")
    @app.get("/api/v1/workspaces.json")
    def list_workspaces(request: Request) -> dict[str, Any]:
        page, per_page = paging(request)
        query = request.query_params
        everything = [*store.all_workspaces(), *view.workspaces().values()]
        records = filter_workspaces(sorted(everything, key=lambda r: (r["updated_at"], r["id"]), reverse=True), query)
        wanted = includes(query)
        side = {}
        if "external_references" in wanted:
            ids = {r["id"] for r in records}
            linked = [r for r in store.external_references.values() if r["subject_type"] == "Workspace" and r["subject_id"] in ids]
            side["external_references"] = {r["id"]: r for r in linked}
            by_workspace: dict[str, list[str]] = {}
            for reference in linked:
                by_workspace.setdefault(reference["subject_id"], []).append(reference["id"])
            records = [{**r, "external_reference_ids": by_workspace.get(r["id"], [])} for r in records]
        if "workspace_groups" in wanted:
            groups = view.groups()
            side["workspace_groups"] = {g: groups[g] for r in records for g in r.get("workspace_group_ids") or [] if g in groups}
        records = [shown("workspaces", r, wanted) for r in records]
        return envelope("workspaces", records, page=page, per_page=per_page, side=side)

    @app.get("/api/v1/workspaces/{workspace_id}")
    @app.get("/api/v1/workspaces/{workspace_id}.json")
    def show_workspace(workspace_id: str) -> dict[str, Any]:
        record = store.workspace(workspace_id.removesuffix(".json"))
        if record is None or record["archived"]:  # hidden by the default filters: the show route 404s
            raise KantataError(404, "Not found")
        return envelope("workspaces", [record], page=1, per_page=1)

    @app.post("/api/v1/workspaces")
    @app.post("/api/v1/workspaces.json")
    async def create_workspace(request: Request) -> dict[str, Any]:
        body = await request.json()
        many = body.get("workspaces") if isinstance(body, dict) else None
        items = many if isinstance(many, list) else [(body or {}).get("workspace")]
        if not items or len(items) > 100 or not all(isinstance(i, dict) for i in items):
            raise KantataError(400, "send one workspace, or up to 100 under workspaces")
        created = [store.create_workspace(item) for item in items]
        return envelope("workspaces", created, page=1, per_page=max(1, len(created)))

    @app.put("/api/v1/workspaces/{workspace_id}")
    @app.put("/api/v1/workspaces/{workspace_id}.json")
    async def update_workspace(workspace_id: str, request: Request) -> dict[str, Any]:
        body = await request.json()
        fields = (body or {}).get("workspace")
        if not isinstance(fields, dict):
            raise KantataError(400, "send the changes under workspace")
        record = store.update_workspace(workspace_id.removesuffix(".json"), fields)
        return envelope("workspaces", [record], page=1, per_page=1)


def _add_references(app: FastAPI, store: KantataStore, view: Any, billing: Any) -> None:
    from backbone_sandbox.kantata_people import account_users

    @app.get("/api/v1/external_references")
    @app.get("/api/v1/external_references.json")
    def list_references(request: Request) -> dict[str, Any]:
        page, per_page = paging(request)
        query = request.query_params
        if not query.get("subject_type"):
            raise KantataError(400, "subject_type is required")
        records = [r for r in store.external_references.values() if r["subject_type"] == query["subject_type"]]
        for name in ("subject_id", "service_name", "service_model", "service_model_ref", "status"):
            if (value := query.get(name)) is not None:
                records = [r for r in records if str(r.get(name)) == value]
        records.sort(key=lambda r: (r["last_synced_at"], r["id"]), reverse=True)
        return envelope("external_references", records, page=page, per_page=per_page)

    @app.post("/api/v1/external_references/create_or_update")
    @app.post("/api/v1/external_references/create_or_update.json")
    async def reference(request: Request) -> dict[str, Any]:
        body = await request.json()
        fields = (body or {}).get("external_reference")
        if not isinstance(fields, dict):
            raise KantataError(400, "send the reference under external_reference")
        if fields.get("subject_type") == "Workspace" and store.workspace(str(fields.get("subject_id"))) is None:
            raise KantataError(422, f"Workspace {fields.get('subject_id')} not found", "validation")
        if fields.get("subject_type") == "User" and str(fields.get("subject_id")) not in account_users(view, store):
            raise KantataError(422, f"User {fields.get('subject_id')} not found", "validation")
        if fields.get("subject_type") == "Invoice" and str(fields.get("subject_id")) not in billing.invoices():
            raise KantataError(422, f"Invoice {fields.get('subject_id')} not found", "validation")
        return envelope("external_references", [store.reference(fields)], page=1, per_page=1)
