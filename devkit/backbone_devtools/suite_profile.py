"""Where the test suite's CPU goes: a pytest plugin for ``make test-profile``.

Loaded with ``-p backbone_devtools.suite_profile``. For every test it records the wall time and
the CPU of the pytest process (all its threads: the flows' code, ``dag.test()``, the in-process
sandbox), of the children it waited for (``airflow dags test`` subprocesses, the API server,
Chromium, the Celery check's processes), of the run's PostgreSQL cluster (postmaster and backends,
found through ``BACKBONE_TEST_PGDATA``, which ``tests/conftest.py`` sets), and the DAG runs it made
through ``DAG.test()`` with their CPU. Under pytest-xdist each worker hands its rows to the
controller, which prints the files and tests that cost the most, with the machine's busy CPU over
the session (``/proc/stat``) and a calibration loop beside it: this machine's speed drifts by a
third within an hour, so a figure is only comparable to one measured with a similar loop time.
The rows and the tables are written to ``.test-profile/``.
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

OUT = Path(os.environ.get("BACKBONE_TEST_PROFILE_DIR", ".test-profile"))
TICKS = os.sysconf("SC_CLK_TCK")
CALIBRATION_ITERATIONS = 20_000_000
_rows: list[dict[str, Any]] = []
_dag_runs = {"runs": 0, "cpu": 0.0}
_session: dict[str, float] = {}


def calibration_seconds() -> float:
    """Seconds ``python -c`` takes for a module-level loop of ``CALIBRATION_ITERATIONS``
    (``s += i*i % 7``): the reference the project's notes quote beside suite figures."""
    import subprocess
    import sys

    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"s = 0\nfor i in range({CALIBRATION_ITERATIONS}): s += i * i % 7"], check=True)
    return time.perf_counter() - started


def busy_cpu_seconds() -> float:
    """The machine's busy CPU time since boot (user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / TICKS


def _process_cpu(pid: int, *, with_waited_children: bool = True) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    own = int(fields[11]) + int(fields[12])
    waited = int(fields[13]) + int(fields[14]) if with_waited_children else 0
    return (own + waited) / TICKS


def _children_of(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for thread in os.listdir(f"/proc/{pid}/task"):
            found += [int(x) for x in Path(f"/proc/{pid}/task/{thread}/children").read_text().split()]
    except OSError:
        pass
    return found


def postgres_cpu() -> float:
    """CPU of the run's PostgreSQL cluster so far: the postmaster with its live and ended backends."""
    pgdata = os.environ.get("BACKBONE_TEST_PGDATA")
    pid_file = Path(pgdata) / "postmaster.pid" if pgdata else None
    if pid_file is None or not pid_file.exists():
        return 0.0
    try:
        postmaster = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return _process_cpu(postmaster) + sum(_process_cpu(child) for child in _children_of(postmaster))


def _own_cpu() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    waited = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, waited.ru_utime + waited.ru_stime


def _count_dag_runs() -> None:
    """Wrap ``DAG.test`` so each call's CPU (this process) is counted for the test that made it."""
    try:
        from airflow.sdk.definitions.dag import DAG
    except ImportError:
        return
    original = DAG.test
    if getattr(original, "__profiled__", False):
        return

    def test(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = _own_cpu()[0]
        try:
            return original(self, *args, **kwargs)
        finally:
            _dag_runs["runs"] += 1
            _dag_runs["cpu"] += _own_cpu()[0] - started

    test.__profiled__ = True  # type: ignore[attr-defined]
    test.__wrapped__ = original  # type: ignore[attr-defined]
    DAG.test = test  # type: ignore[method-assign]


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if not _is_worker(config):
        _session.update(calibration=calibration_seconds(), busy=busy_cpu_seconds(), wall=time.monotonic())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    _count_dag_runs()  # here, not at configure time: Airflow is imported only after conftest set its home
    own, waited = _own_cpu()
    postgres, runs, run_cpu, started = postgres_cpu(), _dag_runs["runs"], _dag_runs["cpu"], time.monotonic()
    yield
    own_after, waited_after = _own_cpu()
    _rows.append(
        {
            "test": item.nodeid,
            "wall": time.monotonic() - started,
            "process": own_after - own,
            "children": waited_after - waited,
            "postgres": max(0.0, postgres_cpu() - postgres),  # a PostgreSQL restarted by the test starts from zero
            "dag_runs": _dag_runs["runs"] - runs,
            "dag_run_cpu": _dag_runs["cpu"] - run_cpu,
        }
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _is_worker(session.config):
        session.config.workeroutput["suite_profile"] = json.dumps(_rows)  # type: ignore[attr-defined]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    _rows.extend(json.loads(getattr(node, "workeroutput", {}).get("suite_profile", "[]")))


def summarise(rows: list[dict[str, Any]], *, top: int = 25) -> str:
    """Markdown tables: totals, the files and the tests with the most CPU."""
    by_file: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in rows:
        entry = by_file[row["test"].split("::", 1)[0]]
        entry["tests"] += 1
        for key in ("wall", "process", "children", "postgres", "dag_runs", "dag_run_cpu"):
            entry[key] += row[key]

    def cpu(entry: dict[str, Any]) -> float:
        return entry["process"] + entry["children"] + entry["postgres"]

    totals = {key: sum(row[key] for row in rows) for key in ("process", "children", "postgres", "dag_runs", "dag_run_cpu")}
    lines = [
        f"{len(rows)} tests: CPU {cpu(totals):,.0f} s (pytest processes {totals['process']:,.0f}, their waited children "
        f"{totals['children']:,.0f}, PostgreSQL {totals['postgres']:,.0f}); {totals['dag_runs']:,.0f} DAG runs "
        f"through dag.test() with {totals['dag_run_cpu']:,.0f} s of it",
        "",
        "| file | tests | CPU s | process | children | PostgreSQL | DAG runs | their CPU | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in sorted(by_file.items(), key=lambda item: -cpu(item[1]))[:top]:
        lines.append(
            f"| {name} | {entry['tests']:.0f} | {cpu(entry):.1f} | {entry['process']:.1f} | {entry['children']:.1f} | "
            f"{entry['postgres']:.1f} | {entry['dag_runs']:.0f} | {entry['dag_run_cpu']:.1f} | {entry['wall']:.1f} |"
        )
    lines += ["", "| test | CPU s | process | children | PostgreSQL | DAG runs | wall s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for row in sorted(rows, key=lambda r: -cpu(r))[:top]:
        lines.append(
            f"| {row['test']} | {cpu(row):.1f} | {row['process']:.1f} | {row['children']:.1f} | {row['postgres']:.1f} | "
            f"{row['dag_runs']} | {row['wall']:.1f} |"
        )
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if _is_worker(config) or not _rows:
        return
    wall = time.monotonic() - _session["wall"]
    busy = busy_cpu_seconds() - _session["busy"]
    machine = (
        f"session wall {wall:,.0f} s, the machine's busy CPU {busy:,.0f} s on {os.cpu_count()} cores; "
        f"a {CALIBRATION_ITERATIONS:,}-iteration Python loop took {_session['calibration']:.2f} s before the tests"
    )
    table = summarise(_rows)
    terminalreporter.write_sep("=", "where the suite's CPU went (backbone_devtools.suite_profile)")
    terminalreporter.write_line(machine)
    terminalreporter.write_line(table)
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (OUT / f"{stamp}.json").write_text(json.dumps({"machine": machine, **_session, "wall_seconds": wall, "busy_cpu": busy, "tests": _rows}))
    (OUT / "latest.md").write_text(f"Measured {stamp}. {machine}.\n\n{table}\n")
    terminalreporter.write_line(f"rows and tables in {OUT}/{stamp}.json and {OUT}/latest.md")
