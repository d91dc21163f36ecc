"""Run many ``dag.test()`` runs in one process, one at a time, on request: the demo's runner.

``airflow dags test`` starts a new Python each time: Airflow, the DAG files, Great Expectations and
the in-process execution API are imported and built again for every interval, seconds each. The
demo runs a dozen intervals, so it sends them here instead, over a pipe:

- the parent writes one line per run, ``{"flow": ..., "logical_date": ..., "log": <path>}``;
- this process runs it with ``dag.test()`` (what ``airflow dags test`` calls), everything it prints
  going to ``log`` (file descriptors 1 and 2 are pointed there for the run), and answers with one
  line, ``{"ok": true|false, "state": ...}``;
- an empty line or the end of input ends it.

``dag.test()`` writes the DAG folder to the metadata database before every run; here it does so only
when the folder's DAGs changed (:mod:`backbone_devtools.dagtest`).

Anything printed between runs (loading the DAGs) goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from datetime import datetime
from pathlib import Path
from typing import IO, Any

FD_STREAMS = {fd: os.fdopen(fd, "w", buffering=1, closefd=False) for fd in (1, 2)}
"""Text streams on file descriptors 1 and 2 that are never closed: whatever keeps a reference to
one (Airflow's logging captures ``sys.stdout`` when it is first configured, during a run) keeps
writing to where that descriptor points at the time."""


@contextmanager
def output_to(path: Path) -> Any:
    """Everything this process prints meanwhile goes to ``path``: file descriptors 1 and 2 point
    there, and ``sys.stdout`` / ``sys.stderr`` are streams on those descriptors."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("ab") as log, redirect_stdout(FD_STREAMS[1]), redirect_stderr(FD_STREAMS[2]):
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            for stream in FD_STREAMS.values():
                stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def serve(requests: IO[str], replies: IO[str], dagbag: Any = None) -> int:
    if dagbag is None:
        from backbone_devtools.dagtest import skip_unchanged_bundle_syncs

        skip_unchanged_bundle_syncs()  # each run re-syncs the DAG folder to the metadata DB only when it changed
        from airflow.dag_processing.dagbag import DagBag

        dagbag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    for line in requests:
        if not line.strip():
            break
        request = json.loads(line)
        state = "error"
        with output_to(Path(request["log"])):
            try:
                dag = dagbag.get_dag(request["flow"])
                if dag is None:
                    raise LookupError(f"no DAG {request['flow']!r}: {getattr(dagbag, 'import_errors', {})}")
                state = str(dag.test(logical_date=datetime.fromisoformat(request["logical_date"])).state)
            except Exception as exc:  # noqa: BLE001 - reported to the parent, which says the run failed
                print(f"{request['flow']} {request['logical_date']}: {type(exc).__name__}: {exc}", file=sys.stderr)
        replies.write(json.dumps({"ok": state == "success", "state": state}) + "\n")
        replies.flush()
    return 0


def main() -> int:
    replies = os.fdopen(os.dup(1), "w")  # the answers' own channel: nothing else may write to it
    os.dup2(2, 1)  # what is printed between runs (loading the DAGs) goes where stderr goes
    return serve(sys.stdin, replies)


if __name__ == "__main__":
    raise SystemExit(main())
