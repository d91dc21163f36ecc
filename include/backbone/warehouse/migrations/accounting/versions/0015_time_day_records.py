"""Accounting warehouse: day records for Xero's time aggregation (``acct.time_day_record``) and
the entry versions each holds (``acct.time_day_member``).

Revision ID: accounting_0015
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "accounting_0015"
down_revision = "accounting_0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "time_day_record",
        sa.Column("day_key", sa.String(24), primary_key=True),
        sa.Column("person_ref_id", sa.String(50), nullable=False),
        sa.Column("customer_ref_id", sa.String(50), nullable=False),
        sa.Column("project_id", sa.String(40), nullable=False),
        sa.Column("item_ref_id", sa.String(50), nullable=False),
        sa.Column("billable_status", sa.String(20), nullable=False),
        sa.Column("work_date", sa.Date, nullable=False),
        sa.Column("line", JSONB, nullable=False),
        sa.Column("minutes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("entries", sa.Integer, nullable=False, server_default="0"),
        sa.Column("content_hash", sa.String(16)),
        sa.Column("accounting_id", sa.String(100)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        schema="acct",
    )
    op.create_table(
        "time_day_member",
        sa.Column("entry_id", sa.String(40), nullable=False),
        sa.Column("day_key", sa.String(24), nullable=False),
        sa.Column("entry_version", sa.Integer, nullable=False),
        sa.Column("minutes", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("entry_id", "day_key"),
        schema="acct",
    )
    op.create_index("ix_time_day_member_day", "time_day_member", ["day_key"], schema="acct")
    from backbone.warehouse.migrations.ops_ledger import FINANCE_READER_ROLE

    op.execute(f"GRANT SELECT ON acct.time_day_record, acct.time_day_member TO {FINANCE_READER_ROLE}")  # what each Xero record sums


def downgrade() -> None:
    op.drop_table("time_day_member", schema="acct")
    op.drop_table("time_day_record", schema="acct")
