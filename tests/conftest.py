"""Test harness: a real PostgreSQL (embedded), the vendor sandbox and a configured Airflow.

Everything is started here and stopped at the end, so ``make test`` needs nothing running.
The environment is set before anything imports Airflow.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backbone_devtools import pg
from backbone_devtools.localenv import airflow_environment

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A port nothing listens on now (for a server a test starts)."""

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Free ports unless told otherwise, so two test runs can share a machine.
PG_PORT = int(os.environ.get("BACKBONE_TEST_PG_PORT") or free_port())
SANDBOX_PORT = int(os.environ.get("BACKBONE_TEST_SANDBOX_PORT") or free_port())
TEST_ROOT = ROOT / ".test"
TEST_DIR = TEST_ROOT / f"run-{PG_PORT}"
"""This run's PostgreSQL data and Airflow home (each run its own, next to any other run's)."""
os.environ["BACKBONE_TEST_PGDATA"] = str(TEST_DIR / "pgdata")  # where `make test-profile` finds this run's PostgreSQL
SANDBOX_URL = f"http://127.0.0.1:{SANDBOX_PORT}"
ADMIN_URL = f"postgresql://postgres@127.0.0.1:{PG_PORT}/postgres"
ANCHOR = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
"""End of the interval in which the sandbox's seeded deals were modified."""

for key in [k for k in os.environ if k.startswith("AIRFLOW_CONN_")]:
    del os.environ[key]
os.environ.update(airflow_environment(airflow_home=TEST_DIR / "airflow", pg_port=PG_PORT, metadata_db="airflow", sandbox_url=SANDBOX_URL))
# One Fernet key for every process of the run (this one, `airflow dags test` subprocesses, the API
# server): otherwise each would generate its own in airflow.cfg and could not read the others'
# encrypted Variables, such as the rotated refresh tokens.
os.environ.setdefault("AIRFLOW__CORE__FERNET_KEY", base64.urlsafe_b64encode(os.urandom(32)).decode())
os.environ["BACKBONE_HTTP_MAX_BACKOFF_SECONDS"] = "2"
os.environ["BACKBONE_CRM_LOOKBACK_MINUTES"] = "0"
os.environ["BACKBONE_QBO_REQUESTS_PER_MINUTE"] = "60000"
os.environ["BACKBONE_QBO_BATCH_REQUESTS_PER_MINUTE"] = "60000"  # the sandbox below allows as many (QuickBooks: 40)
os.environ["BACKBONE_QBO_MAX_CONCURRENCY"] = "4"

NEEDS_SERVICES = frozenset({"psa_warehouse", "accounting_warehouse", "hr_warehouse", "dagbag", "services"})
"""Fixtures that need PostgreSQL and Airflow's metadata DB; a test using none of them (and not
marked e2e or db) runs without starting anything."""
_started = {"postgres": False}


def pytest_sessionstart(session: pytest.Session) -> None:
    """Only tidy up: data left by runs that were killed (their PostgreSQL is gone or is stopped now)."""
    if hasattr(session.config, "workerinput") or not TEST_ROOT.exists():
        return
    for old in TEST_ROOT.iterdir():
        if old == TEST_DIR or not old.is_dir():
            continue
        pid_file = old / "pgdata" / "postmaster.pid"
        if pid_file.exists() and _alive(int(pid_file.read_text().split()[0])) and _owner_alive(old):
            continue  # another test run is using it
        if pid_file.exists():
            pg.stop(old / "pgdata")
        shutil.rmtree(old, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _owner_alive(run_dir: Path) -> bool:
    owner = run_dir / "owner.pid"
    return owner.exists() and _alive(int(owner.read_text()))


SERVICE_FIXTURES = frozenset(
    {"services", "sandbox", "salesforce_sandbox", "psa_warehouse", "accounting_warehouse", "hr_warehouse", "dagbag"}
)
"""Fixtures that start something (PostgreSQL, Airflow's DB, a sandbox server): a test using none is a unit test."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("e2e") or item.get_closest_marker("db"):
            item.fixturenames.insert(0, "services")
        elif not item.get_closest_marker("celery") and not item.get_closest_marker("starts_services"):
            if SERVICE_FIXTURES.isdisjoint(item.fixturenames):
                item.add_marker(pytest.mark.unit)
    # The distributed check (the longest test) first, unit tests last: on several workers the quick
    # unit tests fill the gaps at the end instead of a long end-to-end test starting last.
    items.sort(key=lambda item: (item.get_closest_marker("unit") is not None, item.get_closest_marker("celery") is None))


@pytest.fixture(scope="session")
def services() -> None:
    """PostgreSQL (embedded, on this run's port) with both warehouses migrated and Airflow's metadata
    DB: started once, on first use, by the tests that need it; stopped at the end of the session."""
    if _started["postgres"]:
        return
    TEST_DIR.mkdir(parents=True, exist_ok=True)  # Airflow may have made its home here already: keep it
    (TEST_DIR / "owner.pid").write_text(str(os.getpid()))
    pg.start(TEST_DIR / "pgdata", PG_PORT)
    _started["postgres"] = True
    pg.ensure_databases(ADMIN_URL, ["psa_warehouse", "accounting_warehouse", "airflow"])
    from backbone.warehouse.db import migrate

    for name in ("psa", "accounting"):
        migrate(warehouse_url(f"{name}_warehouse"), name)
    from backbone.warehouse.migrations.ops_ledger import FINANCE_READER_ROLE
    from backbone_devtools.localenv import FINANCE_LOCAL_PASSWORD, FINANCE_LOGIN

    pg.ensure_login(ADMIN_URL, FINANCE_LOGIN, FINANCE_LOCAL_PASSWORD, FINANCE_READER_ROLE)
    from airflow.utils.db import upgradedb

    upgradedb()  # what `airflow db migrate` runs, without a second interpreter importing Airflow (3.3 → 1.2 CPU-s)
    from backbone_devtools.dagtest import skip_unchanged_bundle_syncs

    skip_unchanged_bundle_syncs()  # dag.test() re-syncs the DAG folder only when it changed


SAME_WORKER = re.compile(
    r"^tests/test_reliability_faults\.py::test_(?:fault_free_reference|vendor_faults_\w+)\[(?P<flow>[a-z_]+)"
    r"|^tests/test_month_end_e2e\.py::"
    r"|^tests/test_project_actuals_e2e\.py::test_(?:labour_actuals_\w+\[quickbooks|a_journal_\w+|with_budgets_\w+\[quickbooks)"
    r"|^tests/test_pilot_mode\.py::test_payments_and_milestones_in_pilot_"
    r"|^tests/test_finance_ledger\.py::test_finance_(?P<api_server>routes_refuse_anonymous_and_garbage_tokens|and_leadership_pages_in_a_real_browser)"
)
"""Tests that run on one worker, in collection order: a flow's fault-free reference, then its fault
runs (which compare against it); the tests that start from October's worlds (the month-end tests,
project actuals on QuickBooks, payments in pilot), which share the worlds the first of them builds
(``tests/snapshots.py``, ``tests/test_month_end_e2e.py``) instead of building October once per test;
the Finance page's tests through Airflow's API server, which share one server (``api_server``)."""


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """``make test`` runs on several xdist workers; tests are handed out one by one except the groups
    of :data:`SAME_WORKER`. (xdist's own ``--dist loadgroup`` renames nodeids through ``item._nodeid``,
    which pytest 9 no longer reads, so its groups are silently ignored.)"""
    from xdist.scheduler import LoadScopeScheduling

    class SameWorkerGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            group = SAME_WORKER.match(nodeid)
            if group is None:
                return nodeid
            if group["flow"]:
                return f"faults-{group['flow']}"
            return "api-server" if group["api_server"] else "october"

    return SameWorkerGroups(config, log)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:  # noqa: ANN001 - pytest-xdist hook
    """A worker's fault-suite counts join the run's (the summary is printed by the controller)."""
    from tests.reliability import REPORT

    for key, value in getattr(node, "workeroutput", {}).get("reliability", {}).items():
        REPORT[key] += value


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001 - pytest hook
    from tests.reliability import REPORT, summary

    if any(REPORT.values()):
        terminalreporter.write_sep("=", "reliability")
        terminalreporter.write_line(summary())


def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workeroutput"):  # an xdist worker: hand its fault-suite counts to the controller
        from tests.reliability import REPORT

        session.config.workeroutput["reliability"] = dict(REPORT)
    if not _started["postgres"]:
        shutil.rmtree(TEST_DIR, ignore_errors=True)  # Airflow made its home there on import; nothing else ran
        return
    if "airflow.settings" in sys.modules:
        sys.modules["airflow.settings"].dispose_orm()
    if "backbone.warehouse.db" in sys.modules:
        for engine in list(_cached_engines()):
            engine.dispose()
    pg.stop(TEST_DIR / "pgdata")
    shutil.rmtree(TEST_DIR, ignore_errors=True)


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

    from backbone_sandbox.app import SandboxConfig, SandboxState, build_app

    config = {"people": 12, "qbo_requests_per_minute": 0, "qbo_batch_requests_per_minute": 0, "xero_requests_per_minute": 0, **config}
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
def psa_warehouse(services) -> Iterator[object]:
    """The PSA warehouse engine, emptied before the test."""
    from sqlalchemy import create_engine, text

    engine = create_engine(warehouse_url("psa_warehouse"))
    with engine.begin() as connection:
        connection.execute(
            text(
                "TRUNCATE psa.client, psa.contact, psa.project, psa.project_contact, psa.cost_rate, psa.pipeline_deal, psa.billing_code, "
                "psa.accounting_code, psa.audit_finding, psa.project_budget, "
                "ops.flow_run, ops.flow_run_attempt, ops.staged_record, ops.quarantine, ops.deadline_alert"
            )
        )
    yield engine
    engine.dispose()


@pytest.fixture
def accounting_warehouse(services) -> Iterator[object]:
    """The accounting warehouse engine, emptied before the test; the stored QuickBooks refresh token forgotten."""
    from sqlalchemy import create_engine, text

    engine = create_engine(warehouse_url("accounting_warehouse"))
    with engine.begin() as connection:
        connection.execute(
            text(
                "TRUNCATE acct.reference, acct.time_export, acct.expense_export, acct.invoice, acct.invoice_line, acct.reconciliation, "
                "acct.project_actual, acct.actuals_journal, acct.payment, acct.time_day_record, acct.time_day_member, "
                "ops.flow_run, ops.flow_run_attempt, ops.staged_record, ops.quarantine, ops.deadline_alert"
            )
        )
    with create_engine(warehouse_url("psa_warehouse")).begin() as connection:
        connection.execute(text("TRUNCATE psa.time_entry, psa.invoice_status, psa.cost_rate"))
    forget_rotated_tokens()
    yield engine
    engine.dispose()


def forget_rotated_tokens() -> None:
    """A fresh sandbox only knows its first refresh token: drop the tokens a previous test stored."""
    from airflow.models import Variable

    from tests.snapshots import ROTATED_TOKEN_VARIABLES

    for key in ROTATED_TOKEN_VARIABLES:
        Variable.delete(key)


@pytest.fixture
def hr_warehouse(services) -> Iterator[object]:
    """The PSA warehouse engine with its HR schema and run records emptied."""
    from sqlalchemy import create_engine, text

    engine = create_engine(warehouse_url("psa_warehouse"))
    with engine.begin() as connection:
        connection.execute(
            text(
                "TRUNCATE hr.person, hr.person_history, hr.department, hr.skill, hr.certification, hr.time_off_day, hr.company_holiday, "
                "hr.capacity, "
                "ops.flow_run, ops.flow_run_attempt, ops.staged_record, ops.quarantine, ops.deadline_alert"
            )
        )
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def dagbag(services) -> object:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))
