"""Make the demo's ``airflow dags test`` runs look in Airflow's UI as they happened.

``airflow dags test`` of a past interval stores the run's start as its logical date (days or weeks
before it really ran, so the UI's durations read days) and writes task output only to its stdout (so
every task's log in the UI is "not found"). After each run the demo stores the run's real start and
end and files each task's part of the output where the UI reads task logs.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

TASK_START = re.compile(r"\[DAG TEST\] starting task_id=(?P<task>\S+) map_index=(?P<map>-?\d+)")
TASK_END = re.compile(r"\[DAG TEST\] end task task_id=(?P<task>\S+) map_index=(?P<map>-?\d+)")


def task_sections(output: str) -> dict[tuple[str, int], list[str]]:
    """(task id, map index) → the output lines of its last attempt in one ``dags test`` run."""
    sections: dict[tuple[str, int], list[str]] = {}
    current: tuple[str, int] | None = None
    for line in output.splitlines():
        started = TASK_START.search(line)
        if started:
            current = (started["task"], int(started["map"]))
            sections[current] = []
        if current is not None:
            sections[current].append(line)
        if TASK_END.search(line):
            current = None
    return sections


def log_path(logs: Path, dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int) -> Path:
    """Airflow's default ``log_filename_template``."""
    mapped = f"map_index={map_index}/" if map_index >= 0 else ""
    return logs / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}" / f"{mapped}attempt={max(try_number, 1)}.log"


def record_in_ui(metadata_url: str, logs: Path, dag_id: str, output: str, *, began: datetime, ended: datetime) -> None:
    """Real start and end on the latest run of ``dag_id``, and each task's output as its log file."""
    import psycopg2

    with psycopg2.connect(metadata_url.replace("postgresql+psycopg2://", "postgresql://", 1)) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT id, run_id FROM dag_run WHERE dag_id = %s ORDER BY id DESC LIMIT 1", (dag_id,))
        found = cursor.fetchone()
        if found is None:
            return
        row_id, run_id = found
        cursor.execute("UPDATE dag_run SET start_date = %s, end_date = %s WHERE id = %s", (began, ended, row_id))
        cursor.execute("SELECT task_id, map_index, try_number FROM task_instance WHERE dag_id = %s AND run_id = %s", (dag_id, run_id))
        tries = {(task, index): number for task, index, number in cursor.fetchall()}
    for (task, index), lines in task_sections(output).items():
        path = log_path(logs, dag_id, run_id, task, index, tries.get((task, index), 1))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
