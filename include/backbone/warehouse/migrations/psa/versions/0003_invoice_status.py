"""PSA warehouse: invoice payment status as accounting reports it.

Revision ID: psa_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "psa_0003"
down_revision = "psa_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invoice_status",
        sa.Column("psa_invoice_id", sa.String(40), primary_key=True),
        sa.Column("number", sa.String(21), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("total", sa.Numeric(14, 2), nullable=False),
        sa.Column("amount_paid", sa.Numeric(14, 2), nullable=False),
        sa.Column("balance", sa.Numeric(14, 2), nullable=False),
        sa.Column("accounting_id", sa.String(50)),
        sa.Column("last_run_id", sa.String(250), nullable=False),
        schema="psa",
    )


def downgrade() -> None:
    raise NotImplementedError("warehouse migrations only move forward: a downgrade would lose data")
