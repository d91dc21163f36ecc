"""Kantata's time side, served over the sandbox's one business: the people, clients, projects and
time entries of the PSA seed (``backbone_sandbox.psa_time``) as a Kantata account holds them, so a
run on Kantata and a run on our PSA API read the same week, hour for hour.

How the seed's business is put in Kantata's terms (restated from developer.kantata.com):

- A person is a ``User`` (``full_name``, ``email_address``; ``classification`` — ``Internal`` or
  ``External`` — only when ``optional_fields=classification`` asks for it). Contractors are External.
- A client is a company ``WorkspaceGroup`` (``company: true``); a project is a ``Workspace`` in it.
- A billing code is on the task (``Story``) the time is tracked to: an external reference with
  ``service_name`` ``accounting`` and ``service_model`` ``billing_code``.
- A ``TimeEntry`` has ``date_performed``, ``time_in_minutes``, ``rate_in_cents``, ``billable``,
  ``currency``; ``user_id``, ``workspace_id`` and ``story_id`` only when those are included.
- Approval is per ``TimesheetSubmission`` (one user, one project, one week): ``status`` is
  ``pending``, ``approved``, ``rejected`` or ``cancelled``, and
  ``current_resolution_created_at_date`` says when it was approved, rejected or cancelled. Time
  sent back after approval is a submission rejected (un-approved) or cancelled (then deleted) at
  that moment; it lists the entries it held (``time_entry_ids`` with ``include=time_entries``).

Kantata ids are integers: the seed's ids keep their number, moved into a range per kind.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi import Request

from backbone_sandbox.psa_time import BILLING_CODES

ID_BASE = {"users": 5_000_000, "workspace_groups": 6_000_000, "workspaces": 7_000_000, "stories": 8_000_000}
BILLING_CODE_SERVICE = ("accounting", "billing_code")
NOT_ON_KANTATA = frozenset({"time_entry.entry_key.conflict", "time_entry.hourly_rate.type"})
"""Planted bad entries of the PSA seed Kantata cannot serve: one id twice with different content
(its answers key objects by id) and a rate that is not a number (``rate_in_cents`` is an integer)."""
"""``service_name`` and ``service_model`` of the external reference that gives a task its billing code."""


def kantata_id(kind: str, seed_id: str) -> str:
    """The seed's ``EMP-00005`` as Kantata user ``5000005``; time entries keep their bare number."""
    number = int(re.sub(r"\D", "", seed_id) or 0)
    return str(ID_BASE.get(kind, 0) + number)


def story_id(project_id: str, code: str) -> str:
    """One task per project and billing code."""
    codes = list(BILLING_CODES)
    index = codes.index(code) if code in codes else 50 + int(hashlib.sha1(code.encode()).hexdigest(), 16) % 50
    return str(ID_BASE["stories"] + int(kantata_id("workspaces", project_id)) % 1_000_000 * 100 + index)


def submission_id(*key: str) -> str:
    return str(int(hashlib.blake2b("|".join(key).encode(), digest_size=6).hexdigest(), 16))


def _kantata_time(stamp: str) -> str:
    """Kantata writes times as ``2026-10-30T14:07:00Z`` (whole seconds)."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).strftime("%Y-%m-%dT%H:%M:%SZ")


def _minutes(hours: str) -> int:
    return int(Decimal(hours) * 60)


def _cents(rate: str) -> int:
    return int(Decimal(rate) * 100)


def _monday(day: str) -> date:
    worked = date.fromisoformat(day)
    return worked - timedelta(days=worked.weekday())


class KantataTimeView:
    """The PSA seed's time side in Kantata's objects, built from the live time store on each read
    (so an edit, a late approval or a withdrawal made through the sandbox shows on both APIs)."""

    def __init__(self, state: Any):
        self.state = state

    @property
    def time(self) -> Any:
        return self.state.psa_time

    def entries(self) -> list[dict[str, Any]]:
        """The seed's entries but those planted bad in a way Kantata's wire cannot carry
        (``NOT_ON_KANTATA``): this account never had them."""
        planted = {key for key, rule in self.time.bad_entries.items() if rule in NOT_ON_KANTATA}
        return [e for e in self.time.entries if e["id"] not in planted]

    def users(self) -> dict[str, dict[str, Any]]:
        users = {}
        for person in self.time.people.values():
            uid = kantata_id("users", person["id"])
            users[uid] = {
                "id": uid,
                "full_name": person["name"],
                "email_address": person["email"],
                "classification": "External" if person["type"] == "contractor" else "Internal",
            }
        return users

    def groups(self) -> dict[str, dict[str, Any]]:
        groups = {}
        for client in self.time.clients.values():
            gid = kantata_id("workspace_groups", client["id"])
            groups[gid] = {"id": gid, "name": client["name"], "company": True}
        return groups

    def workspaces(self) -> dict[str, dict[str, Any]]:
        stamp = _kantata_time(self.time.week_end.isoformat()) if self.time.entries else None
        out = {}
        for project in self.time.projects.values():
            wid = kantata_id("workspaces", project["id"])
            currency = self.time.clients[project["client_id"]]["currency"]
            out[wid] = {
                "id": wid,
                "title": project["name"],
                "description": "",
                "currency": currency,
                "archived": False,
                "created_at": stamp,
                "updated_at": stamp,
                "workspace_group_ids": [kantata_id("workspace_groups", project["client_id"])],
            }
        return out

    def stories(self) -> dict[str, dict[str, Any]]:
        stamp = _kantata_time(self.time.week_end.isoformat()) if self.time.entries else None
        stories = {}
        for entry in self.entries():
            code = (entry.get("task") or {}).get("billing_code")
            sid = story_id(entry["project"]["id"], code)
            stories[sid] = {
                "id": sid,
                "title": entry["task"]["name"],
                "story_type": "task",
                "state": "started",
                "created_at": stamp,
                "updated_at": stamp,
                "workspace_id": kantata_id("workspaces", entry["project"]["id"]),
                "billing_code": code,
            }
        return stories

    def story_references(self) -> dict[str, dict[str, Any]]:
        """The external reference that gives each task its billing code."""
        service, model = BILLING_CODE_SERVICE
        return {
            f"9{sid}": {
                "id": f"9{sid}",
                "subject_type": "Story",
                "subject_id": sid,
                "service_name": service,
                "service_model": model,
                "service_model_ref": story["billing_code"],
                "status": "successful",
            }
            for sid, story in self.stories().items()
        }

    def time_entries(self) -> dict[str, dict[str, Any]]:
        """Every time entry by Kantata id."""
        out = {}
        for entry in self.entries():
            tid = kantata_id("time_entries", entry["id"])
            out[tid] = {
                "id": tid,
                "date_performed": entry["spent_date"],
                "time_in_minutes": _minutes(entry["hours"]),
                "billable": entry["billable"],
                "rate_in_cents": _cents(entry["billable_rate"]),
                "currency": entry["currency"],
                "notes": entry.get("notes"),
                "approved": entry["approval_status"] == "approved",
                "is_invoiced": False,
                "taxable": False,
                "created_at": _kantata_time(entry["updated_at"]),
                "updated_at": _kantata_time(entry["updated_at"]),
                "user_id": kantata_id("users", entry["user"]["id"]),
                "workspace_id": kantata_id("workspaces", entry["project"]["id"]),
                "story_id": story_id(entry["project"]["id"], entry["task"].get("billing_code")),
            }
        return out

    def submissions(self) -> dict[str, dict[str, Any]]:
        """One submission per user, project, week and approval; each withdrawal a rejected (sent
        back) or cancelled (then deleted) submission holding the withdrawn entry."""
        held: dict[tuple[str, ...], list[str]] = defaultdict(list)
        submitted: dict[tuple[str, ...], str] = {}
        for entry in self.entries():
            resolved = entry["approved_at"] if entry["approval_status"] == "approved" else ""
            key = (entry["user"]["id"], entry["project"]["id"], _monday(entry["spent_date"]).isoformat(), resolved)
            tid = kantata_id("time_entries", entry["id"])
            if tid not in held[key]:
                held[key].append(tid)
            submitted[key] = max(submitted.get(key, ""), entry["updated_at"])
        out = {}
        for key, ids in held.items():
            person, project, monday, resolved = key
            sid = submission_id(*key)
            status = "approved" if resolved else "pending"
            out[sid] = self._submission(sid, person, project, monday, status, resolved or None, ids, submitted=submitted[key])
        entries = {e["id"]: e for e in self.entries()}
        for withdrawal in self.time.__dict__.get("withdrawals", []):
            entry = entries.get(withdrawal["id"])
            person, project, monday = (
                (entry["user"]["id"], entry["project"]["id"], _monday(entry["spent_date"]).isoformat()) if entry else ("", "", "")
            )
            status = "rejected" if withdrawal["reason"] == "unapproved" else "cancelled"
            sid = submission_id("withdrawn", withdrawal["id"], withdrawal["withdrawn_at"])
            tid = kantata_id("time_entries", withdrawal["id"])
            out[sid] = self._submission(
                sid, person, project, monday, status, withdrawal["withdrawn_at"], [tid], submitted=withdrawal["withdrawn_at"]
            )
        return out

    @staticmethod
    def _submission(
        sid: str, person: str, project: str, monday: str, status: str, resolved: str | None, ids: list[str], *, submitted: str
    ) -> dict[str, Any]:
        stamp = _kantata_time(resolved) if resolved else None
        start = date.fromisoformat(monday) if monday else None
        return {
            "id": sid,
            "type": "TimesheetSubmission",
            "status": status,
            "start_date": start.isoformat() if start else None,
            "end_date": (start + timedelta(days=6)).isoformat() if start else None,
            "current_resolution_created_at_date": stamp,
            "created_at": _kantata_time(submitted),
            "updated_at": stamp or _kantata_time(submitted),
            "user_id": kantata_id("users", person) if person else None,
            "workspace_id": kantata_id("workspaces", project) if project else None,
            "time_entry_ids": ids,
        }


INCLUDED_IDS = {
    "time_entries": {"user": "user_id", "workspace": "workspace_id", "story": "story_id"},
    "timesheet_submissions": {"user": "user_id", "workspace": "workspace_id", "time_entries": "time_entry_ids"},
    "workspaces": {"workspace_groups": "workspace_group_ids"},
    "stories": {"workspace": "workspace_id", "story_state_changes": "story_state_change_ids"},
}
"""Association ids Kantata writes into an object only when the association is included."""


def shown(collection: str, record: dict[str, Any], include: set[str]) -> dict[str, Any]:
    """The object as Kantata answers it: association ids only for what ``include`` asked."""
    hidden = {key for name, key in INCLUDED_IDS.get(collection, {}).items() if name not in include}
    return {k: v for k, v in record.items() if k not in hidden}


def includes(query: Any) -> set[str]:
    return {part.strip() for part in (query.get("include") or "").split(",") if part.strip()}


def only(records: list[dict[str, Any]], query: Any) -> list[dict[str, Any]]:
    if (wanted := query.get("only")) is None:
        return records
    ids = {part.strip() for part in wanted.split(",") if part.strip()}
    return [r for r in records if r["id"] in ids]


def updated_between(records: list[dict[str, Any]], query: Any) -> list[dict[str, Any]]:
    """``updated_after`` / ``updated_before``: strictly after, strictly before (ISO 8601)."""

    def moment(value: str) -> datetime:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))

    if after := query.get("updated_after"):
        records = [r for r in records if moment(r["updated_at"]) > moment(after)]
    if before := query.get("updated_before"):
        records = [r for r in records if moment(r["updated_at"]) < moment(before)]
    return records


def answer(collection: str, records: list[dict[str, Any]], request: Request, side: Any) -> dict[str, Any]:
    """The list envelope for this page; ``side`` gives the side-loads for the page's ids."""
    from backbone_sandbox.kantata import envelope, paging

    page, per_page = paging(request)
    wanted = includes(request.query_params)
    rows = [shown(collection, r, wanted) for r in records]
    chunk_ids = {r["id"] for r in rows[(page - 1) * per_page : page * per_page]}
    return envelope(collection, rows, page=page, per_page=per_page, side=side(chunk_ids) if callable(side) else side)


def side_loaded(
    view: KantataTimeView, chosen: list[dict[str, Any]], wanted: set[str], associations: tuple[tuple[str, str, str], ...]
) -> dict[str, dict[str, Any]]:
    """The objects ``chosen`` records point at, for each ``(include name, collection, id field)`` asked for."""
    sources = {"users": view.users, "workspaces": view.workspaces, "stories": view.stories}
    out: dict[str, dict[str, Any]] = {}
    for name, collection, key in associations:
        if name in wanted:
            objects = sources[collection]()
            out[collection] = {r[key]: _strip(collection, objects[r[key]]) for r in chosen if r.get(key) in objects}
    return out


def add_time_routes(app: Any, view: KantataTimeView) -> None:
    """The read side of time: submissions, time entries, groups, tasks (users: ``kantata_people``)."""
    _add_submissions(app, view)
    _add_time_entries(app, view)
    _add_directories(app, view)


def _add_submissions(app: Any, view: KantataTimeView) -> None:
    from backbone_sandbox.kantata import KantataError

    @app.get("/api/v1/timesheet_submissions")
    @app.get("/api/v1/timesheet_submissions.json")
    def list_submissions(request: Request) -> dict[str, Any]:
        query = request.query_params
        records = list(view.submissions().values())
        if statuses := query.get("statuses"):
            allowed = {s.strip() for s in statuses.split(",")}
            if not allowed <= {"new", "pending", "approved", "rejected", "cancelled"}:
                raise KantataError(400, f"invalid statuses: {statuses}")
            records = [r for r in records if r["status"] in allowed or (r["status"] == "pending" and "new" in allowed)]
        records = updated_between(only(records, query), query)
        descending = (query.get("order") or "date:desc") == "date:desc"
        records.sort(key=lambda r: (r["start_date"] or "", r["id"]), reverse=descending)
        wanted = includes(query)

        def side(ids: set[str]) -> dict[str, dict[str, Any]]:
            chosen = [r for r in records if r["id"] in ids]
            out = side_loaded(view, chosen, wanted, (("user", "users", "user_id"), ("workspace", "workspaces", "workspace_id")))
            if "time_entries" in wanted:
                entries = view.time_entries()
                held = {tid for r in chosen for tid in r["time_entry_ids"]}
                out["time_entries"] = {tid: shown("time_entries", entries[tid], set()) for tid in held if tid in entries}
            return out

        return answer("timesheet_submissions", records, request, side)


def _add_time_entries(app: Any, view: KantataTimeView) -> None:
    from backbone_sandbox.kantata import KantataError

    @app.get("/api/v1/time_entries")
    @app.get("/api/v1/time_entries.json")
    def list_time_entries(request: Request) -> dict[str, Any]:
        query = request.query_params
        records = updated_between(only(list(view.time_entries().values()), query), query)
        if "approved" in query:  # always processed as true, whatever value is given
            records = [r for r in records if r["approved"]]
        order = query.get("order") or "date_performed:desc"
        field, _, direction = order.partition(":")
        if field not in ("created_at", "date_performed", "updated_at") or direction not in ("asc", "desc"):
            raise KantataError(400, f"invalid order: {order}")
        records.sort(key=lambda r: (r[field], int(r["id"])), reverse=direction == "desc")
        wanted = includes(query)

        def side(ids: set[str]) -> dict[str, dict[str, Any]]:
            chosen = [r for r in records if r["id"] in ids]
            return side_loaded(
                view,
                chosen,
                wanted,
                (("user", "users", "user_id"), ("workspace", "workspaces", "workspace_id"), ("story", "stories", "story_id")),
            )

        return answer("time_entries", records, request, side)


def _add_directories(app: Any, view: KantataTimeView) -> None:
    @app.get("/api/v1/workspace_groups")
    @app.get("/api/v1/workspace_groups.json")
    def list_groups(request: Request) -> dict[str, Any]:
        query = request.query_params
        records = only(list(view.groups().values()), query)
        if query.get("companies_only", "false").lower() == "true":
            records = [r for r in records if r["company"]]
        records.sort(key=lambda r: r["name"])
        return answer("workspace_groups", records, request, {})

    @app.get("/api/v1/stories")
    @app.get("/api/v1/stories.json")
    def list_stories(request: Request) -> dict[str, Any]:
        from backbone_sandbox.kantata_billing import KantataBillingView

        query = request.query_params
        billing = KantataBillingView(view.state)
        everything = {**view.stories(), **billing.milestone_stories()}
        wanted = includes(query)
        records = [_strip("stories", s, wanted) for s in updated_between(only(list(everything.values()), query), query)]
        records.sort(key=lambda r: int(r["id"]))
        references = view.story_references() if "external_references" in wanted else {}
        by_story = defaultdict(list)
        for reference in references.values():
            by_story[reference["subject_id"]].append(reference["id"])
        if references:
            records = [{**r, "external_reference_ids": by_story.get(r["id"], [])} for r in records]
        if "story_state_changes" in wanted:
            records = [{**r, "story_state_change_ids": r.get("story_state_change_ids") or []} for r in records]

        def side(ids: set[str]) -> dict[str, dict[str, Any]]:
            out = {"external_references": {k: v for k, v in references.items() if v["subject_id"] in ids}} if references else {}
            if "story_state_changes" in wanted:
                changes = billing.state_changes()
                held = {c for r in records if r["id"] in ids for c in r["story_state_change_ids"]}
                out["story_state_changes"] = {c: changes[c] for c in held if c in changes}
            return out

        return answer("stories", records, request, side)


def _strip(collection: str, record: dict[str, Any], include: set[str] | None = None) -> dict[str, Any]:
    """A side-loaded or listed object without the sandbox's own bookkeeping fields."""
    hidden = {"classification"} if collection == "users" else {"billing_code"} if collection == "stories" else set()
    return shown(collection, {k: v for k, v in record.items() if k not in hidden}, include or set())
