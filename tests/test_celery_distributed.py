"""Distributed execution, for real: ``make celery-check`` (Redis, Airflow's API server, scheduler,
dag-processor and two Celery workers on an embedded PostgreSQL) must pass. Run alone with
``pytest -m celery``; it starts and stops everything it needs on free ports."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.celery


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="Debian's redis-server is not installed (make test installs it as root)")
def test_every_flow_runs_on_two_celery_workers_and_a_killed_worker_loses_nothing():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "BACKBONE"))}
    result = subprocess.run([sys.executable, "-m", "backbone_devtools.celery_check"], capture_output=True, text=True, env=env, timeout=2400)
    report = result.stdout + result.stderr[-6000:]
    assert result.returncode == 0, report
    assert "tasks ran on: worker-1, worker-2" in result.stdout
    assert "the run ended success, the task retried on worker-" in result.stdout
    assert "(each once: True)" in result.stdout
