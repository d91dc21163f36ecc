"""Accounting warehouse: project actuals per month (``acct.project_actual``) and the journals that
carry labour actuals to accounting (``acct.actuals_journal``, the outbox).

Revision ID: accounting_0014
"""

import sqlalchemy as sa
from alembic import op

revision = "accounting_0014"
down_revision = "accounting_0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "project_actual",
        sa.Column("project_id", sa.String(40), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("project_name", sa.String(255)),
        sa.Column("client_id", sa.String(40)),
        sa.Column("client_name", sa.String(255)),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("psa_hours", sa.Numeric(12, 2), nullable=False),
        sa.Column("exported_hours", sa.Numeric(12, 2), nullable=False),
        sa.Column("hours_without_cost_rate", sa.Numeric(12, 2), nullable=False),
        sa.Column("labour_cost", sa.Numeric(14, 2), nullable=False),
        sa.Column("expense_cost", sa.Numeric(14, 2), nullable=False),
        sa.Column("journaled", sa.Numeric(14, 2), nullable=False, server_default="0"),
        sa.Column("reconciled", sa.Boolean, nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("project_id", "period"),
        schema="acct",
    )
    op.create_table(
        "actuals_journal",
        sa.Column("project_id", sa.String(40), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("customer_ref_id", sa.String(100)),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("hours", sa.Numeric(12, 2), nullable=False),
        sa.Column("amount", sa.Numeric(14, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("journal_date", sa.Date, nullable=False),
        sa.Column("doc_number", sa.String(21), nullable=False, unique=True),
        sa.Column("request_id", sa.String(50), nullable=False, unique=True),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("posting_status", sa.String(20), nullable=False, server_default="pending"),
        sa.Column("accounting_id", sa.String(100)),
        sa.Column("posted_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("project_id", "period", "seq"),
        schema="acct",
    )
    from backbone.warehouse.migrations.ops_ledger import FINANCE_READER_ROLE

    op.execute(
        f"GRANT SELECT ON acct.project_actual, acct.actuals_journal TO {FINANCE_READER_ROLE}"
    )  # finance reads what each run computed and sent


def downgrade() -> None:
    op.drop_table("actuals_journal", schema="acct")
    op.drop_table("project_actual", schema="acct")
