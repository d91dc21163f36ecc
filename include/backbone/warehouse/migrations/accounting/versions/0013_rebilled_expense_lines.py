"""Accounting warehouse: an invoice line that bills an expense on to the client names it
(``acct.invoice_line.expense_id``), so month-end can reconcile it with the expense export.

Revision ID: accounting_0013
"""

import sqlalchemy as sa
from alembic import op

revision = "accounting_0013"
down_revision = "accounting_0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("invoice_line", sa.Column("expense_id", sa.String(40)), schema="acct")


def downgrade() -> None:
    op.drop_column("invoice_line", "expense_id", schema="acct")
