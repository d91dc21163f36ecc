"""The environment a local Airflow needs for this project: folders, metadata DB, Connections.

Connections are given as ``AIRFLOW_CONN_*`` variables (Airflow's JSON form), so secrets stay in
Connections and nothing is written into code. Values already set in the environment win.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# The sandbox's own fake QuickBooks app credentials (see backbone_sandbox.quickbooks).
QBO_CLIENT_ID = "sandbox-qbo-client"
QBO_CLIENT_SECRET = "sandbox-qbo-secret"  # noqa: S105
QBO_REALM_ID = "9341455000000001"
QBO_INITIAL_REFRESH_TOKEN = "sandbox-qbo-refresh-0"  # noqa: S105

# The sandbox's Salesforce Connected App and Xero app (see backbone_sandbox.salesforce / .xero).
SALESFORCE_CLIENT_ID = "sandbox-salesforce-consumer-key"
SALESFORCE_CLIENT_SECRET = "sandbox-salesforce-consumer-secret"  # noqa: S105
XERO_CLIENT_ID = "sandbox-xero-client"
XERO_CLIENT_SECRET = "sandbox-xero-secret"  # noqa: S105
XERO_TENANT_ID = "7a513ee1-b13c-4f3a-9c3e-4b3a2e1b0c51"
XERO_INITIAL_REFRESH_TOKEN = "sandbox-xero-refresh-0"  # noqa: S105
KANTATA_TAX_CODES = {"21": "VAT21", "0": "EXEMPT"}
"""Kantata's invoice tax rates (percentages) → the PSA tax codes of the data dictionary."""
SANDBOX_XERO_REQUESTS_PER_MINUTE = 6000
"""The local sandbox is started with this Xero budget (Xero's own is 60 a minute), so the demo takes minutes, not an hour."""

# The local login the Finance page reads through: a member of the read-only role the migrations create.
FINANCE_LOGIN = "finance_page"
FINANCE_LOCAL_PASSWORD = "finance-page-local"  # noqa: S105 - local embedded database only

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PG_PORT = 54329
DEFAULT_SANDBOX_PORT = 8765
WAREHOUSE_DATABASES = {"psa_warehouse": "psa_warehouse", "accounting_warehouse": "accounting_warehouse"}
FLOWS = (
    "crm_closed_won_to_psa",
    "hr_roster_pto_to_psa",
    "accounting_codes_to_psa",
    "timesheets_weekly_to_accounting",
    "expenses_weekly_to_accounting",
    "invoices_month_end_to_accounting",
    "invoices_to_accounting",
    "payments_to_psa",
    "psa_milestones_to_crm",
    "project_actuals_to_accounting",
)
"""Every business flow, in the order the demo and the Celery check run them (month-end after the weekly export)."""


def connection_json(**fields: object) -> str:
    return json.dumps({k: v for k, v in fields.items() if v is not None})


def airflow_environment(
    *,
    airflow_home: Path,
    pg_host: str = "127.0.0.1",
    pg_port: int = DEFAULT_PG_PORT,
    metadata_db: str = "airflow",
    sandbox_url: str = f"http://127.0.0.1:{DEFAULT_SANDBOX_PORT}",
    sandbox_token: str = "sandbox-token",
) -> dict[str, str]:
    """Variables for Airflow processes working on this project against the local services."""
    env = {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@{pg_host}:{pg_port}/{metadata_db}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "GX_ANALYTICS_ENABLED": "false",
        "AIRFLOW_CONN_HUBSPOT_DEFAULT": connection_json(conn_type="hubspot", host=f"{sandbox_url}/hubspot", password=sandbox_token),
        "AIRFLOW_CONN_PSA_DEFAULT": connection_json(conn_type="psa", host=f"{sandbox_url}/psa", password=sandbox_token),
        "AIRFLOW_CONN_KANTATA_DEFAULT": connection_json(
            conn_type="kantata", host=f"{sandbox_url}/kantata", password=sandbox_token, extra={"tax_codes": KANTATA_TAX_CODES}
        ),
        "AIRFLOW_CONN_BAMBOOHR_DEFAULT": connection_json(conn_type="bamboohr", host=f"{sandbox_url}/bamboohr", password=sandbox_token),
        "AIRFLOW_CONN_QUICKBOOKS_DEFAULT": connection_json(
            conn_type="quickbooks",
            host=f"{sandbox_url}/quickbooks",
            login=QBO_CLIENT_ID,
            password=QBO_CLIENT_SECRET,
            extra={
                "realm_id": QBO_REALM_ID,
                "refresh_token": QBO_INITIAL_REFRESH_TOKEN,
                "token_url": f"{sandbox_url}/quickbooks/oauth2/v1/tokens/bearer",
            },
        ),
        "AIRFLOW_CONN_SALESFORCE_DEFAULT": connection_json(
            conn_type="salesforce",
            host=f"{sandbox_url}/salesforce",
            login=SALESFORCE_CLIENT_ID,
            password=SALESFORCE_CLIENT_SECRET,
        ),
        "AIRFLOW_CONN_XERO_DEFAULT": connection_json(
            conn_type="xero",
            host=f"{sandbox_url}/xero",
            login=XERO_CLIENT_ID,
            password=XERO_CLIENT_SECRET,
            extra={
                "tenant_id": XERO_TENANT_ID,
                "refresh_token": XERO_INITIAL_REFRESH_TOKEN,
                "token_url": f"{sandbox_url}/xero/connect/token",
                "requests_per_minute": SANDBOX_XERO_REQUESTS_PER_MINUTE,
            },
        ),
    }
    for conn_id, database in WAREHOUSE_DATABASES.items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = connection_json(
            conn_type="postgres", host=pg_host, port=pg_port, login="postgres", schema=database
        )
        env[f"AIRFLOW_CONN_FINANCE_{conn_id.upper()}"] = connection_json(
            conn_type="postgres", host=pg_host, port=pg_port, login=FINANCE_LOGIN, password=FINANCE_LOCAL_PASSWORD, schema=database
        )
    return {k: os.environ.get(k, v) if k.startswith("AIRFLOW_CONN_") else v for k, v in env.items()}
