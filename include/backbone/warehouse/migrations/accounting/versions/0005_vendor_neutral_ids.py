"""Accounting warehouse: room for every vendor's record ids.

A Xero time entry is addressed by its project and its own id (``<projectId>/<timeEntryId>``,
73 characters), longer than QuickBooks' numeric ids the columns were sized for.

Revision ID: accounting_0005
"""

import sqlalchemy as sa
from alembic import op

revision = "accounting_0005"
down_revision = "accounting_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for column in ("accounting_id", "target_ref_id"):
        op.alter_column("time_export", column, type_=sa.String(100), existing_type=sa.String(50), schema="acct")


def downgrade() -> None:
    raise NotImplementedError("warehouse migrations only move forward: a downgrade would lose data")
