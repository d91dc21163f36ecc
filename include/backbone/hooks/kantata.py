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
- No POST takes an idempotency key: a retried create makes a duplicate. External references
  (``/external_references``) tie a Kantata object to an id in another system.
- Throttling is a 429 without ``Retry-After`` (the retry policy's backoff applies).
"""

from __future__ import annotations

import hashlib
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


def source_token(source: str, external_id: str) -> str:
    """A single alphanumeric word naming the CRM record, written into the project's description: how
    a project whose create answer was lost (so it has no external reference yet) is found again by
    Kantata's description search, which matches whole words."""
    return "bbref" + hashlib.sha256(f"{source}\x1f{external_id}".encode()).hexdigest()[:20]


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

        1. The external reference (``Workspace``, ``source``, ``deal``, the deal id) names the
           workspace made before: update it.
        2. Else a workspace carrying the deal's token in its description (created by an attempt
           whose answer, or whose reference, was lost) is adopted and linked.
        3. Else it is created with one POST that is never repeated blindly: after a timeout or a
           server error the search of step 2 runs again before any new POST.
        """
        fields = workspace_fields(project, source_token(source, external_id))
        reference = self.external_reference("Workspace", source, DEAL_MODEL, external_id)
        if reference is not None:
            workspace_id = str(reference["subject_id"])
            if workspace_id in self.visible("workspaces", [workspace_id], {"include_archived": "true"}):
                self.request("PUT", f"{API}/workspaces/{workspace_id}.json", json={"workspace": fields})
                return PsaProjectRef(workspace_id, self.workspace_url(workspace_id), created=False)
            log.warning(
                "Kantata workspace %s of %s deal %s is gone (deleted in Kantata); creating it again", workspace_id, source, external_id
            )
        workspace, created = self._create_workspace_once(fields, source_token(source, external_id))
        if not created:
            self.request("PUT", f"{API}/workspaces/{workspace['id']}.json", json={"workspace": fields})
        self.request(
            "POST",
            f"{API}/external_references/create_or_update",
            json={
                "external_reference": {
                    "subject_type": "Workspace",
                    "subject_id": workspace["id"],
                    "service_name": source,
                    "service_model": DEAL_MODEL,
                    "service_model_ref": external_id,
                    "status": "successful",
                }
            },
            description=f"Kantata link workspace {workspace['id']} to {source} deal {external_id}",
        )
        return PsaProjectRef(str(workspace["id"]), self.workspace_url(str(workspace["id"])), created=created)

    def _find_by_token(self, token: str) -> dict[str, Any] | None:
        for page in self.pages("workspaces", {"search": f"description:'{token}'", "include_archived": "true"}):
            for record in page:
                if token in str(record.get("description") or ""):
                    return record
        return None

    def _create_workspace_once(self, fields: dict[str, Any], token: str) -> tuple[dict[str, Any], bool]:
        """``(workspace, created)``: one POST at a time, each preceded (after the first) by a search
        for what an earlier POST may have made. A 4xx is final; anything unclear is looked up."""
        single = RetryPolicy(max_attempts=1, max_backoff_seconds=self.retry_policy.max_backoff_seconds)
        for attempt in range(1, self.retry_policy.max_attempts + 1):
            found = self._find_by_token(token)
            if found is not None:
                log.info("Kantata workspace %s already made by an earlier attempt; adopted", found["id"])
                return found, False
            try:
                body = single.call(
                    lambda: self._post_once(f"{API}/workspaces.json", {"workspace": fields}),
                    description="Kantata create workspace",
                )
                return records_in_order(body, "workspaces")[0], True
            except FatalApiError:
                raise
            except RetriableApiError as exc:
                if attempt >= self.retry_policy.max_attempts:
                    raise
                delay = self.retry_policy.backoff(attempt, exc)
                log.warning("Kantata create workspace: %s; looking it up before trying again in %.1fs", exc, delay)
                self.retry_policy.sleep(delay)
        raise AssertionError("unreachable")

    def _post_once(self, path: str, payload: dict[str, Any]) -> Any:
        response = self.get_conn().request("POST", self.url_for(path), auth=self.auth, json=payload, timeout=self.timeout)
        self.last_response_headers = response.headers
        return self.validate_response(response)

    def workspace_url(self, workspace_id: str) -> str:
        return f"{self.base_url}/workspaces/{workspace_id}"


def workspace_fields(project: dict[str, Any], token: str) -> dict[str, Any]:
    """Our PSA project body → Kantata's workspace fields (``title``, ``description``, ``budgeted``,
    ``price``, ``currency``, ``start_date``, ``due_date``); the deal's token ends the description."""
    description = str(project.get("description") or "").strip()
    client = (project.get("client") or {}).get("name")
    lines = [description] if description else []
    if client:
        lines.append(f"Client: {client}")
    lines.append(f"Synced from the CRM · {token}")
    return {
        "title": project["name"],
        "description": "\n\n".join(lines),
        "budgeted": True,
        "price": str(project["budget"]),
        "currency": project["currency"],
        "start_date": project.get("start_date"),
        "due_date": project.get("end_date"),
    }
