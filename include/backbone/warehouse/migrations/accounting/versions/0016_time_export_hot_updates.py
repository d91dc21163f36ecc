"""Accounting warehouse: posting rewrites ``acct.time_export`` lines in place (HOT updates).

Posting updates every outbox line twice (its attempt, then its answer). An update that changes no
indexed column and finds room on the line's own page is a heap-only tuple update: no index is
touched. So the run index no longer holds ``posting_status`` (every reader of it filters a run by
``run_id`` first), and new pages are filled to 70 % to leave that room.

Revision ID: accounting_0016
"""

from alembic import op

revision = "accounting_0016"
down_revision = "accounting_0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_time_export_run_status", table_name="time_export", schema="acct")
    op.create_index("ix_time_export_run", "time_export", ["run_id"], schema="acct")
    op.execute("ALTER TABLE acct.time_export SET (fillfactor = 70)")


def downgrade() -> None:
    op.execute("ALTER TABLE acct.time_export RESET (fillfactor)")
    op.drop_index("ix_time_export_run", table_name="time_export", schema="acct")
    op.create_index("ix_time_export_run_status", "time_export", ["run_id", "posting_status"], schema="acct")
