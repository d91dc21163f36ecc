"""Accounting warehouse: deadline alerts already sent (see ops_deadlines).

Revision ID: accounting_0008
"""

revision = "accounting_0008"
down_revision = "accounting_0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from backbone.warehouse.migrations.ops_deadlines import add_deadline_alerts

    add_deadline_alerts()


def downgrade() -> None:
    raise NotImplementedError("warehouse migrations only move forward: a downgrade would lose data")
