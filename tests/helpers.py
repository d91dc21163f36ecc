"""What the end-to-end tests share: running a DAG for real, and reading the warehouses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import text


def run_dag(dagbag, flow: str, logical_date, *, retries: int | None = None):  # noqa: ANN001, ANN201 - Airflow objects
    """``dag.test()`` for the interval ``logical_date`` falls in. ``retries`` overrides every task's
    retries (``dag.test()`` waits out retry delays, which a failure test does not want)."""
    dag = dagbag.get_dag(flow)
    if retries is not None:
        dag = dag.partial_subset(task_ids=list(dag.task_ids), include_upstream=False)
        for task in dag.tasks:
            task.retries = retries
    return dag.test(logical_date=logical_date)


def rows(engine, query: str, **params: Any) -> list[Any]:  # noqa: ANN001
    with engine.connect() as connection:
        return connection.execute(text(query), params).all()


def scalar(engine, query: str, **params: Any) -> Any:  # noqa: ANN001
    with engine.connect() as connection:
        return connection.execute(text(query), params).scalar_one()


def dags_test_process(flow: str, logical_date, log_path: Path) -> subprocess.Popen:  # noqa: ANN001 - a datetime
    """``airflow dags test`` in a process of its own (its own session, so a test can kill it as a whole)."""
    dags = Path(__file__).resolve().parents[1] / "dags"
    return subprocess.Popen(
        [sys.executable, "-m", "airflow", "dags", "test", flow, logical_date.isoformat()],
        env={**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(dags)},
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
