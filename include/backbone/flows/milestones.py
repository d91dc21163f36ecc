"""PSA milestones → the CRM deal: project status, last milestone and billed-to-date, idempotently."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from backbone.hooks.crm import crm_mapping
from backbone.warehouse import ops
from backbone.warehouse.ops import WRITES_SKIPPED

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from backbone.hooks.crm import CrmSystem
    from backbone.hooks.psa import PsaBilling
    from backbone.warehouse.ops import RunRef

log = logging.getLogger(__name__)

FLOW = "psa_milestones_to_crm"


def billed_to_date(accounting_warehouse: Engine, project_ids: list[str]) -> dict[str, str]:
    """Net posted invoicing per project (invoices − credit notes, voids excluded), with currency."""
    if not project_ids:
        return {}
    query = """
        SELECT project_id, currency, sum(CASE WHEN kind = 'credit_note' THEN -total ELSE total END)
        FROM acct.invoice WHERE posting_status = 'posted' AND project_id = ANY(%(ids)s) GROUP BY project_id, currency ORDER BY
            project_id, currency
    """
    out: dict[str, list[str]] = {}
    with accounting_warehouse.connect() as connection:
        for project, currency, amount in connection.exec_driver_sql(query, {"ids": project_ids}):
            out.setdefault(project, []).append(f"{Decimal(amount):.2f} {currency}")
    return {project: ", ".join(parts) for project, parts in out.items()}


def push_milestones(
    psa: PsaBilling, crm: CrmSystem, accounting_warehouse: Engine, psa_warehouse: Engine, run: RunRef, *, pilot: bool = False
) -> dict[str, int]:
    """Milestones completed in the interval → deal properties, patched only where they differ.
    ``pilot``: read and compare as always, patch nothing, report what would change (``backbone.pilot``)."""
    statuses = crm_mapping()["milestone_status"]
    milestones = sorted(psa.milestones(run.extract_from, run.interval_end), key=lambda m: (m["completed_at"], m["id"]))
    latest: dict[str, dict[str, Any]] = {}
    skipped = 0
    for milestone in milestones:
        if not milestone.get("crm_deal_id"):
            skipped += 1
            continue
        latest[str(milestone["crm_deal_id"])] = milestone  # the newest milestone of a deal wins
    billed = billed_to_date(accounting_warehouse, sorted({m["project_id"] for m in latest.values()}))
    deals = crm.read_deals(sorted(latest)) if latest else {}
    updated = 0
    for deal_id, milestone in sorted(latest.items()):
        current = deals.get(deal_id) or {}
        wanted = {"last_milestone": milestone["name"], "billed_to_date": billed.get(milestone["project_id"], "0.00")}
        status = statuses.get(milestone["name"])
        if status:
            wanted["project_status"] = status
        if deal_id not in deals:
            log.warning("deal %s of milestone %s is not in the CRM", deal_id, milestone["id"])
            skipped += 1
            continue
        if any(current.get(k) != v for k, v in wanted.items()):
            if not pilot:
                crm.update_deal(deal_id, wanted)
            updated += 1
    with psa_warehouse.begin() as connection:
        ops.record_run(
            connection,
            run,
            extracted=len(milestones),
            valid=len(latest),
            quarantined=skipped,
            loaded=len(latest),
            written_back=0 if pilot else updated,
            details={"deals_updated": 0 if pilot else updated, "milestones_without_deal": skipped}
            | (
                {"pilot": {"would_post": updated, "unit": "CRM deals", "by_action": {"update": updated}}, WRITES_SKIPPED: True}
                if pilot
                else {}
            ),
        )
    log.info("milestones: %d completed, %d deals touched, %d updated", len(milestones), len(latest), updated)
    return {"milestones": len(milestones), "deals_updated": updated}
