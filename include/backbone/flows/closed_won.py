"""Closed-won CRM deals become PSA projects: extract → validate → load → write back.

Each step reads what the previous one left in ``ops.staged_record`` for the run, so tasks pass
only a :class:`RunRef` and counts between them. Every step can be repeated: staging is replaced,
loads are upserts in one transaction, the PSA call is idempotent on the deal id and the CRM is
patched only when its link differs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from backbone.hooks.hubspot import DealStage, primary_association
from backbone.validation import RuleFailure, as_dict, validate_rows
from backbone.warehouse import ops
from backbone.warehouse.ops import QuarantineRow, RunRef

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from backbone.hooks.hubspot import HubSpotHook
    from backbone.hooks.psa import PsaClient

log = logging.getLogger(__name__)

FLOW = "crm_closed_won_to_psa"
ENTITY = "deal"
CRM_SOURCE = "hubspot"
DEAL_PROPERTIES = [
    "dealname", "pipeline", "dealstage", "amount", "deal_currency_code", "closedate", "description",
    "estimated_hours", "billing_type", "contract_start_date", "contract_end_date", "payment_terms_days",
    "hs_lastmodifieddate", "psa_project_id", "psa_project_url",
]  # fmt: skip
COMPANY_PROPERTIES = ["name", "domain", "country", "industry"]
CONTACT_PROPERTIES = ["firstname", "lastname", "email", "jobtitle"]


# --- extract -------------------------------------------------------------------------------------
def extract_deals(crm: HubSpotHook, warehouse: Engine, run: RunRef, *, lookback: timedelta) -> dict[str, int]:
    """Stage every won deal modified in the interval (plus lookback) with its company and contacts."""
    stages = crm.deal_stages()
    won_ids = sorted({s.stage_id for s in stages.values() if s.is_won})
    if not won_ids:
        raise ValueError("HubSpot reports no closed-won stage in any deal pipeline; nothing could ever be extracted")
    log.info("won stages resolved through the pipelines endpoint: %s", ", ".join(won_ids))
    start = run.interval_start - lookback
    with warehouse.begin() as connection:
        ops.clear_staging(connection, run)
    extracted = 0
    for page in crm.search_modified(
        "deals",
        start=start,
        end=run.interval_end,
        properties=DEAL_PROPERTIES,
        extra_filters=[{"propertyName": "dealstage", "operator": "IN", "values": won_ids}],
    ):
        bundles = _bundle_page(crm, page, stages)
        with warehouse.begin() as connection:
            ops.stage(connection, run, ENTITY, [(b["deal"]["id"], b) for b in bundles])
        extracted += len(bundles)
        log.info("extracted %d won deals so far (modified %s → %s)", extracted, start.isoformat(), run.interval_end.isoformat())
    staged = _count_staged(warehouse, run)  # distinct deals: a deal repeated across pages counts once
    with warehouse.begin() as connection:
        ops.record_run(connection, run, extracted=staged)
    return {"extracted": staged}


def _bundle_page(crm: HubSpotHook, deals: list[dict[str, Any]], stages: dict[tuple[str, str], DealStage]) -> list[dict[str, Any]]:
    ids = [d["id"] for d in deals]
    company_links = crm.associations("deals", "companies", ids)
    contact_links = crm.associations("deals", "contacts", ids)
    company_of = {deal_id: primary_association(company_links.get(deal_id, [])) for deal_id in ids}
    contacts_of = {deal_id: sorted({str(t["toObjectId"]) for t in contact_links.get(deal_id, [])}, key=int) for deal_id in ids}
    companies = crm.batch_read("companies", [c for c in company_of.values() if c], COMPANY_PROPERTIES)
    contacts = crm.batch_read("contacts", [c for cs in contacts_of.values() for c in cs], CONTACT_PROPERTIES)
    bundles = []
    for deal in deals:
        props = deal.get("properties") or {}
        stage = stages.get((props.get("pipeline") or "", props.get("dealstage") or ""))
        bundles.append(
            {
                "deal": deal,
                "company": companies.get(company_of[deal["id"]] or ""),
                "contacts": [contacts[c] for c in contacts_of[deal["id"]] if c in contacts],
                "stage_label": stage.label if stage else None,
            }
        )
    return bundles


def _count_staged(warehouse: Engine, run: RunRef, status: str | None = None) -> int:
    from sqlalchemy import func, select

    from backbone.warehouse.tables import staged_record

    query = select(func.count()).where(staged_record.c.flow == run.flow, staged_record.c.run_id == run.run_id)
    if status:
        query = query.where(staged_record.c.status == status)
    with warehouse.connect() as connection:
        return int(connection.execute(query).scalar_one())


# --- map + validate ------------------------------------------------------------------------------
def bundle_contacts(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The bundle's contacts that are objects with an id (anything else is not a contact)."""
    contacts = bundle.get("contacts")
    return [c for c in contacts if isinstance(c, dict) and c.get("id") not in (None, "")] if isinstance(contacts, list) else []


def map_bundle(bundle: dict[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, Any], list[RuleFailure]]:
    """A staged deal bundle → (client row, contact rows, project row, mapping issues)."""
    deal = as_dict(bundle.get("deal"))
    props = as_dict(deal.get("properties"))
    company = as_dict(bundle.get("company")) or None
    company_id = str(company["id"]) if company and company.get("id") not in (None, "") else None
    client = None
    if company:
        cp = as_dict(company.get("properties"))
        client = {"crm_company_id": company_id, "client_name": cp.get("name"), "domain": cp.get("domain"), "country": cp.get("country"), "industry": cp.get("industry")}
    contacts = []
    for c in bundle_contacts(bundle):
        cp = as_dict(c.get("properties"))
        contacts.append({"crm_contact_id": str(c["id"]), "crm_company_id": company_id, "first_name": cp.get("firstname"), "last_name": cp.get("lastname"),
                         "email": cp.get("email"), "job_title": cp.get("jobtitle")})  # fmt: skip
    project = {
        "crm_deal_id": str(deal.get("id")),
        "crm_company_id": company_id,
        "project_name": props.get("dealname"),
        "deal_stage": bundle.get("stage_label") or props.get("dealstage"),
        "scope": props.get("description"),
        "estimated_hours": props.get("estimated_hours"),
        "contract_value": props.get("amount"),
        "currency": props.get("deal_currency_code"),
        "billing_type": props.get("billing_type"),
        "contract_start_date": props.get("contract_start_date"),
        "contract_end_date": props.get("contract_end_date"),
        "payment_terms_days": props.get("payment_terms_days"),
        "close_date": props.get("closedate"),
        "crm_modified_at": props.get("hs_lastmodifieddate"),
    }
    issues = []
    if bundle.get("stage_label") is None:
        issues.append(
            RuleFailure(
                "project.deal_stage.known",
                f"deal stage {props.get('dealstage')!r} is not a stage of pipeline {props.get('pipeline')!r}",
            )
        )
    return client, contacts, project, issues


def validate_deals(warehouse: Engine, run: RunRef, *, chunk_size: int) -> dict[str, Any]:
    """Check every staged deal against the dictionary; quarantine failures with their reasons.

    Quarantine rows are kept per run and never deleted by a rerun: evidence is not rewritten.
    """
    valid = quarantined = contacts_quarantined = 0
    failed_rules: dict[str, int] = {}
    for chunk in ops.iter_staged(warehouse, run, ENTITY, chunk_size=chunk_size):
        verdicts, quarantine_rows, chunk_stats = _judge_chunk(chunk)
        with warehouse.begin() as connection:
            ops.set_verdicts(connection, run, ENTITY, verdicts)
            ops.add_quarantine(connection, run, quarantine_rows)
        valid += chunk_stats["valid"]
        quarantined += chunk_stats["quarantined"]
        contacts_quarantined += chunk_stats["contacts_quarantined"]
        for rule in (r.rule for r in quarantine_rows):
            failed_rules[rule] = failed_rules.get(rule, 0) + 1
    counts = {"valid": valid, "quarantined": quarantined}
    with warehouse.begin() as connection:
        ops.record_run(connection, run, **counts, details={"contacts_quarantined": contacts_quarantined, "failed_rules": failed_rules})
    if failed_rules:
        log.warning("quarantined %d deals and %d contacts: %s", quarantined, contacts_quarantined, failed_rules)
    return {**counts, "contacts_quarantined": contacts_quarantined}


def _judge_chunk(chunk: list[dict[str, Any]]) -> tuple[list[tuple[str, str, dict[str, Any] | None]], list[QuarantineRow], dict[str, int]]:
    mapped = [map_bundle(row["payload"]) for row in chunk]
    clients = {c["crm_company_id"]: c for c, _, _, _ in mapped if c is not None}
    contacts = {ct["crm_contact_id"]: (ct, raw) for (_, cts, _, _), row in zip(mapped, chunk, strict=True) for ct, raw in zip(cts, bundle_contacts(row["payload"]), strict=True)}
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
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


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
    from sqlalchemy import not_, text, tuple_

    from backbone.warehouse.db import upsert
    from backbone.warehouse.tables import client, contact, project, project_contact

    loaded = changed = 0
    with warehouse.begin() as connection:
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:flow))"), {"flow": run.flow})
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
            upsert(connection, project_contact, [{"crm_deal_id": d, "crm_contact_id": c} for d, c in links], key=["crm_deal_id", "crm_contact_id"])
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
        "client": {"external_id": c["crm_company_id"], "name": c["client_name"], "website": c.get("domain"), "country": c.get("country"), "industry": c.get("industry")},
        "contacts": [
            {"external_id": ct["crm_contact_id"], "first_name": ct.get("first_name"), "last_name": ct.get("last_name"), "email": ct["email"], "role": ct.get("job_title")}
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


def write_back(crm: HubSpotHook, psa: PsaClient, warehouse: Engine, run: RunRef, *, chunk_size: int) -> dict[str, int]:
    """Create or update each loaded deal's PSA project, then put its id and link on the CRM deal."""
    from sqlalchemy import update

    from backbone.warehouse.tables import project

    created = updated = crm_patched = 0
    for chunk in ops.iter_staged(warehouse, run, ENTITY, status="valid", chunk_size=chunk_size):
        for row in chunk:
            deal_id = row["source_key"]
            ref = psa.upsert_project(CRM_SOURCE, deal_id, psa_payload(row["canonical"]))
            created += ref.created
            updated += not ref.created
            with warehouse.begin() as connection:
                connection.execute(
                    update(project)
                    .where(project.c.crm_deal_id == deal_id)
                    .where(project.c.psa_project_id.is_distinct_from(ref.project_id) | project.c.psa_project_url.is_distinct_from(ref.url))
                    .values(psa_project_id=ref.project_id, psa_project_url=ref.url)
                )
            props = row["payload"]["deal"].get("properties") or {}
            if props.get("psa_project_id") != ref.project_id or props.get("psa_project_url") != ref.url:
                crm.update_object("deals", deal_id, {"psa_project_id": ref.project_id, "psa_project_url": ref.url})
                crm_patched += 1
    counts = {"written_back": crm_patched}
    details = {"psa_projects_created": created, "psa_projects_found": updated, "crm_deals_updated": crm_patched}
    with warehouse.begin() as connection:
        ops.record_run(connection, run, **counts, details=details)
    log.info("PSA: %d projects created, %d already there; CRM: %d deals got their PSA link", created, updated, crm_patched)
    return {**counts, **details}
