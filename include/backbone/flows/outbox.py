"""The versioned outbox the weekly exports share: one line per approved version of a PSA record.

``acct.time_export`` (time entries) and ``acct.expense_export`` (expenses) hold the same kind of
line: written before anything is posted and never rewritten, keyed by the record's id and
version, with an idempotency key derived from both. A new version of an exported record is an
``update`` line; a record the PSA withdrew after export gets a ``delete`` line, a copy of its latest
line with its quantities negated (so a run's totals net out), keyed by the withdrawal's version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from backbone.hooks.accounting import request_id_for

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine, Table

    from backbone.warehouse.ops import RunRef


def version_key(record_id: str, version: Any) -> str:
    """``<id>:v<version>``: the identity of what is exported exactly once."""
    return f"{record_id}:v{version}"


@dataclass(frozen=True)
class VersionedOutbox:
    table_name: str
    """A table of ``backbone.warehouse.tables`` in schema ``acct`` (a name from code, never from data)."""
    id_column: str
    version_column: str
    key_namespace: str
    """The first part of every line's idempotency key: it never changes, or every line would post again."""
    fields: tuple[str, ...]
    """The columns a line copies from the validated record."""
    date_column: str
    negated: tuple[str, ...]
    """The columns a reversal negates."""

    @property
    def table(self) -> Table:
        from backbone.warehouse import tables

        return getattr(tables, self.table_name)

    def exported_hashes(self, warehouse: Engine, keys: list[str]) -> dict[str, str]:
        """Content hashes of these versions already in the outbox (arrays, not a huge IN list)."""
        pairs = []
        for key in keys:
            record_id, _, version = key.rpartition(":v")
            if version.isdigit() and int(version) < 2**31:  # a larger version is no outbox line (an int column): the dictionary refuses it
                pairs.append((record_id, int(version)))
        if not pairs:
            return {}
        query = f"""
            SELECT t.{self.id_column}, t.{self.version_column}, t.content_hash FROM acct.{self.table_name} t
            JOIN unnest(%(ids)s::text[], %(versions)s::int[]) AS k({self.id_column}, {self.version_column})
            USING ({self.id_column}, {self.version_column})
        """
        with warehouse.connect() as connection:
            rows = connection.exec_driver_sql(query, {"ids": [p[0] for p in pairs], "versions": [p[1] for p in pairs]}).all()
        return {version_key(r[0], r[1]): r[2] for r in rows}

    def write_lines(self, connection: Connection, run: RunRef, lines: list[dict[str, Any]]) -> int:
        """Insert the lines not yet in the outbox; a line, once written, is never rewritten by a later run."""
        from backbone.warehouse.db import copy_upsert

        if not lines:
            return 0
        ids = sorted({line[self.id_column] for line in lines})
        earlier = set(
            connection.exec_driver_sql(
                f"SELECT {self.id_column}, {self.version_column} FROM acct.{self.table_name} WHERE {self.id_column} = ANY(%(ids)s)",
                {"ids": ids},
            ).all()
        )
        rows = []
        for line in lines:
            record_id, version = line[self.id_column], line[self.version_column]
            row = {f: line[f] for f in self.fields}
            row.update(
                {self.date_column: date.fromisoformat(line[self.date_column])},
                run_id=run.run_id,
                interval_end=run.interval_end,
                action="update" if any(e == record_id and v < version for e, v in earlier) else "create",
                request_id=request_id_for(self.key_namespace, record_id, str(version)),
            )
            rows.append(row)
        return copy_upsert(connection, self.table, rows, key=[self.id_column, self.version_column], insert_only=True)

    def write_reversals(self, connection: Connection, run: RunRef, withdrawals: list[dict[str, Any]]) -> int:
        """One ``delete`` line per withdrawn record whose latest line is older than the withdrawal.
        Records never exported, or already reversed, get none."""
        from sqlalchemy import select

        from backbone.warehouse.db import copy_upsert

        if not withdrawals:
            return 0
        table = self.table
        record_id, version = table.c[self.id_column], table.c[self.version_column]
        ids = sorted({str(w["id"]) for w in withdrawals})
        latest = {
            row._mapping[self.id_column]: dict(row._mapping)
            for row in connection.execute(select(table).where(record_id.in_(ids)).order_by(record_id, version.desc()).distinct(record_id))
        }
        rows = []
        for withdrawal in withdrawals:
            last = latest.get(str(withdrawal["id"]))
            if last is None or last["action"] == "delete" or last[self.version_column] >= int(withdrawal["version"]):
                continue
            row = {f: last[f] for f in self.fields}
            row.update(
                {self.version_column: int(withdrawal["version"]), **{c: -last[c] for c in self.negated}},
                content_hash=f"withdrawn in the PSA as v{withdrawal['version']}",
                run_id=run.run_id,
                interval_end=run.interval_end,
                action="delete",
                request_id=request_id_for(self.key_namespace, str(withdrawal["id"]), str(withdrawal["version"]), "delete"),
            )
            rows.append(row)
        return copy_upsert(connection, table, rows, key=[self.id_column, self.version_column], insert_only=True)
