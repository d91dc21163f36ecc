"""PSA warehouse: standard cost rates, the open CRM pipeline, and their marts (project margin, pipeline).

``psa.cost_rate``: what an hour costs by billing code and currency (a copy of the data
dictionary's ``cost_rates.yaml``, refreshed by the weekly timesheet flow).

``bi.project_margin_monthly``: per PSA project, month of work and currency, the approved hours
(``psa.time_entry``), billable hours, revenue (billable hours × the entry's hourly rate: billed and
still unbilled alike), cost (every hour × its standard cost rate), margin and margin ratio, and the
hours no cost rate covers (counted, not guessed).

``psa.pipeline_deal``: every deal still open in the CRM as of the latest closed-won run (a snapshot,
replaced whole in one transaction): stage, stage probability, amount, currency, expected close and start.

``bi.pipeline_by_stage``: per stage and currency, open deals, their amount, the amount weighted by
the stage's probability, and the first and last expected start month.

Revision ID: psa_0010
"""

from alembic import op

revision = "psa_0010"
down_revision = "psa_0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from backbone.warehouse.migrations.bi_schema import grant_bi_to_reader
    from backbone.warehouse.migrations.ops_ledger import FINANCE_READER_ROLE

    op.execute(
        "CREATE TABLE psa.cost_rate (billing_code varchar(20) NOT NULL, currency varchar(3) NOT NULL, "
        "hourly_cost numeric(12, 2) NOT NULL CHECK (hourly_cost >= 0), PRIMARY KEY (billing_code, currency))"
    )
    op.execute(
        """
        CREATE VIEW bi.project_margin_monthly AS
        SELECT t.project_id, max(p.project_name) AS project_name, t.client_id, to_char(t.work_date, 'YYYY-MM') AS month, t.currency,
               sum(t.hours)::numeric(12, 2) AS hours,
               coalesce(sum(t.hours) FILTER (WHERE t.billable), 0)::numeric(12, 2) AS billable_hours,
               coalesce(sum(t.hours * t.hourly_rate) FILTER (WHERE t.billable), 0)::numeric(14, 2) AS revenue,
               coalesce(sum(t.hours * c.hourly_cost), 0)::numeric(14, 2) AS cost,
               (coalesce(sum(t.hours * t.hourly_rate) FILTER (WHERE t.billable), 0)
                - coalesce(sum(t.hours * c.hourly_cost), 0))::numeric(14, 2) AS margin,
               CASE WHEN coalesce(sum(t.hours * t.hourly_rate) FILTER (WHERE t.billable), 0) > 0
                    THEN round((coalesce(sum(t.hours * t.hourly_rate) FILTER (WHERE t.billable), 0)
                                - coalesce(sum(t.hours * c.hourly_cost), 0))
                               / sum(t.hours * t.hourly_rate) FILTER (WHERE t.billable), 4) END AS margin_ratio,
               coalesce(sum(t.hours) FILTER (WHERE c.hourly_cost IS NULL), 0)::numeric(12, 2) AS hours_without_cost_rate
        FROM psa.time_entry t
        LEFT JOIN psa.cost_rate c ON c.billing_code = t.billing_code AND c.currency = t.currency
        LEFT JOIN psa.project p ON p.psa_project_id = t.project_id
        GROUP BY t.project_id, t.client_id, to_char(t.work_date, 'YYYY-MM'), t.currency
        """
    )
    op.execute(
        "CREATE TABLE psa.pipeline_deal (crm_deal_id varchar(40) PRIMARY KEY, crm_system varchar(20) NOT NULL, deal_name varchar(255), "
        "stage varchar(100) NOT NULL, probability numeric(5, 4) NOT NULL, amount numeric(18, 2), currency varchar(3), "
        "close_date date, expected_start date, snapshot_run_id varchar(250) NOT NULL, snapshot_at timestamptz NOT NULL)"
    )
    op.execute(
        """
        CREATE VIEW bi.pipeline_by_stage AS
        SELECT stage, probability, coalesce(currency, '(none)') AS currency, count(*) AS deals,
               coalesce(sum(amount), 0)::numeric(18, 2) AS amount,
               coalesce(sum(amount * probability), 0)::numeric(18, 2) AS weighted_amount,
               to_char(min(expected_start), 'YYYY-MM') AS first_expected_month,
               to_char(max(expected_start), 'YYYY-MM') AS last_expected_month,
               max(snapshot_at) AS as_of
        FROM psa.pipeline_deal GROUP BY stage, probability, coalesce(currency, '(none)')
        """
    )
    op.execute(f"GRANT SELECT ON psa.cost_rate, psa.pipeline_deal TO {FINANCE_READER_ROLE}")
    grant_bi_to_reader()


def downgrade() -> None:
    raise NotImplementedError("warehouse migrations only move forward: a downgrade would lose data")
