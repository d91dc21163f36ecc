"""Flow locks as rows, added to every warehouse's ops tables (psa_0006 / accounting_0006).

A lock is a row of ``ops.flow_lock`` held with ``SELECT … FOR UPDATE``: that needs the UPDATE
privilege, which the read-only finance role does not have, so a finance login cannot take (and
block) a flow's lock, as it could with PostgreSQL's advisory locks, which every role may call.
"""

from __future__ import annotations

from alembic import op


def add_flow_locks() -> None:
    op.execute("CREATE TABLE IF NOT EXISTS ops.flow_lock (name varchar(300) PRIMARY KEY, holder varchar(300), taken_at timestamptz)")
