"""The accounting system's reference lists (customers, people, items, tax codes), mirrored per run."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from backbone.accounting_mapping import AccountingReferences

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from backbone.hooks.accounting import AccountingSystem
    from backbone.warehouse.ops import RunRef

log = logging.getLogger(__name__)

REFERENCE_ENTITIES = ("Customer", "Employee", "Vendor", "User", "Item", "TaxCode", "Account")


def refresh_references(accounting: AccountingSystem, warehouse: Engine, run: RunRef) -> dict[str, int]:
    """Mirror the active reference records into ``acct.reference``, keyed the way the mapping matches."""
    from backbone.warehouse.db import copy_upsert
    from backbone.warehouse.tables import reference

    stamp = f"{run.run_id}#{uuid.uuid4().hex[:8]}"  # this refresh, even when an interval is run again
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for record in accounting.reference_records():
        if record.match_key:
            rows.setdefault(
                (record.entity, record.match_key),
                {
                    "entity": record.entity,
                    "match_key": record.match_key[:300],
                    "ref_id": record.ref_id,
                    "name": record.name[:300],
                    "extra": record.extra,
                    "last_run_id": stamp,
                },
            )
    with warehouse.begin() as connection:
        # Every listed record is stamped with this run, so whatever accounting no longer lists stops matching.
        copy_upsert(
            connection,
            reference,
            sorted(rows.values(), key=lambda r: (r["entity"], r["match_key"])),
            key=["entity", "match_key"],
            bookkeeping=(),
        )
        if rows:
            connection.execute(reference.delete().where(reference.c.last_run_id != stamp))
    counts = {entity: n for entity in REFERENCE_ENTITIES if (n := sum(1 for e, _ in rows if e == entity))}
    log.info("accounting references from %s: %s", accounting.system, counts)
    return counts


def load_references(warehouse: Engine) -> AccountingReferences:
    from sqlalchemy import select

    from backbone.warehouse.tables import reference

    with warehouse.connect() as connection:
        return AccountingReferences.from_rows([dict(r._mapping) for r in connection.execute(select(reference))])
