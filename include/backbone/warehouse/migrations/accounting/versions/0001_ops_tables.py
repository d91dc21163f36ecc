"""Accounting warehouse: ops tables (run records, staging, quarantine).

Revision ID: accounting_0001
"""

revision = "accounting_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    from backbone.warehouse.migrations.ops_tables import create_ops_schema

    create_ops_schema()


def downgrade() -> None:
    raise NotImplementedError("warehouse migrations only move forward: a downgrade would lose data")
