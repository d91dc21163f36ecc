"""Accounting warehouse: an outbox invoice can be ``waiting`` — a time-and-materials invoice whose
month's time is not fully exported yet. Not an exception: the daily run judges it again.

Revision ID: accounting_0009
"""

from alembic import op

revision = "accounting_0009"
down_revision = "accounting_0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("ck_invoice_posting_status", "invoice", schema="acct", type_="check")
    op.create_check_constraint(
        "ck_invoice_posting_status",
        "invoice",
        "posting_status IN ('pending', 'waiting', 'posted', 'held', 'failed', 'void_pending', 'voided', 'not_posted')",
        schema="acct",
    )


def downgrade() -> None:
    raise NotImplementedError("warehouse migrations only move forward: a downgrade would lose data")
