"""Kantata's billing side over the sandbox's one business: the PM-approved invoices, milestones and
payments of the PSA seed (``backbone_sandbox.psa_billing``) as a Kantata account holds them, so
month-end, payments and milestones read the same month on Kantata as on our PSA API.

How the seed's billing is put in Kantata's terms (restated from developer.kantata.com, not copied):

- An ``Invoice`` has ``draft`` (the PM has not finished it: our "submitted"), ``status`` (``new``,
  ``cancelled``, ``accepted payment``), ``user_invoice_number`` (an integer), ``invoice_date``,
  ``due_date``, ``payment_schedule`` (days), ``currency``, ``tax_rate`` (a percentage applied to the
  invoice total) and ``balance_in_cents``. Its lines are Kantata objects of their own, listed by id
  only when included: ``time_entry_ids`` (the time it bills), ``fixed_fee_item_ids``
  (``amount_in_cents``, ``notes``, ``story_id``: the milestone it bills), ``additional_item_ids``
  (``amount_in_cents``, ``notes``); ``workspace_ids`` names its projects.
- Kantata keeps no approval time: finishing a draft updates the invoice, so ``updated_at`` is the
  latest of approval, cancellation and payment.
- A milestone is a ``Story`` with ``story_type`` ``milestone``; completing it sets ``state``
  ``completed`` and adds a ``StoryStateChange`` (``state``, ``created_at``), listed when
  ``include=story_state_changes``.
- A payment recorded outside Kantata is an ``ExternalPayment``: created with an ``invoice_id`` it pays
  the invoice's whole balance, only for a non-draft invoice still pending (``new``); no idempotency key.
- The projects of the seed's fixed-fee deals are workspaces the account had before (kept in its
  store apart from those the API made, so closed-won can update them), each linked to its CRM deal
  by external reference.

What Kantata's wire cannot carry is not in this account (``left_out``): a credit note (Kantata has
none), an invoice whose tax or total is not what its tax rate makes, time lines that are not the
invoice's time entries, a client other than its project's, and one invoice number used twice.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from fastapi import Request

from backbone_sandbox.kantata_time import KantataTimeView, _kantata_time, _strip, answer, includes, kantata_id, only, updated_between
from backbone_sandbox.psa_billing import TAX
from backbone_sandbox.psa_time import NON_BILLABLE_CODES

INVOICE_BASE, FIXED_FEE_ITEM_BASE, ADDITIONAL_ITEM_BASE = 3_000_000, 3_100_000, 3_200_000
FIXED_WORKSPACE_BASE, MILESTONE_BASE, STATE_CHANGE_BASE = 7_500_000, 8_900_000, 8_950_000
TAX_RATES = {code: float(rate * 100) for code, rate in TAX.values()}
"""The seed's tax codes as Kantata's percentages (``VAT21`` → 21.0)."""
INVOICE_ASSOCIATIONS = {
    "workspaces": "workspace_ids",
    "time_entries": "time_entry_ids",
    "fixed_fee_items": "fixed_fee_item_ids",
    "additional_items": "additional_item_ids",
    "external_references": "external_reference_ids",
}


def _number(seed_id: str) -> int:
    return int(re.sub(r"\D", "", seed_id) or 0)


def kantata_invoice_id(seed_id: str) -> str:
    """The seed's ``PINV-00003`` as Kantata invoice ``3000003``."""
    return str(INVOICE_BASE + _number(seed_id))


def milestone_story_id(seed_id: str) -> str:
    """The seed's milestone ``MS-001-2`` as Kantata story ``8900012``."""
    return str(MILESTONE_BASE + _number(seed_id))


def _cents(amount: Any) -> int:
    return int((Decimal(str(amount)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


class KantataBillingView:
    """The seed's invoices and milestones in Kantata's objects, built from the live billing store on
    each read (a void, a late approval or a payment made through the sandbox shows on both APIs)."""

    def __init__(self, state: Any):
        self.state = state
        self.time = KantataTimeView(state)

    @property
    def billing(self) -> Any:
        return self.state.billing

    @property
    def store(self) -> Any:
        return self.state.kantata

    def payments(self) -> dict[str, dict[str, Any]]:
        return self.store.__dict__.setdefault("external_payments", {})

    # --- the account's fixed-fee workspaces --------------------------------------------------
    def fixed_projects(self) -> dict[str, dict[str, Any]]:
        """Projects the billing seed adds to the time seed's (the fixed-fee deals'), by seed id."""
        known = self.state.psa_time.projects
        out: dict[str, dict[str, Any]] = {}
        for invoice in self.billing.invoices:
            project = invoice["project"]
            if project["id"] not in known:
                out.setdefault(project["id"], {**project, "client_id": invoice["client"]["id"], "currency": invoice["currency"]})
        return out

    def workspace_of(self, project_id: str) -> str:
        if project_id in self.state.psa_time.projects:
            return kantata_id("workspaces", project_id)
        return str(FIXED_WORKSPACE_BASE + _number(project_id))

    def open_account(self) -> None:
        """Put the fixed-fee deals' workspaces and their deal references in the account (once)."""
        store, crm = self.store, self.state.config.crm
        for project_id, project in sorted(self.fixed_projects().items()):
            wid = self.workspace_of(project_id)
            if store.workspace(wid) is not None:
                continue
            stamp = _kantata_time(self.billing.invoices[0]["approved_at"] or "2026-01-01T00:00:00Z")
            store.seeded_workspaces[wid] = {
                "id": wid,
                "title": project["name"],
                "description": "",
                "budgeted": True,
                "price": int(Decimal(str(self._contract_value(project_id)))),
                "currency": project["currency"],
                "start_date": None,
                "due_date": None,
                "archived": False,
                "created_at": stamp,
                "updated_at": stamp,
                "workspace_group_ids": [kantata_id("workspace_groups", project["client_id"])],
            }
            if deal := self.billing.project_deals.get(project_id):
                reference_id = f"9{wid}"
                store.external_references[reference_id] = {
                    "id": reference_id,
                    "subject_type": "Workspace",
                    "subject_id": wid,
                    "service_name": crm,
                    "service_model": "deal",
                    "service_model_ref": str(deal),
                    "external_status": None,
                    "external_message": None,
                    "status": "successful",
                    "created_at": stamp,
                    "updated_at": stamp,
                    "last_synced_at": stamp,
                }

    def _contract_value(self, project_id: str) -> Any:
        deal = self.state.crm.objects["deals"].get(str(self.billing.project_deals.get(project_id))) or {}
        return (deal.get("properties") or {}).get("amount") or 0

    # --- invoices ----------------------------------------------------------------------------
    def _billable_entries(self) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
        """Approved billable time by (project, person, month): what a T&M invoice's time lines bill."""
        bad = self.state.psa_time.bad_entries
        out: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for entry in self.time.entries():
            if entry["id"] in bad or entry["approval_status"] != "approved" or not entry["billable"]:
                continue
            if (entry.get("task") or {}).get("billing_code") in NON_BILLABLE_CODES:
                continue
            out.setdefault((entry["project"]["id"], entry["user"]["id"], entry["spent_date"][:7]), []).append(entry)
        return out

    def left_out(self, entries: dict[tuple[str, str, str], list[dict[str, Any]]] | None = None) -> dict[str, str]:
        """Seed invoice id → why this Kantata account never had it (``entries``: ``_billable_entries``, when read already)."""
        entries = self._billable_entries() if entries is None else entries
        numbers: dict[str, int] = {}
        for invoice in self.billing.invoices:
            numbers[invoice["number"]] = numbers.get(invoice["number"], 0) + 1
        out = {}
        for invoice in self.billing.invoices:
            if reason := self._cannot_carry(invoice, entries, numbers):
                out[invoice["id"]] = reason
        return out

    def _cannot_carry(self, invoice: dict[str, Any], entries: dict[tuple[str, str, str], list[dict[str, Any]]], numbers: dict) -> str:
        if invoice["type"] != "invoice":
            return "Kantata has no credit notes"
        if numbers[invoice["number"]] > 1:
            return "Kantata numbers each invoice once"
        project = self.state.psa_time.projects.get(invoice["project"]["id"]) or self.fixed_projects().get(invoice["project"]["id"])
        if project is None or project["client_id"] != invoice["client"]["id"]:
            return "a Kantata invoice bills its project's client"
        subtotal = sum((Decimal(line["amount"]) for line in invoice["lines"]), Decimal(0))
        rate = Decimal(str(TAX_RATES.get(invoice["tax_code"], 0))) / 100
        tax = (subtotal * rate).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        if (subtotal, tax, subtotal + tax) != tuple(Decimal(invoice[k]) for k in ("subtotal", "tax_amount", "total")):
            return "Kantata computes tax and total from the lines and the tax rate"
        for line in invoice["lines"]:
            if line["kind"] != "time":
                continue
            held = entries.get((invoice["project"]["id"], line["person"]["id"], invoice["period"]), [])
            hours = sum((Decimal(e["hours"]) for e in held), Decimal(0))
            if hours != Decimal(line["quantity"]) or any(Decimal(e["billable_rate"]) != Decimal(line["rate"]) for e in held):
                return "a Kantata invoice's time lines are its time entries"
        return ""

    def invoices(self) -> dict[str, dict[str, Any]]:
        """Every invoice the account has, by Kantata id, with its line ids."""
        entries, payments = self._billable_entries(), self.payments()
        left_out = self.left_out(entries)
        paid = {p["invoice_id"]: p for p in payments.values()}
        out = {}
        for invoice in self.billing.invoices:
            if invoice["id"] in left_out:
                continue
            kid = kantata_invoice_id(invoice["id"])
            payment = paid.get(kid)
            moments = [invoice.get("approved_at"), invoice.get("voided_at"), payment and payment["created_at"]]
            stamps = [_kantata_time(m) for m in moments if m]
            issued = _kantata_time(f"{invoice['issue_date']}T12:00:00+00:00")
            time_ids = [
                kantata_id("time_entries", e["id"])
                for line in invoice["lines"]
                if line["kind"] == "time"
                for e in entries.get((invoice["project"]["id"], line["person"]["id"], invoice["period"]), [])
            ]
            status = "cancelled" if invoice["status"] == "voided" else "accepted payment" if payment else "new"
            number = _number(invoice["number"])
            draft = invoice["status"] == "submitted"
            out[kid] = {
                "id": kid,
                "title": f"{'Draft Invoice' if draft else 'Invoice'} #{number}",
                "user_invoice_number": number,
                "draft": draft,
                "status": status,
                "invoice_date": invoice["issue_date"],
                "due_date": invoice["due_date"],
                "payment_schedule": (date.fromisoformat(invoice["due_date"]) - date.fromisoformat(invoice["issue_date"])).days,
                "currency": invoice["currency"],
                "currency_base_unit": 100,
                "tax_rate": TAX_RATES.get(invoice["tax_code"], 0.0),
                "balance_in_cents": 0 if payment or status == "cancelled" else _cents(invoice["total"]),
                "message": None,
                "created_at": min([issued, *stamps]),
                "updated_at": max([issued, *stamps]),
                "workspace_ids": [self.workspace_of(invoice["project"]["id"])],
                "time_entry_ids": time_ids,
                "fixed_fee_item_ids": self._item_ids(invoice, fixed_fee=True),
                "additional_item_ids": self._item_ids(invoice, fixed_fee=False),
            }
        return out

    def _item_ids(self, invoice: dict[str, Any], *, fixed_fee: bool) -> list[str]:
        base = FIXED_FEE_ITEM_BASE if fixed_fee else ADDITIONAL_ITEM_BASE
        kinds = [line for line in invoice["lines"] if line["kind"] != "time" and (line["kind"] == "fixed_fee") == fixed_fee]
        return [self._item_id(base, invoice, line) for line in kinds]

    @staticmethod
    def _item_id(base: int, invoice: dict[str, Any], line: dict[str, Any]) -> str:
        return str(base + _number(invoice["id"]) * 100 + (_number(line["line_id"]) % 100))

    def items(self) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """The fixed fee items and additional items of the account's invoices, by id."""
        fixed, additional = {}, {}
        left_out = self.left_out()
        for invoice in self.billing.invoices:
            if invoice["id"] in left_out:
                continue
            for line in invoice["lines"]:
                if line["kind"] == "time":
                    continue
                item = {
                    "amount_in_cents": _cents(line["amount"]),
                    "currency": invoice["currency"],
                    "notes": line["description"],
                    "taxable": TAX_RATES.get(invoice["tax_code"], 0.0) > 0,
                    "workspace_id": int(self.workspace_of(invoice["project"]["id"])),
                    "created_at": _kantata_time(f"{invoice['issue_date']}T12:00:00+00:00"),
                }
                if line["kind"] == "fixed_fee":
                    item_id = self._item_id(FIXED_FEE_ITEM_BASE, invoice, line)
                    milestone = line.get("milestone") or {}
                    fixed[item_id] = {"id": item_id, **item, "story_id": int(milestone_story_id(milestone["id"])) if milestone else None}
                else:
                    item_id = self._item_id(ADDITIONAL_ITEM_BASE, invoice, line)
                    additional[item_id] = {"id": item_id, **item}
        return fixed, additional

    # --- milestones ------------------------------------------------------------------------
    def milestone_stories(self) -> dict[str, dict[str, Any]]:
        out = {}
        for milestone in self.billing.milestones:
            sid = milestone_story_id(milestone["id"])
            done = _kantata_time(milestone["completed_at"])
            out[sid] = {
                "id": sid,
                "title": milestone["name"],
                "story_type": "milestone",
                "state": "completed",
                "budget_estimate_in_cents": _cents(milestone["amount"]),
                "created_at": done,
                "updated_at": done,
                "workspace_id": self.workspace_of(milestone["project_id"]),
                "story_state_change_ids": [str(STATE_CHANGE_BASE + _number(milestone["id"]))],
            }
        return out

    def state_changes(self) -> dict[str, dict[str, Any]]:
        out = {}
        for milestone in self.billing.milestones:
            cid = str(STATE_CHANGE_BASE + _number(milestone["id"]))
            done = _kantata_time(milestone["completed_at"])
            out[cid] = {"id": cid, "state": "completed", "formatted_state": "Completed", "created_at": done, "updated_at": done}
        return out

    # --- payments ----------------------------------------------------------------------------
    def pay(self, invoice_id: str, workspace_id: Any, message: str | None) -> dict[str, Any]:
        """An external payment of the invoice's whole balance (Kantata's rule: a non-draft invoice still pending)."""
        from backbone_sandbox.kantata import KantataError, _now

        invoice = self.invoices().get(str(invoice_id))
        if invoice is None:
            raise KantataError(404, f"Invoice {invoice_id} not found")
        if invoice["draft"] or invoice["status"] != "new":
            raise KantataError(422, "A payment can only be applied to a non-draft, pending invoice", "validation")
        if str(workspace_id) not in invoice["workspace_ids"]:
            raise KantataError(422, f"Invoice {invoice_id} is not in workspace {workspace_id}", "validation")
        with self.store._lock:
            payment_id = self.store._new_id()
            now = _now()
            record = {
                "id": payment_id,
                "invoice_id": str(invoice_id),
                "workspace_id": str(workspace_id),
                "amount_in_cents": invoice["balance_in_cents"],
                "currency": invoice["currency"],
                "message": message,
                "created_at": now,
                "updated_at": now,
            }
            self.payments()[payment_id] = record
            self.store.creates["external_payments"] = self.store.creates.get("external_payments", 0) + 1
        return record


INVOICE_ORDERS = ("created_at", "id", "invoice_date", "updated_at")


def add_billing_routes(app: Any, view: KantataBillingView) -> None:
    """Invoices with their line items, and external payments."""
    _add_invoices(app, view)
    _add_payments(app, view)


def _filter_invoices(records: list[dict[str, Any]], query: Any) -> list[dict[str, Any]]:
    """``only``, ``updated_after``/``before``, ``without_drafts``, ``paid``, ``workspace_id``."""
    records = updated_between(only(records, query), query)
    if query.get("without_drafts", "false").lower() == "true":
        records = [r for r in records if not r["draft"]]
    if query.get("paid", "false").lower() == "true":
        records = [r for r in records if r["status"] == "accepted payment"]
    if workspaces := query.get("workspace_id"):
        wanted = {w.strip() for w in workspaces.split(",")}
        records = [r for r in records if wanted & set(r["workspace_ids"])]
    return records


def _add_invoices(app: Any, view: KantataBillingView) -> None:
    from backbone_sandbox.kantata import KantataError

    @app.get("/api/v1/invoices")
    @app.get("/api/v1/invoices.json")
    def list_invoices(request: Request) -> dict[str, Any]:
        query = request.query_params
        records = _filter_invoices(list(view.invoices().values()), query)
        order = query.get("order") or "created_at:desc"
        field, _, direction = order.partition(":")
        if field not in INVOICE_ORDERS or direction not in ("asc", "desc"):
            raise KantataError(400, f"invalid order: {order}")
        records.sort(key=lambda r: (int(r["id"]) if field == "id" else r[field], int(r["id"])), reverse=direction == "desc")
        wanted = includes(query)
        hidden = {key for name, key in INVOICE_ASSOCIATIONS.items() if name not in wanted}
        rows = [{k: v for k, v in r.items() if k not in hidden} for r in records]

        def side(ids: set[str]) -> dict[str, dict[str, Any]]:
            chosen = [r for r in records if r["id"] in ids]
            out: dict[str, dict[str, Any]] = {}
            fixed, additional = view.items()
            if "workspaces" in wanted:
                workspaces = {**view.time.workspaces(), **{w["id"]: w for w in view.store.all_workspaces()}}
                out["workspaces"] = {w: _strip("workspaces", workspaces[w]) for r in chosen for w in r["workspace_ids"] if w in workspaces}
            if "time_entries" in wanted:
                entries = view.time.time_entries()
                out["time_entries"] = {t: _strip("time_entries", entries[t]) for r in chosen for t in r["time_entry_ids"] if t in entries}
            if "fixed_fee_items" in wanted:
                out["fixed_fee_items"] = {i: fixed[i] for r in chosen for i in r["fixed_fee_item_ids"]}
            if "additional_items" in wanted:
                out["additional_items"] = {i: additional[i] for r in chosen for i in r["additional_item_ids"]}
            return out

        return answer("invoices", rows, request, side)


def _add_payments(app: Any, view: KantataBillingView) -> None:
    from backbone_sandbox.kantata import KantataError, envelope

    @app.get("/api/v1/external_payments")
    @app.get("/api/v1/external_payments.json")
    def list_payments(request: Request) -> dict[str, Any]:
        query = request.query_params
        records = updated_between(only(list(view.payments().values()), query), query)
        for name in ("invoice_id", "workspace_id"):
            if (value := query.get(name)) is not None:
                records = [r for r in records if r[name] == value]
        records.sort(key=lambda r: (r["created_at"], int(r["id"])), reverse=(query.get("order") or "created_at:desc").endswith("desc"))
        return answer("external_payments", [_payment_out(r) for r in records], request, {})

    @app.post("/api/v1/external_payments")
    @app.post("/api/v1/external_payments.json")
    async def create_payment(request: Request) -> dict[str, Any]:
        body = await request.json()
        fields = (body or {}).get("external_payment")
        if not isinstance(fields, dict) or fields.get("workspace_id") is None:
            raise KantataError(422, "workspace_id can't be blank", "validation")
        if fields.get("invoice_id") is None:
            raise KantataError(422, "this sandbox records payments of invoices only", "validation")
        record = view.pay(str(fields["invoice_id"]), fields["workspace_id"], fields.get("message"))
        return envelope("external_payments", [_payment_out(record)], page=1, per_page=1)


def _payment_out(record: dict[str, Any]) -> dict[str, Any]:
    """Association ids are written only when included; the amount is Kantata's own."""
    return {k: v for k, v in record.items() if k not in ("invoice_id", "workspace_id")}
