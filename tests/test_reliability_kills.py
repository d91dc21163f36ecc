"""Real process kills and a PostgreSQL restart in the middle of posting, as an operator would
cause them: ``airflow dags test`` runs in its own process and is killed with SIGKILL (the task
runs in that process), or the warehouse server restarts under it. After a rerun the state must
equal what a clean run leaves: every approved entry once in accounting, nothing twice, and the
killed run's ledger record closed as failed with the reason once a later run sees it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from datetime import timedelta

import pytest

from backbone_sandbox.faults import FaultRule
from tests import reliability
from tests.conftest import PG_PORT, TEST_DIR
from tests.helpers import dags_test_process, rows, run_dag, scalar
from tests.test_hostile_conditions import TIMESHEETS, WEEK_END

pytestmark = pytest.mark.e2e


def _wait_for_posts(state, process, at_least: int, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        created = len(state.qbo.entities["TimeActivity"])
        if created >= at_least:
            return created
        assert process.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.05)
    pytest.fail("posting never started")


def _duplicates(state) -> int:
    return sum(n - 1 for n in Counter(a["Description"] for a in state.qbo.entities["TimeActivity"].values()).values() if n > 1)


def _rerun_posts_everything_once(dagbag, state, accounting_warehouse, *, created_before: int) -> None:  # noqa: ANN001
    """The interval run again: every line posted, each once in QuickBooks, more than before the fault."""
    assert run_dag(dagbag, TIMESHEETS, WEEK_END).state == "success"
    posted = scalar(accounting_warehouse, "SELECT count(*) FROM acct.time_export WHERE posting_status = 'posted'")
    assert posted == len(state.qbo.entities["TimeActivity"]) > created_before
    duplicates = _duplicates(state)
    assert duplicates == 0
    reliability.count(faults_injected=1, survived=1, duplicates=duplicates, rows_compared=posted)


def _mark_dag_run_failed(airflow_run_id: str) -> None:
    """What Airflow's scheduler does when a run's task process is gone (no heartbeat): the run fails."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    with create_session() as session:
        for dag_run in session.query(DagRun).filter(DagRun.dag_id == TIMESHEETS, DagRun.run_id == airflow_run_id):
            dag_run.state = DagRunState.FAILED


def test_sigkill_mid_posting_then_rerun_posts_each_entry_once(dagbag, sandbox, accounting_warehouse, psa_warehouse, tmp_path):
    state = sandbox.state
    state.faults.arm(
        [
            FaultRule(kind="slow_response", path_contains=path, method="POST", delay_seconds=0.3, times=100_000)
            for path in ("/batch", "/timeactivity")
        ]
    )
    process = dags_test_process(TIMESHEETS, WEEK_END, tmp_path / "killed.log")
    created = _wait_for_posts(state, process, at_least=10)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    state.faults.clear()
    record = rows(
        accounting_warehouse, "SELECT status, details->>'airflow_run_id' AS owner FROM ops.flow_run WHERE flow = :f", f=TIMESHEETS
    )[0]
    assert record.status == "running"  # nothing could close it: the process is gone

    # Airflow notices the dead run; the next run of the flow (another week) closes the record as failed.
    _mark_dag_run_failed(record.owner)
    assert run_dag(dagbag, TIMESHEETS, WEEK_END + timedelta(days=7)).state == "success"
    closed = rows(
        accounting_warehouse,
        "SELECT status, details->>'failure' AS failure FROM ops.flow_run WHERE flow = :f AND interval_end = :e",
        f=TIMESHEETS,
        e=WEEK_END,
    )[0]
    assert closed.status == "failed" and "ended without closing" in closed.failure

    _rerun_posts_everything_once(dagbag, state, accounting_warehouse, created_before=created)


def test_postgresql_restart_mid_posting_then_rerun_posts_each_entry_once(dagbag, sandbox, accounting_warehouse, psa_warehouse, tmp_path):
    from backbone.warehouse.db import engine_for
    from backbone_devtools import pg

    state = sandbox.state
    state.faults.arm(
        [
            FaultRule(kind="slow_response", path_contains=path, method="POST", delay_seconds=0.3, times=100_000)
            for path in ("/batch", "/timeactivity")
        ]
    )
    process = dags_test_process(TIMESHEETS, WEEK_END, tmp_path / "restarted.log")
    created = _wait_for_posts(state, process, at_least=10)
    pg.stop(TEST_DIR / "pgdata")
    time.sleep(1)
    pg.start(TEST_DIR / "pgdata", PG_PORT)
    try:
        process.wait(timeout=20)  # it may fail on its own ...
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # ... or sit in a retry delay: the operator stops it
        process.wait(timeout=30)
    state.faults.clear()
    for engine in (accounting_warehouse, psa_warehouse, engine_for("accounting_warehouse"), engine_for("psa_warehouse")):
        engine.dispose()

    owner = rows(accounting_warehouse, "SELECT details->>'airflow_run_id' FROM ops.flow_run WHERE flow = :f", f=TIMESHEETS)[0][0]
    _mark_dag_run_failed(owner)
    _rerun_posts_everything_once(dagbag, state, accounting_warehouse, created_before=created)
