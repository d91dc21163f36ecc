"""Accounting warehouse: invoices (the posting outbox), their lines, reconciliation results, payments.

Revision ID: accounting_0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "accounting_0003"
down_revision = "accounting_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invoice",
        sa.Column("psa_invoice_id", sa.String(40), primary_key=True),
        sa.Column("number", sa.String(21), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("billing_type", sa.String(30), nullable=False),
        sa.Column("project_id", sa.String(40), nullable=False),
        sa.Column("crm_deal_id", sa.String(20)),
        sa.Column("client_id", sa.String(40), nullable=False),
        sa.Column("client_name", sa.String(255), nullable=False),
        sa.Column("customer_ref_id", sa.String(50)),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("issue_date", sa.Date, nullable=False),
        sa.Column("due_date", sa.Date, nullable=False),
        sa.Column("hours", sa.Numeric(12, 2), nullable=False),
        sa.Column("subtotal", sa.Numeric(14, 2), nullable=False),
        sa.Column("tax_code", sa.String(20), nullable=False),
        sa.Column("tax_amount", sa.Numeric(14, 2), nullable=False),
        sa.Column("total", sa.Numeric(14, 2), nullable=False),
        sa.Column("credit_note_for", sa.String(21)),
        sa.Column("psa_status", sa.String(20), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("request_id", sa.String(50), nullable=False),
        sa.Column("posting_status", sa.String(20), nullable=False),
        sa.Column("hold_rule", sa.String(200)),
        sa.Column("hold_reason", sa.Text),
        sa.Column("accounting_entity", sa.String(20)),
        sa.Column("accounting_id", sa.String(50)),
        sa.Column("posted_at", sa.DateTime(timezone=True)),
        sa.Column("voided_at", sa.DateTime(timezone=True)),
        sa.Column("payment_status", sa.String(20)),
        sa.Column("amount_paid", sa.Numeric(14, 2)),
        sa.Column("balance", sa.Numeric(14, 2)),
        sa.Column("last_error", sa.Text),
        sa.CheckConstraint(
            "posting_status IN ('pending', 'posted', 'held', 'failed', 'void_pending', 'voided', 'not_posted')",
            name="ck_invoice_posting_status",
        ),
        schema="acct",
    )
    op.create_index("ix_invoice_number", "invoice", ["number"], schema="acct")
    op.create_index("ix_invoice_period", "invoice", ["period", "posting_status"], schema="acct")
    op.create_table(
        "invoice_line",
        sa.Column("psa_invoice_id", sa.String(40), nullable=False),
        sa.Column("line_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("person_id", sa.String(40)),
        sa.Column("milestone_id", sa.String(40)),
        sa.Column("quantity", sa.Numeric(12, 2), nullable=False),
        sa.Column("rate", sa.Numeric(12, 2), nullable=False),
        sa.Column("amount", sa.Numeric(14, 2), nullable=False),
        sa.Column("item_ref_id", sa.String(50), nullable=False),
        sa.PrimaryKeyConstraint("psa_invoice_id", "line_id"),
        schema="acct",
    )
    op.create_table(
        "reconciliation",
        sa.Column("psa_invoice_id", sa.String(40), nullable=False),
        sa.Column("check_name", sa.String(60), nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("expected", sa.Text),
        sa.Column("actual", sa.Text),
        sa.Column("detail", sa.Text),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.PrimaryKeyConstraint("psa_invoice_id", "check_name"),
        schema="acct",
    )
    op.create_table(
        "payment",
        sa.Column("accounting_id", sa.String(50), primary_key=True),
        sa.Column("customer_ref_id", sa.String(50)),
        sa.Column("amount", sa.Numeric(14, 2), nullable=False),
        sa.Column("currency", sa.String(3)),
        sa.Column("txn_date", sa.Date),
        sa.Column("invoice_accounting_ids", ARRAY(sa.String(50)), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True)),
        sa.Column("last_run_id", sa.String(250), nullable=False),
        schema="acct",
    )


def downgrade() -> None:
    raise NotImplementedError("warehouse migrations only move forward: a downgrade would lose data")
