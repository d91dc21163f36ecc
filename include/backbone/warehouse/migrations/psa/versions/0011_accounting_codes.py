"""PSA warehouse: accounting's codes on the PSA side (``accounting_codes_to_psa``).

``psa.accounting_code``: accounting's items (service codes), GL accounts and tax codes by their
accounting id, so a rename is a changed name and a retired code ``active`` false.

``psa.billing_code``: each billing code of the mapping and the item it posts to now — ``active``,
``renamed`` or ``retired`` — with how many recently approved entries use it.

``psa.audit_finding``: the latest cross-system data audit, replaced whole by every run (the
Finance page's Data audit section); readable by the finance reader role.

Revision ID: psa_0011
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "psa_0011"
down_revision = "psa_0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from backbone.warehouse.migrations.ops_ledger import FINANCE_READER_ROLE

    op.create_table(
        "accounting_code",
        sa.Column("kind", sa.String(20), primary_key=True),
        sa.Column("ref_id", sa.String(100), primary_key=True),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("extra", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("first_seen_run_id", sa.String(250), nullable=False),
        sa.Column("last_run_id", sa.String(250), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        schema="psa",
    )
    op.create_table(
        "billing_code",
        sa.Column("billing_code", sa.String(20), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("mapped_item", sa.String(200), nullable=False),
        sa.Column("item_ref_id", sa.String(100)),
        sa.Column("item_name", sa.String(300)),
        sa.Column("gl_account", sa.String(200), nullable=False),
        sa.Column("open_entries", sa.Integer, nullable=False, server_default="0"),
        sa.Column("detail", sa.Text),
        sa.Column("last_run_id", sa.String(250), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.CheckConstraint("status IN ('active', 'renamed', 'retired')", name="ck_billing_code_status"),
        schema="psa",
    )
    op.create_table(
        "audit_finding",
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("check", sa.String(40), nullable=False),
        sa.Column("system", sa.String(20), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("suggestion", sa.String(300)),
        sa.Column("score", sa.Numeric(5, 1)),
        sa.Column("subject_id", sa.String(100)),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
        schema="psa",
    )
    op.execute(f"GRANT SELECT ON psa.accounting_code, psa.billing_code, psa.audit_finding TO {FINANCE_READER_ROLE}")


def downgrade() -> None:
    raise NotImplementedError("warehouse migrations only move forward: a downgrade would lose data")
