"""The Connection picks the vendor: its type, or the ``vendor`` extra of a generic Connection."""

from __future__ import annotations

import json

import pytest

from backbone.hooks.hubspot import HubSpotHook
from backbone.hooks.quickbooks import QuickBooksHook
from backbone.hooks.salesforce import SalesforceHook
from backbone.hooks.vendors import accounting_hook, crm_hook
from backbone.hooks.xero import XeroHook


def connection(monkeypatch, conn_id: str, conn_type: str, **extra) -> None:  # noqa: ANN001
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": conn_type, "host": "https://example.invalid", "extra": extra})
    )


def test_the_connection_type_names_the_vendor(monkeypatch):
    connection(monkeypatch, "crm_a", "salesforce")
    connection(monkeypatch, "crm_b", "hubspot")
    connection(monkeypatch, "acct_a", "xero")
    connection(monkeypatch, "acct_b", "quickbooks")
    assert isinstance(crm_hook("crm_a"), SalesforceHook) and isinstance(crm_hook("crm_b"), HubSpotHook)
    assert isinstance(accounting_hook("acct_a"), XeroHook) and isinstance(accounting_hook("acct_b"), QuickBooksHook)


def test_a_generic_connection_names_it_in_an_extra(monkeypatch):
    connection(monkeypatch, "crm_http", "http", vendor="Salesforce")
    connection(monkeypatch, "acct_http", "http", vendor="xero")
    connection(monkeypatch, "acct_plain", "http")
    assert isinstance(crm_hook("crm_http"), SalesforceHook)
    assert isinstance(accounting_hook("acct_http"), XeroHook)
    assert isinstance(accounting_hook("acct_plain"), QuickBooksHook)  # the default


def test_an_unknown_vendor_is_a_clear_error(monkeypatch):
    connection(monkeypatch, "acct_odd", "http", vendor="sage")
    with pytest.raises(ValueError, match="names vendor 'sage'; this backbone speaks quickbooks, xero"):
        accounting_hook("acct_odd")


def test_the_psa_is_chosen_by_its_connection_too(monkeypatch):
    from backbone.hooks.psa import PsaHook
    from backbone.hooks.vendors import psa_hook

    connection(monkeypatch, "psa_a", "psa")
    connection(monkeypatch, "psa_b", "http")
    connection(monkeypatch, "psa_c", "http", vendor="kantata")
    connection(monkeypatch, "psa_d", "kantata")
    connection(monkeypatch, "psa_e", "http", vendor="birdview")
    from backbone.hooks.kantata import KantataHook

    assert isinstance(psa_hook("psa_a"), PsaHook) and isinstance(psa_hook("psa_b"), PsaHook)
    assert isinstance(psa_hook("psa_c"), KantataHook) and isinstance(psa_hook("psa_d"), KantataHook)
    with pytest.raises(ValueError, match="names vendor 'birdview'; this backbone speaks psa, kantata"):
        psa_hook("psa_e")
