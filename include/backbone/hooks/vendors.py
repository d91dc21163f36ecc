"""Which vendor hook a Connection asks for: the factories the DAGs call.

Kept apart from the interfaces (``backbone.hooks.crm``, ``backbone.hooks.accounting``) so that an
interface never imports the hooks that implement it (no import circles).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from backbone.hooks.accounting import ACCOUNTING_SYSTEMS
from backbone.hooks.crm import CRM_SYSTEMS
from backbone.hooks.psa import PSA_SYSTEMS

if TYPE_CHECKING:
    from backbone.hooks.accounting import AccountingSystem
    from backbone.hooks.crm import CrmSystem
    from backbone.hooks.psa import PsaSystem


def vendor_of(conn_id: str, *, known: tuple[str, ...], default: str) -> str:
    """The vendor a Connection names: its ``vendor`` extra, else its type, else ``default``."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    chosen = str((conn.extra_dejson or {}).get("vendor") or "").strip().lower()
    if not chosen and (conn.conn_type or "").lower() in known:
        chosen = conn.conn_type.lower()
    chosen = chosen or default
    if chosen not in known:
        raise ValueError(f"Connection {conn_id!r} names vendor {chosen!r}; this backbone speaks {', '.join(known)}")
    return chosen


def crm_hook(conn_id: str) -> CrmSystem:
    """The CRM hook for a Connection (HubSpot unless the Connection says Salesforce)."""
    if vendor_of(conn_id, known=CRM_SYSTEMS, default="hubspot") == "salesforce":
        from backbone.hooks.salesforce import SalesforceHook

        return SalesforceHook(conn_id)
    from backbone.hooks.hubspot import HubSpotHook

    return HubSpotHook(conn_id)


def accounting_hook(conn_id: str) -> AccountingSystem:
    """The accounting hook for a Connection (QuickBooks unless the Connection says Xero)."""
    if vendor_of(conn_id, known=ACCOUNTING_SYSTEMS, default="quickbooks") == "xero":
        from backbone.hooks.xero import XeroHook

        return XeroHook(conn_id)
    from backbone.hooks.quickbooks import QuickBooksHook

    return QuickBooksHook(conn_id)


def psa_hook(conn_id: str) -> PsaSystem:
    """The PSA hook for a Connection (our PSA API unless the Connection says Kantata)."""
    if vendor_of(conn_id, known=PSA_SYSTEMS, default="psa") == "kantata":
        from backbone.hooks.kantata import KantataHook

        return KantataHook(conn_id)
    from backbone.hooks.psa import PsaHook

    return PsaHook(conn_id)
