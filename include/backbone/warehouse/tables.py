"""Table definitions of both warehouses (Alembic migrations create them; code reads these)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

# --- operational tables, present in every warehouse (schema "ops") ---------------------------------
flow_run = Table(
    "flow_run",
    metadata,
    Column("flow", String(100), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("interval_start", DateTime(timezone=True), nullable=False),
    Column("interval_end", DateTime(timezone=True), nullable=False),
    Column("status", String(20), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("extracted", Integer, nullable=False, server_default="0"),
    Column("valid", Integer, nullable=False, server_default="0"),
    Column("quarantined", Integer, nullable=False, server_default="0"),
    Column("loaded", Integer, nullable=False, server_default="0"),
    Column("written_back", Integer, nullable=False, server_default="0"),
    Column("details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("airflow_url", Text),
    PrimaryKeyConstraint("flow", "run_id"),
    schema="ops",
)

staged_record = Table(
    "staged_record",
    metadata,
    Column("flow", String(100), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("entity", String(50), nullable=False),
    Column("source_key", String(100), nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("canonical", JSONB),
    Column("status", String(20), nullable=False, server_default="staged"),
    PrimaryKeyConstraint("flow", "run_id", "entity", "source_key"),
    schema="ops",
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("flow", String(100), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("entity", String(50), nullable=False),
    Column("source_key", String(100), nullable=False),
    Column("rule", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("raw", JSONB, nullable=False),
    Column("quarantined_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    UniqueConstraint("flow", "run_id", "entity", "source_key", "rule", name="uq_quarantine_record_rule"),
    schema="ops",
)

OPS_TABLES = (flow_run, staged_record, quarantine)

# --- PSA warehouse (schema "psa") ---------------------------------------------------------------
client = Table(
    "client",
    metadata,
    Column("crm_company_id", String(20), primary_key=True),
    Column("client_name", String(255), nullable=False),
    Column("domain", String(255)),
    Column("country", String(100)),
    Column("industry", String(100)),
    Column("last_run_id", String(250), nullable=False),
    schema="psa",
)

contact = Table(
    "contact",
    metadata,
    Column("crm_contact_id", String(20), primary_key=True),
    Column("crm_company_id", String(20)),
    Column("first_name", String(100)),
    Column("last_name", String(100)),
    Column("email", String(254), nullable=False),
    Column("job_title", String(200)),
    Column("last_run_id", String(250), nullable=False),
    schema="psa",
)

project = Table(
    "project",
    metadata,
    Column("crm_deal_id", String(20), primary_key=True),
    Column("crm_company_id", String(20), nullable=False),
    Column("project_name", String(255), nullable=False),
    Column("deal_stage", String(100), nullable=False),
    Column("scope", Text),
    Column("estimated_hours", Numeric(12, 2)),
    Column("contract_value", Numeric(18, 2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("billing_type", String(30), nullable=False),
    Column("contract_start_date", Date),
    Column("contract_end_date", Date),
    Column("payment_terms_days", Integer),
    Column("close_date", DateTime(timezone=True), nullable=False),
    Column("crm_modified_at", DateTime(timezone=True), nullable=False),
    Column("psa_project_id", String(50)),
    Column("psa_project_url", Text),
    Column("last_run_id", String(250), nullable=False),
    schema="psa",
)

project_contact = Table(
    "project_contact",
    metadata,
    Column("crm_deal_id", String(20), nullable=False),
    Column("crm_contact_id", String(20), nullable=False),
    PrimaryKeyConstraint("crm_deal_id", "crm_contact_id"),
    schema="psa",
)
