"""Kantata OX (formerly Mavenlink) API v1: projects from CRM deals, created exactly once without an
idempotency key. The rest of the PSA interface on Kantata (people, time, invoices) is issue 21's
next step; until then ``kantata`` is not offered as a PSA Connection type.

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

import logging
from collections.abc import Iterator
from typing import Any

from backbone.hooks.base import JsonApiHook
from backbone.hooks.psa import PsaProjectRef
from backbone.http import FatalApiError, RetriableApiError, RetryPolicy

log = logging.getLogger(__name__)

API = "/api/v1"
PER_PAGE_MAX = 200
DEAL_MODEL = "deal"
"""``service_model`` of the external reference that ties a project to its CRM deal."""


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
    def pages(
        self, collection: str, params: dict[str, Any] | None = None, *, per_page: int = PER_PAGE_MAX
    ) -> Iterator[list[dict[str, Any]]]:
        """Every ``collection`` object matching ``params``, a page at a time, in ``results`` order."""
        page = 1
        while True:
            body = self.request(
                "GET",
                f"{API}/{collection}.json",
                params={**(params or {}), "page": page, "per_page": min(per_page, PER_PAGE_MAX)},
                description=f"Kantata list {collection} page {page}",
            )
            yield records_in_order(body, collection)
            if page >= int(((body or {}).get("meta") or {}).get("page_count") or 1):
                return
            page += 1

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
        single = RetryPolicy(max_attempts=1, max_backoff_seconds=self.retry_policy.max_backoff_seconds)
        for attempt in range(1, self.retry_policy.max_attempts + 1):
            if attempt > 1 and (workspace_id := self._linked_workspace(source, external_id)) is not None:
                log.info(
                    "Kantata workspace %s of %s deal %s was made by the attempt whose answer was lost; adopted",
                    workspace_id,
                    source,
                    external_id,
                )
                return self._updated(workspace_id, fields, created=True)
            try:
                body = self.request(
                    "POST",
                    f"{API}/workspaces.json",
                    json={"workspace": {**fields, "external_reference": link}},
                    retry=single,
                    description=f"Kantata create the workspace of {source} deal {external_id}",
                )
            except FatalApiError:
                raise
            except RetriableApiError as exc:
                if attempt >= self.retry_policy.max_attempts:
                    raise
                delay = self.retry_policy.backoff(attempt, exc)
                log.warning("Kantata create workspace: %s; looking it up before trying again in %.1fs", exc, delay)
                self.retry_policy.sleep(delay)
                continue
            workspace_id = str(records_in_order(body, "workspaces")[0]["id"])
            return PsaProjectRef(workspace_id, self.workspace_url(workspace_id), created=True)
        raise AssertionError("unreachable")

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
