"""The PSA's REST API (our own definition; its OpenAPI document is served at ``/psa/openapi.json``).

Projects are created and updated through one idempotent call keyed by the source system's id:
``PUT /api/v1/projects/by-external-id/{source}/{external_id}`` answers 201 when it created the
project, 200 when it found it (updating changed fields). Repeating the call never makes a second.

Time entries are listed by approval time, cursor-paged: ``GET /api/v1/time-entries``.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from backbone_sandbox.store import PicklableLockMixin, dumps_any_depth


class ClientIn(BaseModel):
    external_id: str
    name: str = Field(min_length=1, max_length=255)
    website: str | None = None
    country: str | None = None
    industry: str | None = None


class ContactIn(BaseModel):
    external_id: str
    first_name: str | None = None
    last_name: str | None = None
    email: str
    role: str | None = None


class ProjectIn(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    client: ClientIn
    contacts: list[ContactIn] = []
    description: str | None = None
    estimated_hours: Decimal | None = None
    budget: Decimal
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    billing_type: Literal["time_and_materials", "fixed_fee"]
    start_date: date | None = None
    end_date: date | None = None
    payment_terms_days: int | None = None


class ProjectOut(ProjectIn):
    id: str
    url: str
    external_source: str
    external_id: str
    status: Literal["planned", "active", "closed"] = "planned"
    created_at: datetime
    updated_at: datetime


class PersonRef(BaseModel):
    id: str
    name: str | None = None
    email: str | None = None
    type: str | None = Field(None, description="employee or contractor")


class NamedRef(BaseModel):
    id: str
    name: str | None = None


class TaskRef(NamedRef):
    billing_code: str | None = None


class TimeEntryOut(BaseModel):
    id: str
    version: int = Field(description="Grows by one with every edit; an edited entry must be approved again.")
    spent_date: str
    hours: str = Field(description="Decimal hours as a string, e.g. '3.25'.")
    billable: bool
    billable_rate: str = Field(description="Decimal rate per hour as a string.")
    currency: str
    approval_status: str = Field(description="submitted, approved or rejected")
    approved_at: str | None
    updated_at: str
    notes: str | None = None
    user: PersonRef
    client: NamedRef
    project: NamedRef
    task: TaskRef


class CategoryRef(BaseModel):
    code: str = Field(description="The expense category's code (e.g. TRAVEL); accounting maps it to a GL account.")
    name: str | None = None


class ReceiptRef(BaseModel):
    id: str
    file_name: str | None = None


class ExpenseOut(BaseModel):
    id: str
    version: int = Field(description="Grows by one with every edit; an edited expense must be approved again.")
    spent_date: str
    category: CategoryRef
    amount: str = Field(description="What was paid, tax included, as a decimal string, e.g. '42.50'.")
    currency: str
    exchange_rate: str | None = Field(None, description="Home-currency units per unit of ``currency``; null in the home currency.")
    billable: bool = Field(description="Billed on to the client.")
    reimbursable: bool = Field(description="Paid by the person (to be reimbursed); false when paid by the company.")
    receipt: ReceiptRef | None = None
    approval_status: str = Field(description="submitted, approved or rejected")
    approved_at: str | None
    updated_at: str
    notes: str | None = None
    user: PersonRef
    client: NamedRef
    project: NamedRef


class ExpensePage(BaseModel):
    items: list[ExpenseOut]
    next_cursor: str | None = Field(description="Pass as ``cursor`` for the next page; null on the last page.")


class BillingCodeIn(BaseModel):
    accounting_item_id: str | None = Field(None, description="The accounting item (service code) the code posts to.")
    accounting_item_name: str | None = Field(None, max_length=200)
    gl_account: str | None = Field(None, max_length=200)
    active: bool = Field(True, description="False: accounting retired the item; the PSA stops offering the code for new work.")


class BillingCodeOut(BillingCodeIn):
    code: str
    name: str = Field(description="The PSA's own label of the code.")
    updated_at: str
    changed: bool | None = Field(None, description="On a PUT: whether the PSA changed (false when it already said so).")


class BillingCodePage(BaseModel):
    items: list[BillingCodeOut]


class PaymentStatusIn(BaseModel):
    status: Literal["open", "partially_paid", "paid", "overdue", "voided"]
    amount_paid: Decimal
    balance: Decimal
    currency: str
    accounting_id: str | None = None


class TimeEntryPage(BaseModel):
    items: list[TimeEntryOut]
    next_cursor: str | None = Field(description="Pass as ``cursor`` for the next page; null on the last page.")


class WithdrawalOut(BaseModel):
    id: str
    version: int = Field(description="The entry's version after the withdrawal (higher than any approved one before it).")
    withdrawn_at: datetime
    reason: str = Field(description="``deleted`` (gone from the PSA) or ``unapproved`` (sent back for changes).")


class WithdrawalPage(BaseModel):
    items: list[WithdrawalOut]
    next_cursor: str | None = Field(description="Pass as ``cursor`` for the next page; null on the last page.")


class ProjectPage(BaseModel):
    items: list[ProjectOut]
    page: int
    page_size: int
    total: int
    next_page: int | None


class PersonIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    email: str | None = None
    role: str | None = None
    department: str | None = None
    division: str | None = None
    location: str | None = None
    employment_status: str | None = None
    weekly_hours: Decimal | None = None
    start_date: date | None = None
    end_date: date | None = None
    active: bool = True
    skills: list[str] = []
    certifications: list[dict[str, Any]] = []


class TimeOffDay(BaseModel):
    date: date
    hours: Decimal = Field(gt=0, le=24)


class TimeOffIn(BaseModel):
    window_start: date
    window_end: date
    days: list[TimeOffDay]


UNMAPPED_OFFERED_CODES = {"SUPPORT": "Support desk"}
"""A code the PSA offers on tasks that accounting_mapping.yaml does not map (no time uses it yet):
planted for the data audit, which must find it before anyone books on it."""


class PsaStore(PicklableLockMixin):
    def __init__(self) -> None:
        self.people: dict[str, dict[str, Any]] = {}
        self.time_off: dict[str, dict[str, str]] = {}
        self.people_writes = 0
        self.projects: dict[str, dict[str, Any]] = {}
        self.by_external: dict[tuple[str, str], str] = {}
        self.writes = 0
        self.creates = 0
        self._lock = threading.Lock()

    def upsert_person(self, source: str, external_id: str, person: PersonIn) -> tuple[dict[str, Any], bool]:
        with self._lock:
            key = f"{source}:{external_id}"
            fields = person.model_dump(mode="json")
            current = self.people.get(key)
            if current is None:
                self.people[key] = {
                    **fields,
                    "id": f"PER-{len(self.people) + 1:06d}",
                    "external_source": source,
                    "external_id": external_id,
                }
                self.people_writes += 1
                return self.people[key], True
            if any(current.get(k) != v for k, v in fields.items()):
                current.update(fields)
                self.people_writes += 1
            return current, False

    def billing_code_list(self) -> dict[str, dict[str, Any]]:
        """The PSA's billing codes (a state saved before the list existed gets the seed's codes)."""
        from backbone_sandbox.psa_time import BILLING_CODES

        codes = self.__dict__.get("billing_codes")
        if codes is None:
            codes = self.__dict__["billing_codes"] = {
                code: {
                    "code": code,
                    "name": name,
                    "accounting_item_id": None,
                    "accounting_item_name": None,
                    "gl_account": None,
                    "active": True,
                    "updated_at": "2026-01-01T00:00:00.000Z",
                }
                for code, name in {**BILLING_CODES, **UNMAPPED_OFFERED_CODES}.items()
            }
        return codes

    def update_billing_code(self, code: str, body: BillingCodeIn) -> tuple[dict[str, Any], bool, bool]:
        """(record, created, changed): what accounting says about a code; an unknown code is added."""
        from backbone_sandbox.seed import iso_millis

        with self._lock:
            codes = self.billing_code_list()
            fields = body.model_dump(mode="json")
            current = codes.get(code)
            created = current is None
            if current is None:
                current = codes[code] = {"code": code, "name": code.title(), **fields, "updated_at": ""}
            changed = created or any(current.get(k) != v for k, v in fields.items())
            if changed:
                current.update(fields, updated_at=iso_millis(datetime.now(UTC)))
                self.writes += 1
            return dict(current), created, changed

    def replace_time_off(self, source: str, external_id: str, body: TimeOffIn) -> bool:
        """Replace the person's days inside the window; True when anything changed."""
        with self._lock:
            key = f"{source}:{external_id}"
            days = dict(self.time_off.get(key, {}))
            kept = {d: h for d, h in days.items() if not (body.window_start.isoformat() <= d <= body.window_end.isoformat())}
            kept.update({d.date.isoformat(): str(d.hours) for d in body.days})
            if kept == days:
                return False
            self.time_off[key] = kept
            self.people_writes += 1
            return True

    def upsert(self, source: str, external_id: str, project: ProjectIn, base_url: str) -> tuple[dict[str, Any], bool]:
        with self._lock:
            now = datetime.now(UTC)
            fields = project.model_dump(mode="json")
            existing_id = self.by_external.get((source, external_id))
            if existing_id is not None:
                current = self.projects[existing_id]
                if any(current.get(k) != v for k, v in fields.items()):
                    current.update(fields, updated_at=now.isoformat())
                    self.writes += 1
                return current, False
            project_id = f"PRJ-{len(self.projects) + 1:06d}"
            record = {
                **fields,
                "id": project_id,
                "url": f"{base_url}/projects/{project_id}",
                "external_source": source,
                "external_id": external_id,
                "status": "planned",
                "created_at": now.isoformat(),
                "updated_at": now.isoformat(),
            }
            self.projects[project_id] = record
            self.by_external[(source, external_id)] = project_id
            self.writes += 1
            self.creates += 1
            return record, True


def build_psa_app(state: Any) -> FastAPI:
    app = FastAPI(
        title="PSA API",
        version="1.0.0",
        description=(
            "The PSA contract of the service backbone: what a PSA (or a company's middleware in front of one) answers "
            "so every flow can use it — projects from CRM deals (upserted by external id), people and time off by HR id, "
            "approved time entries by approval time and their withdrawals, PM-approved invoices, payment status, "
            'milestones. Bearer token auth; cursor paging (next_cursor); errors as {"detail": …} with the HTTP status.'
        ),
        docs_url="/docs",
        redoc_url=None,
    )
    store = state.psa

    def authorised(request: Request) -> None:
        if request.headers.get("authorization") != f"Bearer {state.config.token}":
            raise HTTPException(401, "missing or invalid bearer token")

    _add_projects(app, state, store, authorised)
    _add_time_and_people(app, state, store, authorised)
    _add_expenses(app, state, authorised)
    _add_billing_codes(app, state, authorised)
    _add_billing(app, state, store, authorised)
    return app


def _add_projects(app: FastAPI, state: Any, store: Any, authorised: Any) -> None:
    @app.put(
        "/api/v1/projects/by-external-id/{source}/{external_id}",
        response_model=ProjectOut,
        responses={201: {"model": ProjectOut, "description": "created"}, 200: {"description": "already existed; changed fields updated"}},
    )
    def upsert_project(
        source: str, external_id: str, project: ProjectIn, request: Request, response: Response, _: None = Depends(authorised)
    ) -> dict[str, Any]:
        base = str(request.base_url).rstrip("/")
        record, created = state.psa.upsert(source, external_id, project, base)
        response.status_code = 201 if created else 200
        return record

    @app.get("/api/v1/projects/{project_id}", response_model=ProjectOut)
    def read_project(project_id: str, _: None = Depends(authorised)) -> dict[str, Any]:
        if project_id not in state.psa.projects:
            raise HTTPException(404, f"project {project_id} not found")
        return state.psa.projects[project_id]

    @app.get("/api/v1/projects", response_model=ProjectPage)
    def list_projects(
        page: int = Query(1, ge=1), page_size: int = Query(100, ge=1, le=500), _: None = Depends(authorised)
    ) -> dict[str, Any]:
        items = list(state.psa.projects.values())
        chunk = items[(page - 1) * page_size : page * page_size]
        return {
            "items": chunk,
            "page": page,
            "page_size": page_size,
            "total": len(items),
            "next_page": page + 1 if page * page_size < len(items) else None,
        }


def _add_billing_codes(app: FastAPI, state: Any, authorised: Any) -> None:
    @app.get("/api/v1/billing-codes", response_model=BillingCodePage)
    def list_billing_codes(_: None = Depends(authorised)) -> dict[str, Any]:
        """Every billing code the PSA offers on tasks, with what accounting last said about it."""
        with state.psa._lock:
            return {"items": [dict(c) for _, c in sorted(state.psa.billing_code_list().items())]}

    @app.put("/api/v1/billing-codes/{code}", response_model=BillingCodeOut)
    def update_billing_code(code: str, body: BillingCodeIn, response: Response, _: None = Depends(authorised)) -> dict[str, Any]:
        """Set the accounting item, GL account and active flag of a code (201 when the PSA lacked
        it; ``changed`` false when it already said so: idempotent)."""
        record, created, changed = state.psa.update_billing_code(code, body)
        response.status_code = 201 if created else 200
        return {**record, "changed": changed}


def _add_expenses(app: FastAPI, state: Any, authorised: Any) -> None:
    @app.get("/api/v1/expenses", response_model=ExpensePage)
    def list_expenses(
        approved_from: datetime = Query(..., description="Approval time, inclusive (ISO 8601 with zone)."),
        approved_to: datetime = Query(..., description="Approval time, exclusive."),
        approval_status: str | None = Query(None),
        cursor: str | None = Query(None),
        page_size: int = Query(200, ge=1, le=1000),
        _: None = Depends(authorised),
    ) -> Response:
        """Expenses approved in the window, oldest approval first (cursor-paged)."""
        if approved_from.tzinfo is None or approved_to.tzinfo is None:
            raise HTTPException(422, "approved_from and approved_to need a time zone")
        try:
            items, next_cursor = state.psa_expenses.page(
                approved_from=approved_from, approved_to=approved_to, status=approval_status, cursor=cursor, page_size=page_size
            )
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc
        return Response(dumps_any_depth({"items": items, "next_cursor": next_cursor}), media_type="application/json")

    @app.get("/api/v1/expenses/withdrawn", response_model=WithdrawalPage)
    def list_withdrawn_expenses(
        withdrawn_from: datetime = Query(..., description="Withdrawal time, inclusive (ISO 8601 with zone)."),
        withdrawn_to: datetime = Query(..., description="Withdrawal time, exclusive."),
        cursor: str | None = Query(None),
        page_size: int = Query(200, ge=1, le=1000),
        _: None = Depends(authorised),
    ) -> dict[str, Any]:
        """Approved expenses deleted or un-approved in the window: what accounting must no longer hold."""
        if withdrawn_from.tzinfo is None or withdrawn_to.tzinfo is None:
            raise HTTPException(422, "withdrawn_from and withdrawn_to need a time zone")
        try:
            items, next_cursor = state.psa_expenses.withdrawals_page(
                withdrawn_from=withdrawn_from, withdrawn_to=withdrawn_to, cursor=cursor, page_size=page_size
            )
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc
        return {"items": items, "next_cursor": next_cursor}


def _add_time_and_people(app: FastAPI, state: Any, store: Any, authorised: Any) -> None:
    @app.get("/api/v1/time-entries", response_model=TimeEntryPage)
    def list_time_entries(
        approved_from: datetime = Query(..., description="Approval time, inclusive (ISO 8601 with zone)."),
        approved_to: datetime = Query(..., description="Approval time, exclusive."),
        approval_status: str | None = Query(None),
        cursor: str | None = Query(None),
        page_size: int = Query(200, ge=1, le=1000),
        _: None = Depends(authorised),
    ) -> Response:
        if approved_from.tzinfo is None or approved_to.tzinfo is None:
            raise HTTPException(422, "approved_from and approved_to need a time zone")
        try:
            items, next_cursor = state.psa_time.page(
                approved_from=approved_from, approved_to=approved_to, status=approval_status, cursor=cursor, page_size=page_size
            )
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc
        # Served as stored (no response-model round trip): large pages stay cheap.
        return Response(dumps_any_depth({"items": items, "next_cursor": next_cursor}), media_type="application/json")

    @app.get("/api/v1/time-entries/withdrawn", response_model=WithdrawalPage)
    def list_withdrawn_time_entries(
        withdrawn_from: datetime = Query(..., description="Withdrawal time, inclusive (ISO 8601 with zone)."),
        withdrawn_to: datetime = Query(..., description="Withdrawal time, exclusive."),
        cursor: str | None = Query(None),
        page_size: int = Query(200, ge=1, le=1000),
        _: None = Depends(authorised),
    ) -> dict[str, Any]:
        """Approved entries deleted or un-approved in the window: what accounting must no longer hold."""
        if withdrawn_from.tzinfo is None or withdrawn_to.tzinfo is None:
            raise HTTPException(422, "withdrawn_from and withdrawn_to need a time zone")
        try:
            items, next_cursor = state.psa_time.withdrawals_page(
                withdrawn_from=withdrawn_from, withdrawn_to=withdrawn_to, cursor=cursor, page_size=page_size
            )
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc
        return {"items": items, "next_cursor": next_cursor}

    @app.put("/api/v1/people/by-external-id/{source}/{external_id}")
    def upsert_person(source: str, external_id: str, person: PersonIn, response: Response, _: None = Depends(authorised)) -> dict[str, Any]:
        """Create or update a person from the HR system (201 created, 200 found); never a second person."""
        record, created = state.psa.upsert_person(source, external_id, person)
        response.status_code = 201 if created else 200
        return record

    @app.put("/api/v1/people/by-external-id/{source}/{external_id}/time-off")
    def replace_time_off(source: str, external_id: str, body: TimeOffIn, _: None = Depends(authorised)) -> dict[str, Any]:
        """Set the person's approved time off inside ``[window_start, window_end]`` (idempotent)."""
        if f"{source}:{external_id}" not in state.psa.people:
            raise HTTPException(404, f"person {source}:{external_id} not found")
        return {"changed": state.psa.replace_time_off(source, external_id, body)}


def _add_billing(app: FastAPI, state: Any, store: Any, authorised: Any) -> None:
    @app.get("/api/v1/invoices")
    def list_invoices(
        period: str | None = Query(None, pattern=r"^\d{4}-\d{2}$", description="Billing month, YYYY-MM."),
        approved_from: datetime | None = Query(None, description="PM approval time (or void time), inclusive."),
        approved_to: datetime | None = Query(None, description="PM approval time (or void time), exclusive."),
        released_from: datetime | None = Query(None, description="Finance release time (or void time), inclusive."),
        released_to: datetime | None = Query(None, description="Finance release time (or void time), exclusive."),
        status: str | None = Query(
            None, pattern="^submitted$", description="With ``period``: ``submitted`` lists the month's unapproved invoices."
        ),
        cursor: str | None = Query(None),
        page_size: int = Query(100, ge=1, le=500),
        _: None = Depends(authorised),
    ) -> Response:
        """Invoices and credit notes (voided ones included, marked): those of a billing month
        (``period``), or of any month approved by the PM (``approved_from``/``approved_to``) or
        released by finance (``released_from``/``released_to``) in a window. Exactly one selector.
        Each line has a ``kind``: ``time`` (a person's hours), ``fixed_fee`` (a milestone),
        ``adjustment``, or ``expense`` (a billable expense billed on at cost; ``expense.id`` names it)."""
        windows = {"approved_at": (approved_from, approved_to), "released_at": (released_from, released_to)}
        chosen = [field for field, bounds in windows.items() if any(b is not None for b in bounds)]
        if len(chosen) + (period is not None) != 1:
            raise HTTPException(422, "give exactly one of period, approved_from/approved_to, released_from/released_to")
        if period is not None:
            records = state.billing.for_period(period, unapproved=status == "submitted")
        else:
            start, end = windows[chosen[0]]
            if start is None or end is None or start.tzinfo is None or end.tzinfo is None:
                raise HTTPException(422, "a window needs both bounds, each with a time zone")
            records = state.billing.changed_between(chosen[0], start, end)
        start_at = int(cursor) if cursor and cursor.isdigit() else 0
        chunk = records[start_at : start_at + page_size]
        next_cursor = str(start_at + page_size) if start_at + page_size < len(records) else None
        return Response(json.dumps({"items": chunk, "next_cursor": next_cursor}), media_type="application/json")

    @app.put("/api/v1/invoices/{invoice_id}/payment-status")
    def set_payment_status(invoice_id: str, status: PaymentStatusIn, _: None = Depends(authorised)) -> dict[str, Any]:
        """Record what accounting says about an invoice's payment (idempotent)."""
        if not any(i["id"] == invoice_id for i in state.billing.invoices):
            raise HTTPException(404, f"invoice {invoice_id} not found")
        changed = state.billing.set_payment_status(invoice_id, status.model_dump(mode="json"))
        return {"id": invoice_id, "changed": changed, **status.model_dump(mode="json")}

    @app.get("/api/v1/milestones")
    def list_milestones(
        completed_from: datetime = Query(...), completed_to: datetime = Query(...), _: None = Depends(authorised)
    ) -> dict[str, Any]:
        """Project milestones completed in ``[completed_from, completed_to)``."""
        items = [
            m
            for m in state.billing.milestones
            if completed_from <= datetime.fromisoformat(m["completed_at"].replace("Z", "+00:00")) < completed_to
        ]
        return {"items": items}


def contract() -> dict[str, Any]:
    """The PSA API's OpenAPI document (what ``docs/psa-api/openapi.json`` holds), without a running sandbox."""
    from types import SimpleNamespace

    return build_psa_app(SimpleNamespace(psa=None, config=None)).openapi()
