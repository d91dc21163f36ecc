"""PSA warehouse: HR roster, history, departments, skills, certifications, time off, holidays, capacity.

Revision ID: psa_0004
"""

import sqlalchemy as sa
from alembic import op

revision = "psa_0004"
down_revision = "psa_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS hr")
    op.create_table(
        "person",
        sa.Column("hr_id", sa.String(12), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(254)),
        sa.Column("job_title", sa.String(200)),
        sa.Column("department", sa.String(200)),
        sa.Column("division", sa.String(200)),
        sa.Column("location", sa.String(200)),
        sa.Column("employment_status", sa.String(30), nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False),
        sa.Column("hire_date", sa.Date, nullable=False),
        sa.Column("original_hire_date", sa.Date),
        sa.Column("termination_date", sa.Date),
        sa.Column("weekly_hours", sa.Numeric(5, 2), nullable=False),
        sa.Column("supervisor_id", sa.String(12)),
        sa.Column("deleted_in_hr", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("last_run_id", sa.String(250), nullable=False),
        schema="hr",
    )
    op.create_table(
        "person_history",
        sa.Column("hr_id", sa.String(12), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("effective_date", sa.Date, nullable=False),
        sa.Column("job_title", sa.String(200)),
        sa.Column("department", sa.String(200)),
        sa.Column("division", sa.String(200)),
        sa.Column("employment_status", sa.String(30)),
        sa.Column("last_run_id", sa.String(250), nullable=False),
        sa.PrimaryKeyConstraint("hr_id", "kind", "effective_date"),
        schema="hr",
    )
    op.create_table(
        "department",
        sa.Column("department", sa.String(200), primary_key=True),
        sa.Column("division", sa.String(200)),
        sa.Column("last_run_id", sa.String(250), nullable=False),
        schema="hr",
    )
    op.create_table(
        "skill",
        sa.Column("hr_id", sa.String(12), nullable=False),
        sa.Column("skill", sa.String(100), nullable=False),
        sa.Column("level", sa.String(30)),
        sa.Column("last_run_id", sa.String(250), nullable=False),
        sa.PrimaryKeyConstraint("hr_id", "skill"),
        schema="hr",
    )
    op.create_table(
        "certification",
        sa.Column("hr_id", sa.String(12), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("expires_on", sa.Date),
        sa.Column("last_run_id", sa.String(250), nullable=False),
        sa.PrimaryKeyConstraint("hr_id", "name"),
        schema="hr",
    )
    op.create_table(
        "time_off_day",
        sa.Column("request_id", sa.String(12), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("hr_id", sa.String(12), nullable=False),
        sa.Column("hours", sa.Numeric(5, 2), nullable=False),
        sa.Column("type", sa.String(100)),
        sa.Column("last_run_id", sa.String(250), nullable=False),
        sa.PrimaryKeyConstraint("request_id", "day"),
        schema="hr",
    )
    op.create_index("ix_time_off_day_person_day", "time_off_day", ["hr_id", "day"], schema="hr")
    op.create_table(
        "company_holiday",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        schema="hr",
    )
    op.create_table(
        "capacity",
        sa.Column("hr_id", sa.String(12), nullable=False),
        sa.Column("iso_week", sa.String(8), nullable=False),
        sa.Column("week_start", sa.Date, nullable=False),
        sa.Column("standard_hours", sa.Numeric(6, 2), nullable=False),
        sa.Column("holiday_hours", sa.Numeric(6, 2), nullable=False),
        sa.Column("time_off_hours", sa.Numeric(6, 2), nullable=False),
        sa.Column("available_hours", sa.Numeric(6, 2), nullable=False),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.PrimaryKeyConstraint("hr_id", "week_start"),
        schema="hr",
    )


def downgrade() -> None:
    raise NotImplementedError("warehouse migrations only move forward: a downgrade would lose data")
