"""The Airflow provider of this package (entry point ``apache_airflow_provider``).

Installing the distribution (``pip install .``) makes Airflow's ProvidersManager find
:func:`get_provider_info`: the six vendor connection types then appear in the UI's Connection
form with their own labels, hidden fields and extra fields (declared here, the Airflow 3 way, so
listing them imports no hook), the Test button calls the hook's ``test_connection``, and
``airflow connections test hubspot_default`` knows the ``hubspot`` type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

DISTRIBUTION = "airflow-provider-service-backbone"
DOCS = "https://github.com/service-backbone/service-backbone#readme"


def text(label: str, description: str, *, secret: bool = False, kind: str = "string") -> dict[str, Any]:
    """One extra field of a Connection form (``conn-fields``): stored in the Connection's extra."""
    schema: dict[str, Any] = {"type": [kind, "null"]}
    if secret:
        schema["format"] = "password"
    return {"label": label, "description": description, "schema": schema}


@dataclass(frozen=True)
class ConnectionType:
    """A vendor system's Connection: its type, hook, form labels and extra fields."""

    conn_type: str
    hook: str
    name: str
    relabeling: dict[str, str]
    placeholders: dict[str, str]
    hidden: tuple[str, ...] = ("schema", "port")
    extras: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_provider_info(self) -> dict[str, Any]:
        return {
            "connection-type": self.conn_type,
            "hook-class-name": self.hook,
            "hook-name": self.name,
            "ui-field-behaviour": {
                "hidden-fields": list(self.hidden),
                "relabeling": self.relabeling,
                "placeholders": self.placeholders,
            },
            "conn-fields": self.extras,
        }


RATE = "Requests per second this hook may send (default: the vendor's published limit)"
REFRESH = "The first OAuth refresh token; rotated ones are kept in the Variable <conn_id>_refresh_token"

CONNECTION_TYPES: tuple[ConnectionType, ...] = (
    ConnectionType(
        "hubspot",
        "backbone.hooks.hubspot.HubSpotHook",
        "HubSpot CRM",
        {"host": "Base URL", "password": "Private app token"},
        {"host": "https://api.hubapi.com"},
        hidden=("schema", "port", "login"),
        extras={
            "requests_per_second": text("Requests per second", RATE, kind="number"),
            "search_requests_per_second": text("Search requests per second", "CRM search is limited apart (default 4)", kind="number"),
        },
    ),
    ConnectionType(
        "salesforce",
        "backbone.hooks.salesforce.SalesforceHook",
        "Salesforce CRM",
        {"host": "Login URL", "login": "Consumer key", "password": "Consumer secret"},
        {"host": "https://login.salesforce.com"},
        extras={
            "refresh_token": text("Refresh token", "Use the refresh-token grant (else client credentials)", secret=True),
            "api_version": text("API version", "REST API version (default 61.0)"),
            "max_api_usage": text("Max API usage", "Share of the org's daily API requests to stop at (default 0.9)", kind="number"),
        },
    ),
    ConnectionType(
        "bamboohr",
        "backbone.hooks.bamboohr.BambooHRHook",
        "BambooHR",
        {"host": "Company URL", "password": "API key"},
        {"host": "https://yourcompany.bamboohr.com"},
        hidden=("schema", "port", "login"),
        extras={
            "custom_hours_field": text(
                "Weekly hours field", "Custom field with weekly standard hours (default customStandardHoursPerWeek)"
            ),
            "requests_per_second": text("Requests per second", RATE, kind="number"),
        },
    ),
    ConnectionType(
        "psa",
        "backbone.hooks.psa.PsaHook",
        "PSA",
        {"host": "API base URL", "password": "API token"},
        {"host": "https://psa.example.com"},
        hidden=("schema", "port", "login"),
    ),
    ConnectionType(
        "kantata",
        "backbone.hooks.kantata.KantataHook",
        "Kantata OX (PSA)",
        {"host": "API base URL", "password": "OAuth access token"},
        {"host": "https://api.mavenlink.com"},
        hidden=("schema", "port", "login"),
    ),
    ConnectionType(
        "quickbooks",
        "backbone.hooks.quickbooks.QuickBooksHook",
        "QuickBooks Online",
        {"host": "API base URL", "login": "Client ID", "password": "Client secret"},
        {"host": "https://quickbooks.api.intuit.com"},
        extras={
            "realm_id": text("Company ID (realm)", "The QuickBooks company id"),
            "refresh_token": text("Refresh token", REFRESH, secret=True),
            "token_url": text("Token URL", "OAuth token endpoint (default Intuit's)"),
        },
    ),
    ConnectionType(
        "xero",
        "backbone.hooks.xero.XeroHook",
        "Xero",
        {"host": "API root", "login": "Client ID", "password": "Client secret"},
        {"host": "https://api.xero.com"},
        extras={
            "tenant_id": text("Tenant ID", "The organisation's xero-tenant-id"),
            "refresh_token": text("Refresh token", REFRESH, secret=True),
            "token_url": text("Token URL", "OAuth token endpoint (default Xero's identity server)"),
        },
    ),
)
"""Every vendor system's Connection type."""


def get_provider_info() -> dict[str, Any]:
    """What Airflow's ProvidersManager reads (``airflow/provider_info.schema.json``)."""
    try:
        versions = [version(DISTRIBUTION)]
    except PackageNotFoundError:  # imported from a source tree that was not installed
        versions = []
    return {
        "package-name": DISTRIBUTION,
        "name": "Service-company data backbone",
        "description": "Hooks for HubSpot, Salesforce, BambooHR, the PSA, QuickBooks Online and Xero, and the flows keeping them in step.",
        "versions": versions,
        "connection-types": [c.as_provider_info() for c in CONNECTION_TYPES],
        "integrations": [{"integration-name": c.name, "external-doc-url": DOCS, "tags": ["service"]} for c in CONNECTION_TYPES],
    }
