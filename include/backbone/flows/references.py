"""The accounting system's reference lists (customers, people, items, tax codes), mirrored per run."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from backbone.accounting_mapping import AccountingReferences, normalise

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from backbone.hooks.quickbooks import AccountingClient
    from backbone.warehouse.ops import RunRef

log = logging.getLogger(__name__)

REFERENCE_ENTITIES = ("Customer", "Employee", "Vendor", "Item", "TaxCode")


def refresh_references(accounting: AccountingClient, warehouse: Engine, run: RunRef) -> dict[str, int]:
    """Mirror the active reference records into ``acct.reference``, keyed the way the mapping matches."""
    from backbone.warehouse.db import copy_upsert
    from backbone.warehouse.tables import reference

    stamp = f"{run.run_id}#{uuid.uuid4().hex[:8]}"  # this refresh, even when an interval is run again
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for entity in REFERENCE_ENTITIES:
        for page in accounting.query_all(entity, "Active = true"):
            for record in page:
                key = _reference_key(entity, record)
                if key:
                    rows.setdefault((entity, key), _reference_row(entity, key, record, stamp))
    with warehouse.begin() as connection:
        # Every listed record is stamped with this run, so whatever accounting no longer lists stops matching.
        copy_upsert(connection, reference, sorted(rows.values(), key=lambda r: (r["entity"], r["match_key"])), key=["entity", "match_key"], bookkeeping=())
        if rows:
            connection.execute(reference.delete().where(reference.c.last_run_id != stamp))
    counts = {entity: sum(1 for e, _ in rows if e == entity) for entity in REFERENCE_ENTITIES}
    log.info("accounting references: %s", counts)
    return counts


def load_references(warehouse: Engine) -> AccountingReferences:
    from sqlalchemy import select

    from backbone.warehouse.tables import reference

    with warehouse.connect() as connection:
        return AccountingReferences.from_rows([dict(r._mapping) for r in connection.execute(select(reference))])


def _reference_key(entity: str, record: dict[str, Any]) -> str:
    if entity in ("Employee", "Vendor"):
        return normalise(((record.get("PrimaryEmailAddr") or {}).get("Address")) or "")
    return normalise(record.get("DisplayName") or record.get("Name") or "")


def _reference_row(entity: str, key: str, record: dict[str, Any], run_id: str) -> dict[str, Any]:
    extra = {}
    if entity == "Item":
        extra["income_account"] = (record.get("IncomeAccountRef") or {}).get("name")
    if entity == "Customer":
        extra["currency"] = (record.get("CurrencyRef") or {}).get("value")
    name = record.get("DisplayName") or record.get("Name") or ""
    return {"entity": entity, "match_key": key[:300], "ref_id": str(record["Id"]), "name": str(name)[:300], "extra": extra, "last_run_id": run_id}
