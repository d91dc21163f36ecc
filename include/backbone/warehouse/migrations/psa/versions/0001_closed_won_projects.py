"""PSA warehouse: ops tables; clients, contacts and projects from closed-won deals.

Revision ID: psa_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "psa_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    from backbone.warehouse.migrations.ops_tables import create_ops_schema

    create_ops_schema()
    op.execute("CREATE SCHEMA IF NOT EXISTS psa")
    op.create_table(
        "client",
        sa.Column("crm_company_id", sa.String(20), primary_key=True),
        sa.Column("client_name", sa.String(255), nullable=False),
        sa.Column("domain", sa.String(255)),
        sa.Column("country", sa.String(100)),
        sa.Column("industry", sa.String(100)),
        sa.Column("last_run_id", sa.String(250), nullable=False),
        schema="psa",
    )
    op.create_table(
        "contact",
        sa.Column("crm_contact_id", sa.String(20), primary_key=True),
        sa.Column("crm_company_id", sa.String(20)),
        sa.Column("first_name", sa.String(100)),
        sa.Column("last_name", sa.String(100)),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("job_title", sa.String(200)),
        sa.Column("last_run_id", sa.String(250), nullable=False),
        schema="psa",
    )
    op.create_table(
        "project",
        sa.Column("crm_deal_id", sa.String(20), primary_key=True),
        sa.Column("crm_company_id", sa.String(20), nullable=False),
        sa.Column("project_name", sa.String(255), nullable=False),
        sa.Column("deal_stage", sa.String(100), nullable=False),
        sa.Column("scope", sa.Text),
        sa.Column("estimated_hours", sa.Numeric(12, 2)),
        sa.Column("contract_value", sa.Numeric(18, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("billing_type", sa.String(30), nullable=False),
        sa.Column("contract_start_date", sa.Date),
        sa.Column("contract_end_date", sa.Date),
        sa.Column("payment_terms_days", sa.Integer),
        sa.Column("close_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("crm_modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("psa_project_id", sa.String(50)),
        sa.Column("psa_project_url", sa.Text),
        sa.Column("last_run_id", sa.String(250), nullable=False),
        schema="psa",
    )
    op.create_index("ix_project_crm_company_id", "project", ["crm_company_id"], schema="psa")
    op.create_table(
        "project_contact",
        sa.Column("crm_deal_id", sa.String(20), nullable=False),
        sa.Column("crm_contact_id", sa.String(20), nullable=False),
        sa.PrimaryKeyConstraint("crm_deal_id", "crm_contact_id"),
        schema="psa",
    )


def downgrade() -> None:
    raise NotImplementedError("warehouse migrations only move forward: a downgrade would lose data")
