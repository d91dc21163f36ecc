"""What the flows need from a CRM (the factory that picks a vendor's hook is ``backbone.hooks.vendors``).

The flows speak the data dictionary's canonical names; each vendor hook turns them into its own
field names through ``dictionary/crm_mapping.yaml``. Pick the vendor with the Connection's type
(``hubspot`` or ``salesforce``) or, for a generic Connection type, its ``vendor`` extra.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from functools import cache
from typing import Any, Protocol, TypedDict

import yaml

from backbone.data_dictionary import DICTIONARY_DIR

CRM_SYSTEMS = ("hubspot", "salesforce")


class DealBundle(TypedDict):
    """One won deal as a CRM hook hands it to the closed-won flow: the vendor's own records, mapped
    to canonical fields only through ``crm_mapping.yaml``."""

    system: str
    deal: dict[str, Any]
    company: dict[str, Any] | None
    contacts: list[dict[str, Any]]
    stage_label: str | None
    """None when the deal's stage is not a known stage."""


class OpenDeal(TypedDict):
    """One open deal for the pipeline: canonical deal fields plus where it stands."""

    crm_deal_id: str
    deal_name: str | None
    stage: str
    """The stage's label as people know it."""
    probability: float
    """The stage's probability of winning, 0–1 (HubSpot: the stage's ``metadata.probability``;
    Salesforce: the Opportunity's ``Probability`` percent ÷ 100)."""
    amount: str | None
    currency: str | None
    close_date: str | None
    expected_start: str | None
    """The contract start the deal names, else its expected close date."""


def open_deal(canonical_deal: dict[str, Any], *, stage: str, probability: float) -> OpenDeal:
    """An :class:`OpenDeal` from a deal's canonical fields."""
    close = (canonical_deal.get("close_date") or "")[:10] or None
    return {
        "crm_deal_id": str(canonical_deal["crm_deal_id"]),
        "deal_name": canonical_deal.get("project_name"),
        "stage": stage,
        "probability": max(0.0, min(1.0, probability)),
        "amount": canonical_deal.get("contract_value"),
        "currency": canonical_deal.get("currency"),
        "close_date": close,
        "expected_start": (canonical_deal.get("contract_start_date") or "")[:10] or close,
    }


class CrmSystem(Protocol):
    """A CRM as the closed-won, milestones and invoicing flows use it."""

    system: str
    """The vendor's name, also the ``source`` of the PSA project's external id."""

    def won_deal_pages(self, start: datetime, end: datetime) -> Iterator[list[DealBundle]]:
        """Pages of won deals modified in ``[start, end)``, each a :class:`DealBundle`."""
        ...

    def open_deal_pages(self) -> Iterator[list[OpenDeal]]:
        """Pages of every deal still open (not won, not lost), for the pipeline mart."""
        ...

    def read_deals(self, deal_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Deals by id, as canonical deal fields (ids the CRM does not know are absent)."""
        ...

    def update_deal(self, deal_id: str, values: dict[str, str]) -> None:
        """Write canonical deal fields (``psa_project_id``, ``project_status``, ...) onto one deal."""
        ...


@cache
def crm_mapping() -> dict[str, Any]:
    return yaml.safe_load((DICTIONARY_DIR / "crm_mapping.yaml").read_text(encoding="utf-8"))


def field_paths(system: str, record: str) -> dict[str, str]:
    """Canonical name → the vendor's field path for one kind of record (deal, company, contact)."""
    systems = crm_mapping()["systems"]
    if system not in systems:
        raise ValueError(f"crm_mapping.yaml has no section for CRM {system!r}; known: {', '.join(sorted(systems))}")
    return dict(systems[system][record])


def pluck(record: Any, path: str) -> Any:
    """The value at a dotted path of nested objects, or None where any step is missing."""
    value = record
    for step in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


def as_text(value: Any) -> Any:
    """Vendor values as the dictionary's text form: JSON numbers without a spurious ``.0``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return str(value)
    return value


def canonical(record: Any, system: str, kind: str) -> dict[str, Any]:
    """A vendor record → ``{canonical name: value}`` through the mapping."""
    return {name: as_text(pluck(record, path)) for name, path in field_paths(system, kind).items()}
