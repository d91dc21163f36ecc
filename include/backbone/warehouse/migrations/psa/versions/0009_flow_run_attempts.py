"""PSA warehouse: every attempt of every interval kept (see ops_attempts).

Revision ID: psa_0009
"""

revision = "psa_0009"
down_revision = "psa_0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from backbone.warehouse.migrations.ops_attempts import add_flow_run_attempts

    add_flow_run_attempts()


def downgrade() -> None:
    raise NotImplementedError("warehouse migrations only move forward: a downgrade would lose data")
