"""The PSA's REST API (OpenAPI at ``<base>/openapi.json``), behind a small swappable interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from backbone.hooks.base import JsonApiHook


@dataclass(frozen=True)
class PsaProjectRef:
    project_id: str
    url: str
    created: bool


class PsaClient(Protocol):
    """What the flows need from a PSA; a vendor adapter implements this."""

    def upsert_project(self, source: str, external_id: str, project: dict[str, Any]) -> PsaProjectRef: ...


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
