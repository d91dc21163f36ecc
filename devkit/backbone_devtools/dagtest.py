"""``dag.test()`` without parsing and re-writing an unchanged DAG folder every run.

Airflow 3.3's ``DAG.test()`` parses the whole bundle that holds the DAG and runs
``sync_bag_to_db`` on it before every run, so that sibling DAGs exist in the metadata database
(apache/airflow#64884). For a process that runs many DAG runs from the same folder (the test
suite's workers, the demo's flow runner) that is the same dozen DAGs parsed, serialised, hashed,
compared and their DagModel rows refreshed again each time: about 0.45 s of CPU out of a weekly
run's 1.3 s.

:func:`skip_unchanged_bundle_syncs` changes two things, for ``DAG.test()``'s own calls only:

- the folder is parsed again only when a file in it or the process environment changed since the
  last parse (the same files under the same environment build the same DAGs: nothing in a DAG file
  reads the clock, the network or Airflow Variables at parse time);
- ``sync_bag_to_db`` returns early when the database already holds exactly this bag: every DAG's
  latest serialised hash equals the one the bag serialises to, from the same bundle, no other DAG
  of the bundle is active there, and the bag parsed without import errors.

Anything else (a first run, a changed DAG, an environment that builds a different DAG, a database
reset) parses and syncs as before. The DAG run itself is unchanged: it is still built from the DAG
object ``test()`` was called on and executed by Airflow's task runner.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_WRAPPED = "_backbone_skips_unchanged"
_HASHES = "_backbone_dag_hashes"

TASK_CONTEXT_VARIABLES = "AIRFLOW_CTX_"
"""Airflow's task runner exports the running task's context (``AIRFLOW_CTX_DAG_RUN_ID``, …) into the
environment and leaves it there: different after every run, and no input of a parse."""


def folder_state(folder: Path) -> tuple[object, ...]:
    """What a parse of ``folder`` depends on that can change while a process runs: its files
    (path, size, modification time) and the environment (but the running task's context)."""
    files = sorted(
        (str(path), stat.st_size, stat.st_mtime_ns)
        for path in folder.rglob("*")
        if "__pycache__" not in path.parts and path.is_file() and (stat := path.stat())
    )
    environment = sorted(item for item in os.environ.items() if not item[0].startswith(TASK_CONTEXT_VARIABLES))
    return tuple(files), tuple(environment)


def reuse_unchanged_bag(original: Any) -> Any:
    """A stand-in for ``BundleDagBag`` that gives ``DAG.test()``'s whole-folder parse (keyword
    arguments ``dag_folder``, ``bundle_path``, ``bundle_name`` and nothing else) the bag it parsed
    last while :func:`folder_state` is the same; every other call goes to ``original``."""
    last: dict[tuple[object, ...], Any] = {}

    def bundle_dag_bag(*args: Any, **kwargs: Any) -> Any:
        if args or kwargs.keys() != {"dag_folder", "bundle_path", "bundle_name"} or str(kwargs["dag_folder"]) != str(kwargs["bundle_path"]):
            return original(*args, **kwargs)
        key = (kwargs["bundle_name"], str(kwargs["dag_folder"]), folder_state(Path(kwargs["dag_folder"])))
        if key not in last:
            last.clear()
            last[key] = original(**kwargs)
        return last[key]

    bundle_dag_bag.__wrapped__ = original  # type: ignore[attr-defined]
    return bundle_dag_bag


def dag_hashes(dagbag: Any) -> dict[str, str]:
    """Each DAG's serialised hash (as ``SerializedDagModel`` stores it), kept on the bag."""
    from airflow.serialization.serialized_objects import LazyDeserializedDAG

    hashes = getattr(dagbag, _HASHES, None)
    if hashes is None or hashes.keys() != dagbag.dags.keys():
        hashes = {dag_id: LazyDeserializedDAG.from_dag(dag).hash for dag_id, dag in dagbag.dags.items()}
        setattr(dagbag, _HASHES, hashes)
    return hashes


def bag_is_stored(dagbag: Any, bundle_name: str, session: Any) -> bool:
    """Whether the metadata database already holds every DAG of ``dagbag`` as it serialises now,
    and nothing else active from ``bundle_name``."""
    from airflow.models.dag import DagModel
    from airflow.models.serialized_dag import SerializedDagModel
    from sqlalchemy import select

    if dagbag.import_errors or not dagbag.dags:
        return False
    stored = SerializedDagModel._prefetch_dag_write_metadata(dagbag.dags, session=session)
    hashes = dag_hashes(dagbag)
    for dag_id in dagbag.dags:
        held = stored.get(dag_id)
        if held is None or held.dag_version is None or held.dag_version.bundle_name != bundle_name:
            return False
        if held.dag_hash != hashes[dag_id]:
            return False
    active = session.scalars(select(DagModel.dag_id).where(DagModel.bundle_name == bundle_name, DagModel.is_stale.is_(False))).all()
    return set(active) == set(dagbag.dags)


def skip_unchanged_bundle_syncs() -> bool:
    """Make ``DAG.test()`` reuse its last parse of an unchanged folder and skip its bundle sync when
    the database already holds the bag (module docstring). Idempotent; returns ``False`` (and
    changes nothing) on an Airflow without the ``BundleDagBag`` and ``sync_bag_to_db`` this wraps."""
    from airflow.dag_processing import dagbag as dagbag_module
    from airflow.utils.session import create_session

    original = getattr(dagbag_module, "sync_bag_to_db", None)
    if original is None or not hasattr(dagbag_module, "BundleDagBag"):
        return False
    if getattr(original, _WRAPPED, False):
        return True
    dagbag_module.BundleDagBag = reuse_unchanged_bag(dagbag_module.BundleDagBag)

    def sync_bag_to_db(dagbag: Any, bundle_name: str, bundle_version: str | None, *args: Any, **kwargs: Any) -> None:
        if bundle_version is None and not args and kwargs.keys() <= {"session"}:
            with create_session() as session:
                if bag_is_stored(dagbag, bundle_name, session):
                    return
        original(dagbag, bundle_name, bundle_version, *args, **kwargs)

    setattr(sync_bag_to_db, _WRAPPED, True)
    dagbag_module.sync_bag_to_db = sync_bag_to_db
    return True
