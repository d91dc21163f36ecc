"""Accounting warehouse: accounting reference lists and the time export outbox.

Revision ID: accounting_0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "accounting_0002"
down_revision = "accounting_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS acct")
    op.create_table(
        "reference",
        sa.Column("entity", sa.String(30), nullable=False),
        sa.Column("match_key", sa.String(300), nullable=False),
        sa.Column("ref_id", sa.String(50), nullable=False),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("extra", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("last_run_id", sa.String(250), nullable=False),
        sa.PrimaryKeyConstraint("entity", "match_key"),
        schema="acct",
    )
    op.create_table(
        "time_export",
        sa.Column("entry_id", sa.String(40), nullable=False),
        sa.Column("entry_version", sa.Integer, nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("interval_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("person_id", sa.String(40), nullable=False),
        sa.Column("person_name", sa.String(200)),
        sa.Column("name_of", sa.String(20), nullable=False),
        sa.Column("person_ref_id", sa.String(50), nullable=False),
        sa.Column("client_id", sa.String(40), nullable=False),
        sa.Column("client_name", sa.String(255), nullable=False),
        sa.Column("customer_ref_id", sa.String(50), nullable=False),
        sa.Column("project_id", sa.String(40), nullable=False),
        sa.Column("project_name", sa.String(255)),
        sa.Column("billing_code", sa.String(20), nullable=False),
        sa.Column("item_ref_id", sa.String(50), nullable=False),
        sa.Column("item_name", sa.String(200), nullable=False),
        sa.Column("gl_account", sa.String(200), nullable=False),
        sa.Column("work_date", sa.Date, nullable=False),
        sa.Column("hours", sa.Numeric(7, 2), nullable=False),
        sa.Column("minutes", sa.Integer, nullable=False),
        sa.Column("hourly_rate", sa.Numeric(12, 2), nullable=False),
        sa.Column("amount", sa.Numeric(14, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("billable_status", sa.String(20), nullable=False),
        sa.Column("action", sa.String(10), nullable=False),
        sa.Column("target_ref_id", sa.String(50)),
        sa.Column("request_id", sa.String(50), nullable=False, unique=True),
        sa.Column("posting_status", sa.String(20), nullable=False, server_default="pending"),
        sa.Column("accounting_id", sa.String(50)),
        sa.Column("accounting_sync_token", sa.String(20)),
        sa.Column("posted_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("entry_id", "entry_version"),
        sa.CheckConstraint("posting_status IN ('pending', 'posted', 'failed')", name="ck_time_export_posting_status"),
        sa.CheckConstraint("action IN ('create', 'update')", name="ck_time_export_action"),
        schema="acct",
    )
    op.create_index("ix_time_export_run_status", "time_export", ["run_id", "posting_status"], schema="acct")
    op.create_index("ix_time_export_person_day", "time_export", ["person_id", "work_date"], schema="acct")


def downgrade() -> None:
    raise NotImplementedError("warehouse migrations only move forward: a downgrade would lose data")
