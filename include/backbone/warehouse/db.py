"""Engines from Airflow Connections, migrations, and the upsert every load uses."""

from __future__ import annotations

import json
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


LIBPQ_EXTRAS = frozenset(
    {
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslcrl",
        "connect_timeout",
        "application_name",
        "options",
        "keepalives",
        "keepalives_idle",
        "target_session_attrs",
        "gssencmode",
    }
)
"""Connection extras handed to libpq as they are (the ones ``PostgresHook.get_conn`` passes too)."""


def url_from_connection(conn_id: str) -> str:
    """A SQLAlchemy URL for an Airflow Connection of type ``postgres``, built by the Postgres provider
    (``PostgresHook.sqlalchemy_url``: its ``sqlalchemy_query`` and IAM extras included)."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    hook = PostgresHook(postgres_conn_id=conn_id)
    url = hook.sqlalchemy_url
    if not url.database:
        database = (hook.connection.extra_dejson or {}).get("database")
        if not database:
            raise ValueError(f"Connection {conn_id!r} names no database: set its schema field to the database name")
        url = url.set(database=database)
    return url.set(drivername="postgresql+psycopg2", host=url.host or "localhost", port=url.port or 5432).render_as_string(
        hide_password=False
    )


def connect_args(conn_id: str) -> dict[str, Any]:
    """libpq options from the Connection's extras (``sslmode``, ``sslrootcert``, ``connect_timeout``, ...)."""
    from airflow.sdk import BaseHook

    extras = BaseHook.get_connection(conn_id).extra_dejson or {}
    return {k: v for k, v in extras.items() if k in LIBPQ_EXTRAS}


@cache
def engine_for(conn_id: str) -> Engine:
    """One pooled engine per Connection per process."""
    from sqlalchemy import create_engine

    return create_engine(
        url_from_connection(conn_id),
        connect_args=connect_args(conn_id),
        pool_pre_ping=True,
        future=True,
        json_deserializer=json_from_database,
    )


def json_from_database(text: str | bytes) -> Any:
    """A ``json``/``jsonb`` value as ``json.loads`` reads it, decoded by msgspec (Airflow's own
    dependency): staged payloads are read by every validating stage, and ``json.loads`` was a tenth
    of the timesheet validation. A number beyond a float's range (``jsonb`` keeps any numeric) is the
    one thing msgspec refuses; ``json.loads`` reads it as infinity, and the dictionary judges it."""
    import msgspec

    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return json.loads(text)


def json_for_database(value: Any) -> str:
    """Text for a ``jsonb`` parameter, encoded by msgspec. For plain JSON values (text, numbers,
    booleans, None, lists, dicts: what validated rows hold) it is the document ``json.dumps`` writes,
    without the spaces ``jsonb`` drops anyway. Unlike ``json.dumps`` it also writes a ``Decimal`` or a
    datetime as text and a float NaN as null, so callers pass plain values only."""
    import msgspec

    return msgspec.json.encode(value).decode()


def alembic_config(url: str, warehouse: str) -> Any:
    """Alembic's configuration for one warehouse (its own version chain, shared env.py)."""
    from alembic.config import Config

    if warehouse not in WAREHOUSES:
        raise ValueError(f"unknown warehouse {warehouse!r}; expected one of {WAREHOUSES}")
    config = Config()
    config.set_main_option("path_separator", "os")
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("version_locations", str(MIGRATIONS_DIR / warehouse / "versions"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.set_main_option("warehouse", warehouse)
    return config


def migrate(url: str, warehouse: str) -> None:
    """Bring one warehouse to its newest schema (additive migrations only: nothing is dropped)."""
    from alembic import command

    command.upgrade(alembic_config(url, warehouse), "head")
    log.info("%s warehouse migrated to head", warehouse)


def ensure_database(url: str) -> bool:
    """Create the database ``url`` names when it does not exist yet (connecting to the server's
    ``postgres`` database as the same owner); True when it was created."""
    import psycopg2
    from psycopg2 import sql
    from sqlalchemy.engine import make_url

    target = make_url(url)
    server = target.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    connection = psycopg2.connect(server)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target.database,))
            if cursor.fetchone() is not None:
                return False
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(str(target.database))))
            return True
    finally:
        connection.close()


def ensure_login(admin_url: str, login: str, password: str, member_of: str) -> None:
    """A login role that is a member of ``member_of`` (a role the migrations create); its password
    is set to ``password`` every time, so rotating it in the Connection and rerunning is enough."""
    import psycopg2
    from psycopg2 import sql

    with psycopg2.connect(admin_url.replace("postgresql+psycopg2://", "postgresql://", 1)) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,))
            verb = "ALTER" if cursor.fetchone() else "CREATE"
            cursor.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(login)), (password,))
            cursor.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(member_of), sql.Identifier(login)))


def check_schema(url: str, warehouse: str) -> None:
    """``alembic check``: raise when the migrated warehouse and ``tables.py`` disagree (a table, a
    column, a type or an index the code declares that the migrations do not make, or the reverse)."""
    from alembic import command

    command.check(alembic_config(url, warehouse))


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


def copy_upsert(
    connection: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    key: Iterable[str],
    bookkeeping: Iterable[str] = ("last_run_id",),
    insert_only: bool = False,
    newer_column: str | None = None,
) -> int:
    """:func:`upsert` for volume: rows go in through ``COPY`` into a temporary table, then one
    ``INSERT … SELECT … ON CONFLICT DO UPDATE`` rewrites only rows whose values changed.

    When no row's key is in the table yet (a new week's entries, a first load), every variant
    comes down to inserting them all, and the rows are copied straight into the table instead:
    one index probe per key to find that out, then PostgreSQL's bulk insert. That path runs in a
    savepoint, so a key another writer added in between (or one the batch holds twice) sends the
    batch down the upsert path as before, with nothing of the attempt left.

    ``insert_only`` keeps existing rows as they are (an outbox line is never rewritten);
    ``newer_column`` lets a row replace another only when its value there is not smaller (an
    older version never overwrites a newer one). Identifiers come from the table definition,
    never from data; values travel as COPY text. Must run inside a transaction.
    """
    if not rows:
        return 0
    columns = list(rows[0])
    key_cols = list(key)
    for name in [*columns, *key_cols, *([newer_column] if newer_column else [])]:
        table.c[name]  # noqa: B018 - raises KeyError for a column the table does not have
    statements = _copy_upsert_sql(table, columns, key_cols, set(bookkeeping), insert_only=insert_only, newer_column=newer_column)
    raw = connection.connection.driver_connection
    with raw.cursor() as cursor:
        cursor.execute(statements["any_key_present"], [[row[k] for row in rows] for k in key_cols])
        if not cursor.fetchone()[0] and _copied_into_table(cursor, statements["copy_into_table"].as_string(raw), rows, columns):
            return len(rows)
        cursor.execute(statements["create"])
        cursor.execute("TRUNCATE _copy_upsert")
        cursor.copy_expert(statements["copy"].as_string(raw), CopyTextStream(rows, columns))
        cursor.execute(statements["upsert"])
        count = cursor.rowcount
        cursor.execute("DROP TABLE _copy_upsert")
    return count


def _copied_into_table(cursor: Any, copy_sql: str, rows: Sequence[dict[str, Any]], columns: list[str]) -> bool:
    """COPY ``rows`` straight into their table, in a savepoint; False (and nothing written) when a
    key turned out to be there already."""
    from psycopg2 import errors

    cursor.execute("SAVEPOINT copy_upsert_new_rows")
    try:
        cursor.copy_expert(copy_sql, CopyTextStream(rows, columns))
    except errors.UniqueViolation:
        cursor.execute("ROLLBACK TO SAVEPOINT copy_upsert_new_rows")
        return False
    cursor.execute("RELEASE SAVEPOINT copy_upsert_new_rows")
    return True


def _copy_upsert_sql(
    table: Table, columns: list[str], key_cols: list[str], bookkeeping: set[str], *, insert_only: bool, newer_column: str | None
) -> dict[str, Any]:
    """The statements of :func:`copy_upsert`, composed with ``psycopg2.sql`` (identifiers quoted by the driver)."""
    from psycopg2 import sql

    qualified = sql.Identifier(table.schema, table.name) if table.schema else sql.Identifier(table.name)
    column_list = sql.SQL(", ").join(map(sql.Identifier, columns))
    updates = [c for c in columns if c not in key_cols]
    compared = [c for c in updates if c not in bookkeeping] or updates
    changed = (
        sql.SQL(" OR ").join(sql.SQL("t.{0} IS DISTINCT FROM excluded.{0}").format(sql.Identifier(c)) for c in compared)
        if compared
        else sql.SQL("false")
    )
    condition = sql.SQL("({})").format(changed)
    if newer_column:
        condition = sql.SQL("{} AND excluded.{} >= t.{}").format(condition, sql.Identifier(newer_column), sql.Identifier(newer_column))
    if updates and not insert_only:
        assignments = sql.SQL(", ").join(sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in updates)
        conflict = sql.SQL("DO UPDATE SET {} WHERE {}").format(assignments, condition)
    else:
        conflict = sql.SQL("DO NOTHING")
    from sqlalchemy.dialects import postgresql

    keys = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in key_cols)
    # Each key list typed as its column (a version sent as text still compares as a number); the
    # type names come from the table definition, as the identifiers do.
    key_types = [table.c[c].type.compile(dialect=postgresql.dialect()) for c in key_cols]
    key_arrays = sql.SQL(", ").join(sql.SQL("{}::{}[]").format(sql.Placeholder(), sql.SQL(t)) for t in key_types)
    return {
        "any_key_present": sql.SQL("SELECT EXISTS (SELECT 1 FROM {} AS t WHERE ({}) IN (SELECT * FROM unnest({})))").format(
            qualified, keys, key_arrays
        ),
        "copy_into_table": sql.SQL("COPY {} ({}) FROM STDIN").format(qualified, column_list),
        "create": sql.SQL("CREATE TEMP TABLE IF NOT EXISTS _copy_upsert (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(qualified),
        "copy": sql.SQL("COPY _copy_upsert ({}) FROM STDIN").format(column_list),
        "upsert": sql.SQL("INSERT INTO {} AS t ({}) SELECT {} FROM _copy_upsert ON CONFLICT ({}) {}").format(
            qualified, column_list, column_list, sql.SQL(", ").join(map(sql.Identifier, key_cols)), conflict
        ),
    }


COPY_ROWS_PER_READ = 500
"""Rows of COPY text built per read of a :class:`CopyTextStream`."""


class CopyTextStream:
    """``rows`` as COPY text (:func:`copy_text_rows`) for ``cursor.copy_expert``, built a part at a
    time as the driver reads it. The driver sends each part before it asks for the next, so
    PostgreSQL parses one part while this process builds the next; text built whole first made the
    two take turns."""

    def __init__(self, rows: Sequence[dict[str, Any]], columns: list[str], rows_per_read: int = COPY_ROWS_PER_READ):
        self._rows = rows
        self._columns = columns
        self._rows_per_read = rows_per_read
        self._offset = 0

    def read(self, size: int = -1) -> str:  # noqa: ARG002 - the driver's read size; a part is whole rows
        if self._offset >= len(self._rows):
            return ""
        part = self._rows[self._offset : self._offset + self._rows_per_read]
        self._offset += self._rows_per_read
        return copy_text_rows(part, self._columns)


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text_rows(rows: Sequence[dict[str, Any]], columns: list[str]) -> str:
    """``rows`` as the body of a ``COPY … FROM STDIN`` in PostgreSQL's text format: tab-separated,
    ``\\N`` for NULL, and a backslash, tab, newline or carriage return inside a value escaped, so
    no text (not even a literal ``\\N`` or an empty string) can read as NULL or split a row.

    Most lines need no escaping: a line is built plainly and escaped value by value only when it
    holds one of those four characters (a third less time than quoting every value as CSV)."""
    from operator import itemgetter

    pick = itemgetter(*columns) if len(columns) > 1 else (lambda row: (row[columns[0]],))
    separators = len(columns) - 1
    lines = []
    for row in rows:
        values = pick(row)
        texts = ["\\N" if v is None else v if type(v) is str else _copy_text(v) for v in values]
        line = "\t".join(texts)
        if line.count("\t") != separators or line.count("\\") != values.count(None) or "\n" in line or "\r" in line:
            line = "\t".join("\\N" if v is None else t.translate(_COPY_ESCAPES) for t, v in zip(texts, values, strict=True))
        lines.append(line)
    lines.append("")
    return "\n".join(lines)


def _copy_text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value)
    return str(value)
