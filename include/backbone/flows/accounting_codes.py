"""Accounting's codes back to the PSA: items (service codes), GL accounts and tax codes, daily.

Accounting owns the codes time and expenses post to. Every day this flow reads them, keeps them in
the PSA warehouse by their accounting id (``psa.accounting_code``), and judges each billing code of
``accounting_mapping.yaml`` against them (``psa.billing_code``):

- ``active`` — the item the mapping names exists;
- ``renamed`` — the mapping's name is gone, but the item the code posted to (same accounting id)
  is still there under a new name: the PSA's billing-code list shows the new name, the weekly
  export keeps posting to that item, and finance is told to update the mapping;
- ``retired`` — accounting no longer has the item (made inactive or deleted): the PSA stops
  offering the code, and when time approved in the last ``OPEN_WORK_DAYS`` days uses it, the code
  is an **exception** now — before Friday's export would hold every entry on it.

The PSA's list is updated with idempotent ``PUT /api/v1/billing-codes/{code}`` calls (only what
changed is counted). Kantata keeps no such list: there the PSA warehouse is kept and the push skipped.
Last, the cross-system data audit runs (``backbone.audit``) and its findings replace the stored
ones, so the Finance page shows what does not line up as of this run.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from backbone.accounting_mapping import load_mapping, normalise
from backbone.hooks.psa import PsaCapabilityMissing
from backbone.validation import RuleFailure
from backbone.warehouse import ops
from backbone.warehouse.ops import QuarantineRow, RunRef

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from backbone.hooks.accounting import AccountingSystem
    from backbone.hooks.psa import PsaBillingCodes, PsaTimeSource

log = logging.getLogger(__name__)

FLOW = "accounting_codes_to_psa"
ENTITY = "billing_code"
CODE_ENTITY = "accounting_code"
CODE_KINDS = {"Item": "item", "Account": "gl_account", "TaxCode": "tax_code"}
"""Accounting reference entities this flow keeps, and the kind each is stored as."""
AUDIT_DAYS = 56
"""The audit reads the PSA's approved time and the CRM's won deals of this many days back (as ``backbone audit``'s default)."""
OPEN_WORK_DAYS = 7
"""Time approved this many days before the end of the run's interval counts as open work: what the
next Friday export will carry (and a margin)."""


def extract_codes(accounting: AccountingSystem, psa: PsaTimeSource, warehouse: Engine, run: RunRef, *, page_size: int) -> dict[str, int]:
    """Stage accounting's codes and every mapped billing code with its status against them."""
    codes = {
        f"{CODE_KINDS[r.entity]}:{r.ref_id}": {"kind": CODE_KINDS[r.entity], "ref_id": r.ref_id, "name": r.name, "extra": r.extra}
        for r in accounting.reference_records()
        if r.entity in CODE_KINDS
    }
    in_use = Counter(
        str(((entry.get("task") or {}) if isinstance(entry.get("task"), dict) else {}).get("billing_code"))
        for page in psa.iter_approved_time_entries(run.interval_end - timedelta(days=OPEN_WORK_DAYS), run.interval_end, page_size=page_size)
        for entry in page
    )
    with warehouse.connect() as connection:
        before = {
            row.billing_code: row.item_ref_id
            for row in connection.exec_driver_sql("SELECT billing_code, item_ref_id FROM psa.billing_code WHERE item_ref_id IS NOT NULL")
        }
    judged = [
        judge_code(code, m.item, m.gl_account, codes, before.get(code), in_use[code]) for code, m in load_mapping().billing_codes.items()
    ]
    with warehouse.begin() as connection:
        ops.clear_staging(connection, run)
        ops.stage(connection, run, CODE_ENTITY, sorted(codes.items()))
        ops.stage(connection, run, ENTITY, [(j["billing_code"], j) for j in judged])
        ops.record_run(
            connection,
            run,
            extracted=len(judged),
            details={"accounting_codes": dict(Counter(c["kind"] for c in codes.values())), "open_work_days": OPEN_WORK_DAYS},
        )
    log.info(
        "accounting codes: %s; billing codes: %s", dict(Counter(c["kind"] for c in codes.values())), Counter(j["status"] for j in judged)
    )
    return {"extracted": len(judged), "accounting_codes": len(codes)}


def judge_code(
    code: str, mapped_item: str, gl_account: str, codes: dict[str, dict[str, Any]], item_before: str | None, open_entries: int
) -> dict[str, Any]:
    """One billing code against accounting's items now (pure): its status, item and a sentence."""
    items = {normalise(c["name"]): c for c in codes.values() if c["kind"] == "item"}
    found = items.get(normalise(mapped_item))
    status, detail = "active", None
    if found is None and item_before and f"item:{item_before}" in codes:
        found, status = codes[f"item:{item_before}"], "renamed"
        detail = (
            f"accounting renamed item {item_before} from {mapped_item!r} to {found['name']!r}: the export keeps posting to it; "
            f"update billing_codes.{code}.item in accounting_mapping.yaml"
        )
    elif found is None:
        status = "retired"
        detail = f"item {mapped_item!r} is no longer in accounting (made inactive or deleted)"
        if open_entries:
            detail += f"; {open_entries} time entries approved in the last {OPEN_WORK_DAYS} days use {code}"
    return {
        "billing_code": code,
        "status": status,
        "mapped_item": mapped_item,
        "item_ref_id": found["ref_id"] if found else None,
        "item_name": found["name"] if found else None,
        "gl_account": gl_account,
        "open_entries": open_entries,
        "detail": detail,
    }


def check_codes(warehouse: Engine, run: RunRef, *, chunk_size: int) -> dict[str, int]:
    """A retired code that open work uses is an exception (``billing_code.item_retired``); every
    other code passes (a retired one nobody uses is only switched off in the PSA)."""

    def judge(chunk: list[dict[str, Any]]) -> tuple[list[ops.Verdict], list[QuarantineRow], dict[str, int]]:
        verdicts: list[ops.Verdict] = []
        exceptions: list[QuarantineRow] = []
        for staged in chunk:
            code = staged["payload"]
            if code["status"] == "retired" and code["open_entries"]:
                failure = RuleFailure(
                    "billing_code.item_retired",
                    f"billing code {code['billing_code']}: {code['detail']} — Friday's export would hold them: map the code to another "
                    "item in accounting_mapping.yaml or restore the item",
                )
                exceptions.append(QuarantineRow(ENTITY, staged["source_key"], failure.rule, failure.reason, code))
                verdicts.append((staged["source_key"], "quarantined", None))
            else:
                verdicts.append((staged["source_key"], "valid", code))
        return verdicts, exceptions, {}

    tally = ops.validate_staged(warehouse, run, ENTITY, judge, chunk_size=chunk_size)
    if tally.quarantined:
        log.warning("%d billing codes post to items accounting retired while open work uses them", tally.quarantined)
    return {"valid": tally.valid, "quarantined": tally.quarantined}


def load_codes(warehouse: Engine, run: RunRef) -> dict[str, Any]:
    """``psa.accounting_code`` (codes accounting no longer lists become inactive) and
    ``psa.billing_code``, in one transaction."""
    codes = [r["payload"] for chunk in ops.iter_staged(warehouse, run, CODE_ENTITY) for r in chunk]
    judged = [r["payload"] for chunk in ops.iter_staged(warehouse, run, ENTITY) for r in chunk]
    with warehouse.begin() as connection:
        if codes:  # one executemany per statement, not a round trip per code
            connection.exec_driver_sql(
                """
                INSERT INTO psa.accounting_code (kind, ref_id, name, extra, active, first_seen_run_id, last_run_id)
                VALUES (%(kind)s, %(ref_id)s, %(name)s, %(extra)s::jsonb, true, %(run)s, %(run)s)
                ON CONFLICT (kind, ref_id) DO UPDATE SET name = excluded.name, extra = excluded.extra, active = true,
                    last_run_id = excluded.last_run_id,
                    changed_at = CASE WHEN (psa.accounting_code.name, psa.accounting_code.extra, psa.accounting_code.active)
                                         IS DISTINCT FROM (excluded.name, excluded.extra, true) THEN now()
                                      ELSE psa.accounting_code.changed_at END
                """,
                [{**code, "extra": json.dumps(code["extra"], sort_keys=True, default=str), "run": run.run_id} for code in codes],
            )
        retired = connection.exec_driver_sql(
            "UPDATE psa.accounting_code SET active = false, changed_at = now() WHERE active AND last_run_id <> %(run)s",
            {"run": run.run_id},
        ).rowcount
        if judged:
            connection.exec_driver_sql(
                """
                INSERT INTO psa.billing_code (billing_code, status, mapped_item, item_ref_id, item_name, gl_account, open_entries, detail,
                                              last_run_id)
                VALUES (%(billing_code)s, %(status)s, %(mapped_item)s, %(item_ref_id)s, %(item_name)s, %(gl_account)s, %(open_entries)s,
                        %(detail)s, %(run)s)
                ON CONFLICT (billing_code) DO UPDATE SET status = excluded.status, mapped_item = excluded.mapped_item,
                    item_ref_id = coalesce(excluded.item_ref_id, psa.billing_code.item_ref_id),
                    item_name = coalesce(excluded.item_name, psa.billing_code.item_name), gl_account = excluded.gl_account,
                    open_entries = excluded.open_entries, detail = excluded.detail, last_run_id = excluded.last_run_id,
                    changed_at = CASE WHEN (psa.billing_code.status, psa.billing_code.item_name) IS DISTINCT FROM
                                           (excluded.status, coalesce(excluded.item_name, psa.billing_code.item_name))
                                      THEN now() ELSE psa.billing_code.changed_at END
                """,
                [{**code, "run": run.run_id} for code in judged],
            )
        statuses = Counter(c["status"] for c in judged)
        ops.record_run(
            connection,
            run,
            loaded=len(judged),
            details={
                "billing_codes": dict(statuses),
                "renamed": sorted(c["billing_code"] for c in judged if c["status"] == "renamed"),
                "retired": sorted(c["billing_code"] for c in judged if c["status"] == "retired"),
                "accounting_codes_no_longer_listed": retired,
            },
        )
    for code in judged:
        if code["status"] != "active":
            log.warning("billing code %s is %s: %s", code["billing_code"], code["status"], code["detail"])
    return {"loaded": len(judged), "accounting_codes": len(codes)}


def update_psa(psa: PsaBillingCodes, warehouse: Engine, run: RunRef) -> dict[str, Any]:
    """Tell the PSA's billing-code list what accounting says (item, GL account, active)."""
    judged = [r["payload"] for chunk in ops.iter_staged(warehouse, run, ENTITY) for r in chunk]
    changed = 0
    try:
        for code in judged:
            changed += psa.update_billing_code(
                code["billing_code"],
                {
                    "accounting_item_id": code["item_ref_id"],
                    "accounting_item_name": code["item_name"],
                    "gl_account": code["gl_account"],
                    "active": code["status"] != "retired",
                },
            )
        details: dict[str, Any] = {"psa_codes_changed": changed}
    except PsaCapabilityMissing as exc:
        log.warning("the PSA's billing-code list is not kept: %s", exc)
        details = {"psa_codes_changed": 0, "psa_list": str(exc)}
    with warehouse.begin() as connection:
        ops.record_run(connection, run, written_back=changed, details=details)
    log.info("PSA billing codes changed: %d of %d", changed, len(judged))
    return {"written_back": changed}


def audit_systems(warehouse: Engine, run: RunRef) -> dict[str, Any]:
    """The cross-system data audit (``backbone.audit``) as of the interval's end, kept in
    ``psa.audit_finding`` for the Finance page (replaced whole) and counted on the run."""
    from backbone import audit

    findings = audit.audit(audit.read_systems(days=AUDIT_DAYS, until=run.interval_end), load_mapping())
    by_check = dict(Counter(f.check for f in findings))
    with warehouse.begin() as connection:
        audit.save_findings(connection, findings, run_id=run.run_id, found_at=run.interval_end)
        ops.record_run(connection, run, details={"audit_findings": len(findings), "audit_by_check": by_check})
    log.info("%s", audit.summary(findings))
    return {"findings": len(findings)}
