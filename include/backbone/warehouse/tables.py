"""Table definitions of both warehouses (Alembic migrations create them; code reads these)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
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
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

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

flow_run_attempt = Table(
    "flow_run_attempt",
    metadata,
    Column("flow", String(100), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("interval_start", DateTime(timezone=True), nullable=False),
    Column("interval_end", DateTime(timezone=True), nullable=False),
    Column("status", String(20), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("extracted", Integer, nullable=False, server_default="0"),
    Column("valid", Integer, nullable=False, server_default="0"),
    Column("quarantined", Integer, nullable=False, server_default="0"),
    Column("loaded", Integer, nullable=False, server_default="0"),
    Column("written_back", Integer, nullable=False, server_default="0"),
    Column("details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("airflow_url", Text),
    PrimaryKeyConstraint("flow", "run_id", "started_at"),
    schema="ops",
)
"""Every attempt of every interval as it ended (or stands): kept by a trigger on ``flow_run``
(migration ops_attempts); read-only for code."""

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

flow_lock = Table(
    "flow_lock",
    metadata,
    Column("name", String(300), primary_key=True),
    Column("holder", String(300)),
    Column("taken_at", DateTime(timezone=True)),
    schema="ops",
)
"""Locks as rows (``SELECT … FOR UPDATE``): only roles that may update ops tables can take them."""

deadline_alert = Table(
    "deadline_alert",
    metadata,
    Column("flow", String(100), primary_key=True),
    Column("interval_end", DateTime(timezone=True), primary_key=True),
    Column("alerted_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    schema="ops",
)
"""Intervals the deadline watchdog has alerted on (once each)."""

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
    Column("resolved_at", DateTime(timezone=True)),
    Column("resolved_by_run", String(250)),
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

time_entry = Table(
    "time_entry",
    metadata,
    Column("entry_id", String(40), primary_key=True),
    Column("entry_version", Integer, nullable=False),
    Column("person_id", String(40), nullable=False),
    Column("person_email", String(254), nullable=False),
    Column("project_id", String(40), nullable=False),
    Column("client_id", String(40), nullable=False),
    Column("billing_code", String(20), nullable=False),
    Column("work_date", Date, nullable=False),
    Column("hours", Numeric(7, 2), nullable=False),
    Column("billable", Boolean, nullable=False),
    Column("hourly_rate", Numeric(12, 2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("approved_at", DateTime(timezone=True), nullable=False),
    Column("last_run_id", String(250), nullable=False),
    schema="psa",
)

# --- accounting warehouse (schema "acct") -----------------------------------------------------------
cost_rate = Table(
    "cost_rate",
    metadata,
    Column("billing_code", String(20), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("hourly_cost", Numeric(12, 2), nullable=False),
    schema="psa",
)
"""Standard cost per hour by billing code and currency (from ``dictionary/cost_rates.yaml``)."""

accounting_code = Table(
    "accounting_code",
    metadata,
    Column("kind", String(20), primary_key=True),
    Column("ref_id", String(100), primary_key=True),
    Column("name", String(300), nullable=False),
    Column("extra", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("active", Boolean, nullable=False),
    Column("first_seen_run_id", String(250), nullable=False),
    Column("last_run_id", String(250), nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    schema="psa",
)
"""Accounting's items (service codes), GL accounts and tax codes as the PSA side knows them: kept
by their accounting id, so a rename is a changed name and a retired one ``active`` false."""

project_budget = Table(
    "project_budget",
    metadata,
    Column("project_id", String(40), nullable=False),
    Column("period", String(7), nullable=False),
    Column("amount", Numeric(14, 2), nullable=False),
    Column("source", String(20), nullable=False),
    Column("budget_name", String(255)),
    Column("run_id", String(250), nullable=False),
    Column("loaded_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("project_id", "period"),
    schema="psa",
)
"""Project budgets per month, read from accounting when budgets live there (``BACKBONE_BUDGET_SOURCE=accounting``)."""

billing_code = Table(
    "billing_code",
    metadata,
    Column("billing_code", String(20), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("mapped_item", String(200), nullable=False),
    Column("item_ref_id", String(100)),
    Column("item_name", String(300)),
    Column("gl_account", String(200), nullable=False),
    Column("open_entries", Integer, nullable=False, server_default="0"),
    Column("detail", Text),
    Column("last_run_id", String(250), nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    schema="psa",
)
"""Each billing code of the mapping and the accounting item it posts to now: ``active``,
``renamed`` (the item kept its id and changed its name) or ``retired`` (accounting no longer has it)."""

audit_finding = Table(
    "audit_finding",
    metadata,
    Column("position", Integer, primary_key=True),
    Column("check", String(40), nullable=False),
    Column("system", String(20), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("detail", Text, nullable=False),
    Column("suggestion", String(300)),
    Column("score", Numeric(5, 1)),
    Column("subject_id", String(100)),
    Column("run_id", String(250), nullable=False),
    Column("found_at", DateTime(timezone=True), nullable=False),
    schema="psa",
)
"""The latest cross-system data audit (``backbone.audit``), replaced whole by every
``accounting_codes_to_psa`` run: what the Finance page's Data audit section lists."""

pipeline_deal = Table(
    "pipeline_deal",
    metadata,
    Column("crm_deal_id", String(40), primary_key=True),
    Column("crm_system", String(20), nullable=False),
    Column("deal_name", String(255)),
    Column("stage", String(100), nullable=False),
    Column("probability", Numeric(5, 4), nullable=False),
    Column("amount", Numeric(18, 2)),
    Column("currency", String(3)),
    Column("close_date", Date),
    Column("expected_start", Date),
    Column("snapshot_run_id", String(250), nullable=False),
    Column("snapshot_at", DateTime(timezone=True), nullable=False),
    schema="psa",
)
"""Every deal open in the CRM as of the latest closed-won run (replaced whole each run)."""

reference = Table(
    "reference",
    metadata,
    Column("entity", String(30), nullable=False),
    Column("match_key", String(300), nullable=False),
    Column("ref_id", String(50), nullable=False),
    Column("name", String(300), nullable=False),
    Column("extra", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("last_run_id", String(250), nullable=False),
    PrimaryKeyConstraint("entity", "match_key"),
    schema="acct",
)

time_export = Table(
    "time_export",
    metadata,
    Column("entry_id", String(40), nullable=False),
    Column("entry_version", Integer, nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("interval_end", DateTime(timezone=True), nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("person_id", String(40), nullable=False),
    Column("person_name", String(200)),
    Column("name_of", String(20), nullable=False),
    Column("person_ref_id", String(50), nullable=False),
    Column("client_id", String(40), nullable=False),
    Column("client_name", String(255), nullable=False),
    Column("customer_ref_id", String(50), nullable=False),
    Column("project_id", String(40), nullable=False),
    Column("project_name", String(255)),
    Column("billing_code", String(20), nullable=False),
    Column("item_ref_id", String(50), nullable=False),
    Column("item_name", String(200), nullable=False),
    Column("gl_account", String(200), nullable=False),
    Column("work_date", Date, nullable=False),
    Column("hours", Numeric(7, 2), nullable=False),
    Column("minutes", Integer, nullable=False),
    Column("hourly_rate", Numeric(12, 2), nullable=False),
    Column("amount", Numeric(14, 2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("billable_status", String(20), nullable=False),
    Column("action", String(10), nullable=False),
    Column("target_ref_id", String(100)),
    Column("request_id", String(50), nullable=False, unique=True),
    Column("posting_status", String(20), nullable=False, server_default="pending"),
    Column("accounting_id", String(100)),
    Column("accounting_sync_token", String(20)),
    Column("posted_at", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("entry_id", "entry_version"),
    schema="acct",
    postgresql_with={"fillfactor": 70},  # room for posting's in-place (HOT) updates: accounting_0016
)

expense_export = Table(
    "expense_export",
    metadata,
    Column("expense_id", String(40), nullable=False),
    Column("expense_version", Integer, nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("interval_end", DateTime(timezone=True), nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("kind", String(10), nullable=False),
    Column("doc_number", String(21), nullable=False),
    Column("person_id", String(40), nullable=False),
    Column("person_name", String(200)),
    Column("payee_ref_id", String(100)),
    Column("client_id", String(40), nullable=False),
    Column("client_name", String(255), nullable=False),
    Column("customer_ref_id", String(100)),
    Column("project_id", String(40), nullable=False),
    Column("project_name", String(255)),
    Column("category", String(20), nullable=False),
    Column("gl_account", String(200), nullable=False),
    Column("account_ref_id", String(100), nullable=False),
    Column("paid_from_ref_id", String(100)),
    Column("tax_code", String(20), nullable=False),
    Column("tax_ref_id", String(100)),
    Column("spent_date", Date, nullable=False),
    Column("amount", Numeric(14, 2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("exchange_rate", Numeric(14, 6)),
    Column("billable", Boolean, nullable=False),
    Column("receipt_id", String(100)),
    Column("description", Text, nullable=False),
    Column("action", String(10), nullable=False),
    Column("target_ref_id", String(100)),
    Column("request_id", String(50), nullable=False, unique=True),
    Column("posting_status", String(20), nullable=False, server_default="pending"),
    Column("accounting_id", String(100)),
    Column("posted_at", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("expense_id", "expense_version"),
    schema="acct",
)
"""The expense outbox: one line per approved expense version (a bill or a purchase), or a
``delete`` line when the PSA withdrew an exported expense; written before posting, never rewritten."""

invoice = Table(
    "invoice",
    metadata,
    Column("psa_invoice_id", String(40), primary_key=True),
    Column("number", String(21), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("period", String(7), nullable=False),
    Column("billing_type", String(30), nullable=False),
    Column("project_id", String(40), nullable=False),
    Column("crm_deal_id", String(20)),
    Column("client_id", String(40), nullable=False),
    Column("client_name", String(255), nullable=False),
    Column("customer_ref_id", String(50)),
    Column("currency", String(3), nullable=False),
    Column("issue_date", Date, nullable=False),
    Column("due_date", Date, nullable=False),
    Column("hours", Numeric(12, 2), nullable=False),
    Column("subtotal", Numeric(14, 2), nullable=False),
    Column("tax_code", String(20), nullable=False),
    Column("tax_amount", Numeric(14, 2), nullable=False),
    Column("total", Numeric(14, 2), nullable=False),
    Column("credit_note_for", String(21)),
    Column("psa_status", String(20), nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("request_id", String(50), nullable=False),
    Column("posting_status", String(20), nullable=False),
    Column("hold_rule", String(200)),
    Column("hold_reason", Text),
    Column("accounting_entity", String(20)),
    Column("accounting_id", String(50)),
    Column("posted_at", DateTime(timezone=True)),
    Column("voided_at", DateTime(timezone=True)),
    Column("payment_status", String(20)),
    Column("amount_paid", Numeric(14, 2)),
    Column("balance", Numeric(14, 2)),
    Column("last_error", Text),
    schema="acct",
)

invoice_line = Table(
    "invoice_line",
    metadata,
    Column("psa_invoice_id", String(40), nullable=False),
    Column("line_id", String(40), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("description", Text),
    Column("person_id", String(40)),
    Column("milestone_id", String(40)),
    Column("expense_id", String(40)),
    Column("quantity", Numeric(12, 2), nullable=False),
    Column("rate", Numeric(12, 2), nullable=False),
    Column("amount", Numeric(14, 2), nullable=False),
    Column("item_ref_id", String(50), nullable=False),
    PrimaryKeyConstraint("psa_invoice_id", "line_id"),
    schema="acct",
)

project_actual = Table(
    "project_actual",
    metadata,
    Column("project_id", String(40), nullable=False),
    Column("period", String(7), nullable=False),
    Column("project_name", String(255)),
    Column("client_id", String(40)),
    Column("client_name", String(255)),
    Column("currency", String(3), nullable=False),
    Column("psa_hours", Numeric(12, 2), nullable=False),
    Column("exported_hours", Numeric(12, 2), nullable=False),
    Column("hours_without_cost_rate", Numeric(12, 2), nullable=False),
    Column("labour_cost", Numeric(14, 2), nullable=False),
    Column("expense_cost", Numeric(14, 2), nullable=False),
    Column("journaled", Numeric(14, 2), nullable=False, server_default="0"),
    Column("reconciled", Boolean, nullable=False),
    Column("detail", Text),
    Column("run_id", String(250), nullable=False),
    Column("computed_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("project_id", "period"),
    schema="acct",
)
"""A project's actuals for a month, as both warehouses know them: the PSA's approved hours
(``psa.time_entry``) beside the hours exported to accounting, labour priced at the standard cost
rate, the exported expenses, and what accounting holds as journals."""

actuals_journal = Table(
    "actuals_journal",
    metadata,
    Column("project_id", String(40), nullable=False),
    Column("period", String(7), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("customer_ref_id", String(100)),
    Column("description", Text, nullable=False),
    Column("hours", Numeric(12, 2), nullable=False),
    Column("amount", Numeric(14, 2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("journal_date", Date, nullable=False),
    Column("doc_number", String(21), nullable=False, unique=True),
    Column("request_id", String(50), nullable=False, unique=True),
    Column("run_id", String(250), nullable=False),
    Column("posting_status", String(20), nullable=False, server_default="pending"),
    Column("accounting_id", String(100)),
    Column("posted_at", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("project_id", "period", "seq"),
    schema="acct",
)
"""The actuals outbox: one journal per project and month, then one per later change (the
difference, signed), each posted once by its document number."""

time_day_record = Table(
    "time_day_record",
    metadata,
    Column("day_key", String(24), primary_key=True),
    Column("person_ref_id", String(50), nullable=False),
    Column("customer_ref_id", String(50), nullable=False),
    Column("project_id", String(40), nullable=False),
    Column("item_ref_id", String(50), nullable=False),
    Column("billable_status", String(20), nullable=False),
    Column("work_date", Date, nullable=False),
    Column("line", JSONB, nullable=False),
    Column("minutes", Integer, nullable=False, server_default="0"),
    Column("entries", Integer, nullable=False, server_default="0"),
    Column("content_hash", String(16)),
    Column("accounting_id", String(100)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("run_id", String(250), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    schema="acct",
)
"""Day records (``BACKBONE_XERO_TIME_AGGREGATION=day``): one accounting time record per person,
customer, project, task and day, as accounting holds it (``accounting_id``, total ``minutes``)."""

time_day_member = Table(
    "time_day_member",
    metadata,
    Column("entry_id", String(40), nullable=False),
    Column("day_key", String(24), nullable=False),
    Column("entry_version", Integer, nullable=False),
    Column("minutes", Integer, nullable=False),
    PrimaryKeyConstraint("entry_id", "day_key"),
    schema="acct",
)
"""Which entry version each day record holds, and its minutes. An entry is in one record, or in
two while accounting refused the update that takes it out of its old one (counted twice until fixed)."""

reconciliation = Table(
    "reconciliation",
    metadata,
    Column("psa_invoice_id", String(40), nullable=False),
    Column("check_name", String(60), nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("expected", Text),
    Column("actual", Text),
    Column("detail", Text),
    Column("run_id", String(250), nullable=False),
    PrimaryKeyConstraint("psa_invoice_id", "check_name"),
    schema="acct",
)

payment = Table(
    "payment",
    metadata,
    Column("accounting_id", String(50), primary_key=True),
    Column("customer_ref_id", String(50)),
    Column("amount", Numeric(14, 2), nullable=False),
    Column("currency", String(3)),
    Column("txn_date", Date),
    Column("invoice_accounting_ids", ARRAY(String(50)), nullable=False),
    Column("last_updated", DateTime(timezone=True)),
    Column("last_run_id", String(250), nullable=False),
    schema="acct",
)

invoice_status = Table(
    "invoice_status",
    metadata,
    Column("psa_invoice_id", String(40), primary_key=True),
    Column("number", String(21), nullable=False),
    Column("status", String(20), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("total", Numeric(14, 2), nullable=False),
    Column("amount_paid", Numeric(14, 2), nullable=False),
    Column("balance", Numeric(14, 2), nullable=False),
    Column("accounting_id", String(50)),
    Column("last_run_id", String(250), nullable=False),
    schema="psa",
)

# --- HR roster in the PSA warehouse (schema "hr") -------------------------------------------------
hr_person = Table(
    "person",
    metadata,
    Column("hr_id", String(12), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("email", String(254)),
    Column("job_title", String(200)),
    Column("department", String(200)),
    Column("division", String(200)),
    Column("location", String(200)),
    Column("employment_status", String(30), nullable=False),
    Column("is_active", Boolean, nullable=False),
    Column("hire_date", Date, nullable=False),
    Column("original_hire_date", Date),
    Column("termination_date", Date),
    Column("weekly_hours", Numeric(5, 2), nullable=False),
    Column("supervisor_id", String(12)),
    Column("deleted_in_hr", Boolean, nullable=False, server_default=text("false")),
    Column("last_run_id", String(250), nullable=False),
    schema="hr",
)

hr_person_history = Table(
    "person_history",
    metadata,
    Column("hr_id", String(12), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("effective_date", Date, nullable=False),
    Column("job_title", String(200)),
    Column("department", String(200)),
    Column("division", String(200)),
    Column("employment_status", String(30)),
    Column("last_run_id", String(250), nullable=False),
    PrimaryKeyConstraint("hr_id", "kind", "effective_date"),
    schema="hr",
)

hr_department = Table(
    "department",
    metadata,
    Column("department", String(200), primary_key=True),
    Column("division", String(200)),
    Column("last_run_id", String(250), nullable=False),
    schema="hr",
)

hr_skill = Table(
    "skill",
    metadata,
    Column("hr_id", String(12), nullable=False),
    Column("skill", String(100), nullable=False),
    Column("level", String(30)),
    Column("last_run_id", String(250), nullable=False),
    PrimaryKeyConstraint("hr_id", "skill"),
    schema="hr",
)

hr_certification = Table(
    "certification",
    metadata,
    Column("hr_id", String(12), nullable=False),
    Column("name", String(200), nullable=False),
    Column("expires_on", Date),
    Column("last_run_id", String(250), nullable=False),
    PrimaryKeyConstraint("hr_id", "name"),
    schema="hr",
)

hr_time_off_day = Table(
    "time_off_day",
    metadata,
    Column("request_id", String(12), nullable=False),
    Column("day", Date, nullable=False),
    Column("hr_id", String(12), nullable=False),
    Column("hours", Numeric(5, 2), nullable=False),
    Column("type", String(100)),
    Column("last_run_id", String(250), nullable=False),
    PrimaryKeyConstraint("request_id", "day"),
    schema="hr",
)

hr_company_holiday = Table(
    "company_holiday",
    metadata,
    Column("day", Date, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("country", String(2), nullable=False),
    schema="hr",
)

hr_capacity = Table(
    "capacity",
    metadata,
    Column("hr_id", String(12), nullable=False),
    Column("iso_week", String(8), nullable=False),
    Column("week_start", Date, nullable=False),
    Column("standard_hours", Numeric(6, 2), nullable=False),
    Column("holiday_hours", Numeric(6, 2), nullable=False),
    Column("time_off_hours", Numeric(6, 2), nullable=False),
    Column("available_hours", Numeric(6, 2), nullable=False),
    Column("as_of", Date, nullable=False),
    PrimaryKeyConstraint("hr_id", "week_start"),
    schema="hr",
)
"""Available hours per person and ISO week: standard hours less holidays and approved time off."""

# --- indexes the migrations create (declared here too, so a drift check sees them) -----------------
Index("ix_flow_run_interval_end", flow_run.c.interval_end.desc())
Index("ix_quarantine_flow_entity", quarantine.c.flow, quarantine.c.entity, quarantine.c.source_key)
Index(
    "ix_quarantine_open",
    quarantine.c.flow,
    quarantine.c.entity,
    quarantine.c.source_key,
    postgresql_where=quarantine.c.resolved_at.is_(None),
)
Index("ix_project_crm_company_id", project.c.crm_company_id)
Index("ix_time_entry_person_day", time_entry.c.person_id, time_entry.c.work_date)
Index("ix_time_entry_project_day", time_entry.c.project_id, time_entry.c.work_date)
Index("ix_time_off_day_person_day", hr_time_off_day.c.hr_id, hr_time_off_day.c.day)
Index("ix_time_export_run", time_export.c.run_id)
Index("ix_time_export_person_day", time_export.c.person_id, time_export.c.work_date)
Index("ix_expense_export_pending", expense_export.c.interval_end, postgresql_where=expense_export.c.posting_status == "pending")
Index("ix_invoice_number", invoice.c.number)
Index("ix_time_day_member_day", time_day_member.c.day_key)
Index("ix_invoice_period", invoice.c.period, invoice.c.posting_status)

WAREHOUSE_SCHEMAS = {"psa": frozenset({"ops", "psa", "hr"}), "accounting": frozenset({"ops", "acct"})}
"""Which schemas of ``metadata`` each warehouse holds (``ops`` is in both)."""
