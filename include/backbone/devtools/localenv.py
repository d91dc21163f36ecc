"""The environment a local Airflow needs for this project: folders, metadata DB, Connections.

Connections are given as ``AIRFLOW_CONN_*`` variables (Airflow's JSON form), so secrets stay in
Connections and nothing is written into code. Values already set in the environment win.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# The sandbox's own fake QuickBooks app credentials (see backbone.sandbox.quickbooks).
QBO_CLIENT_ID = "sandbox-qbo-client"
QBO_CLIENT_SECRET = "sandbox-qbo-secret"  # noqa: S105
QBO_REALM_ID = "9341455000000001"
QBO_INITIAL_REFRESH_TOKEN = "sandbox-qbo-refresh-0"  # noqa: S105

# The local login the Finance page reads through: a member of the read-only role the migrations create.
FINANCE_LOGIN = "finance_page"
FINANCE_LOCAL_PASSWORD = "finance-page-local"  # noqa: S105 - local embedded database only

PROJECT_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_PG_PORT = 54329
DEFAULT_SANDBOX_PORT = 8765
WAREHOUSE_DATABASES = {"psa_warehouse": "psa_warehouse", "accounting_warehouse": "accounting_warehouse"}


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
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT / "include"), os.environ.get("PYTHONPATH")])),
        "AIRFLOW_CONN_HUBSPOT_DEFAULT": connection_json(conn_type="hubspot", host=f"{sandbox_url}/hubspot", password=sandbox_token),
        "AIRFLOW_CONN_PSA_DEFAULT": connection_json(conn_type="psa", host=f"{sandbox_url}/psa", password=sandbox_token),
        "AIRFLOW_CONN_BAMBOOHR_DEFAULT": connection_json(conn_type="bamboohr", host=f"{sandbox_url}/bamboohr", password=sandbox_token),
        "AIRFLOW_CONN_QUICKBOOKS_DEFAULT": connection_json(
            conn_type="quickbooks",
            host=f"{sandbox_url}/quickbooks",
            login=QBO_CLIENT_ID,
            password=QBO_CLIENT_SECRET,
            extra={"realm_id": QBO_REALM_ID, "refresh_token": QBO_INITIAL_REFRESH_TOKEN, "token_url": f"{sandbox_url}/quickbooks/oauth2/v1/tokens/bearer"},
        ),
    }
    for conn_id, database in WAREHOUSE_DATABASES.items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = connection_json(conn_type="postgres", host=pg_host, port=pg_port, login="postgres", schema=database)
        env[f"AIRFLOW_CONN_FINANCE_{conn_id.upper()}"] = connection_json(
            conn_type="postgres", host=pg_host, port=pg_port, login=FINANCE_LOGIN, password=FINANCE_LOCAL_PASSWORD, schema=database
        )
    return {k: os.environ.get(k, v) if k.startswith("AIRFLOW_CONN_") else v for k, v in env.items()}
