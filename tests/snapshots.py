"""A world a fixture built once per worker, restored for each test that needs it.

Several end-to-end tests start from the same state that takes many DAG runs to build (month-end
tests: six weekly exports, two expense runs and the invoice run, 45-50 s). Building it once per
pytest worker and restoring it for every later test gives each test the state a fresh build gives:
both warehouses' tables and sequences, the sandbox's stores and counters, and the refresh tokens
the accounting hooks rotated into Airflow Variables (the sandbox's stores know exactly those).
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, fields
from typing import Any

from backbone.hooks.oauth import token_variable_names

ROTATED_TOKEN_VARIABLES = token_variable_names("quickbooks_default", "xero_default")
"""The tokens the OAuth hooks keep in Variables: they belong to the sandbox state they were issued by."""
SANDBOX_FIELDS_NOT_RESTORED = frozenset({"config", "faults", "limits"})
"""What a test's own sandbox keeps: its configuration, its (empty) fault board and its rate windows."""


@dataclass
class WarehouseSnapshot:
    tables: dict[str, bytes]
    """``schema.table`` → its rows in COPY's binary format."""
    sequences: dict[str, tuple[int, bool]]
    """``schema.sequence`` → (last value, whether it was used)."""

    @classmethod
    def take(cls, engine: Any) -> WarehouseSnapshot:
        with engine.connect() as connection:
            cursor = connection.connection.dbapi_connection.cursor()
            cursor.execute(
                "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables "
                "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') AND tablename <> 'alembic_version' ORDER BY 1"
            )
            tables = {}
            for (name,) in cursor.fetchall():
                buffer = io.BytesIO()
                cursor.copy_expert(f"COPY {name} TO STDOUT (FORMAT binary)", buffer)
                tables[name] = buffer.getvalue()
            cursor.execute("SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename) FROM pg_sequences ORDER BY 1")
            sequences = {}
            for (name,) in cursor.fetchall():
                cursor.execute(f"SELECT last_value, is_called FROM {name}")
                sequences[name] = cursor.fetchone()
        return cls(tables, sequences)

    def restore(self, engine: Any) -> None:
        """Every table back to its rows at the snapshot, in one transaction; foreign keys and
        triggers are not fired while rows go back (``session_replication_role = replica``)."""
        with engine.begin() as connection:
            cursor = connection.connection.dbapi_connection.cursor()
            cursor.execute("SET LOCAL session_replication_role = replica")
            cursor.execute(f"TRUNCATE {', '.join(self.tables)}")
            for name, rows in self.tables.items():
                cursor.copy_expert(f"COPY {name} FROM STDIN (FORMAT binary)", io.BytesIO(rows))
            for name, (last_value, is_called) in self.sequences.items():
                cursor.execute("SELECT setval(%s, %s, %s)", (name, last_value, is_called))


@dataclass
class WorldSnapshot:
    warehouses: list[WarehouseSnapshot]
    sandbox_config: Any
    sandbox_stores: bytes
    variables: dict[str, str | None]

    @classmethod
    def take(cls, sandbox_state: Any, engines: list[Any]) -> WorldSnapshot:
        from airflow.models import Variable

        stores = {f.name: getattr(sandbox_state, f.name) for f in fields(sandbox_state) if f.name not in SANDBOX_FIELDS_NOT_RESTORED}
        return cls(
            warehouses=[WarehouseSnapshot.take(engine) for engine in engines],
            sandbox_config=sandbox_state.config,
            sandbox_stores=pickle.dumps(stores),
            variables={key: Variable.get(key, default_var=None) for key in ROTATED_TOKEN_VARIABLES},
        )

    def restore(self, sandbox_state: Any, engines: list[Any]) -> None:
        """Onto a running sandbox. Its apps hold their stores from when they were built, so each
        store is refilled in place (same object, the snapshot's contents), never replaced."""
        from airflow.models import Variable

        if sandbox_state.config != self.sandbox_config:
            raise ValueError(f"a world built on a sandbox configured {self.sandbox_config} cannot be restored onto {sandbox_state.config}")
        for snapshot, engine in zip(self.warehouses, engines, strict=True):
            snapshot.restore(engine)
        for name, value in pickle.loads(self.sandbox_stores).items():
            current = getattr(sandbox_state, name)
            if isinstance(current, dict):
                current.clear()
                current.update(value)
            elif hasattr(current, "__dict__") and type(current) is type(value):
                current.__dict__.clear()
                current.__dict__.update(value.__dict__)
            else:
                setattr(sandbox_state, name, value)
        for key, value in self.variables.items():
            if value is None:
                Variable.delete(key)
            else:
                Variable.set(key, value)
