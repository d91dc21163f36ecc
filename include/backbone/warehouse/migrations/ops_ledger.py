"""Exception resolution and the read-only finance role, added to every warehouse's ops tables.

Frozen as of their migration (psa_0005 / accounting_0004): later changes go into new revisions.
"""

from __future__ import annotations

from alembic import op

FINANCE_READER_ROLE = "backbone_finance_reader"


def add_exception_resolution_and_reader(schemas: tuple[str, ...]) -> None:
    op.execute("ALTER TABLE ops.quarantine ADD COLUMN resolved_at timestamptz, ADD COLUMN resolved_by_run varchar(250)")
    op.execute("CREATE INDEX ix_quarantine_open ON ops.quarantine (flow, entity, source_key) WHERE resolved_at IS NULL")
    op.execute("CREATE INDEX ix_flow_run_interval_end ON ops.flow_run (interval_end DESC)")
    op.execute(
        f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{FINANCE_READER_ROLE}') "
        f"THEN CREATE ROLE {FINANCE_READER_ROLE} NOLOGIN; END IF; END $$"
    )
    for schema in ("ops", *schemas):
        op.execute(f"GRANT USAGE ON SCHEMA {schema} TO {FINANCE_READER_ROLE}")
        op.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {FINANCE_READER_ROLE}")
        op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {FINANCE_READER_ROLE}")
