"""PSA warehouse: the mirror of approved time entries (latest exported version of each entry).

Revision ID: psa_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "psa_0002"
down_revision = "psa_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "time_entry",
        sa.Column("entry_id", sa.String(40), primary_key=True),
        sa.Column("entry_version", sa.Integer, nullable=False),
        sa.Column("person_id", sa.String(40), nullable=False),
        sa.Column("person_email", sa.String(254), nullable=False),
        sa.Column("project_id", sa.String(40), nullable=False),
        sa.Column("client_id", sa.String(40), nullable=False),
        sa.Column("billing_code", sa.String(20), nullable=False),
        sa.Column("work_date", sa.Date, nullable=False),
        sa.Column("hours", sa.Numeric(7, 2), nullable=False),
        sa.Column("billable", sa.Boolean, nullable=False),
        sa.Column("hourly_rate", sa.Numeric(12, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_id", sa.String(250), nullable=False),
        schema="psa",
    )
    op.create_index("ix_time_entry_person_day", "time_entry", ["person_id", "work_date"], schema="psa")
    op.create_index("ix_time_entry_project_day", "time_entry", ["project_id", "work_date"], schema="psa")


def downgrade() -> None:
    raise NotImplementedError("warehouse migrations only move forward: a downgrade would lose data")
