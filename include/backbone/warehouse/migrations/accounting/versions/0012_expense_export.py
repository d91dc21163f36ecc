"""Accounting warehouse: the expense outbox (``acct.expense_export``), one line per approved PSA
expense version — a bill to the person or a purchase by the company — or a ``delete`` line when the
PSA withdrew an exported expense.

Revision ID: accounting_0012
"""

import sqlalchemy as sa
from alembic import op

revision = "accounting_0012"
down_revision = "accounting_0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "expense_export",
        sa.Column("expense_id", sa.String(40), nullable=False),
        sa.Column("expense_version", sa.Integer, nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("interval_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("doc_number", sa.String(21), nullable=False),
        sa.Column("person_id", sa.String(40), nullable=False),
        sa.Column("person_name", sa.String(200)),
        sa.Column("payee_ref_id", sa.String(100)),
        sa.Column("client_id", sa.String(40), nullable=False),
        sa.Column("client_name", sa.String(255), nullable=False),
        sa.Column("customer_ref_id", sa.String(100)),
        sa.Column("project_id", sa.String(40), nullable=False),
        sa.Column("project_name", sa.String(255)),
        sa.Column("category", sa.String(20), nullable=False),
        sa.Column("gl_account", sa.String(200), nullable=False),
        sa.Column("account_ref_id", sa.String(100), nullable=False),
        sa.Column("paid_from_ref_id", sa.String(100)),
        sa.Column("tax_code", sa.String(20), nullable=False),
        sa.Column("tax_ref_id", sa.String(100)),
        sa.Column("spent_date", sa.Date, nullable=False),
        sa.Column("amount", sa.Numeric(14, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("exchange_rate", sa.Numeric(14, 6)),
        sa.Column("billable", sa.Boolean, nullable=False),
        sa.Column("receipt_id", sa.String(100)),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("action", sa.String(10), nullable=False),
        sa.Column("target_ref_id", sa.String(100)),
        sa.Column("request_id", sa.String(50), nullable=False, unique=True),
        sa.Column("posting_status", sa.String(20), nullable=False, server_default="pending"),
        sa.Column("accounting_id", sa.String(100)),
        sa.Column("posted_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("expense_id", "expense_version"),
        sa.CheckConstraint("kind IN ('bill', 'purchase')", name="ck_expense_export_kind"),
        sa.CheckConstraint("action IN ('create', 'update', 'delete')", name="ck_expense_export_action"),
        sa.CheckConstraint("posting_status IN ('pending', 'posted', 'failed')", name="ck_expense_export_posting_status"),
        schema="acct",
    )
    op.create_index(
        "ix_expense_export_pending",
        "expense_export",
        ["interval_end"],
        schema="acct",
        postgresql_where=sa.text("posting_status = 'pending'"),
    )


def downgrade() -> None:
    raise NotImplementedError("warehouse migrations only move forward: a downgrade would lose data")
