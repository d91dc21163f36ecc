"""Test harness: a real PostgreSQL (embedded), the vendor sandbox and a configured Airflow.

Everything is started here and stopped at the end, so ``make test`` needs nothing running.
The environment is set before anything imports Airflow.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

from backbone.devtools import pg  # noqa: E402
from backbone.devtools.localenv import airflow_environment  # noqa: E402

TEST_DIR = ROOT / ".test"
PG_PORT = int(os.environ.get("BACKBONE_TEST_PG_PORT", "54339"))
SANDBOX_PORT = int(os.environ.get("BACKBONE_TEST_SANDBOX_PORT", "8766"))
SANDBOX_URL = f"http://127.0.0.1:{SANDBOX_PORT}"
ADMIN_URL = f"postgresql://postgres@127.0.0.1:{PG_PORT}/postgres"
ANCHOR = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
"""End of the interval in which the sandbox's seeded deals were modified."""

for key in [k for k in os.environ if k.startswith("AIRFLOW_CONN_")]:
    del os.environ[key]
os.environ.update(
    airflow_environment(airflow_home=TEST_DIR / "airflow", pg_port=PG_PORT, metadata_db="airflow", sandbox_url=SANDBOX_URL)
)
os.environ["BACKBONE_HTTP_MAX_BACKOFF_SECONDS"] = "2"
os.environ["BACKBONE_CRM_LOOKBACK_MINUTES"] = "0"
os.environ["BACKBONE_QBO_REQUESTS_PER_MINUTE"] = "60000"
os.environ["BACKBONE_QBO_MAX_CONCURRENCY"] = "4"


def pytest_sessionstart(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):
        return
    if (TEST_DIR / "pgdata").exists():
        pg.stop(TEST_DIR / "pgdata")  # left over from an interrupted run
    shutil.rmtree(TEST_DIR, ignore_errors=True)
    TEST_DIR.mkdir()
    pg.start(TEST_DIR / "pgdata", PG_PORT)
    pg.ensure_databases(ADMIN_URL, ["psa_warehouse", "accounting_warehouse", "airflow"])
    from backbone.warehouse.db import migrate

    for name in ("psa", "accounting"):
        migrate(warehouse_url(f"{name}_warehouse"), name)
    from backbone.devtools.localenv import FINANCE_LOCAL_PASSWORD, FINANCE_LOGIN
    from backbone.warehouse.migrations.ops_ledger import FINANCE_READER_ROLE

    pg.ensure_login(ADMIN_URL, FINANCE_LOGIN, FINANCE_LOCAL_PASSWORD, FINANCE_READER_ROLE)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=subprocess.DEVNULL, env=os.environ.copy())


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001 - pytest hook
    from tests.reliability import REPORT, summary

    if any(REPORT.values()):
        terminalreporter.write_sep("=", "reliability")
        terminalreporter.write_line(summary())


def pytest_sessionfinish(session: pytest.Session) -> None:
    if "airflow.settings" in sys.modules:
        sys.modules["airflow.settings"].dispose_orm()
    if "backbone.warehouse.db" in sys.modules:
        for engine in list(_cached_engines()):
            engine.dispose()
    pg.stop(TEST_DIR / "pgdata")


def _cached_engines():
    from backbone.warehouse.db import engine_for

    # functools.cache keeps no public list; engines are reached through the connection ids used.
    for conn_id in ("psa_warehouse", "accounting_warehouse"):
        yield engine_for(conn_id)


def warehouse_url(database: str) -> str:
    return f"postgresql+psycopg2://postgres@127.0.0.1:{PG_PORT}/{database}"


@dataclass
class RunningSandbox:
    url: str
    state: object

    @property
    def hubspot_url(self) -> str:
        return f"{self.url}/hubspot"

    @property
    def psa_url(self) -> str:
        return f"{self.url}/psa"

    @property
    def quickbooks_url(self) -> str:
        return f"{self.url}/quickbooks"


def start_sandbox(port: int, **config: object) -> tuple[RunningSandbox, object, threading.Thread]:
    import uvicorn

    from backbone.sandbox.app import SandboxConfig, SandboxState, build_app

    config = {"people": 12, "qbo_requests_per_minute": 0, "xero_requests_per_minute": 0, **config}
    state = SandboxState.fresh(SandboxConfig(anchor=ANCHOR, **config))
    server = uvicorn.Server(uvicorn.Config(build_app(state), host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    return RunningSandbox(url=f"http://127.0.0.1:{port}", state=state), server, thread


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    """A freshly seeded sandbox (120 deals) on the port the Airflow Connections point at."""
    running, server, thread = start_sandbox(SANDBOX_PORT)
    yield running
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def salesforce_sandbox() -> Iterator[RunningSandbox]:
    """Like ``sandbox``, for a company whose PSA projects came from Salesforce (PSA invoices and
    milestones carry Salesforce Opportunity ids). HubSpot, Salesforce, QuickBooks and Xero are all served."""
    running, server, thread = start_sandbox(SANDBOX_PORT, crm="salesforce")
    yield running
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def psa_warehouse() -> Iterator[object]:
    """The PSA warehouse engine, emptied before the test."""
    from sqlalchemy import create_engine, text

    engine = create_engine(warehouse_url("psa_warehouse"))
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE psa.client, psa.contact, psa.project, psa.project_contact, ops.flow_run, ops.staged_record, ops.quarantine"))
    yield engine
    engine.dispose()


@pytest.fixture
def accounting_warehouse() -> Iterator[object]:
    """The accounting warehouse engine, emptied before the test; the stored QuickBooks refresh token forgotten."""
    from sqlalchemy import create_engine, text

    engine = create_engine(warehouse_url("accounting_warehouse"))
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE acct.reference, acct.time_export, acct.invoice, acct.invoice_line, acct.reconciliation, acct.payment, ops.flow_run, ops.staged_record, ops.quarantine"))
    with create_engine(warehouse_url("psa_warehouse")).begin() as connection:
        connection.execute(text("TRUNCATE psa.time_entry, psa.invoice_status"))
    forget_rotated_tokens()
    yield engine
    engine.dispose()


def forget_rotated_tokens() -> None:
    """A fresh sandbox only knows its first refresh token: drop the one a previous test stored."""
    from airflow.models import Variable

    Variable.delete("quickbooks_default_refresh_token")
    Variable.delete("xero_default_refresh_token")


@pytest.fixture
def hr_warehouse() -> Iterator[object]:
    """The PSA warehouse engine with its HR schema and run records emptied."""
    from sqlalchemy import create_engine, text

    engine = create_engine(warehouse_url("psa_warehouse"))
    with engine.begin() as connection:
        connection.execute(text(
            "TRUNCATE hr.person, hr.person_history, hr.department, hr.skill, hr.certification, hr.time_off_day, hr.company_holiday, hr.capacity, "
            "ops.flow_run, ops.staged_record, ops.quarantine"
        ))  # fmt: skip
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def dagbag() -> object:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))
