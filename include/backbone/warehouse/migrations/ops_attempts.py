"""Every attempt of every interval, kept (psa_0009 / accounting_0011).

``ops.flow_run`` holds one row per flow and interval: its latest attempt. Each time that row
changes, a trigger copies it into ``ops.flow_run_attempt`` keyed by the attempt's start, so a
rerun never overwrites what an earlier attempt did: the ledger shows per interval the latest
state and the attempts behind it. Rows that existed before this migration become one attempt each.
Frozen as of those migrations: later changes go into new revisions.
"""

from __future__ import annotations

from alembic import op

from backbone.warehouse.migrations.ops_ledger import FINANCE_READER_ROLE

ATTEMPT_COLUMNS = (
    "interval_start, interval_end, status, finished_at, extracted, valid, quarantined, loaded, written_back, details, airflow_url"
)


def add_flow_run_attempts() -> None:
    op.execute(
        """
        CREATE TABLE ops.flow_run_attempt (
            flow varchar(100) NOT NULL,
            run_id varchar(250) NOT NULL,
            started_at timestamptz NOT NULL,
            interval_start timestamptz NOT NULL,
            interval_end timestamptz NOT NULL,
            status varchar(20) NOT NULL,
            finished_at timestamptz,
            extracted integer NOT NULL DEFAULT 0,
            valid integer NOT NULL DEFAULT 0,
            quarantined integer NOT NULL DEFAULT 0,
            loaded integer NOT NULL DEFAULT 0,
            written_back integer NOT NULL DEFAULT 0,
            details jsonb NOT NULL DEFAULT '{}'::jsonb,
            airflow_url text,
            PRIMARY KEY (flow, run_id, started_at)
        )
        """
    )
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in ATTEMPT_COLUMNS.split(", "))
    new_values = ", ".join(f"NEW.{c}" for c in ATTEMPT_COLUMNS.split(", "))
    op.execute(
        f"""
        CREATE FUNCTION ops.keep_flow_run_attempt() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.started_at IS NOT NULL THEN
                INSERT INTO ops.flow_run_attempt (flow, run_id, started_at, {ATTEMPT_COLUMNS})
                VALUES (NEW.flow, NEW.run_id, NEW.started_at, {new_values})
                ON CONFLICT (flow, run_id, started_at) DO UPDATE SET {updates};
            END IF;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER flow_run_keeps_attempts AFTER INSERT OR UPDATE ON ops.flow_run "
        "FOR EACH ROW EXECUTE FUNCTION ops.keep_flow_run_attempt()"
    )
    op.execute(
        f"INSERT INTO ops.flow_run_attempt (flow, run_id, started_at, {ATTEMPT_COLUMNS}) "
        f"SELECT flow, run_id, started_at, {ATTEMPT_COLUMNS} FROM ops.flow_run WHERE started_at IS NOT NULL"
    )
    op.execute(f"GRANT SELECT ON ops.flow_run_attempt TO {FINANCE_READER_ROLE}")
