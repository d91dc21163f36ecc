"""The PSA's REST API (OpenAPI at ``<base>/openapi.json``), behind a small swappable interface."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote

from backbone.hooks.base import JsonApiHook
from backbone.paging import CursorPaginator, pages


@dataclass(frozen=True)
class PsaProjectRef:
    project_id: str
    url: str
    created: bool


class PsaClient(Protocol):
    """What the flows need from a PSA; a vendor adapter implements this."""

    def upsert_project(self, source: str, external_id: str, project: dict[str, Any]) -> PsaProjectRef: ...


class PsaTimeSource(Protocol):
    """Approved time, read by approval time."""

    def iter_approved_time_entries(
        self, approved_from: datetime, approved_to: datetime, *, page_size: int = 500
    ) -> Iterator[list[dict[str, Any]]]: ...

    def iter_withdrawn_time_entries(
        self, withdrawn_from: datetime, withdrawn_to: datetime, *, page_size: int = 500
    ) -> Iterator[list[dict[str, Any]]]:
        """Approved entries deleted or un-approved in the window: ``{"id", "version", "withdrawn_at", "reason"}``."""
        ...


class PsaExpenseSource(Protocol):
    """Approved expenses, read by approval time, and the ones withdrawn after approval."""

    def iter_approved_expenses(
        self, approved_from: datetime, approved_to: datetime, *, page_size: int = 500
    ) -> Iterator[list[dict[str, Any]]]: ...

    def iter_withdrawn_expenses(
        self, withdrawn_from: datetime, withdrawn_to: datetime, *, page_size: int = 500
    ) -> Iterator[list[dict[str, Any]]]: ...


class PsaBillingCodes(Protocol):
    """The PSA's billing-code list, kept in step with accounting's items."""

    def billing_codes(self) -> list[dict[str, Any]]: ...

    def update_billing_code(self, code: str, fields: dict[str, Any]) -> bool:
        """Set ``accounting_item_id``, ``accounting_item_name``, ``gl_account`` and ``active``; True when the PSA changed."""
        ...


class PsaBilling(Protocol):
    """Invoices, payment status and milestones."""

    def iter_invoices(self, period: str, *, page_size: int = 100) -> Iterator[list[dict[str, Any]]]: ...

    def iter_invoices_between(self, moment: str, start: datetime, end: datetime, *, page_size: int = 100) -> Iterator[list[dict[str, Any]]]:
        """Invoices of any billing month ``approved`` by the PM or ``released`` by finance (or voided) in ``[start, end)``."""
        ...

    def count_unapproved_invoices(self, period: str) -> int:
        """How many of the month's invoices still wait for the PM's approval (month-end's close report)."""
        ...

    def set_invoice_payment_status(self, invoice_id: str, status: dict[str, Any]) -> bool: ...

    def milestones(self, completed_from: datetime, completed_to: datetime) -> list[dict[str, Any]]: ...


class PsaPeople(Protocol):
    """People and their time off, keyed by the HR system's ids."""

    def upsert_person(self, source: str, external_id: str, person: dict[str, Any]) -> bool: ...

    def replace_time_off(self, source: str, external_id: str, window_start: str, window_end: str, days: list[dict[str, Any]]) -> bool: ...


PSA_SYSTEMS = ("psa", "kantata")
"""The PSAs the backbone speaks: ``psa`` is our own PSA API (the documented contract in
``docs/psa-api/``, for a PSA behind a company's middleware); ``kantata`` is Kantata OX
(``backbone.hooks.kantata``), which serves projects from deals, approved time, people and time off,
invoices, payment status and milestones; what it cannot serve answers ``PsaCapabilityMissing``."""


class PsaCapabilityMissing(NotImplementedError):
    """This PSA's hook does not serve that part of the interface yet: the flow that needs it
    fails at once with this, saying which Connection to use instead."""


class PsaSystem(PsaClient, PsaTimeSource, PsaExpenseSource, PsaBillingCodes, PsaBilling, PsaPeople, Protocol):
    """A PSA as every flow uses it: projects from deals, approved time, invoices and their payment
    status, milestones, people and time off. Chosen by its Connection (``backbone.hooks.vendors.psa_hook``)."""

    system_name: str


class PsaHook(JsonApiHook):
    """The PSA API with a bearer token.

    Connection (``psa_default``): ``host`` = API base URL (e.g. ``https://psa.example.com``),
    ``password`` = API token. No extras.
    """

    conn_name_attr = "psa_conn_id"
    default_conn_name = "psa_default"
    conn_type = "psa"
    hook_name = "PSA"
    system_name = "PSA"

    def __init__(self, psa_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(psa_conn_id, **kwargs)

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.request("GET", "/api/v1/projects", params={"page_size": 1})
        except Exception as exc:  # noqa: BLE001 - reported to the UI, not raised
            return False, str(exc)
        return True, "PSA answered"

    def upsert_project(self, source: str, external_id: str, project: dict[str, Any]) -> PsaProjectRef:
        """Create the project for this source record, or update it: never a second project."""
        path = f"/api/v1/projects/by-external-id/{quote(source, safe='')}/{quote(external_id, safe='')}"
        status, body = self.request_with_status("PUT", path, json=project)
        return PsaProjectRef(project_id=body["id"], url=body["url"], created=status == 201)

    def iter_approved_time_entries(
        self, approved_from: datetime, approved_to: datetime, *, page_size: int = 500
    ) -> Iterator[list[dict[str, Any]]]:
        """Time entries approved in ``[approved_from, approved_to)``, one page at a time (cursor paging)."""
        if approved_from.tzinfo is None or approved_to.tzinfo is None:
            raise ValueError("approval window bounds need a time zone")
        window = {
            "approved_from": approved_from.isoformat(),
            "approved_to": approved_to.isoformat(),
            "approval_status": "approved",
            "page_size": page_size,
        }
        yield from self._cursor_pages("/api/v1/time-entries", window, description="PSA list time entries")

    def iter_withdrawn_time_entries(
        self, withdrawn_from: datetime, withdrawn_to: datetime, *, page_size: int = 500
    ) -> Iterator[list[dict[str, Any]]]:
        """Entries deleted or un-approved in ``[withdrawn_from, withdrawn_to)``, one page at a time."""
        window = {"withdrawn_from": withdrawn_from.isoformat(), "withdrawn_to": withdrawn_to.isoformat(), "page_size": page_size}
        yield from self._cursor_pages("/api/v1/time-entries/withdrawn", window, description="PSA list withdrawn time entries")

    def iter_approved_expenses(
        self, approved_from: datetime, approved_to: datetime, *, page_size: int = 500
    ) -> Iterator[list[dict[str, Any]]]:
        """Expenses approved in ``[approved_from, approved_to)``, one page at a time (cursor paging)."""
        if approved_from.tzinfo is None or approved_to.tzinfo is None:
            raise ValueError("approval window bounds need a time zone")
        window = {
            "approved_from": approved_from.isoformat(),
            "approved_to": approved_to.isoformat(),
            "approval_status": "approved",
            "page_size": page_size,
        }
        yield from self._cursor_pages("/api/v1/expenses", window, description="PSA list expenses")

    def iter_withdrawn_expenses(
        self, withdrawn_from: datetime, withdrawn_to: datetime, *, page_size: int = 500
    ) -> Iterator[list[dict[str, Any]]]:
        """Expenses deleted or un-approved in ``[withdrawn_from, withdrawn_to)``: ``{"id", "version", "withdrawn_at", "reason"}``."""
        window = {"withdrawn_from": withdrawn_from.isoformat(), "withdrawn_to": withdrawn_to.isoformat(), "page_size": page_size}
        yield from self._cursor_pages("/api/v1/expenses/withdrawn", window, description="PSA list withdrawn expenses")

    def billing_codes(self) -> list[dict[str, Any]]:
        """Every billing code the PSA offers, with what accounting last said about it."""
        return list((self.request("GET", "/api/v1/billing-codes", description="PSA list billing codes") or {}).get("items") or [])

    def update_billing_code(self, code: str, fields: dict[str, Any]) -> bool:
        body = self.request("PUT", f"/api/v1/billing-codes/{quote(code, safe='')}", json=fields, description=f"PSA billing code {code}")
        return bool((body or {}).get("changed"))

    def iter_invoices(self, period: str, *, page_size: int = 100) -> Iterator[list[dict[str, Any]]]:
        """PM-approved invoices and credit notes of a billing month (``YYYY-MM``), voided ones marked."""
        yield from self._cursor_pages(
            "/api/v1/invoices", {"period": period, "page_size": page_size}, description=f"PSA list invoices {period}"
        )

    def iter_invoices_between(self, moment: str, start: datetime, end: datetime, *, page_size: int = 100) -> Iterator[list[dict[str, Any]]]:
        """Invoices of any billing month ``approved`` by the PM or ``released`` by finance (or voided)
        in ``[start, end)``: how invoices follow approval instead of the calendar."""
        if moment not in ("approved", "released"):
            raise ValueError(f"moment must be 'approved' or 'released', not {moment!r}")
        window = {f"{moment}_from": start.isoformat(), f"{moment}_to": end.isoformat(), "page_size": page_size}
        yield from self._cursor_pages("/api/v1/invoices", window, description=f"PSA list invoices {moment} in a window")

    def count_unapproved_invoices(self, period: str) -> int:
        """How many invoices of the billing month (``YYYY-MM``) the PM has not approved yet."""
        params = {"period": period, "status": "submitted", "page_size": 100}
        return sum(len(page) for page in self._cursor_pages("/api/v1/invoices", params, description=f"PSA unapproved invoices {period}"))

    def _cursor_pages(self, path: str, params: dict[str, Any], *, description: str) -> Iterator[list[dict[str, Any]]]:
        """The PSA's list paging: ``items`` and a ``next_cursor`` until there is none."""

        def fetch(cursor: str | None) -> Any:
            return self.request("GET", path, params={**params, **({"cursor": cursor} if cursor else {})}, description=description)

        paginator = CursorPaginator(lambda body: (body or {}).get("next_cursor"), description=description)
        yield from pages(paginator, fetch, lambda body: (body or {}).get("items"))

    def set_invoice_payment_status(self, invoice_id: str, status: dict[str, Any]) -> bool:
        """Tell the PSA what accounting says about an invoice; True when the PSA changed."""
        body = self.request("PUT", f"/api/v1/invoices/{quote(invoice_id, safe='')}/payment-status", json=status)
        return bool(body.get("changed"))

    def milestones(self, completed_from: datetime, completed_to: datetime) -> list[dict[str, Any]]:
        body = self.request(
            "GET", "/api/v1/milestones", params={"completed_from": completed_from.isoformat(), "completed_to": completed_to.isoformat()}
        )
        return list((body or {}).get("items") or [])

    def upsert_person(self, source: str, external_id: str, person: dict[str, Any]) -> bool:
        """Create or update a person keyed by the HR id; True when created."""
        path = f"/api/v1/people/by-external-id/{quote(source, safe='')}/{quote(external_id, safe='')}"
        status, _ = self.request_with_status("PUT", path, json=person)
        return status == 201

    def replace_time_off(self, source: str, external_id: str, window_start: str, window_end: str, days: list[dict[str, Any]]) -> bool:
        """Set the person's approved time off inside the window; True when the PSA changed."""
        path = f"/api/v1/people/by-external-id/{quote(source, safe='')}/{quote(external_id, safe='')}/time-off"
        body = self.request("PUT", path, json={"window_start": window_start, "window_end": window_end, "days": days})
        return bool((body or {}).get("changed"))
