"""``make celery-check`` — every flow on Airflow's CeleryExecutor with two workers, on this machine.

Starts, on free loopback ports and in a directory of its own: an embedded PostgreSQL (Airflow's
metadata, Celery's results and both warehouses), Redis (Debian's ``redis-server``) as the broker,
the vendor sandbox, and Airflow's API server, scheduler, dag-processor and two Celery workers
(``worker-1``, ``worker-2``, told apart by the host name each records on its task instances).
Then, through Airflow's REST API with a real login: each flow is triggered for the sandbox's
seeded interval and must succeed; the tasks must have run on both workers; and one more weekly
export is triggered, the worker running its posting task is killed with SIGKILL mid-run, and the
run must still succeed — the task retried on the other worker — with every time entry in
accounting exactly once. Everything it started, it stops. Prints what it saw; exit code 0 when
all of it held.

The scheduler creates no scheduled runs here (``use_job_schedule = False``): only the runs the
check triggers exist, so what it reads is what it asked for.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from backbone_devtools import pg
from backbone_devtools.localenv import FLOWS, PROJECT_ROOT, WAREHOUSE_DATABASES, airflow_environment

WORKERS = ("worker-1", "worker-2")
POSTING_TASK = "post_time_activities"
TIMEOUT = 900


def worker_hostname() -> str:
    """``[core] hostname_callable`` of the check's workers: the name each worker was started with."""
    return os.environ.get("BACKBONE_WORKER_NAME") or socket.getfqdn()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def say(message: str) -> None:
    print(f"[celery-check {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Api:
    """Airflow's REST API with a token from the simple auth manager's login."""

    url: str
    token: str = ""

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {self.token}"} if self.token else {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    def login(self, username: str, password: str) -> None:
        status, body = self.call("POST", "/auth/token", {"username": username, "password": password})
        if status not in (200, 201):
            raise RuntimeError(f"login to the API server failed: {status} {body}")
        self.token = body["access_token"]


@dataclass
class Processes:
    """Long-running children, each in its own session (so a kill takes its task subprocesses too)."""

    directory: Path
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.directory / f"{name}.log").open("ab")
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.directory)
        self.running[name] = process
        return process

    def kill(self, name: str) -> None:
        process = self.running.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop_all(self) -> None:
        for process in reversed(list(self.running.values())):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in self.running.values():
            try:
                process.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        self.running.clear()

    def tail(self, name: str, characters: int = 3000) -> str:
        path = self.directory / f"{name}.log"
        return path.read_text(errors="replace")[-characters:] if path.exists() else ""


def wait_for(what: str, check: Callable[[], Any], *, timeout: float = TIMEOUT, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except (OSError, ValueError, KeyError):  # not up yet, or answering half-started
            result = None
        if result:
            return result
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def check_environment(directory: Path, ports: dict[str, int]) -> dict[str, str]:
    passwords = directory / "passwords.json"
    passwords.write_text(json.dumps({"admin": "celery-check-admin"}))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "BACKBONE"))},
        **airflow_environment(
            airflow_home=directory / "airflow", pg_port=ports["postgres"], sandbox_url=f"http://127.0.0.1:{ports['sandbox']}"
        ),
        "AIRFLOW__CORE__EXECUTOR": "airflow.providers.celery.executors.celery_executor.CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{ports['redis']}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://postgres@127.0.0.1:{ports['postgres']}/airflow",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{ports['api']}/execution/",
        "AIRFLOW__API__PORT": str(ports["api"]),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{ports['api']}",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "backbone_devtools.celery_check.worker_hostname",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "backbone.celery_worker.CELERY_CONFIG",  # as docker-compose.yaml sets it
        "BACKBONE_RETRY_DELAY_SECONDS": "5",
        "BACKBONE_MONTH_END_WAITS_FOR_TIME_EXPORT": "false",  # the wait itself is an end-to-end test of its own
    }
    return env


def start_services(processes: Processes, directory: Path, ports: dict[str, int], env: dict[str, str]) -> None:
    say(f"PostgreSQL on 127.0.0.1:{ports['postgres']}")
    pg.start(directory / "pgdata", ports["postgres"])
    admin = f"postgresql://postgres@127.0.0.1:{ports['postgres']}/postgres"
    pg.ensure_databases(admin, [*WAREHOUSE_DATABASES.values(), "airflow"])
    from backbone.warehouse.db import migrate

    for database in WAREHOUSE_DATABASES.values():
        migrate(f"postgresql+psycopg2://postgres@127.0.0.1:{ports['postgres']}/{database}", database.removesuffix("_warehouse"))
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL, cwd=directory)
    say(f"Redis on 127.0.0.1:{ports['redis']}")
    redis = shutil.which("redis-server")
    if redis is None:
        raise RuntimeError("redis-server is not installed: `make redis` installs Debian's package")
    processes.start("redis", [redis, "--port", str(ports["redis"]), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], env)
    say(f"vendor sandbox on 127.0.0.1:{ports['sandbox']}")
    processes.start("sandbox", [sys.executable, "-m", "backbone_sandbox", "--port", str(ports["sandbox"])], env)
    airflow = [sys.executable, "-m", "airflow"]
    processes.start("api-server", [*airflow, "api-server", "--port", str(ports["api"]), "--host", "127.0.0.1"], env)
    processes.start("dag-processor", [*airflow, "dag-processor"], env)
    processes.start("scheduler", [*airflow, "scheduler"], env)
    for name in WORKERS:
        worker_env = {**env, "BACKBONE_WORKER_NAME": name, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(ports[name])}
        processes.start(name, [*airflow, "celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", "2"], worker_env)
    say(f"Airflow: API server on 127.0.0.1:{ports['api']}, scheduler, dag-processor, Celery workers {', '.join(WORKERS)}")


def sandbox_info(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sandbox/info", timeout=5) as answer:
        return json.load(answer)


def interval_of(flow: str, logical_date: str, timezone: str) -> tuple[str, str]:
    """The data interval ``airflow dags test`` gives a run at ``logical_date`` (what the demo runs)."""
    import pendulum
    from airflow.timetables.interval import CronDataIntervalTimetable

    from backbone.schedules import FLOW_SCHEDULES

    moment = pendulum.instance(datetime.fromisoformat(logical_date.replace("Z", "+00:00")))
    interval = CronDataIntervalTimetable(FLOW_SCHEDULES[flow], timezone=timezone).infer_manual_data_interval(run_after=moment)
    return interval.start.isoformat(), interval.end.isoformat()


def trigger(api: Api, flow: str, logical_date: str, run_id: str, timezone: str) -> str:
    start, end = interval_of(flow, logical_date, timezone)
    body = {"dag_run_id": run_id, "logical_date": logical_date, "data_interval_start": start, "data_interval_end": end}
    status, answer = api.call("POST", f"/api/v2/dags/{flow}/dagRuns", body)
    if status not in (200, 201):
        raise RuntimeError(f"could not trigger {flow}: {status} {answer}")
    return run_id


def run_state(api: Api, flow: str, run_id: str) -> str:
    status, answer = api.call("GET", f"/api/v2/dags/{flow}/dagRuns/{run_id}")
    return answer["state"] if status == 200 else "unknown"


def task_instances(api: Api, flow: str, run_id: str) -> list[dict[str, Any]]:
    status, answer = api.call("GET", f"/api/v2/dags/{flow}/dagRuns/{run_id}/taskInstances")
    return answer.get("task_instances", []) if status == 200 else []


def wait_for_run(api: Api, flow: str, run_id: str) -> str:
    state = wait_for(f"{flow} {run_id}", lambda: (s := run_state(api, flow, run_id)) in ("success", "failed") and s, every=2)
    say(f"{flow} {run_id}: {state}")
    return state


def run_every_flow(api: Api, info: dict[str, Any], timezone: str) -> tuple[dict[str, str], set[str]]:
    """Each flow triggered for the sandbox's seeded interval, one after the other (as the demo runs them)."""
    states: dict[str, str] = {}
    hosts: set[str] = set()
    for flow in FLOWS:
        logical_date = info["time_week_ends"][-1] if flow == "timesheets_weekly_to_accounting" else info["anchor"]
        run_id = trigger(api, flow, logical_date, f"celery_check__{flow}", timezone)
        states[flow] = wait_for_run(api, flow, run_id)
        hosts |= {ti["hostname"] for ti in task_instances(api, flow, run_id) if ti.get("hostname")}
    return states, hosts


def kill_a_worker_mid_post(api: Api, processes: Processes, info: dict[str, Any], timezone: str) -> dict[str, Any]:
    """The weekly export of the week before, whose posting task loses its worker to SIGKILL."""
    flow = "timesheets_weekly_to_accounting"
    run_id = trigger(api, flow, info["time_week_ends"][-2], "celery_check__worker_killed", timezone)

    def posting() -> dict[str, Any] | None:
        running = [ti for ti in task_instances(api, flow, run_id) if ti["task_id"] == POSTING_TASK and ti["state"] == "running"]
        return running[0] if running and running[0].get("hostname") in WORKERS else None

    victim = wait_for(f"{POSTING_TASK} to run", posting, every=0.3)["hostname"]
    processes.kill(victim)
    say(f"killed {victim} (SIGKILL) while it ran {POSTING_TASK}")
    state = wait_for_run(api, flow, run_id)
    final = next(ti for ti in task_instances(api, flow, run_id) if ti["task_id"] == POSTING_TASK)
    return {"state": state, "victim": victim, "retried_on": final.get("hostname"), "tries": final.get("try_number")}


def time_entries_once(ports: dict[str, int]) -> tuple[int, int]:
    """(time records the outbox posted, TimeActivity records accounting created): equal when nothing went twice."""
    import psycopg2

    url = f"postgresql://postgres@127.0.0.1:{ports['postgres']}/accounting_warehouse"
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(DISTINCT accounting_id) FROM acct.time_export WHERE posting_status = 'posted' AND action <> 'delete'")
        posted = int(cursor.fetchone()[0])
    held = int(sandbox_info(ports["sandbox"])["qbo_creates"].get("TimeActivity", 0))
    return posted, held


def main() -> int:
    directory = PROJECT_ROOT / ".celery-check"
    if (directory / "pgdata").exists():  # a check that was killed left its PostgreSQL behind
        with suppress(Exception):
            pg.stop(directory / "pgdata")
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped from outside: still stop all it started
    ports = {name: free_port() for name in ("postgres", "redis", "sandbox", "api", *WORKERS)}
    env = check_environment(directory, ports)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("AIRFLOW_CONN_", "BACKBONE_"))})
    processes = Processes(directory)
    began = time.monotonic()
    with ExitStack() as cleanup:
        cleanup.callback(lambda: pg.stop(directory / "pgdata"))
        cleanup.callback(processes.stop_all)
        try:
            start_services(processes, directory, ports, env)
            api = Api(f"http://127.0.0.1:{ports['api']}")
            wait_for("the API server", lambda: api.call("GET", "/api/v2/version")[0] in (200, 401, 403), timeout=180)
            api.login("admin", "celery-check-admin")
            for flow in FLOWS:
                wait_for(f"{flow} parsed", lambda flow=flow: api.call("GET", f"/api/v2/dags/{flow}")[0] == 200, timeout=300, every=2)
            info = wait_for("the sandbox", lambda: sandbox_info(ports["sandbox"]), timeout=60)
            states, hosts = run_every_flow(api, info, "Europe/Amsterdam")
            killed = kill_a_worker_mid_post(api, processes, info, "Europe/Amsterdam")
            posted, held = time_entries_once(ports)
        except Exception:
            for name in ("scheduler", *WORKERS, "api-server"):
                print(f"--- {name} log (tail) ---\n{processes.tail(name)}", file=sys.stderr)
            raise
    elapsed = time.monotonic() - began
    ok = (
        all(state == "success" for state in states.values())
        and hosts == set(WORKERS)
        and killed["state"] == "success"
        and killed["retried_on"] != killed["victim"]
        and posted == held
    )
    print(f"flows: {', '.join(f'{flow} {state}' for flow, state in states.items())}")
    print(f"tasks ran on: {', '.join(sorted(hosts))}")
    print(
        f"worker killed mid-run: {killed['victim']} running {POSTING_TASK}; the run ended {killed['state']}, "
        f"the task retried on {killed['retried_on']} (try {killed['tries']})"
    )
    print(f"time entries: {posted} posted, {held} in accounting (each once: {posted == held})")
    print(f"celery-check {'passed' if ok else 'FAILED'} in {elapsed:.0f} s")
    if ok:
        shutil.rmtree(directory, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
