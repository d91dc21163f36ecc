"""Accounting warehouse: the time outbox also carries reversals (``action = 'delete'``) of entries
the PSA withdrew after export.

Revision ID: accounting_0007
"""

from alembic import op

revision = "accounting_0007"
down_revision = "accounting_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("ck_time_export_action", "time_export", schema="acct", type_="check")
    op.create_check_constraint("ck_time_export_action", "time_export", "action IN ('create', 'update', 'delete')", schema="acct")


def downgrade() -> None:
    raise NotImplementedError("warehouse migrations only move forward: a downgrade would lose data")
