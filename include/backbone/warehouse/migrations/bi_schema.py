"""The ``bi`` schema both warehouses share for their marts (psa_0008 / accounting_0010): created
once, readable by the finance role. Frozen as of those migrations: later changes go into new revisions."""

from __future__ import annotations

from alembic import op

from backbone.warehouse.migrations.ops_ledger import FINANCE_READER_ROLE


def create_bi_schema() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS bi")


def grant_bi_to_reader() -> None:
    """Read access to every view of ``bi`` for BI tools (``backbone_finance_reader``)."""
    op.execute(f"GRANT USAGE ON SCHEMA bi TO {FINANCE_READER_ROLE}")
    op.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA bi TO {FINANCE_READER_ROLE}")
