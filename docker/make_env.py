"""Write ``.env`` for docker-compose.yaml: fresh secrets and the vendor Connections of a local trial.

    python3 docker/make_env.py            # or: make compose-env

Standard library only (it runs before any venv exists). An existing ``.env`` is never overwritten:
its Fernet key encrypts the stored refresh tokens and connection passwords, so losing it loses them.
For real accounts, replace the ``AIRFLOW_CONN_*`` lines of the vendors with your own (JSON, as here).
"""

from __future__ import annotations

import base64
import json
import secrets
import sys
from pathlib import Path

SANDBOX = "http://sandbox:8765"
TRIAL_CONNECTIONS = {
    "HUBSPOT_DEFAULT": {"conn_type": "hubspot", "host": f"{SANDBOX}/hubspot", "password": "sandbox-token"},
    "PSA_DEFAULT": {"conn_type": "psa", "host": f"{SANDBOX}/psa", "password": "sandbox-token"},
    "BAMBOOHR_DEFAULT": {"conn_type": "bamboohr", "host": f"{SANDBOX}/bamboohr", "password": "sandbox-token"},
    "QUICKBOOKS_DEFAULT": {
        "conn_type": "quickbooks",
        "host": f"{SANDBOX}/quickbooks",
        "login": "sandbox-qbo-client",
        "password": "sandbox-qbo-secret",
        "extra": {
            "realm_id": "9341455000000001",
            "refresh_token": "sandbox-qbo-refresh-0",
            "token_url": f"{SANDBOX}/quickbooks/oauth2/v1/tokens/bearer",
        },
    },
}
"""The sandbox's own credentials (devkit/backbone_sandbox): nothing secret, nothing real."""


def environment() -> dict[str, str]:
    values = {
        "AIRFLOW_JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW_FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "AIRFLOW_DB_PASSWORD": secrets.token_urlsafe(16),
        "WAREHOUSE_PASSWORD": secrets.token_urlsafe(16),
        "FINANCE_DB_PASSWORD": secrets.token_urlsafe(16),
        "AIRFLOW_ADMIN_PASSWORD": secrets.token_urlsafe(12),
        "AIRFLOW_FINANCE_PASSWORD": secrets.token_urlsafe(12),
    }
    values.update({f"AIRFLOW_CONN_{name}": json.dumps(conn) for name, conn in TRIAL_CONNECTIONS.items()})
    return values


def main(argv: list[str]) -> int:
    target = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / ".env"
    if target.exists():
        print(f"{target} exists; keeping it (its Fernet key encrypts what Airflow stored)")
        return 0
    lines = [f"{key}={value}" for key, value in environment().items()]
    target.write_text("# Written by docker/make_env.py: secrets of this deployment. Never commit it.\n" + "\n".join(lines) + "\n")
    target.chmod(0o600)
    print(f"wrote {target}: secrets and the trial's vendor Connections (to the sandbox service)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
