"""Deadline alerts already sent, added to every warehouse's ops tables (psa_0007 / accounting_0008):
the deadline watchdog alerts once per overdue interval, not every hour."""

from __future__ import annotations

from alembic import op


def add_deadline_alerts() -> None:
    op.execute(
        "CREATE TABLE IF NOT EXISTS ops.deadline_alert ("
        "flow varchar(100) NOT NULL, interval_end timestamptz NOT NULL, alerted_at timestamptz NOT NULL DEFAULT now(), "
        "PRIMARY KEY (flow, interval_end))"
    )
