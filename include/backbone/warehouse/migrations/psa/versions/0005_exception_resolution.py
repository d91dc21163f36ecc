"""PSA warehouse: exceptions can be resolved; the read-only finance role.

Revision ID: psa_0005
"""

revision = "psa_0005"
down_revision = "psa_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from backbone.warehouse.migrations.ops_ledger import add_exception_resolution_and_reader

    add_exception_resolution_and_reader(("psa", "hr"))


def downgrade() -> None:
    raise NotImplementedError("warehouse migrations only move forward: a downgrade would lose data")
