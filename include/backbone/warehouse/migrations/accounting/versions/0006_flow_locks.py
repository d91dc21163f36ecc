"""Accounting warehouse: flow locks as rows the finance role cannot take (see ops_locks).

Revision ID: accounting_0006
"""

revision = "accounting_0006"
down_revision = "accounting_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from backbone.warehouse.migrations.ops_locks import add_flow_locks

    add_flow_locks()


def downgrade() -> None:
    raise NotImplementedError("warehouse migrations only move forward: a downgrade would lose data")
