"""Kantata's people side as the HR flow meets it: users, account invitations and time off entries.

Restated from developer.kantata.com (not copied):

- ``GET /users`` with ``by_email_address`` (exact match) and ``on_my_account``; users are the
  account's members (the PSA seed's people, as ``kantata_time`` serves them) and whoever an
  invitation added.
- ``POST /account_invitations`` (``email_address`` and ``full_name`` required; up to 50 under
  ``account_invitations``) "adds a user to your account": the invitee is a user from then on. An
  address that already belongs to a user is refused (422). No idempotency key.
- ``/time_off_entries``: ``GET`` by ``user_id`` with ``start_date`` (entries after it) and
  ``end_date`` (entries before it); ``POST`` ``{user_id, hours, requested_date}`` — a second entry
  for a day that has one is combined into it (the hours add up), so a repeated POST is not
  harmless; ``PUT /time_off_entries/{id}`` sets ``hours``; ``DELETE`` answers 204.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import Request, Response

from backbone_sandbox.kantata_time import KantataTimeView, answer, only


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def account_users(view: KantataTimeView, store: Any) -> dict[str, dict[str, Any]]:
    """The account's members: the seed's people and the invitees."""
    return {**view.users(), **store.__dict__.setdefault("invited_users", {})}


def add_people_routes(app: Any, store: Any, view: KantataTimeView) -> None:
    _add_members(app, store, view)
    _add_time_off(app, store, view)


def _add_members(app: Any, store: Any, view: KantataTimeView) -> None:
    from backbone_sandbox.kantata import KantataError, envelope

    @app.get("/api/v1/users")
    @app.get("/api/v1/users.json")
    def list_users(request: Request) -> dict[str, Any]:
        query = request.query_params
        optional = {part.strip() for part in (query.get("optional_fields") or "").split(",") if part.strip()}
        records = only(list(account_users(view, store).values()), query)
        if (email := query.get("by_email_address")) is not None:
            records = [r for r in records if (r.get("email_address") or "").lower() == email.lower()]
        records = [{k: v for k, v in r.items() if k != "classification" or "classification" in optional} for r in records]
        records.sort(key=lambda r: (r["full_name"], r["id"]))
        return answer("users", records, request, {})

    @app.post("/api/v1/account_invitations")
    @app.post("/api/v1/account_invitations.json")
    async def invite(request: Request) -> dict[str, Any]:
        body = await request.json()
        many = body.get("account_invitations") if isinstance(body, dict) else None
        items = many if isinstance(many, list) else [(body or {}).get("account_invitation")]
        if not items or len(items) > 50 or not all(isinstance(i, dict) for i in items):
            raise KantataError(400, "send one account_invitation, or up to 50 under account_invitations")
        invitations, invitees = [], {}
        for item in items:
            email, name = str(item.get("email_address") or "").strip(), str(item.get("full_name") or "").strip()
            if not email or not name:
                raise KantataError(422, "email_address and full_name can't be blank", "validation")
            if any((u.get("email_address") or "").lower() == email.lower() for u in account_users(view, store).values()):
                raise KantataError(422, f"{email} is already a member of this account", "validation")
            with store._lock:
                user_id, invitation_id = store._new_id(), store._new_id()
                invitee = {"id": user_id, "full_name": name, "email_address": email, "headline": item.get("headline")}
                store.invited_users[user_id] = invitee
                store.creates["account_invitations"] = store.creates.get("account_invitations", 0) + 1
            invitees[user_id] = invitee
            invitations.append({"id": invitation_id, "email_address": email, "full_name": name, "invitee_id": user_id})
        side = {"users": invitees} if "invitee" in (request.query_params.get("include") or "") else {}
        return envelope("account_invitations", invitations, page=1, per_page=len(invitations), side=side)


def _add_time_off(app: Any, store: Any, view: KantataTimeView) -> None:
    from backbone_sandbox.kantata import KantataError

    time_off: dict[str, dict[str, Any]] = store.__dict__.setdefault("time_off_entries", {})

    @app.get("/api/v1/time_off_entries")
    @app.get("/api/v1/time_off_entries.json")
    def list_time_off(request: Request) -> dict[str, Any]:
        query = request.query_params
        records = only(list(time_off.values()), query)
        if user := query.get("user_id"):
            records = [r for r in records if r["user_id"] == user]
        if start := query.get("start_date"):
            records = [r for r in records if r["requested_date"] > start]
        if end := query.get("end_date"):
            records = [r for r in records if r["requested_date"] < end]
        records.sort(key=lambda r: (r["requested_date"], int(r["id"])))
        return answer("time_off_entries", [_shown(r, query) for r in records], request, {})

    @app.post("/api/v1/time_off_entries")
    @app.post("/api/v1/time_off_entries.json")
    async def add_time_off(request: Request) -> dict[str, Any]:
        fields = ((await request.json()) or {}).get("time_off_entry")
        if not isinstance(fields, dict):
            raise KantataError(400, "send the entry under time_off_entry")
        user, hours, day = str(fields.get("user_id") or ""), _hours(fields.get("hours")), str(fields.get("requested_date") or "")
        if user not in account_users(view, store):
            raise KantataError(422, f"User {user} not found", "validation")
        try:
            date.fromisoformat(day)
        except ValueError as exc:
            raise KantataError(422, f"requested_date is not a date: {day!r}", "validation") from exc
        with store._lock:
            same_day = next((r for r in time_off.values() if r["user_id"] == user and r["requested_date"] == day), None)
            if same_day is not None:  # Kantata combines entries of one day into one
                total = _hours(Decimal(str(same_day["hours"])) + Decimal(str(hours)))
                same_day.update(hours=total)
                record = same_day
            else:
                record = {"id": store._new_id(), "user_id": user, "requested_date": day, "hours": hours, "submission_date": _today()}
                time_off[record["id"]] = record
            store.creates["time_off_entries"] = store.creates.get("time_off_entries", 0) + 1
        return answer("time_off_entries", [_shown(record, request.query_params)], request, {})

    @app.put("/api/v1/time_off_entries/{entry_id}")
    @app.put("/api/v1/time_off_entries/{entry_id}.json")
    async def set_time_off(entry_id: str, request: Request) -> dict[str, Any]:
        fields = ((await request.json()) or {}).get("time_off_entry")
        record = time_off.get(entry_id.removesuffix(".json"))
        if record is None:
            raise KantataError(404, "Not found")
        if not isinstance(fields, dict) or "hours" not in fields:
            raise KantataError(400, "send hours under time_off_entry")
        record["hours"] = _hours(fields["hours"])
        return answer("time_off_entries", [_shown(record, request.query_params)], request, {})

    @app.delete("/api/v1/time_off_entries/{entry_id}")
    @app.delete("/api/v1/time_off_entries/{entry_id}.json")
    def delete_time_off(entry_id: str) -> Response:
        if time_off.pop(entry_id.removesuffix(".json"), None) is None:
            raise KantataError(404, "Not found")
        return Response(status_code=204)


def _hours(value: Any) -> float:
    from backbone_sandbox.kantata import KantataError

    try:
        hours = Decimal(str(value))
    except InvalidOperation as exc:
        raise KantataError(422, f"hours is not a number: {value!r}", "validation") from exc
    if not Decimal(0) < hours <= Decimal(24):
        raise KantataError(422, "hours must be more than 0 and no more than the day's working hours", "validation")
    return float(hours)


def _shown(record: dict[str, Any], query: Any) -> dict[str, Any]:
    """``user_id`` only when the user is included, as Kantata answers."""
    wanted = {part.strip() for part in (query.get("include") or "").split(",")}
    return {k: v for k, v in record.items() if k != "user_id" or "user" in wanted}
