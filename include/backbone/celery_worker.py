"""Celery configuration for Airflow's CeleryExecutor: Airflow's own, plus a worker that imports the
task runtime once instead of once per task.

Airflow 3's Celery worker runs each task in a process forked from its pool process, and that child
imports the Task SDK's task runner (``airflow.sdk.execution_time.supervisor._subprocess_main``)
and whatever the task needs (the flows, Great Expectations for a validation step) before it can
start. Nothing of that stays behind for the next task, so every task paid for it again: about
1.3 s of CPU for the task runner and 2.5 s for Great Expectations on this project's 2-core
machines. Imported here, in the worker's main process before Celery forks its pool, every task
process starts with them loaded (copy-on-write pages, shared by all pool processes).

Use it with ``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=backbone.celery_worker.CELERY_CONFIG`` (set
in ``docker-compose.yaml`` and by ``make celery-check``). Only a Celery worker preloads: the
scheduler and the API server read the same configuration without importing anything more.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import worker_init

log = logging.getLogger(__name__)

CELERY_CONFIG: dict[str, Any] = dict(DEFAULT_CELERY_CONFIG)
"""Airflow's default Celery configuration, unchanged."""

PRELOADED_MODULES = (
    "airflow.sdk.execution_time.task_runner",
    "backbone.flows.runtime",
    "backbone.validation",
    "great_expectations",
)
"""What nearly every task process of this project imports first: the Task SDK's task runner, the
flows' shared runtime, and the validation step with Great Expectations."""


@worker_init.connect
def preload_task_modules(**_: Any) -> None:
    """Import ``PRELOADED_MODULES`` in the worker before its pool forks; a module that fails to
    import is left to the task that needs it, which then fails with the real error."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # as backbone.validation sets it before importing GE
    started = time.monotonic()
    for name in PRELOADED_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the task importing it reports the failure where it matters
            log.warning("could not preload %s for the tasks of this worker", name, exc_info=True)
    log.info("preloaded %d task modules in %.1f s", len(PRELOADED_MODULES), time.monotonic() - started)
