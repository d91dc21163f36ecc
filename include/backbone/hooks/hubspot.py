"""HubSpot CRM v3 (objects, search, pipelines) and v4 (associations), spoken on the wire."""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from backbone.hooks.base import JsonApiHook
from backbone.hooks.crm import DealBundle, OpenDeal, canonical, field_paths, open_deal
from backbone.http import RateLimiter, RetriableApiError
from backbone.paging import CursorPaginator, keyset_windows, pages
from backbone.settings import load_settings

log = logging.getLogger(__name__)

EMPTY_PAGE_RETRIES = 3
SEARCH_PAGE_SIZE = 100
SEARCH_RESULT_CAP = 10_000
BATCH_SIZE = 100
OBJECT_TYPE_IDS = {"deals": "0-3", "companies": "0-2", "contacts": "0-1"}
PRIMARY_COMPANY_TYPE_ID = 5  # HubSpot-defined deal→company "Primary" association


@dataclass(frozen=True)
class DealStage:
    pipeline_id: str
    stage_id: str
    label: str
    is_closed: bool
    probability: float

    @property
    def is_won(self) -> bool:
        return self.is_closed and self.probability >= 1.0


def epoch_millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class HubSpotHook(JsonApiHook):
    """HubSpot CRM through a private-app token.

    Connection (``hubspot_default``): ``password`` = private-app token; ``host`` = base URL
    (default ``https://api.hubapi.com``). Extras: ``search_requests_per_second`` (default 4),
    ``requests_per_second`` (default 10, i.e. 100 per 10 s).
    """

    conn_name_attr = "hubspot_conn_id"
    default_conn_name = "hubspot_default"
    conn_type = "hubspot"
    hook_name = "HubSpot CRM"
    system_name = "HubSpot"
    system = "hubspot"
    default_base_url = "https://api.hubapi.com"
    RATE_LIMIT_HEADERS = (
        ("daily calls left", "X-HubSpot-RateLimit-Daily-Remaining"),
        ("of", "X-HubSpot-RateLimit-Daily"),
        ("calls left in this 10 s window", "X-HubSpot-RateLimit-Remaining"),
    )
    """HubSpot's rate-limit headers on non-search answers (https://developers.hubspot.com/docs/api/usage-details)."""

    def __init__(self, hubspot_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(hubspot_conn_id, **kwargs)

    @cached_property
    def search_limiter(self) -> RateLimiter:
        return RateLimiter(self.budget("search_requests_per_second", setting=load_settings().crm_search_requests_per_second, default=4))

    @cached_property
    def limiter(self) -> RateLimiter:
        return RateLimiter(self.budget("requests_per_second", setting=load_settings().crm_requests_per_second, default=10))

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.deal_stages()
        except Exception as exc:  # noqa: BLE001 - reported to the UI, not raised
            return False, str(exc)
        return True, "HubSpot answered the pipelines call"

    # --- pipelines --------------------------------------------------------------------------
    def deal_stages(self) -> dict[tuple[str, str], DealStage]:
        """Every deal stage of every pipeline, keyed by (pipeline id, stage id)."""
        body = self.request("GET", "/crm/v3/pipelines/deals", limiter=self.limiter)
        stages: dict[tuple[str, str], DealStage] = {}
        for pipeline in body.get("results", []):
            for stage in pipeline.get("stages", []):
                meta = stage.get("metadata") or {}
                stages[(pipeline["id"], stage["id"])] = DealStage(
                    pipeline_id=pipeline["id"],
                    stage_id=stage["id"],
                    label=stage.get("label", stage["id"]),
                    is_closed=str(meta.get("isClosed", "false")).lower() == "true",
                    probability=float(meta.get("probability") or 0),
                )
        return stages

    # --- search -------------------------------------------------------------------------------
    def _search_page(self, object_type: str, body: dict[str, Any]) -> dict[str, Any]:
        """One search page. An empty page that still offers a next cursor is asked for again: the
        search index can answer a page empty while it catches up, and skipping it would lose records."""
        path = f"/crm/v3/objects/{OBJECT_TYPE_IDS.get(object_type, object_type)}/search"
        for attempt in range(EMPTY_PAGE_RETRIES + 1):
            page = self.request("POST", path, json=body, limiter=self.search_limiter)
            has_next = bool(_next_after(page))
            if page.get("results") or not has_next or attempt == EMPTY_PAGE_RETRIES:
                return page
            log.warning(
                "HubSpot %s search returned an empty page with a next cursor; asking again (%d/%d)",
                object_type,
                attempt + 1,
                EMPTY_PAGE_RETRIES,
            )
            self.retry_policy.sleep(self.retry_policy.backoff(attempt + 1, RetriableApiError("empty page")))
        return page

    def search(
        self,
        object_type: str,
        *,
        filters: list[dict[str, Any]],
        properties: list[str],
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield pages of objects matching all ``filters``, in ``hs_object_id`` order.

        Paging uses ``after``; since a search stops at 10,000 results, the loop opens a new
        window (``hs_object_id`` greater than the last id seen) before reaching the cap.
        """
        description = f"HubSpot {object_type} search"

        def window(after_id: int | None) -> Generator[list[dict[str, Any]], None, bool]:
            window_filters = list(filters)
            if after_id is not None:
                window_filters.append({"propertyName": "hs_object_id", "operator": "GT", "value": str(after_id)})
                log.info("HubSpot %s search: opening a new window after id %s", object_type, after_id)
            body: dict[str, Any] = {
                "filterGroups": [{"filters": window_filters}],
                "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                "properties": properties,
                "limit": SEARCH_PAGE_SIZE,
            }

            def fetch(after: str | None) -> dict[str, Any]:
                return self._search_page(object_type, {**body, **({"after": after} if after is not None else {})})

            paginator = CursorPaginator(_next_after, description=description, continue_if_empty=False)
            in_window = 0
            for page in pages(paginator, fetch, lambda answer: answer.get("results")):
                yield page
                in_window += len(page)
                if not paginator.finished and in_window + SEARCH_PAGE_SIZE > SEARCH_RESULT_CAP:
                    return True  # the cap is near: the rest comes in a new window
            return False

        yield from keyset_windows(window, lambda record: int(record["id"]), description=description)

    def search_modified(
        self,
        object_type: str,
        *,
        start: datetime,
        end: datetime,
        properties: list[str],
        extra_filters: Iterable[dict[str, Any]] = (),
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of objects whose ``hs_lastmodifieddate`` lies in ``[start, end)``."""
        filters = [
            {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": str(epoch_millis(start))},
            {"propertyName": "hs_lastmodifieddate", "operator": "LT", "value": str(epoch_millis(end))},
            *extra_filters,
        ]
        return self.search(object_type, filters=filters, properties=properties)

    # --- batch reads ----------------------------------------------------------------------------
    def associations(self, from_type: str, to_type: str, ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """v4 batch associations: object id → ``[{"toObjectId", "associationTypes"}, ...]``, every page
        of them: an answer's ``paging.next.after`` goes back with the object's id in ``inputs`` until
        no page is left (HubSpot: "The 'after' field in a returned paging object can be added alongside
        the 'id' to retrieve the next page of associations from that objectId")."""
        found: dict[str, list[dict[str, Any]]] = {}
        pending: list[dict[str, str]] = [{"id": i} for i in dict.fromkeys(ids)]
        while pending:  # an object with many associations answers a page and ``paging.next.after`` for the rest
            more: list[dict[str, str]] = []
            for chunk in _chunks(pending, BATCH_SIZE):
                body = self.request(
                    "POST", f"/crm/v4/associations/{from_type}/{to_type}/batch/read", json={"inputs": chunk}, limiter=self.limiter
                )
                for result in body.get("results", []):
                    object_id = str(result["from"]["id"])
                    found.setdefault(object_id, []).extend(result.get("to", []))
                    after = ((result.get("paging") or {}).get("next") or {}).get("after")
                    if after:
                        more.append({"id": object_id, "after": str(after)})
            pending = more
        return found

    def batch_read(self, object_type: str, ids: Iterable[str], properties: list[str]) -> dict[str, dict[str, Any]]:
        """Objects by id through ``batch/read`` (ids HubSpot does not know are simply absent)."""
        objects: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(list(dict.fromkeys(ids)), BATCH_SIZE):
            body = self.request(
                "POST",
                f"/crm/v3/objects/{object_type}/batch/read",
                json={"properties": properties, "inputs": [{"id": i} for i in chunk]},
                limiter=self.limiter,
            )
            for obj in body.get("results", []):
                objects[str(obj["id"])] = obj
        return objects

    # --- the CRM interface the flows use (backbone.hooks.crm.CrmSystem) -------------------------
    def won_deal_pages(self, start: datetime, end: datetime) -> Iterator[list[DealBundle]]:
        """Won deals (any pipeline; won stages from the pipelines endpoint) modified in ``[start, end)``, bundled."""
        stages = self.deal_stages()
        won_ids = sorted({s.stage_id for s in stages.values() if s.is_won})
        if not won_ids:
            raise ValueError("HubSpot reports no closed-won stage in any deal pipeline; nothing could ever be extracted")
        log.info("won stages resolved through the pipelines endpoint: %s", ", ".join(won_ids))
        for page in self.search_modified(
            "deals",
            start=start,
            end=end,
            properties=_properties("deal"),
            extra_filters=[{"propertyName": "dealstage", "operator": "IN", "values": won_ids}],
        ):
            yield self._bundle_page(page, stages)

    def _bundle_page(self, deals: list[dict[str, Any]], stages: dict[tuple[str, str], DealStage]) -> list[DealBundle]:
        ids = [d["id"] for d in deals]
        company_links = self.associations("deals", "companies", ids)
        contact_links = self.associations("deals", "contacts", ids)
        company_of = {deal_id: primary_association(company_links.get(deal_id, [])) for deal_id in ids}
        contacts_of = {deal_id: sorted({str(t["toObjectId"]) for t in contact_links.get(deal_id, [])}, key=int) for deal_id in ids}
        companies = self.batch_read("companies", [c for c in company_of.values() if c], _properties("company"))
        contacts = self.batch_read("contacts", [c for cs in contacts_of.values() for c in cs], _properties("contact"))
        bundles: list[DealBundle] = []
        for deal in deals:
            props = deal.get("properties") or {}
            stage = stages.get((props.get("pipeline") or "", props.get("dealstage") or ""))
            bundles.append(
                {
                    "system": self.system,
                    "deal": deal,
                    "company": companies.get(company_of[deal["id"]] or ""),
                    "contacts": [contacts[c] for c in contacts_of[deal["id"]] if c in contacts],
                    "stage_label": stage.label if stage else None,
                }
            )
        return bundles

    def open_deal_pages(self) -> Iterator[list[OpenDeal]]:
        """Every open deal: stages the pipelines endpoint marks ``isClosed: false``, each priced at
        its stage's ``metadata.probability`` (HubSpot's deal stage probability, 0–1)."""
        stages = self.deal_stages()
        open_ids = sorted({s.stage_id for s in stages.values() if not s.is_closed})
        if not open_ids:
            return
        filters = [{"propertyName": "dealstage", "operator": "IN", "values": open_ids}]
        for page in self.search("deals", filters=filters, properties=_properties("deal")):
            found = []
            for deal in page:
                props = deal.get("properties") or {}
                stage = stages.get((props.get("pipeline") or "", props.get("dealstage") or ""))
                if stage is None or stage.is_closed:
                    continue  # a stage id of another pipeline, or moved on since the search
                found.append(open_deal(canonical(deal, self.system, "deal"), stage=stage.label, probability=stage.probability))
            yield found

    def read_deals(self, deal_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        deals = self.batch_read("deals", sorted(set(deal_ids)), _properties("deal"))
        return {deal_id: canonical(deal, self.system, "deal") for deal_id, deal in deals.items()}

    def update_deal(self, deal_id: str, values: dict[str, str]) -> None:
        paths = field_paths(self.system, "deal")
        self.update_object("deals", deal_id, {paths[name].removeprefix("properties."): value for name, value in values.items()})

    # --- writes ---------------------------------------------------------------------------------
    def update_object(self, object_type: str, object_id: str, properties: dict[str, str]) -> dict[str, Any]:
        """PATCH properties of one object (idempotent: the same values give the same object)."""
        return self.request(
            "PATCH",
            f"/crm/v3/objects/{OBJECT_TYPE_IDS.get(object_type, object_type)}/{object_id}",
            json={"properties": properties},
            limiter=self.limiter,
        )


def _properties(kind: str) -> list[str]:
    """The HubSpot property names the mapping reads for one kind of record."""
    return [path.removeprefix("properties.") for path in field_paths("hubspot", kind).values() if path.startswith("properties.")]


def primary_association(targets: list[dict[str, Any]], primary_type_id: int = PRIMARY_COMPANY_TYPE_ID) -> str | None:
    """The primary target of an association list, else the lowest id; None when there is none."""
    if not targets:
        return None
    for target in targets:
        if any(t.get("typeId") == primary_type_id for t in target.get("associationTypes", [])):
            return str(target["toObjectId"])
    return str(min(int(t["toObjectId"]) for t in targets))


def _next_after(page: dict[str, Any]) -> str | None:
    """The ``after`` cursor of a search answer's next page, if it offers one."""
    return ((page.get("paging") or {}).get("next") or {}).get("after")


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
