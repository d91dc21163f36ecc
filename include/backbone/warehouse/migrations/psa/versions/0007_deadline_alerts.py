"""PSA warehouse: deadline alerts already sent (see ops_deadlines).

Revision ID: psa_0007
"""

revision = "psa_0007"
down_revision = "psa_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from backbone.warehouse.migrations.ops_deadlines import add_deadline_alerts

    add_deadline_alerts()


def downgrade() -> None:
    raise NotImplementedError("warehouse migrations only move forward: a downgrade would lose data")
