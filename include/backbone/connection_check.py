"""``backbone check``: can the flows reach and use every system they need? Read-only.

Per system: the Connection the settings name, whether it answers and accepts our credentials
(each hook's own ``test_connection``, the call Airflow's Connection "Test" button makes, so a
missing scope or a revoked consent shows here as it would in a run), how long the call took;
per warehouse: reachable and migrated to the code's newest schema; and mapping coverage: the
PSA clients, people and billing codes the flows met with no counterpart in accounting, from the
open exceptions. A system the flows need that fails makes the exit code non-zero; gaps in the
mapping are reported but are exceptions for finance, not a broken deployment.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backbone.settings import Settings

MAPPING_RULES = (
    "time_entry.client.mapped",
    "time_entry.person.mapped",
    "time_entry.billing_code.mapped",
    "time_entry.billing_code.item_exists",
    "invoice.customer.mapped",
    "invoice.item.mapped",
    "invoice.tax_code.mapped",
)
"""Exceptions that mean "this PSA record has no counterpart in accounting"."""


@dataclass(frozen=True)
class Finding:
    """One line of the check: what was checked, through which Connection, and what it found."""

    system: str
    connection: str
    ok: bool
    detail: str
    blocking: bool = True
    """False for what the flows survive (mapping gaps become exceptions for finance)."""

    @property
    def status(self) -> str:
        return "ok" if self.ok else ("FAILED" if self.blocking else "warning")


def check_vendor(role: str, conn_id: str, build: Callable[[str], Any]) -> Finding:
    """The hook's own read-only ``test_connection``, timed; a Connection that cannot even be read is a finding too."""
    try:
        hook = build(conn_id)
    except Exception as exc:  # noqa: BLE001 - every failure is a finding, reported in one line
        return Finding(role, conn_id, False, f"Connection unusable: {one_line(exc)}")
    system = getattr(hook, "system_name", role)
    started = time.monotonic()
    try:
        ok, message = hook.test_connection()
    except Exception as exc:  # noqa: BLE001
        ok, message = False, one_line(exc)
    took = f"{(time.monotonic() - started) * 1000:.0f} ms"
    detail = f"{one_line(message)} ({took})"
    if ok:
        missing = hook.missing_scopes() if hasattr(hook, "missing_scopes") else []
        if missing:
            ok = False
            detail = f"authenticated, but the token lacks the scopes the flows need: {', '.join(missing)}; reconnect the app with them"
        elif hasattr(hook, "headroom"):
            detail += f"; {hook.headroom()}"
        if getattr(hook, "NOT_YET", ()):
            detail += f"; not served on {system} yet: {'; '.join(hook.NOT_YET)}"
    return Finding(f"{role} ({system})", conn_id, ok, detail)


def check_warehouse(name: str, conn_id: str) -> Finding:
    """Reachable, and migrated to the newest schema the code knows."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from backbone.warehouse.db import alembic_config, engine_for, url_from_connection

    try:
        head = ScriptDirectory.from_config(alembic_config(url_from_connection(conn_id), name)).get_current_head()
        with engine_for(conn_id).connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except Exception as exc:  # noqa: BLE001
        return Finding(f"{name} warehouse", conn_id, False, f"cannot be read: {one_line(exc)}")
    if current != head:
        behind = f"schema at {current or 'nothing'}, the code expects {head}: run python -m backbone.warehouse migrate"
        return Finding(f"{name} warehouse", conn_id, False, behind)
    return Finding(f"{name} warehouse", conn_id, True, f"reachable, schema at {head}")


def mapping_coverage(conn_id: str) -> Finding:
    """PSA records the flows met that accounting has no counterpart for (open exceptions)."""
    from sqlalchemy import text

    from backbone.warehouse.db import engine_for

    try:
        with engine_for(conn_id).connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT rule, count(DISTINCT source_key) FROM ops.quarantine "
                    "WHERE resolved_at IS NULL AND rule = ANY(:rules) GROUP BY rule ORDER BY rule"
                ),
                {"rules": list(MAPPING_RULES)},
            ).all()
    except Exception as exc:  # noqa: BLE001
        return Finding("mapping coverage", conn_id, False, f"cannot be read: {one_line(exc)}", blocking=False)
    if not rows:
        return Finding("mapping coverage", conn_id, True, "every PSA client, person and code the flows met has an accounting counterpart")
    missing = ", ".join(f"{rule} {count}" for rule, count in rows)
    return Finding("mapping coverage", conn_id, False, f"open exceptions without a counterpart: {missing}", blocking=False)


def billing_codes(accounting_conn_id: str, build: Callable[[str], Any]) -> Finding:
    """Every PSA billing code of the mapping against the accounting system's items **now**: an item
    renamed or retired in accounting, or posting to another GL account than the mapping says, is
    named here before the next export holds the time that uses it (issue 20's "codes known before
    the export"). A warning: such time becomes an exception for finance, not a failed run."""
    from backbone.accounting_mapping import load_mapping, normalise

    mapping = load_mapping()
    try:
        items = {r.match_key: r for r in build(accounting_conn_id).reference_records() if r.entity == "Item"}
    except Exception as exc:  # noqa: BLE001
        return Finding("billing codes", accounting_conn_id, False, f"cannot be read: {one_line(exc)}", blocking=False)
    problems = []
    for code, wanted in sorted(mapping.billing_codes.items()):
        item = items.get(normalise(wanted.item))
        if item is None:
            problems.append(f"{code}: no active item {wanted.item!r} in accounting (renamed or retired?)")
            continue
        income = str((item.extra or {}).get("income_account") or "")
        if income and normalise(income) != normalise(wanted.gl_account):
            problems.append(f"{code}: item {wanted.item!r} posts to {income!r}, the mapping says {wanted.gl_account!r}")
    if problems:
        return Finding("billing codes", accounting_conn_id, False, "; ".join(problems), blocking=False)
    return Finding(
        "billing codes", accounting_conn_id, True, f"all {len(mapping.billing_codes)} billing codes have their item and GL account"
    )


def one_line(value: Any) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= 300 else text[:297] + "..."


def check_all(settings: Settings) -> list[Finding]:
    """Every system the flows need, in the order a run meets them."""
    from backbone.hooks.bamboohr import BambooHRHook
    from backbone.hooks.vendors import accounting_hook, crm_hook, psa_hook

    accounting = check_vendor("accounting", settings.accounting_conn_id, accounting_hook)
    warehouse = check_warehouse("accounting", settings.accounting_warehouse_conn_id)
    return [
        check_vendor("CRM", settings.crm_conn_id, crm_hook),
        check_vendor("HR", settings.hr_conn_id, BambooHRHook),
        check_vendor("PSA", settings.psa_conn_id, psa_hook),
        accounting,
        *([billing_codes(settings.accounting_conn_id, accounting_hook)] if accounting.ok else []),
        check_warehouse("psa", settings.psa_warehouse_conn_id),
        warehouse,
        *([mapping_coverage(settings.accounting_warehouse_conn_id)] if warehouse.ok else []),
    ]
