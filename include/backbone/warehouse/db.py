"""Engines from Airflow Connections, migrations, and the upsert every load uses."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine, Table

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
WAREHOUSES = ("psa", "accounting")


def url_from_connection(conn_id: str) -> str:
    """A SQLAlchemy URL for an Airflow Connection of type ``postgres``."""
    from airflow.sdk import BaseHook
    from sqlalchemy.engine import URL

    conn = BaseHook.get_connection(conn_id)
    database = conn.schema or (conn.extra_dejson or {}).get("database")
    if not database:
        raise ValueError(f"Connection {conn_id!r} names no database: set its schema field to the database name")
    return URL.create(
        "postgresql+psycopg2",
        username=conn.login or None,
        password=conn.password or None,
        host=conn.host or "localhost",
        port=conn.port or 5432,
        database=database,
    ).render_as_string(hide_password=False)


@cache
def engine_for(conn_id: str) -> Engine:
    """One pooled engine per Connection per process."""
    from sqlalchemy import create_engine

    return create_engine(url_from_connection(conn_id), pool_pre_ping=True, future=True)


def migrate(url: str, warehouse: str) -> None:
    """Bring one warehouse to its newest schema (additive migrations only: nothing is dropped)."""
    from alembic import command
    from alembic.config import Config

    if warehouse not in WAREHOUSES:
        raise ValueError(f"unknown warehouse {warehouse!r}; expected one of {WAREHOUSES}")
    config = Config()
    config.set_main_option("path_separator", "os")
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("version_locations", str(MIGRATIONS_DIR / warehouse / "versions"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")
    log.info("%s warehouse migrated to head", warehouse)


def upsert(
    connection: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    key: Iterable[str],
    immutable: Iterable[str] = (),
    bookkeeping: Iterable[str] = ("last_run_id",),
) -> int:
    """Insert ``rows`` or update the existing row with the same key, only where a value changed.

    Columns in ``immutable`` are written on insert and never overwritten; ``bookkeeping`` columns
    (which run last changed the row) follow a change but are not one. Returns the number of
    rows inserted or changed (an unchanged row is not rewritten, so a rerun touches nothing).
    """
    from sqlalchemy import tuple_
    from sqlalchemy.dialects.postgresql import insert

    if not rows:
        return 0
    key_cols = list(key)
    skip = set(key_cols) | set(immutable)
    statement = insert(table).values(list(rows))
    update_cols = [c for c in rows[0] if c not in skip]
    if not update_cols:
        result = connection.execute(statement.on_conflict_do_nothing(index_elements=key_cols))
        return result.rowcount
    compared = [c for c in update_cols if c not in set(bookkeeping)] or update_cols
    changed = tuple_(*(table.c[c] for c in compared)).is_distinct_from(tuple_(*(statement.excluded[c] for c in compared)))
    statement = statement.on_conflict_do_update(
        index_elements=key_cols,
        set_={c: statement.excluded[c] for c in update_cols},
        where=changed,
    )
    return connection.execute(statement).rowcount
