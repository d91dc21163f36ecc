"""``make test-profile``'s plugin: its sums and the machine figures it reads."""

from __future__ import annotations

from backbone_devtools import suite_profile


def row(test: str, **cpu: float) -> dict:
    return {"test": test, "wall": 2.0, "process": 0.0, "children": 0.0, "postgres": 0.0, "dag_runs": 0, "dag_run_cpu": 0.0, **cpu}


def test_the_tables_sum_each_files_tests_and_rank_by_cpu():
    rows = [
        row("tests/test_a.py::one", process=3.0, children=1.0, dag_runs=2, dag_run_cpu=2.5),
        row("tests/test_a.py::two", process=1.0, postgres=0.5),
        row("tests/test_b.py::three", children=9.0),
    ]
    table = suite_profile.summarise(rows)
    assert table.startswith("3 tests: CPU 14 s (pytest processes 4, their waited children 10, PostgreSQL 0); 2 DAG runs")
    files = [line for line in table.splitlines() if line.startswith("| tests/test_") and line.count("|") == 10]
    assert files == [
        "| tests/test_b.py | 1 | 9.0 | 0.0 | 9.0 | 0.0 | 0 | 0.0 | 2.0 |",
        "| tests/test_a.py | 2 | 5.5 | 4.0 | 1.0 | 0.5 | 2 | 2.5 | 4.0 |",
    ]
    assert "| tests/test_b.py::three | 9.0 |" in table.splitlines()[-3]


def test_the_machine_figures_are_read_from_proc(monkeypatch, tmp_path):
    assert suite_profile.busy_cpu_seconds() > 0
    monkeypatch.setenv("BACKBONE_TEST_PGDATA", str(tmp_path))  # no PostgreSQL there
    assert suite_profile.postgres_cpu() == 0.0
