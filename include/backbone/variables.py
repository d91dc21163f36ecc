"""Airflow Variables read and written the same way in a task and outside one.

Inside a task the Task SDK's ``Variable`` goes through the execution API. Outside one (the CLI
``backbone check``, the API server's Connection test) the SDK's ``Variable.get`` answers None for
every key instead of failing, so there the metadata DB is read and written directly.
"""

from __future__ import annotations


def in_task() -> bool:
    """Inside an Airflow task (the Task SDK's channel to the supervisor exists)?"""
    from airflow.sdk.execution_time import task_runner

    return getattr(task_runner, "SUPERVISOR_COMMS", None) is not None


def get_variable(key: str) -> str | None:
    if in_task():
        from airflow.sdk import Variable

        return Variable.get(key, default=None)
    from airflow.models import Variable as StoredVariable

    return StoredVariable.get(key, default_var=None)


def set_variable(key: str, value: str, *, description: str) -> None:
    if in_task():
        from airflow.sdk import Variable

        Variable.set(key, value, description=description)
        return
    from airflow.models import Variable as StoredVariable

    StoredVariable.set(key, value, description=description)
