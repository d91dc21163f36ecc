"""Accounting warehouse: exceptions can be resolved; the read-only finance role.

Revision ID: accounting_0004
"""

revision = "accounting_0004"
down_revision = "accounting_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from backbone.warehouse.migrations.ops_ledger import add_exception_resolution_and_reader

    add_exception_resolution_and_reader(("acct",))


def downgrade() -> None:
    raise NotImplementedError("warehouse migrations only move forward: a downgrade would lose data")
