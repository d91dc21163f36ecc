"""Kantata OX (formerly Mavenlink) API v1 as a PSA: projects from CRM deals, created exactly once
without an idempotency key; approved time read through timesheet submissions; people linked (or
invited once) and their time off; finished invoices with their line items, payment status written
back, and completed milestones.

Kantata facts this hook is built on (developer.kantata.com):

- Answers carry ``results`` (``[{"key", "id"}]``, the canonical order) and one id-keyed object per
  collection; side-loaded objects (``include=``) share those collections, so records are read in
  ``results`` order and never by iterating a collection.
- ``page``/``per_page`` paging, ``per_page`` at most 200; ``meta.page_count`` says when to stop.
- ``only=<ids>`` answers with the visible objects among those ids and no 404 for the rest; the
  show route 404s for objects default filters hide (archived projects), so lookups use ``only=``
  with ``include_archived=true``.
- No POST takes an idempotency key: a retried create makes a duplicate. External references tie a
  Kantata object to an id in another system; a create body may carry one (``external_reference``),
  made in the same step as the object.
- Throttling is a 429 without ``Retry-After`` (the retry policy's backoff applies).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from backbone.hooks.base import JsonApiHook
from backbone.hooks.kantata_profile import KantataVocabulary, apply_profile
from backbone.hooks.psa import PsaCapabilityMissing, PsaProjectRef
from backbone.http import FatalApiError, RetriableApiError, RetryPolicy

log = logging.getLogger(__name__)

API = "/api/v1"
PER_PAGE_MAX = 200
DEAL_MODEL = "deal"
"""``service_model`` of the external reference that ties a project to its CRM deal."""
PERSON_MODEL = "employee"
"""``service_model`` of the external reference that ties a user to their HR record."""


def records_in_order(body: Any, collection: str) -> list[dict[str, Any]]:
    """The answer's ``collection`` objects in ``results`` order. Side-loaded extras in the same
    collection are not results; a result whose object is missing makes the answer unusable."""
    objects = (body or {}).get(collection) or {}
    records = []
    for result in (body or {}).get("results") or []:
        if result.get("key") != collection:
            continue
        record = objects.get(str(result.get("id")))
        if record is None:
            raise RetriableApiError(f"Kantata listed {collection} {result.get('id')} in results without the object")
        records.append(record)
    return records


class KantataHook(JsonApiHook):
    """Kantata OX with an OAuth 2.0 bearer token.

    Connection (``kantata_default``): ``host`` = ``https://api.mavenlink.com`` (or the sandbox),
    ``password`` = the OAuth access token. Extras: none yet.
    """

    conn_name_attr = "kantata_conn_id"
    default_conn_name = "kantata_default"
    conn_type = "kantata"
    hook_name = "Kantata OX"
    system_name = "Kantata"
    default_base_url = "https://api.mavenlink.com"

    def __init__(self, kantata_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(kantata_conn_id, **kwargs)

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.request("GET", f"{API}/workspaces.json", params={"per_page": 1})
        except Exception as exc:  # noqa: BLE001 - reported to the UI, not raised
            return False, str(exc)
        return True, "Kantata answered"

    # --- reading --------------------------------------------------------------------------------
    def bodies(self, collection: str, params: dict[str, Any] | None = None, *, per_page: int = PER_PAGE_MAX) -> Iterator[dict[str, Any]]:
        """Every answer page of a list, side-loads and all, until ``meta.page_count``."""
        page = 1
        while True:
            body = self.request(
                "GET",
                f"{API}/{collection}.json",
                params={**(params or {}), "page": page, "per_page": min(per_page, PER_PAGE_MAX)},
                description=f"Kantata list {collection} page {page}",
            )
            yield body or {}
            if page >= int(((body or {}).get("meta") or {}).get("page_count") or 1):
                return
            page += 1

    def pages(
        self, collection: str, params: dict[str, Any] | None = None, *, per_page: int = PER_PAGE_MAX
    ) -> Iterator[list[dict[str, Any]]]:
        """Every ``collection`` object matching ``params``, a page at a time, in ``results`` order."""
        for body in self.bodies(collection, params, per_page=per_page):
            yield records_in_order(body, collection)

    def visible(self, collection: str, ids: list[str], params: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
        """Objects by id (``only=``, 200 at a time); ids Kantata does not show are simply absent."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), PER_PAGE_MAX):
            chunk = ids[start : start + PER_PAGE_MAX]
            for page in self.pages(collection, {**(params or {}), "only": ",".join(chunk)}):
                found.update({str(record["id"]): record for record in page})
        return found

    def external_reference(self, subject_type: str, source: str, model: str, external_id: str) -> dict[str, Any] | None:
        params = {"subject_type": subject_type, "service_name": source, "service_model": model, "service_model_ref": external_id}
        for page in self.pages("external_references", params):
            if page:
                return page[0]
        return None

    # --- projects from deals (backbone.hooks.psa.PsaClient) -------------------------------------
    def upsert_project(self, source: str, external_id: str, project: dict[str, Any]) -> PsaProjectRef:
        """Create the deal's workspace once, or update it.

        The external reference (``Workspace``, ``source``, ``deal``, the deal id) names the
        workspace made before: it is updated. Otherwise one POST creates the workspace with that
        reference in its body (Kantata makes both in one step). The POST is never repeated blindly:
        after a timeout, a reset or a server error the reference is looked up again first, and a
        workspace the lost answer had made is adopted.
        """
        fields = workspace_fields(project)
        workspace_id = self._linked_workspace(source, external_id)
        if workspace_id is not None:
            return self._updated(workspace_id, fields, created=False)
        link = {"service_name": source, "service_model": DEAL_MODEL, "service_model_ref": external_id, "status": "successful"}

        def send() -> Any:
            return self.request(
                "POST",
                f"{API}/workspaces.json",
                json={"workspace": {**fields, "external_reference": link}},
                retry=self._one_attempt,
                description=f"Kantata create the workspace of {source} deal {external_id}",
            )

        answer = self._once(send, lambda: self._linked_workspace(source, external_id), what=f"the workspace of {source} deal {external_id}")
        if isinstance(answer, str):  # made by the attempt whose answer was lost: found by its reference
            return self._updated(answer, fields, created=True)
        workspace_id = str(records_in_order(answer, "workspaces")[0]["id"])
        return PsaProjectRef(workspace_id, self.workspace_url(workspace_id), created=True)

    def _linked_workspace(self, source: str, external_id: str) -> str | None:
        """The workspace the deal's external reference names, if Kantata still has it (archived
        ones too: default filters hide them, ``only=`` with ``include_archived`` does not)."""
        reference = self.external_reference("Workspace", source, DEAL_MODEL, external_id)
        if reference is None:
            return None
        workspace_id = str(reference["subject_id"])
        if workspace_id in self.visible("workspaces", [workspace_id], {"include_archived": "true"}):
            return workspace_id
        log.warning("Kantata workspace %s of %s deal %s is gone (deleted in Kantata); making it again", workspace_id, source, external_id)
        return None

    def _updated(self, workspace_id: str, fields: dict[str, Any], *, created: bool) -> PsaProjectRef:
        self.request("PUT", f"{API}/workspaces/{workspace_id}.json", json={"workspace": fields})
        return PsaProjectRef(workspace_id, self.workspace_url(workspace_id), created=created)

    def workspace_url(self, workspace_id: str) -> str:
        return f"{self.base_url}/workspaces/{workspace_id}"

    # --- approved time (backbone.hooks.psa.PsaTimeSource) ---------------------------------------
    def iter_approved_time_entries(
        self, approved_from: datetime, approved_to: datetime, *, page_size: int = 500
    ) -> Iterator[list[dict[str, Any]]]:
        """Time entries whose timesheet submission was approved in ``[approved_from, approved_to)``,
        in our PSA API's time entry shape (``docs/psa-api``), a page of submissions at a time.

        Approval is the submission's: ``current_resolution_created_at_date`` is when it was
        approved. Approving updates the submission, so every submission approved in the window has
        ``updated_at`` at or after its start, whatever changed since: the list asks
        ``updated_after`` the start and keeps those resolved inside the window.
        """
        people, projects, tasks = _Directory(self, "users"), _Directory(self, "workspaces"), _Directory(self, "stories")
        for submissions in self._resolved_submissions("approved", approved_from, approved_to, page_size=page_size):
            approved = {str(tid): s[RESOLVED_AT] for s in submissions for tid in s.get("time_entry_ids") or []}
            entries = self.visible("time_entries", list(approved), {"include": "user,workspace,story", "from_archived_workspaces": "true"})
            missing = sorted(set(approved) - set(entries))
            if missing:
                raise RetriableApiError(f"Kantata lists approved time entries it does not show: {', '.join(missing[:5])}")
            people.load([str(e["user_id"]) for e in entries.values()])
            projects.load([str(e["workspace_id"]) for e in entries.values()])
            tasks.load([str(e["story_id"]) for e in entries.values() if e.get("story_id")])
            yield [time_entry_record(entries[tid], approved[tid], people, projects, tasks) for tid in approved]

    def iter_withdrawn_time_entries(
        self, withdrawn_from: datetime, withdrawn_to: datetime, *, page_size: int = 500
    ) -> Iterator[list[dict[str, Any]]]:
        """Time sent back after approval: entries of submissions rejected or cancelled in the
        window. Kantata locks approved time (it cannot be edited or deleted until its submission is
        rejected or cancelled), so a withdrawal always shows as one of these first."""
        for submissions in self._resolved_submissions("rejected,cancelled", withdrawn_from, withdrawn_to, page_size=page_size):
            yield [
                {
                    "id": str(tid),
                    "version": version_at(s[RESOLVED_AT]),
                    "withdrawn_at": s[RESOLVED_AT],
                    "reason": "unapproved" if s["status"] == "rejected" else "cancelled",
                }
                for s in submissions
                for tid in s.get("time_entry_ids") or []
            ]

    def _resolved_submissions(self, statuses: str, start: datetime, end: datetime, *, page_size: int) -> Iterator[list[dict[str, Any]]]:
        """Timesheet submissions with one of ``statuses`` resolved in ``[start, end)``, in groups
        holding about ``page_size`` entries. The whole list is read before anything is yielded and
        read again if it moved while paging (a submission updated meanwhile shifts page numbers:
        the ids read then fall short of the count)."""
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("window bounds need a time zone")
        params = {
            "statuses": statuses,
            "updated_after": (start - timedelta(seconds=1)).isoformat(),
            "include": "time_entries",
            "order": "date:asc",
        }
        found = {str(r["id"]): r for r in self._whole_list("timesheet_submissions", params)}
        group: list[dict[str, Any]] = []
        held = 0
        for submission in found.values():
            resolved = submission.get(RESOLVED_AT)
            if not resolved or not start <= parse_time(resolved) < end:
                continue
            group.append(submission)
            held += len(submission.get("time_entry_ids") or [])
            if held >= page_size:
                yield group
                group, held = [], 0
        if group:
            yield group

    # --- people and time off (backbone.hooks.psa.PsaPeople) ------------------------------------
    def upsert_person(self, source: str, external_id: str, person: dict[str, Any]) -> bool:
        """Make sure the HR person is a Kantata user linked to their HR id; True when this call
        added them to the account.

        Kantata users are the account's members: the person is found by the HR id's external
        reference (``User``, ``source``, ``employee``, the id), else by e-mail address, else invited
        (``POST /account_invitations`` adds the user at once). The invitation, which takes no
        idempotency key, is sent once: after a lost answer the address is looked up again before
        anything is sent again. Leavers are never invited. Then the user's role, skills,
        certifications, department and location are made what HR says
        (``backbone.hooks.kantata_profile``)."""
        user_id = self._linked_user(source, external_id)
        created = False
        if user_id is None:
            email = str(person.get("email") or "").strip()
            if not email:
                raise FatalApiError(f"{source} person {external_id} has no e-mail address: Kantata users are found and invited by it")
            user_id = self._user_by_email(email)
            if user_id is None and not person.get("active", True):
                log.info("%s person %s has left and has no Kantata user: nothing to add", source, external_id)
                return False
            if user_id is None:
                user_id, created = self._invited(email, str(person.get("name") or email), person), True
            self.request(
                "POST",
                f"{API}/external_references/create_or_update.json",
                json={
                    "external_reference": {
                        "subject_type": "User",
                        "subject_id": user_id,
                        "service_name": source,
                        "service_model": PERSON_MODEL,
                        "service_model_ref": external_id,
                        "status": "successful",
                    }
                },
                description=f"Kantata link user {user_id} to {source} person {external_id}",
            )
        changes = apply_profile(self, self._vocabulary, user_id, person)
        if changes.changed:
            log.info(
                "Kantata user %s (%s %s): role %s, %d skill(s) added, %d removed, %s",
                user_id,
                source,
                external_id,
                "set" if changes.role else "unchanged",
                changes.skills_added,
                changes.skills_removed,
                "placed" if changes.placed else "placement unchanged",
            )
        return created

    @property
    def _vocabulary(self) -> KantataVocabulary:
        """The account's roles, skills and organizations, read once per hook (one task's people)."""
        if (vocabulary := self.__dict__.get("_kantata_vocabulary")) is None:
            vocabulary = self.__dict__["_kantata_vocabulary"] = KantataVocabulary(self)
        return vocabulary

    def _linked_user(self, source: str, external_id: str) -> str | None:
        reference = self.external_reference("User", source, PERSON_MODEL, external_id)
        if reference is None:
            return None
        user_id = str(reference["subject_id"])
        return user_id if user_id in self.visible("users", [user_id], {"on_my_account": "true"}) else None

    def _user_by_email(self, email: str) -> str | None:
        for page in self.pages("users", {"by_email_address": email, "on_my_account": "true"}):
            for user in page:
                return str(user["id"])
        return None

    def _invited(self, email: str, name: str, person: dict[str, Any]) -> str:
        invitation = {"email_address": email, "full_name": name, "headline": person.get("role")}

        def send() -> Any:
            return self.request(
                "POST",
                f"{API}/account_invitations.json",
                params={"include": "invitee"},
                json={"account_invitation": invitation},
                retry=self._one_attempt,
                description=f"Kantata invite {email}",
            )

        body = self._once(send, lambda: self._user_by_email(email), what=f"the invitation of {email}")
        if isinstance(body, str):  # the lost answer's invitation: found by its address
            return body
        return str(records_in_order(body, "account_invitations")[0]["invitee_id"])

    @property
    def _one_attempt(self) -> RetryPolicy:
        """The policy of a create ``_once`` sends: the request itself never retries; ``_once`` does, after a lookup."""
        return RetryPolicy(max_attempts=1, max_backoff_seconds=self.retry_policy.max_backoff_seconds)

    def _once(self, send: Callable[[], Any], find: Callable[[], Any], *, what: str) -> Any:
        """Send a create that takes no idempotency key without ever making two: after a retriable
        failure, ``find`` looks for what the lost answer may have made before sending again. The
        answer of ``send``, or what ``find`` found."""
        for attempt in range(1, self.retry_policy.max_attempts + 1):
            if attempt > 1 and (found := find()) is not None:
                log.info("Kantata: %s was made by the attempt whose answer was lost; adopted", what)
                return found
            try:
                return send()
            except FatalApiError:
                raise
            except RetriableApiError as exc:
                if attempt >= self.retry_policy.max_attempts:
                    raise
                delay = self.retry_policy.backoff(attempt, exc)
                log.warning("Kantata %s: %s; looking it up before trying again in %.1fs", what, exc, delay)
                self.retry_policy.sleep(delay)
        raise AssertionError("unreachable")

    def replace_time_off(self, source: str, external_id: str, window_start: str, window_end: str, days: list[dict[str, Any]]) -> bool:
        """Make the user's time off inside ``[window_start, window_end]`` what HR says; True when
        Kantata changed. A day is set with PUT when it has an entry, deleted when HR has none, and
        created with one POST otherwise: Kantata adds a second POST's hours to the day, so a POST
        whose answer was lost is followed by a fresh read of the day, never by a blind repeat."""
        user_id = self._linked_user(source, external_id)
        if user_id is None:
            log.info("%s person %s has no Kantata user (a leaver never invited): no time off to set", source, external_id)
            return False
        wanted = {d["date"]: Decimal(str(d["hours"])) for d in days if window_start <= d["date"] <= window_end}
        current = self._time_off(user_id, window_start, window_end)
        changed = False
        for day in sorted(set(wanted) | set(current)):
            entry = current.get(day)
            hours = wanted.get(day)
            if entry is not None and hours is not None and Decimal(str(entry["hours"])) == hours:
                continue
            changed = True
            path = f"{API}/time_off_entries/{entry['id']}.json" if entry is not None else None
            if path and hours is None:
                self.request("DELETE", path, description=f"Kantata delete time off of user {user_id} on {day}")
            elif path:
                self.request("PUT", path, json={"time_off_entry": {"hours": float(hours)}}, description=f"Kantata set time off on {day}")
            else:
                self._add_time_off(user_id, day, hours)
        return changed

    def _time_off(self, user_id: str, first: str, last: str) -> dict[str, dict[str, Any]]:
        """The user's entries from ``first`` to ``last`` (inclusive) by day; Kantata's bounds are exclusive."""
        params = {
            "user_id": user_id,
            "start_date": (date.fromisoformat(first) - timedelta(days=1)).isoformat(),
            "end_date": (date.fromisoformat(last) + timedelta(days=1)).isoformat(),
        }
        return {
            e["requested_date"]: e for page in self.pages("time_off_entries", params) for e in page if first <= e["requested_date"] <= last
        }

    def _add_time_off(self, user_id: str, day: str, hours: Any) -> None:
        def send() -> Any:
            return self.request(
                "POST",
                f"{API}/time_off_entries.json",
                json={"time_off_entry": {"user_id": int(user_id), "requested_date": day, "hours": float(hours)}},
                retry=self._one_attempt,
                description=f"Kantata add time off of user {user_id} on {day}",
            )

        def find() -> Any:
            entry = self._time_off(user_id, day, day).get(day)
            if entry is None:
                return None
            if Decimal(str(entry["hours"])) != Decimal(str(hours)):  # made by the lost answer, or by someone else meanwhile: set it
                self.request("PUT", f"{API}/time_off_entries/{entry['id']}.json", json={"time_off_entry": {"hours": float(hours)}})
            return entry

        self._once(send, find, what=f"the time off of user {user_id} on {day}")

    NOT_YET = (
        "a certification's expiry date (Kantata's skill memberships have none: the warehouse keeps it)",
        "finance's release of invoices (Kantata has none: BACKBONE_INVOICE_TIMING must stay on_pm_approval)",
        "approved expenses (Kantata's expenses API is not read yet: the expense export runs on the PSA API's Connection)",
        "accounting's items on billing codes (Kantata keeps no billing-code list: the codes flow keeps the PSA warehouse only)",
    )
    """What this hook does not carry to Kantata; ``backbone check`` lists it."""

    # --- expenses (backbone.hooks.psa.PsaExpenseSource) -----------------------------------------
    def iter_approved_expenses(
        self, approved_from: datetime, approved_to: datetime, *, page_size: int = 500
    ) -> Iterator[list[dict[str, Any]]]:
        raise PsaCapabilityMissing(
            "the expense export does not read Kantata's expenses yet: point BACKBONE_PSA_CONN_ID at a PSA API Connection, or pause "
            "expenses_weekly_to_accounting"
        )

    def iter_withdrawn_expenses(
        self, withdrawn_from: datetime, withdrawn_to: datetime, *, page_size: int = 500
    ) -> Iterator[list[dict[str, Any]]]:
        return self.iter_approved_expenses(withdrawn_from, withdrawn_to, page_size=page_size)

    # --- billing codes (backbone.hooks.psa.PsaBillingCodes) ---------------------------------------
    def billing_codes(self) -> list[dict[str, Any]]:
        raise PsaCapabilityMissing("Kantata keeps no billing-code list: accounting_codes_to_psa keeps the PSA warehouse only on Kantata")

    def update_billing_code(self, code: str, fields: dict[str, Any]) -> bool:
        return bool(self.billing_codes())

    # --- invoices, payment status and milestones (backbone.hooks.psa.PsaBilling) ---------------
    def iter_invoices(self, period: str, *, page_size: int = 100) -> Iterator[list[dict[str, Any]]]:
        """The billing month's (``YYYY-MM``) finished invoices, cancelled ones marked voided, in our
        PSA API's invoice shape. Read newest invoice date first and stopped below the month, so a
        month-end never reads the account's whole history; an invoice finished while paging can
        only push the others back a place (seen twice, kept once), never hide one."""
        for invoices in self._invoices_of_month(period, drafts=False, page_size=page_size):
            yield self._invoice_records(invoices)

    def iter_invoices_between(self, moment: str, start: datetime, end: datetime, *, page_size: int = 100) -> Iterator[list[dict[str, Any]]]:
        """Invoices of any month finished (or cancelled) in ``[start, end)``.

        Kantata keeps no approval time: finishing a draft updates the invoice, so every invoice
        finished in the window has ``updated_at`` at or after its start. The list asks
        ``updated_after`` the start and keeps those last updated inside the window; one updated
        again later (a payment) is read by that later window, and the outbox knows it was posted.
        Finance's release (``after_finance_approval``) has no Kantata field."""
        if moment != "approved":
            raise PsaCapabilityMissing(
                "Kantata has no finance release of invoices: run invoicing with BACKBONE_INVOICE_TIMING=on_pm_approval on Kantata"
            )
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("window bounds need a time zone")
        params = {
            "without_drafts": "true",
            "updated_after": (start - timedelta(seconds=1)).isoformat(),
            "order": "updated_at:asc",
            "include": INVOICE_INCLUDE,
        }
        listed = self._whole_list("invoices", params, read=invoices_with_items)
        found = [i for i in listed if start <= parse_time(i["updated_at"]) < end]
        for first in range(0, len(found), page_size):
            yield self._invoice_records(found[first : first + page_size])

    def count_unapproved_invoices(self, period: str) -> int:
        """Drafts dated in the billing month: invoices the PM has not finished."""
        return sum(len(page) for page in self._invoices_of_month(period, drafts=True, page_size=PER_PAGE_MAX))

    def _invoices_of_month(self, period: str, *, drafts: bool, page_size: int) -> Iterator[list[dict[str, Any]]]:
        first = date.fromisoformat(f"{period}-01")
        after = (first + timedelta(days=32)).replace(day=1)
        params = {"order": "invoice_date:desc", "include": INVOICE_INCLUDE, **({} if drafts else {"without_drafts": "true"})}
        seen: set[str] = set()
        for page in map(invoices_with_items, self.bodies("invoices", params, per_page=page_size)):
            dated = [i for i in page if i.get("invoice_date")]
            kept = [
                i
                for i in dated
                if first <= date.fromisoformat(i["invoice_date"]) < after and bool(i.get("draft")) == drafts and str(i["id"]) not in seen
            ]
            seen |= {str(i["id"]) for i in kept}
            if kept:
                yield kept
            if dated and date.fromisoformat(dated[-1]["invoice_date"]) < first:
                return

    def _whole_list(
        self, collection: str, params: dict[str, Any], *, read: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = None
    ) -> list[dict[str, Any]]:
        """Every object of a list, read to the end before use and read again if it moved while
        paging (an object updated meanwhile shifts page numbers: the ids read fall short of the count).
        ``read`` takes the objects from an answer (``records_in_order`` by default)."""
        for _ in range(3):
            found: dict[str, dict[str, Any]] = {}
            total = 0
            for body in self.bodies(collection, params):
                total = int(((body.get("meta") or {}).get("count")) or 0)
                found.update({str(r["id"]): r for r in (read(body) if read else records_in_order(body, collection))})
            if len(found) >= total:
                return list(found.values())
            log.warning("Kantata %s moved while paging (%d of %d read); reading them again", collection, len(found), total)
        raise RetriableApiError(f"Kantata {collection} kept moving while paging")

    def _invoice_records(self, invoices: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Kantata invoices → our PSA API's invoice shape, their line items read by id."""
        lines = _InvoiceLines(self, invoices)
        lines.load()
        return [invoice_record(invoice, lines, self.tax_codes) for invoice in invoices]

    @property
    def tax_codes(self) -> dict[str, str]:
        """The Connection's ``tax_codes`` extra: Kantata's tax rate (a percentage) → the PSA tax
        code the data dictionary maps (``{"21": "VAT21", "0": "EXEMPT"}``). A rate it does not
        name reaches validation as ``<rate>%`` and the invoice is held for its unmapped tax code."""
        raw = self.extras.get("tax_codes") or {}
        if isinstance(raw, str):
            raw = json.loads(raw)
        return {rate_key(rate): str(code) for rate, code in dict(raw).items()}

    def set_invoice_payment_status(self, invoice_id: str, status: dict[str, Any]) -> bool:
        """Write accounting's word on an invoice to Kantata; True when Kantata changed.

        The status rides on the invoice's external reference to its accounting record
        (``Invoice``, ``accounting``, ``invoice``, the accounting id): ``external_status`` the
        status, ``external_message`` the amounts; ``create_or_update`` makes a repeat harmless and
        an unchanged status is not written at all. Paid in full, the invoice also gets Kantata's
        own external payment, once: it takes no idempotency key, so the invoice's payments are
        looked up first, and again after a lost answer."""
        fields = {"subject_type": "Invoice", "subject_id": str(invoice_id), "service_name": ACCOUNTING_SERVICE, "service_model": "invoice"}
        message = f"paid {_money_text(status.get('amount_paid'))} {status.get('currency')}, balance {_money_text(status.get('balance'))}"
        current = next((r for page in self.pages("external_references", fields) for r in page), None)
        wanted = {"external_status": status.get("status"), "external_message": message, "service_model_ref": status.get("accounting_id")}
        changed = current is None or any(str(current.get(k) or "") != str(v or "") for k, v in wanted.items())
        if changed:
            self.request(
                "POST",
                f"{API}/external_references/create_or_update.json",
                json={"external_reference": {**fields, **wanted, "status": "successful"}},
                description=f"Kantata payment status of invoice {invoice_id}",
            )
        if status.get("status") == "paid":
            changed = self._paid_in_kantata(str(invoice_id)) or changed
        return changed

    def _paid_in_kantata(self, invoice_id: str) -> bool:
        invoice = self.visible("invoices", [invoice_id], {"include": "workspaces"}).get(invoice_id)
        if invoice is None or invoice.get("draft") or invoice.get("status") != "new":
            return False  # paid already, cancelled, or not Kantata's to mark

        def find() -> Any:
            return next((p for page in self.pages("external_payments", {"invoice_id": invoice_id}) for p in page), None)

        if find() is not None:
            return False
        workspace_id = int((invoice.get("workspace_ids") or [0])[0])

        def send() -> Any:
            return self.request(
                "POST",
                f"{API}/external_payments.json",
                json={"external_payment": {"workspace_id": workspace_id, "invoice_id": int(invoice_id), "message": "paid in accounting"}},
                retry=self._one_attempt,
                description=f"Kantata record the payment of invoice {invoice_id}",
            )

        self._once(send, find, what=f"the payment of invoice {invoice_id}")
        return True

    def milestones(self, completed_from: datetime, completed_to: datetime) -> list[dict[str, Any]]:
        """Milestones (stories of type ``milestone``) completed in ``[completed_from, completed_to)``:
        completing one updates it and adds a story state change, whose ``created_at`` is when."""
        params = {"updated_after": (completed_from - timedelta(seconds=1)).isoformat(), "include": "story_state_changes,workspace"}
        done: list[tuple[dict[str, Any], str]] = []
        for body in self.bodies("stories", params):
            changes = body.get("story_state_changes") or {}
            for story in records_in_order(body, "stories"):
                if story.get("story_type") != "milestone" or story.get("state") != "completed":
                    continue
                stamps = [
                    c["created_at"]
                    for c in (changes.get(str(cid)) or {} for cid in story.get("story_state_change_ids") or [])
                    if c.get("state") == "completed" and c.get("created_at")
                ]
                inside = [s for s in stamps if completed_from <= parse_time(s) < completed_to]
                if inside:
                    done.append((story, max(inside, key=parse_time)))
        projects = _Directory(self, "workspaces")
        projects.load([str(story.get("workspace_id")) for story, _ in done])
        return [
            {
                "id": str(story["id"]),
                "project_id": str(story.get("workspace_id")),
                "project_name": projects.get(story.get("workspace_id")).get("title"),
                "crm_deal_id": projects.deal_of(projects.get(story.get("workspace_id"))),
                "name": story.get("title"),
                "completed_at": stamp,
                "amount": money_of(story.get("budget_estimate_in_cents") or 0),
            }
            for story, stamp in done
        ]


INVOICE_INCLUDE = "workspaces,time_entries,fixed_fee_items,additional_items"
"""What an invoice is read with: its projects' ids, its time entries' ids and its line items."""


def invoices_with_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """An answer's invoices in ``results`` order, each with its side-loaded fixed fee and
    additional items in place of their ids; an item listed but not side-loaded makes the answer unusable."""
    out = []
    for invoice in records_in_order(body, "invoices"):
        invoice = dict(invoice)
        for collection, ids in (("fixed_fee_items", "fixed_fee_item_ids"), ("additional_items", "additional_item_ids")):
            objects = body.get(collection) or {}
            missing = [i for i in invoice.get(ids) or [] if str(i) not in objects]
            if missing:
                raise RetriableApiError(f"Kantata invoice {invoice['id']} lists {collection} it did not include: {missing[:5]}")
            invoice[collection] = [objects[str(i)] for i in invoice.get(ids) or []]
        out.append(invoice)
    return out


def _money_text(value: Any) -> str:
    """An amount written the same way whatever its type (``0``, ``0.0`` and ``Decimal("0.00")`` are ``0.00``)."""
    try:
        return str(Decimal(str(value)).quantize(CENT))
    except (InvalidOperation, ValueError):
        return str(value)


ACCOUNTING_SERVICE = "accounting"
"""``service_name`` of the external reference that ties a Kantata invoice to its accounting record."""


def rate_key(rate: Any) -> str:
    """A tax rate as a key: ``21``, ``21.0`` and ``"21.00"`` are all ``21``."""
    try:
        return format(Decimal(str(rate)).normalize(), "f")
    except InvalidOperation:
        return str(rate)


RESOLVED_AT = "current_resolution_created_at_date"
VERSION_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


def parse_time(stamp: str) -> datetime:
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise RetriableApiError(f"Kantata answered a time without a zone: {stamp!r}")
    return moment


def version_at(*stamps: str) -> int:
    """A time entry's version on Kantata, which keeps none: whole seconds from 2020 to its latest
    change or resolution. Editing, approving, sending back and approving again each move it on,
    so a later state always has the higher version (the outbox's rule), and it fits the
    warehouse's 32-bit column until 2088."""
    return int((max(parse_time(s) for s in stamps if s) - VERSION_EPOCH).total_seconds())


def hours_of(minutes: Any) -> str:
    try:
        return format((Decimal(int(minutes)) / 60).normalize(), "f")
    except (TypeError, ValueError, InvalidOperation):
        return str(minutes)  # unreadable stays unreadable: validation says why


def money_of(cents: Any) -> str:
    try:
        return format((Decimal(int(cents)) / 100).quantize(Decimal("0.01")), "f")
    except (TypeError, ValueError, InvalidOperation):
        return str(cents)


class _Directory:
    """Users, projects or tasks by id, fetched once per read (``only=``, 200 at a time) with what
    time entries need beside them: a user's classification, a project's client, a task's billing code."""

    EXTRA = {
        "users": {"optional_fields": "classification"},
        "workspaces": {"include": "workspace_groups,external_references", "include_archived": "true"},
        "stories": {"include": "external_references"},
    }

    def __init__(self, hook: KantataHook, collection: str):
        self.hook, self.collection = hook, collection
        self.records: dict[str, dict[str, Any]] = {}
        self.side: dict[str, dict[str, Any]] = {}

    def load(self, ids: list[str]) -> None:
        wanted = sorted(set(ids) - set(self.records))
        for start in range(0, len(wanted), PER_PAGE_MAX):
            chunk = wanted[start : start + PER_PAGE_MAX]
            for body in self.hook.bodies(self.collection, {**self.EXTRA[self.collection], "only": ",".join(chunk)}):
                self.records.update({str(r["id"]): r for r in records_in_order(body, self.collection)})
                for name in ("workspace_groups", "external_references"):
                    self.side.update({f"{name}:{k}": v for k, v in (body.get(name) or {}).items()})

    def get(self, record_id: Any) -> dict[str, Any]:
        return self.records.get(str(record_id)) or {}

    def client_of(self, workspace: dict[str, Any]) -> dict[str, Any]:
        for group_id in workspace.get("workspace_group_ids") or []:
            group = self.side.get(f"workspace_groups:{group_id}") or {}
            if group.get("company"):
                return {"id": str(group["id"]), "name": group.get("name")}
        return {}

    def deal_of(self, workspace: dict[str, Any]) -> str | None:
        """The CRM deal the workspace was made for: its external reference with model ``deal``."""
        for reference_id in workspace.get("external_reference_ids") or []:
            reference = self.side.get(f"external_references:{reference_id}") or {}
            if reference.get("service_model") == DEAL_MODEL:
                return reference.get("service_model_ref")
        return None

    def billing_code_of(self, story: dict[str, Any]) -> str | None:
        for reference_id in story.get("external_reference_ids") or []:
            reference = self.side.get(f"external_references:{reference_id}") or {}
            if (reference.get("service_name"), reference.get("service_model")) == BILLING_CODE_REFERENCE:
                return reference.get("service_model_ref")
        return None


BILLING_CODE_REFERENCE = ("accounting", "billing_code")
"""The external reference (``service_name``, ``service_model``) that gives a Kantata task its billing code."""


def time_entry_record(
    entry: dict[str, Any], approved_at: str, people: _Directory, projects: _Directory, tasks: _Directory
) -> dict[str, Any]:
    """A Kantata time entry in our PSA API's time entry shape."""
    user, workspace, story = people.get(entry.get("user_id")), projects.get(entry.get("workspace_id")), tasks.get(entry.get("story_id"))
    return {
        "id": str(entry["id"]),
        "version": version_at(entry.get("updated_at") or approved_at, approved_at),
        "spent_date": entry.get("date_performed"),
        "hours": hours_of(entry.get("time_in_minutes")),
        "billable": entry.get("billable"),
        "billable_rate": money_of(entry.get("rate_in_cents")),
        "currency": entry.get("currency"),
        "approval_status": "approved",
        "approved_at": approved_at,
        "updated_at": entry.get("updated_at"),
        "notes": entry.get("notes"),
        "user": {
            "id": str(entry.get("user_id")),
            "name": user.get("full_name"),
            "email": user.get("email_address"),
            "type": "contractor" if user.get("classification") == "External" else "employee",
        },
        "client": projects.client_of(workspace),
        "project": {"id": str(entry.get("workspace_id")), "name": workspace.get("title")},
        "task": {"id": str(entry.get("story_id")), "name": story.get("title"), "billing_code": tasks.billing_code_of(story)},
    }


def workspace_fields(project: dict[str, Any]) -> dict[str, Any]:
    """Our PSA project body → Kantata's workspace fields. ``price`` is an integer in Kantata's create
    body (the starting budget); its answers carry ``price_in_cents``. Client, contacts, estimated
    hours, billing type and terms have no workspace field: they go to custom fields with the rest of
    issue 21; the client's name leads the description until then."""
    from decimal import ROUND_HALF_UP, Decimal

    description = str(project.get("description") or "").strip()
    client = (project.get("client") or {}).get("name")
    return {
        "title": project["name"],
        "description": "\n\n".join(part for part in (f"Client: {client}" if client else "", description) if part),
        "budgeted": True,
        "price": int(Decimal(str(project["budget"])).quantize(Decimal(1), rounding=ROUND_HALF_UP)),
        "currency": project["currency"],
        "start_date": project.get("start_date"),
        "due_date": project.get("end_date"),
    }


class _InvoiceLines:
    """What invoices' lines point at, read once per page of invoices: their time entries (with
    the user, by ``only=``), fixed fee and additional items (side-loaded with the invoices), the
    milestones fixed fees bill, and the projects with their client and CRM deal."""

    def __init__(self, hook: KantataHook, invoices: list[dict[str, Any]]):
        self.hook, self.invoices = hook, invoices
        self.people, self.projects, self.stories = _Directory(hook, "users"), _Directory(hook, "workspaces"), _Directory(hook, "stories")
        self.time_entries: dict[str, dict[str, Any]] = {}

    def load(self) -> None:
        time_ids = sorted({str(t) for i in self.invoices for t in i.get("time_entry_ids") or []})
        self.time_entries = self.hook.visible("time_entries", time_ids, {"include": "user", "from_archived_workspaces": "true"})
        missing = sorted(set(time_ids) - set(self.time_entries))
        if missing:
            raise RetriableApiError(f"Kantata invoices list time entries it does not show: {', '.join(missing[:5])}")
        self.people.load([str(e["user_id"]) for e in self.time_entries.values()])
        self.projects.load([str(w) for i in self.invoices for w in i.get("workspace_ids") or []])
        self.stories.load([str(f["story_id"]) for i in self.invoices for f in i.get("fixed_fee_items") or [] if f.get("story_id")])


CENT = Decimal("0.01")


def invoice_lines(invoice: dict[str, Any], lines: _InvoiceLines) -> list[dict[str, Any]]:
    """Time entries as one line per person and rate; each fixed fee item and additional item a line."""
    out: list[dict[str, Any]] = []
    minutes: dict[tuple[str, int], int] = {}
    for entry_id in invoice.get("time_entry_ids") or []:
        entry = lines.time_entries[str(entry_id)]
        key = (str(entry.get("user_id")), int(entry.get("rate_in_cents") or 0))
        minutes[key] = minutes.get(key, 0) + int(entry.get("time_in_minutes") or 0)
    for (user_id, rate_cents), spent in sorted(minutes.items()):
        name = lines.people.get(user_id).get("full_name")
        hours = hours_of(spent)
        out.append(
            {
                "line_id": f"T{user_id}-{rate_cents}",
                "kind": "time",
                "description": f"{name} — {hours} h",
                "person": {"id": user_id, "name": name},
                "quantity": hours,
                "rate": money_of(rate_cents),
                "amount": str((Decimal(spent) * rate_cents / 6000).quantize(CENT, rounding=ROUND_HALF_UP)),
                "milestone": None,
            }
        )
    for kind, collection, prefix in (("fixed_fee", "fixed_fee_items", "F"), ("adjustment", "additional_items", "A")):
        for item in invoice.get(collection) or []:
            amount = money_of(item.get("amount_in_cents") or 0)
            story = lines.stories.get(item.get("story_id")) if item.get("story_id") else {}
            out.append(
                {
                    "line_id": f"{prefix}{item['id']}",
                    "kind": kind,
                    "description": item.get("notes") or story.get("title"),
                    "person": None,
                    "quantity": "1",
                    "rate": amount,
                    "amount": amount,
                    "milestone": {"id": str(item["story_id"]), "name": story.get("title")} if item.get("story_id") else None,
                }
            )
    return out


def invoice_record(invoice: dict[str, Any], lines: _InvoiceLines, tax_codes: dict[str, str]) -> dict[str, Any]:
    """A Kantata invoice in our PSA API's invoice shape (``docs/psa-api``). Kantata applies its
    tax rate to the invoice total; it has no credit notes, no approval time (``updated_at`` stands
    for it) and no finance release. An invoice over several projects has no single project: the
    checks hold it."""
    items = invoice_lines(invoice, lines)
    subtotal = sum((Decimal(line["amount"]) for line in items), Decimal(0))
    rate = Decimal(str(invoice.get("tax_rate") or 0))
    tax = (subtotal * rate / 100).quantize(CENT, rounding=ROUND_HALF_UP)
    workspace_ids = [str(w) for w in invoice.get("workspace_ids") or []]
    workspace = lines.projects.get(workspace_ids[0]) if len(workspace_ids) == 1 else {}
    fixed_only = not invoice.get("time_entry_ids") and bool(invoice.get("fixed_fee_items"))
    status = "voided" if invoice.get("status") == "cancelled" else "submitted" if invoice.get("draft") else "approved"
    return {
        "id": str(invoice["id"]),
        "number": str(invoice.get("user_invoice_number")),
        "type": "invoice",
        "status": status,
        "period": str(invoice.get("invoice_date") or "")[:7],
        "billing_type": "fixed_fee" if fixed_only else "time_and_materials",
        "project": {
            "id": workspace_ids[0] if len(workspace_ids) == 1 else None,
            "name": workspace.get("title"),
            "crm_deal_id": lines.projects.deal_of(workspace),
        },
        "client": lines.projects.client_of(workspace),
        "currency": invoice.get("currency"),
        "issue_date": invoice.get("invoice_date"),
        "due_date": invoice.get("due_date"),
        "lines": items,
        "subtotal": str(subtotal.quantize(CENT)),
        "tax_code": tax_codes.get(rate_key(rate), f"{rate_key(rate)}%"),
        "tax_amount": str(tax),
        "total": str((subtotal + tax).quantize(CENT)),
        "credit_note_for": None,
        "approved_at": invoice.get("updated_at"),
        "approved_by": None,
        "released_at": None,
    }
