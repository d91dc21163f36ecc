"""Rollout scope: limit what the flows **send** to one client, project, department or set of people,
for a pilot or a first real rollout ("run pilot tests with one team before going company-wide").

Everything is still extracted, validated and loaded (the warehouses stay complete); only posting to
accounting is limited. What the scope leaves out stays ``pending`` in the outbox, counted on the
run (``details.held_back_by_rollout_scope``) and shown by ``backbone pilot``: widening or removing
the scope lets the next run post it, once. Nothing out of scope is lost or sent twice.

The scope is the Airflow Variable ``backbone_rollout_scope`` (switch without a deployment), else
``BACKBONE_ROLLOUT_SCOPE``: JSON naming any of ``clients`` (PSA client ids), ``projects`` (PSA project
ids), ``people`` (PSA person ids or e-mail addresses) and ``departments`` (HR department names,
matched to PSA people by e-mail). Several keys narrow together (a client *and* a department).
Time records follow every key; invoices, which belong to a client and project rather than a
person, follow ``clients`` and ``projects`` — and with a scope of only people or departments no
invoice is sent (the safe reading of "one team first").
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, Engine

log = logging.getLogger(__name__)

SCOPE_VARIABLE = "backbone_rollout_scope"
KEYS = ("clients", "projects", "people", "departments")


class RolloutScopeError(ValueError):
    """The scope cannot be read; the message says what is wrong and where it came from."""


@dataclass(frozen=True)
class RolloutScope:
    clients: frozenset[str] = frozenset()
    projects: frozenset[str] = frozenset()
    people: frozenset[str] = frozenset()
    departments: frozenset[str] = frozenset()

    @property
    def unrestricted(self) -> bool:
        return not (self.clients or self.projects or self.people or self.departments)

    def describe(self) -> str:
        parts = [f"{key} {', '.join(sorted(getattr(self, key)))}" for key in KEYS if getattr(self, key)]
        return "; ".join(parts) or "everything"


def parse_scope(raw: str | None, *, source: str) -> RolloutScope:
    """``{"clients": ["CL-00001"], "departments": ["Data Engineering"]}`` → :class:`RolloutScope`."""
    if not raw or not raw.strip():
        return RolloutScope()
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise RolloutScopeError(f'{source} is not JSON ({exc}); write e.g. {{"clients": ["CL-00001"]}}') from None
    if not isinstance(data, dict) or set(data) - set(KEYS):
        raise RolloutScopeError(f"{source} must be an object with any of {', '.join(KEYS)} (got {raw[:200]!r})")
    values: dict[str, frozenset[str]] = {}
    for key in KEYS:
        items = data.get(key) or []
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list) or not all(isinstance(i, str | int) for i in items):
            raise RolloutScopeError(f"{source}: {key} must be a list of names or ids (got {items!r})")
        values[key] = frozenset(str(i).strip() for i in items if str(i).strip())
    return RolloutScope(**values)


def rollout_scope() -> RolloutScope:
    """The scope now (Variable first, then the setting)."""
    from backbone.settings import load_settings
    from backbone.variables import get_variable

    raw: str | None = None
    try:
        raw = get_variable(SCOPE_VARIABLE)
    except Exception:  # noqa: BLE001 - no Variable backend here: the setting decides
        log.debug("no Variable backend for %s", SCOPE_VARIABLE, exc_info=True)
    if raw is not None:
        return parse_scope(raw, source=f"Airflow Variable {SCOPE_VARIABLE}")
    return parse_scope(load_settings().rollout_scope, source="BACKBONE_ROLLOUT_SCOPE")


def person_ids_in_scope(scope: RolloutScope, psa_warehouse: Engine) -> frozenset[str] | None:
    """PSA person ids the scope's ``people`` and ``departments`` name (None: no person restriction).
    E-mail addresses and departments are resolved through the PSA warehouse (``psa.time_entry`` for
    e-mails, ``hr.person`` for departments, matched case-insensitively by e-mail)."""
    if not (scope.people or scope.departments):
        return None
    ids = {p for p in scope.people if "@" not in p}
    emails = sorted({p.lower() for p in scope.people if "@" in p})
    with psa_warehouse.connect() as connection:
        if emails:
            ids |= {
                r[0]
                for r in connection.exec_driver_sql(
                    "SELECT DISTINCT person_id FROM psa.time_entry WHERE lower(person_email) = ANY(%(emails)s)", {"emails": emails}
                )
            }
        if scope.departments:
            in_departments = {
                r[0]
                for r in connection.exec_driver_sql(
                    "SELECT DISTINCT t.person_id FROM psa.time_entry t JOIN hr.person p ON lower(p.email) = lower(t.person_email) "
                    "WHERE p.department = ANY(%(departments)s)",
                    {"departments": sorted(scope.departments)},
                )
            }
            ids = (ids & in_departments) if scope.people else in_departments
    return frozenset(ids)


def time_export_condition(scope: RolloutScope, person_ids: frozenset[str] | None) -> ColumnElement[bool] | None:
    """The outbox lines (``acct.time_export``) inside the scope; None when unrestricted."""
    from sqlalchemy import and_, false

    from backbone.warehouse.tables import time_export

    if scope.unrestricted:
        return None
    parts: list[Any] = []
    if scope.clients:
        parts.append(time_export.c.client_id.in_(sorted(scope.clients)))
    if scope.projects:
        parts.append(time_export.c.project_id.in_(sorted(scope.projects)))
    if person_ids is not None:
        parts.append(time_export.c.person_id.in_(sorted(person_ids)) if person_ids else false())
    return and_(*parts)


def invoice_condition(scope: RolloutScope) -> ColumnElement[bool] | None:
    """The outbox invoices (``acct.invoice``) inside the scope; None when unrestricted."""
    from sqlalchemy import and_, false

    from backbone.warehouse.tables import invoice

    if scope.unrestricted:
        return None
    if not (scope.clients or scope.projects):
        return false()  # a scope of people or departments sends no invoice
    parts: list[Any] = []
    if scope.clients:
        parts.append(invoice.c.client_id.in_(sorted(scope.clients)))
    if scope.projects:
        parts.append(invoice.c.project_id.in_(sorted(scope.projects)))
    return and_(*parts)


def scope_for_time_export(psa_warehouse: Engine) -> ColumnElement[bool] | None:
    """The time outbox condition for the scope in force now (None: everything goes)."""
    scope = rollout_scope()
    if scope.unrestricted:
        return None
    log.warning("rollout scope in force: only %s is sent to accounting", scope.describe())
    return time_export_condition(scope, person_ids_in_scope(scope, psa_warehouse))
