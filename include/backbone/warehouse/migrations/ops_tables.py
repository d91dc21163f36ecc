"""DDL of the operational tables every warehouse carries (run records, staging, quarantine).

Frozen as of their first migration: later changes go into new revisions, never here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB


def create_ops_schema() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS ops")
    op.create_table(
        "flow_run",
        sa.Column("flow", sa.String(100), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("interval_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("interval_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("extracted", sa.Integer, nullable=False, server_default="0"),
        sa.Column("valid", sa.Integer, nullable=False, server_default="0"),
        sa.Column("quarantined", sa.Integer, nullable=False, server_default="0"),
        sa.Column("loaded", sa.Integer, nullable=False, server_default="0"),
        sa.Column("written_back", sa.Integer, nullable=False, server_default="0"),
        sa.Column("details", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("airflow_url", sa.Text),
        sa.PrimaryKeyConstraint("flow", "run_id"),
        schema="ops",
    )
    op.create_table(
        "staged_record",
        sa.Column("flow", sa.String(100), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("entity", sa.String(50), nullable=False),
        sa.Column("source_key", sa.String(100), nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("canonical", JSONB),
        sa.Column("status", sa.String(20), nullable=False, server_default="staged"),
        sa.PrimaryKeyConstraint("flow", "run_id", "entity", "source_key"),
        schema="ops",
    )
    op.create_table(
        "quarantine",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("flow", sa.String(100), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("entity", sa.String(50), nullable=False),
        sa.Column("source_key", sa.String(100), nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("raw", JSONB, nullable=False),
        sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.UniqueConstraint("flow", "run_id", "entity", "source_key", "rule", name="uq_quarantine_record_rule"),
        schema="ops",
    )
    op.create_index("ix_quarantine_flow_entity", "quarantine", ["flow", "entity", "source_key"], schema="ops")
