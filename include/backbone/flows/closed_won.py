"""Closed-won CRM deals become PSA projects: extract → validate → load → write back.

Each step reads what the previous one left in ``ops.staged_record`` for the run, so tasks pass
only a :class:`RunRef` and counts between them. Every step can be repeated: staging is replaced,
loads are upserts in one transaction, the PSA call is idempotent on the deal id and the CRM is
patched only when its link differs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from backbone.hooks.crm import CRM_SYSTEMS, canonical, field_paths, pluck
from backbone.validation import RuleFailure, as_dict, validate_rows
from backbone.warehouse import ops
from backbone.warehouse.ops import QuarantineRow, RunRef

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from backbone.hooks.crm import CrmSystem
    from backbone.hooks.psa import PsaClient

log = logging.getLogger(__name__)

FLOW = "crm_closed_won_to_psa"
ENTITY = "deal"


# --- extract -------------------------------------------------------------------------------------
def extract_deals(crm: CrmSystem, warehouse: Engine, run: RunRef, *, lookback: timedelta) -> dict[str, int]:
    """Stage every won deal modified in the interval (plus lookback) with its company and contacts."""
    start = run.extract_from - lookback
    with warehouse.begin() as connection:
        ops.clear_staging(connection, run)
    extracted = 0
    for bundles in crm.won_deal_pages(start, run.interval_end):
        with warehouse.begin() as connection:
            ops.stage(connection, run, ENTITY, [(str(b["deal"][_deal_id_path(crm.system)]), b) for b in bundles])
        extracted += len(bundles)
        log.info(
            "extracted %d won deals from %s so far (modified %s → %s)",
            extracted,
            crm.system,
            start.isoformat(),
            run.interval_end.isoformat(),
        )
    with warehouse.begin() as connection:  # the CRM's fresh copy of a deal wins over a held one
        rechecked = ops.stage_if_absent(connection, run, ENTITY, ops.open_exceptions_to_recheck(connection, run, ENTITY, healable_rules()))
    if rechecked:
        log.info("judging %d deals held by earlier runs again (the data dictionary may allow them now)", rechecked)
    staged = _count_staged(warehouse, run)  # distinct deals: a deal repeated across pages counts once
    with warehouse.begin() as connection:
        ops.record_run(connection, run, extracted=staged, details={"crm": crm.system, "held_rechecked": rechecked})
    return {"extracted": staged}


def snapshot_pipeline(crm: CrmSystem, warehouse: Engine, run: RunRef, *, taken_at: datetime) -> dict[str, int]:
    """Replace the open-pipeline snapshot (``psa.pipeline_deal``) with every deal open in the CRM
    now, in one transaction (a deal won or lost since the last snapshot leaves it). A pipeline is a
    state, not an interval's events: any run of the flow refreshes it. A deal without a usable
    amount or date is kept with those fields empty, never dropped."""
    from sqlalchemy import delete, insert

    from backbone.warehouse.tables import pipeline_deal

    deals: dict[str, dict[str, Any]] = {}
    for page in crm.open_deal_pages():
        for d in page:
            deals[d["crm_deal_id"]] = {
                "crm_deal_id": d["crm_deal_id"],
                "crm_system": crm.system,
                "deal_name": (d["deal_name"] or "")[:255] or None,
                "stage": d["stage"][:100],
                "probability": Decimal(str(round(d["probability"], 4))),
                "amount": _lenient(_decimal, d["amount"]),
                "currency": (d["currency"] or "")[:3].upper() or None,
                "close_date": _lenient(_date, d["close_date"]),
                "expected_start": _lenient(_date, d["expected_start"]),
                "snapshot_run_id": run.run_id,
                "snapshot_at": taken_at,
            }
    with warehouse.begin() as connection:
        connection.execute(delete(pipeline_deal))
        if deals:
            connection.execute(insert(pipeline_deal), list(deals.values()))
        ops.record_run(connection, run, details={"open_deals": len(deals)})
    log.info("pipeline snapshot: %d open deals in %s", len(deals), crm.system)
    return {"open_deals": len(deals)}


def _lenient(parse: Any, value: Any) -> Any:
    """A snapshot field as typed, or None when the CRM holds something unusable there (a dashboard
    shows the deal without it rather than losing it)."""
    try:
        result = parse(value)
    except (ArithmeticError, ValueError, TypeError):
        return None
    if isinstance(result, Decimal) and (not result.is_finite() or abs(result) >= Decimal("1e16")):
        return None
    return result


def healable_rules() -> frozenset[str]:
    """Holds whose cause is our data dictionary, not the deal: a currency or billing type outside a
    field's ``allowed_values``. When a data engineer adds the value, nothing in the CRM changes (so
    the deal is not extracted again by its modification time): every run judges such open holds
    of earlier runs again and loads the deals that now pass, resolving their exceptions. Every
    other hold is fixed by editing the deal, which brings it back by itself."""
    from backbone.data_dictionary import load_entity

    return frozenset(
        f"{spec.name}.{f.name}.allowed_values"
        for spec in (load_entity("project"), load_entity("client"))
        for f in spec.fields.values()
        if f.allowed_values
    )


def _deal_id_path(system: str) -> str:
    return field_paths(system, "deal")["crm_deal_id"]


def _count_staged(warehouse: Engine, run: RunRef, status: str | None = None) -> int:
    from sqlalchemy import func, select

    from backbone.warehouse.tables import staged_record

    query = select(func.count()).where(staged_record.c.flow == run.flow, staged_record.c.run_id == run.run_id)
    if status:
        query = query.where(staged_record.c.status == status)
    with warehouse.connect() as connection:
        return int(connection.execute(query).scalar_one())


# --- map + validate ------------------------------------------------------------------------------
def system_of(bundle: dict[str, Any]) -> str:
    """The CRM a staged bundle came from (bundles staged before Salesforce support are HubSpot's)."""
    system = bundle.get("system")
    return system if system in CRM_SYSTEMS else "hubspot"


def bundle_contacts(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The bundle's contacts that are objects with an id (anything else is not a contact)."""
    contacts = bundle.get("contacts")
    id_path = field_paths(system_of(bundle), "contact")["crm_contact_id"]
    return [c for c in contacts if isinstance(c, dict) and pluck(c, id_path) not in (None, "")] if isinstance(contacts, list) else []


def map_bundle(bundle: dict[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, Any], list[RuleFailure]]:
    """A staged deal bundle → (client row, contact rows, project row, mapping issues).

    Vendor field names come from ``crm_mapping.yaml``; a bundle without ``system`` is HubSpot's.
    """
    system = system_of(bundle)
    deal = canonical(as_dict(bundle.get("deal")), system, "deal")
    company = as_dict(bundle.get("company")) or None
    client = canonical(company, system, "company") if company else None
    company_id = str(client["crm_company_id"]) if client and client.get("crm_company_id") not in (None, "") else None
    if client is not None:
        client["crm_company_id"] = company_id
    contacts = []
    for raw in bundle_contacts(bundle):
        c = canonical(raw, system, "contact")
        contacts.append({**c, "crm_contact_id": str(c["crm_contact_id"]), "crm_company_id": company_id})
    project = {
        "crm_deal_id": str(deal.get("crm_deal_id")),
        "crm_company_id": company_id,
        "project_name": deal.get("project_name"),
        "deal_stage": bundle.get("stage_label") or deal.get("stage"),
        "scope": deal.get("scope"),
        "estimated_hours": deal.get("estimated_hours"),
        "contract_value": deal.get("contract_value"),
        "currency": deal.get("currency"),
        "billing_type": deal.get("billing_type"),
        "contract_start_date": deal.get("contract_start_date"),
        "contract_end_date": deal.get("contract_end_date"),
        "payment_terms_days": deal.get("payment_terms_days"),
        "close_date": deal.get("close_date"),
        "crm_modified_at": deal.get("crm_modified_at"),
    }
    issues = []
    if bundle.get("stage_label") is None:
        where = f" of pipeline {deal.get('pipeline')!r}" if deal.get("pipeline") else " the CRM knows"
        issues.append(RuleFailure("project.deal_stage.known", f"deal stage {deal.get('stage')!r} is not a stage{where}"))
    return client, contacts, project, issues


def validate_deals(warehouse: Engine, run: RunRef, *, chunk_size: int) -> dict[str, Any]:
    """Check every staged deal against the dictionary; quarantine failures with their reasons.

    Quarantine rows are kept per run and never deleted by a rerun: evidence is not rewritten.
    """
    tally = ops.validate_staged(
        warehouse,
        run,
        ENTITY,
        _judge_chunk,
        chunk_size=chunk_size,
        details=lambda t: {"contacts_quarantined": t.extra.get("contacts_quarantined", 0)},
    )
    contacts_quarantined = tally.extra.get("contacts_quarantined", 0)
    if tally.failed_rules:
        log.warning("quarantined %d deals and %d contacts: %s", tally.quarantined, contacts_quarantined, tally.failed_rules)
    return {"valid": tally.valid, "quarantined": tally.quarantined, "contacts_quarantined": contacts_quarantined}


def _judge_chunk(chunk: list[dict[str, Any]]) -> tuple[list[tuple[str, str, dict[str, Any] | None]], list[QuarantineRow], dict[str, int]]:
    mapped = [map_bundle(row["payload"]) for row in chunk]
    clients = {c["crm_company_id"]: c for c, _, _, _ in mapped if c is not None}
    contacts = {
        ct["crm_contact_id"]: (ct, raw)
        for (_, cts, _, _), row in zip(mapped, chunk, strict=True)
        for ct, raw in zip(cts, bundle_contacts(row["payload"]), strict=True)
    }
    client_ids, contact_ids = list(clients), list(contacts)
    client_verdict = validate_rows("client", [clients[i] for i in client_ids])
    contact_verdict = validate_rows("contact", [contacts[i][0] for i in contact_ids])
    project_verdict = validate_rows("project", [p for _, _, p, _ in mapped])
    bad_clients = {client_ids[i]: f for i, f in client_verdict.failures.items()}
    bad_contacts = {contact_ids[i]: f for i, f in contact_verdict.failures.items()}

    verdicts: list[tuple[str, str, dict[str, Any] | None]] = []
    quarantine_rows: list[QuarantineRow] = []
    stats = {"valid": 0, "quarantined": 0, "contacts_quarantined": len(bad_contacts)}
    for index, ((client, deal_contacts, project, issues), row) in enumerate(zip(mapped, chunk, strict=True)):
        failures = [*issues, *project_verdict.failures.get(index, [])]
        if client is not None:
            failures += bad_clients.get(client["crm_company_id"], [])
        key = row["source_key"]
        if failures:
            stats["quarantined"] += 1
            verdicts.append((key, "quarantined", None))
            quarantine_rows += [QuarantineRow(ENTITY, key, f.rule, f.reason, row["payload"]) for f in _unique(failures)]
            continue
        stats["valid"] += 1
        good_contacts = [c for c in deal_contacts if c["crm_contact_id"] not in bad_contacts]
        verdicts.append((key, "valid", {"client": client, "contacts": good_contacts, "project": project}))
    for contact_id, failures in bad_contacts.items():
        quarantine_rows += [QuarantineRow("contact", contact_id, f.rule, f.reason, contacts[contact_id][1]) for f in _unique(failures)]
    return verdicts, quarantine_rows, stats


def _unique(failures: Iterable[RuleFailure]) -> list[RuleFailure]:
    return list(dict.fromkeys(failures))


# --- load ----------------------------------------------------------------------------------------
def _decimal(value: str | None) -> Decimal | None:
    return Decimal(value) if value not in (None, "") else None


def _date(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def _datetime(value: str | None) -> datetime | None:
    """ISO timestamps (``Z``, ``+00:00`` or Salesforce's ``+0000``); a bare date is midnight UTC."""
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def typed_project(row: dict[str, Any], run_id: str) -> dict[str, Any]:
    return {
        **row,
        "estimated_hours": _decimal(row["estimated_hours"]),
        "contract_value": _decimal(row["contract_value"]),
        "contract_start_date": _date(row["contract_start_date"]),
        "contract_end_date": _date(row["contract_end_date"]),
        "payment_terms_days": int(row["payment_terms_days"]) if row.get("payment_terms_days") else None,
        "close_date": _datetime(row["close_date"]),
        "crm_modified_at": _datetime(row["crm_modified_at"]),
        "last_run_id": run_id,
    }


def load_projects(warehouse: Engine, run: RunRef, *, chunk_size: int) -> dict[str, int]:
    """Upsert valid clients, contacts and projects in one transaction: all of the run, or none."""
    from sqlalchemy import not_, tuple_

    from backbone.warehouse.db import upsert
    from backbone.warehouse.tables import client, contact, project, project_contact

    loaded = changed = 0
    with warehouse.begin() as connection:
        ops.lock_for_transaction(connection, run.flow)
        for chunk in ops.iter_staged(warehouse, run, ENTITY, status="valid", chunk_size=chunk_size):
            canon = [r["canonical"] for r in chunk]
            clients = {c["client"]["crm_company_id"]: {**c["client"], "last_run_id": run.run_id} for c in canon}
            contacts = {ct["crm_contact_id"]: {**ct, "last_run_id": run.run_id} for c in canon for ct in c["contacts"]}
            projects = [typed_project(c["project"], run.run_id) for c in canon]
            changed += upsert(connection, client, list(clients.values()), key=["crm_company_id"])
            changed += upsert(connection, contact, sorted(contacts.values(), key=lambda r: r["crm_contact_id"]), key=["crm_contact_id"])
            changed += upsert(connection, project, projects, key=["crm_deal_id"])
            links = [(c["project"]["crm_deal_id"], ct["crm_contact_id"]) for c in canon for ct in c["contacts"]]
            deal_ids = [p["crm_deal_id"] for p in projects]
            stale = project_contact.delete().where(project_contact.c.crm_deal_id.in_(deal_ids))
            if links:
                stale = stale.where(not_(tuple_(project_contact.c.crm_deal_id, project_contact.c.crm_contact_id).in_(links)))
            connection.execute(stale)
            upsert(
                connection,
                project_contact,
                [{"crm_deal_id": d, "crm_contact_id": c} for d, c in links],
                key=["crm_deal_id", "crm_contact_id"],
            )
            loaded += len(projects)
        ops.record_run(connection, run, loaded=loaded, details={"rows_changed": changed})
    log.info("loaded %d projects (%d rows inserted or changed)", loaded, changed)
    return {"loaded": loaded, "rows_changed": changed}


# --- write back ----------------------------------------------------------------------------------
def psa_payload(canonical: dict[str, Any]) -> dict[str, Any]:
    """Canonical rows → the PSA API's project body (names from the dictionary's ``psa`` sources)."""
    p, c = canonical["project"], canonical["client"]
    return {
        "name": p["project_name"],
        "client": {
            "external_id": c["crm_company_id"],
            "name": c["client_name"],
            "website": c.get("domain"),
            "country": c.get("country"),
            "industry": c.get("industry"),
        },
        "contacts": [
            {
                "external_id": ct["crm_contact_id"],
                "first_name": ct.get("first_name"),
                "last_name": ct.get("last_name"),
                "email": ct["email"],
                "role": ct.get("job_title"),
            }
            for ct in canonical["contacts"]
        ],
        "description": p.get("scope"),
        "estimated_hours": p.get("estimated_hours"),
        "budget": p["contract_value"],
        "currency": p["currency"],
        "billing_type": p["billing_type"],
        "start_date": p.get("contract_start_date"),
        "end_date": p.get("contract_end_date"),
        "payment_terms_days": int(p["payment_terms_days"]) if p.get("payment_terms_days") else None,
    }


def write_back(crm: CrmSystem, psa: PsaClient, warehouse: Engine, run: RunRef, *, chunk_size: int) -> dict[str, int]:
    """Create or update each loaded deal's PSA project, then put its id and link on the CRM deal."""
    from sqlalchemy import update

    from backbone.warehouse.tables import project

    created = updated = crm_patched = 0
    for chunk in ops.iter_staged(warehouse, run, ENTITY, status="valid", chunk_size=chunk_size):
        for row in chunk:
            deal_id = row["source_key"]
            ref = psa.upsert_project(crm.system, deal_id, psa_payload(row["canonical"]))
            created += ref.created
            updated += not ref.created
            with warehouse.begin() as connection:
                connection.execute(
                    update(project)
                    .where(project.c.crm_deal_id == deal_id)
                    .where(project.c.psa_project_id.is_distinct_from(ref.project_id) | project.c.psa_project_url.is_distinct_from(ref.url))
                    .values(psa_project_id=ref.project_id, psa_project_url=ref.url)
                )
            on_deal = canonical(row["payload"]["deal"], crm.system, "deal")
            if on_deal.get("psa_project_id") != ref.project_id or on_deal.get("psa_project_url") != ref.url:
                crm.update_deal(deal_id, {"psa_project_id": ref.project_id, "psa_project_url": ref.url})
                crm_patched += 1
    counts = {"written_back": crm_patched}
    details = {"psa_projects_created": created, "psa_projects_found": updated, "crm_deals_updated": crm_patched}
    with warehouse.begin() as connection:
        ops.record_run(connection, run, **counts, details=details)
    log.info("PSA: %d projects created, %d already there; CRM: %d deals got their PSA link", created, updated, crm_patched)
    return {**counts, **details}
