"""Deployment files stay valid: docker-compose (Celery, Redis, PostgreSQL), Astro config, Dockerfile."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_docker_compose_runs_airflow3_with_celery_redis_and_two_postgres():
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "warehouse", "redis", "airflow-apiserver", "airflow-scheduler", "airflow-worker", "airflow-dag-processor"} <= set(
        services
    )
    worker = services["airflow-worker"]
    assert worker["image"].startswith("${AIRFLOW_IMAGE_NAME:-apache/airflow:3.")
    assert worker["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert worker["environment"]["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    mounts = {v.split(":")[0] for v in worker["volumes"] if isinstance(v, str)}
    assert {"./dags", "./plugins", "./include"} <= mounts
    assert {"airflow-metadata", "warehouse-data"} <= set(compose["volumes"])


def test_astro_project_files():
    config = yaml.safe_load((ROOT / ".astro" / "config.yaml").read_text())
    assert config["project"]["name"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.splitlines()[1].startswith("FROM ") and "runtime:3." in dockerfile
    settings = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())
    conn_ids = {c["conn_id"] for c in settings["airflow"]["connections"]}
    assert {"hubspot_default", "psa_default", "psa_warehouse", "accounting_warehouse"} <= conn_ids


def test_requirements_are_pinned():
    lines = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert all("==" in line for line in lines)
    names = {line.split("==")[0].lower().replace("_", "-") for line in lines}
    assert {
        "apache-airflow",
        "apache-airflow-providers-http",
        "pandas",
        "great-expectations",
        "sqlalchemy",
        "psycopg2-binary",
        "pydantic-settings",
        "pytest",
    } <= names


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


def test_production_code_never_imports_the_devkit():
    """The sandbox and the demo tooling live in devkit/, outside what the image ships."""
    shipped = [*(ROOT / "include").rglob("*.py"), *(ROOT / "dags").glob("*.py"), *(ROOT / "plugins").glob("*.py")]
    offenders = [str(p.relative_to(ROOT)) for p in shipped if "backbone_sandbox" in p.read_text() or "backbone_devtools" in p.read_text()]
    assert shipped and not offenders


def test_the_image_build_context_leaves_dev_code_and_local_state_out():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert {".venv", ".test", ".demo", "devkit", "tests", "bench", ".git"} <= ignored
