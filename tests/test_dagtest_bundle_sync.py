"""``dag.test()`` re-writes the DAG folder to Airflow's metadata DB only when the folder changed
(``backbone_devtools.dagtest``, installed for the whole suite and the demo's flow runner)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.db
DAGS = Path(__file__).resolve().parents[1] / "dags"


def folder_bag(folder: Path = DAGS):  # noqa: ANN201 - Airflow's BundleDagBag
    """A fresh parse of ``folder`` (Airflow's own class, not the reusing stand-in dag.test() calls)."""
    from airflow.dag_processing import dagbag as dagbag_module

    parse = getattr(dagbag_module.BundleDagBag, "__wrapped__", dagbag_module.BundleDagBag)
    return parse(dag_folder=str(folder), bundle_path=str(folder), bundle_name="dags-folder")


def stored(bag) -> bool:  # noqa: ANN001
    from airflow.utils.session import create_session

    from backbone_devtools.dagtest import bag_is_stored

    with create_session() as session:
        return bag_is_stored(bag, "dags-folder", session)


@pytest.fixture
def folder_synced() -> None:
    """The folder's bundle and DAGs in the metadata DB, as ``dag.test()`` leaves them."""
    from airflow.dag_processing import dagbag as dagbag_module
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.utils.session import create_session

    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
    dagbag_module.sync_bag_to_db(folder_bag(), "dags-folder", None)


def test_an_unchanged_folder_is_not_synced_again_and_a_changed_dag_is(folder_synced, monkeypatch):
    from airflow.dag_processing import collection
    from airflow.dag_processing import dagbag as dagbag_module

    from backbone_devtools.dagtest import skip_unchanged_bundle_syncs

    assert skip_unchanged_bundle_syncs() is True  # conftest installed it: installing again changes nothing
    writes: list[list[str]] = []
    write = collection.update_dag_parsing_results_in_db

    def counted(bundle_name, bundle_version, dags, *args, **kwargs):  # noqa: ANN001, ANN202
        writes.append(sorted(dag.dag_id for dag in dags))
        return write(bundle_name, bundle_version, dags, *args, **kwargs)

    monkeypatch.setattr(collection, "update_dag_parsing_results_in_db", counted)
    monkeypatch.setenv("AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL", "0")  # Airflow's own 30 s pause between writes of a DAG

    assert stored(folder_bag())
    dagbag_module.sync_bag_to_db(folder_bag(), "dags-folder", None)
    assert writes == []  # the same DAGs: nothing written

    changed = folder_bag()
    dag = changed.dags["timesheets_weekly_to_accounting"]
    dag.doc_md = f"{dag.doc_md}\n\nchanged by a test"
    assert not stored(changed)
    dagbag_module.sync_bag_to_db(changed, "dags-folder", None)
    assert writes == [sorted(changed.dags)]  # the whole bag, as Airflow syncs it
    assert stored(changed) and not stored(folder_bag())

    dagbag_module.sync_bag_to_db(folder_bag(), "dags-folder", None)  # back to the folder as it is
    assert len(writes) == 2 and stored(folder_bag())


def test_a_bag_with_fewer_dags_or_an_import_error_is_never_taken_as_stored(folder_synced):
    bag = folder_bag()
    assert stored(bag)
    fewer = folder_bag()
    fewer.dags.pop("timesheets_weekly_to_accounting")
    assert not stored(fewer)  # the sync would mark the missing DAG stale

    broken = folder_bag()
    broken.import_errors["broken.py"] = "SyntaxError"
    assert not stored(broken)


def test_dag_test_gets_the_last_parse_until_a_file_or_the_environment_changes(tmp_path, monkeypatch):
    from airflow.dag_processing import dagbag as dagbag_module

    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "one.py").write_text(
        "import os\nfrom airflow.sdk import dag\n\n"
        "@dag(dag_id=os.environ.get('ONE_DAG_ID', 'one'), schedule=None)\ndef one():\n    pass\n\none()\n"
    )
    as_dag_test = dict(dag_folder=str(folder), bundle_path=str(folder), bundle_name="elsewhere")
    first = dagbag_module.BundleDagBag(**as_dag_test)
    assert list(first.dags) == ["one"]
    assert dagbag_module.BundleDagBag(**as_dag_test) is first  # nothing changed: the same parse
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "manual__a-run-that-just-ended")
    assert dagbag_module.BundleDagBag(**as_dag_test) is first  # what a task run leaves in the environment is no input

    monkeypatch.setenv("ONE_DAG_ID", "renamed")
    renamed = dagbag_module.BundleDagBag(**as_dag_test)
    assert list(renamed.dags) == ["renamed"]  # the environment builds another DAG: parsed again

    (folder / "two.py").write_text("from airflow.sdk import dag\n\n@dag(dag_id='two', schedule=None)\ndef two():\n    pass\n\ntwo()\n")
    assert sorted(dagbag_module.BundleDagBag(**as_dag_test).dags) == ["renamed", "two"]  # a new file: parsed again
    other_call = dagbag_module.BundleDagBag(dag_folder=str(folder / "two.py"), bundle_path=str(folder), bundle_name="elsewhere")
    assert list(other_call.dags) == ["two"]  # any other call (a task runner's one-file parse) is Airflow's own
