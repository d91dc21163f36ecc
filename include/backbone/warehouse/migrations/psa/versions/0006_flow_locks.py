"""PSA warehouse: flow locks as rows the finance role cannot take (see ops_locks).

Revision ID: psa_0006
"""

revision = "psa_0006"
down_revision = "psa_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from backbone.warehouse.migrations.ops_locks import add_flow_locks

    add_flow_locks()


def downgrade() -> None:
    raise NotImplementedError("warehouse migrations only move forward: a downgrade would lose data")
