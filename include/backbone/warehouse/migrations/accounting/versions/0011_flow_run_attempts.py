"""Accounting warehouse: every attempt of every interval kept (see ops_attempts).

Revision ID: accounting_0011
"""

revision = "accounting_0011"
down_revision = "accounting_0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from backbone.warehouse.migrations.ops_attempts import add_flow_run_attempts

    add_flow_run_attempts()


def downgrade() -> None:
    raise NotImplementedError("warehouse migrations only move forward: a downgrade would lose data")
