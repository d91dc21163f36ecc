"""The demo and `make airflow` helpers: task logs filed for the UI, a foreign sandbox port refused (no Airflow needed)."""

from __future__ import annotations

from pathlib import Path

from backbone_devtools.uirecord import log_path, task_sections

OUTPUT = """\
2026-11-28T07:58:24Z [info] [DAG TEST] starting task_id=extract map_index=-1 [airflow.sdk.definitions.dag]
extracting
2026-11-28T07:58:25Z [info] [DAG TEST] end task task_id=extract map_index=-1 [airflow.sdk.definitions.dag]
between tasks
2026-11-28T07:58:25Z [info] [DAG TEST] starting task_id=post map_index=2 [airflow.sdk.definitions.dag]
posting
2026-11-28T07:58:26Z [info] [DAG TEST] end task task_id=post map_index=2 [airflow.sdk.definitions.dag]
"""


def test_each_task_gets_its_own_lines_and_airflows_log_path():
    sections = task_sections(OUTPUT)
    assert list(sections) == [("extract", -1), ("post", 2)]
    assert sections[("extract", -1)][1] == "extracting" and "between tasks" not in "\n".join(sum(sections.values(), []))
    logs = Path("/logs")
    assert log_path(logs, "d", "manual__x", "extract", -1, 1) == logs / "dag_id=d/run_id=manual__x/task_id=extract/attempt=1.log"
    assert log_path(logs, "d", "r", "post", 2, 0) == logs / "dag_id=d/run_id=r/task_id=post/map_index=2/attempt=1.log"


def test_make_airflow_refuses_a_port_held_by_something_that_is_not_this_projects_sandbox(monkeypatch):
    import http.server
    import threading

    import pytest

    from backbone_devtools import __main__ as devtools

    class NotASandbox(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"hello": "world"}')

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotASandbox)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(devtools, "DEFAULT_SANDBOX_PORT", server.server_address[1])
        with pytest.raises(RuntimeError, match="not as this project's sandbox"):
            devtools._running_sandbox()
    finally:
        server.shutdown()
        server.server_close()  # else the port still accepts connections and the check below waits out its timeout
    assert devtools._running_sandbox() is False  # nothing there: start ours


def test_the_demo_flow_runner_runs_each_request_and_keeps_its_output_apart(tmp_path, capfd):
    """One process, many runs: each run's printing (Python's and the OS-level streams') lands in its
    own log, and the answer line says whether the run succeeded; an unknown flow is a failed run."""
    import io
    import json
    import os
    from types import SimpleNamespace

    from backbone_devtools.flowrunner import serve

    def run(logical_date):  # noqa: ANN001, ANN202 - a stand-in for DAG.test
        print(f"ran for {logical_date.isoformat()}")
        os.write(2, b"from the OS level\n")
        return SimpleNamespace(state="success" if logical_date.day == 1 else "failed")

    dagbag = SimpleNamespace(get_dag=lambda flow: SimpleNamespace(test=run) if flow == "known" else None)
    logs = [tmp_path / f"{n}.log" for n in range(3)]
    requests = io.StringIO(
        "".join(
            json.dumps({"flow": flow, "logical_date": day, "log": str(log)}) + "\n"
            for (flow, day), log in zip(
                [("known", "2026-11-01T00:00:00+00:00"), ("known", "2026-11-02T00:00:00+00:00"), ("unknown", "2026-11-03T00:00:00+00:00")],
                logs,
                strict=True,
            )
        )
    )
    replies = io.StringIO()
    assert serve(requests, replies, dagbag) == 0
    assert [json.loads(line)["ok"] for line in replies.getvalue().splitlines()] == [True, False, False]
    assert logs[0].read_text() == "ran for 2026-11-01T00:00:00+00:00\nfrom the OS level\n"
    assert "LookupError: no DAG 'unknown'" in logs[2].read_text()
    assert "ran for" not in capfd.readouterr().out


def test_the_demo_closes_the_month_before_while_the_last_months_closing_week_is_still_open():
    """On 2 December the week holding 30 November ends on Friday 4 December: month-end would wait
    for it, so a fresh demo is anchored just before 1 December and closes October."""
    from datetime import UTC, datetime

    from backbone_devtools.__main__ import demo_anchor

    assert demo_anchor(datetime(2026, 12, 2, 19, 45, tzinfo=UTC), "Europe/Amsterdam") == datetime(2026, 11, 30, 22, 30, tzinfo=UTC)
    assert demo_anchor(datetime(2026, 12, 5, 8, 10, tzinfo=UTC), "Europe/Amsterdam") == datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
    assert demo_anchor(datetime(2026, 11, 28, 5, 50, tzinfo=UTC), "Europe/Amsterdam") == datetime(2026, 11, 28, 5, 30, tzinfo=UTC)
