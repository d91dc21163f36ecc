"""PSA warehouse: project budgets per month read from accounting (``psa.project_budget``), when
budgets live there.

Revision ID: psa_0012
"""

import sqlalchemy as sa
from alembic import op

revision = "psa_0012"
down_revision = "psa_0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "project_budget",
        sa.Column("project_id", sa.String(40), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("amount", sa.Numeric(14, 2), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("budget_name", sa.String(255)),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("project_id", "period"),
        schema="psa",
    )
    from backbone.warehouse.migrations.ops_ledger import FINANCE_READER_ROLE

    op.execute(f"GRANT SELECT ON psa.project_budget TO {FINANCE_READER_ROLE}")  # finance reads what each run computed and sent


def downgrade() -> None:
    op.drop_table("project_budget", schema="psa")
