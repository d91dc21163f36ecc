"""PSA warehouse: the BI schema and its utilization marts (views, read by BI tools through the
read-only role ``backbone_finance_reader``).

``bi.utilization_weekly``: per person and ISO week, available hours (``hr.capacity``: standard
hours less holidays and approved time off), billable and total approved hours (``psa.time_entry``,
matched to the HR person by e-mail), and both ratios. ``bi.utilization_department_weekly``: the
same summed per department. Views, not tables: always as fresh as the flows that feed them.

Revision ID: psa_0008
"""

from alembic import op

revision = "psa_0008"
down_revision = "psa_0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from backbone.warehouse.migrations.bi_schema import create_bi_schema, grant_bi_to_reader

    create_bi_schema()
    op.execute(
        """
        CREATE VIEW bi.utilization_weekly AS
        SELECT c.hr_id, p.name, p.email, p.department, c.iso_week, c.week_start, c.available_hours,
               coalesce(sum(t.hours) FILTER (WHERE t.billable), 0)::numeric(8, 2) AS billable_hours,
               coalesce(sum(t.hours), 0)::numeric(8, 2) AS total_hours,
               CASE WHEN c.available_hours > 0
                    THEN round(coalesce(sum(t.hours) FILTER (WHERE t.billable), 0) / c.available_hours, 4) END AS billable_utilization,
               CASE WHEN c.available_hours > 0 THEN round(coalesce(sum(t.hours), 0) / c.available_hours, 4) END AS total_utilization
        FROM hr.capacity c
        JOIN hr.person p ON p.hr_id = c.hr_id
        LEFT JOIN psa.time_entry t
               ON lower(t.person_email) = lower(p.email) AND t.work_date >= c.week_start AND t.work_date < c.week_start + 7
        GROUP BY c.hr_id, p.name, p.email, p.department, c.iso_week, c.week_start, c.available_hours
        """
    )
    op.execute(
        """
        CREATE VIEW bi.utilization_department_weekly AS
        SELECT coalesce(department, '(none)') AS department, iso_week, week_start, count(*) AS people,
               sum(available_hours) AS available_hours, sum(billable_hours) AS billable_hours, sum(total_hours) AS total_hours,
               CASE WHEN sum(available_hours) > 0 THEN round(sum(billable_hours) / sum(available_hours), 4) END AS billable_utilization,
               CASE WHEN sum(available_hours) > 0 THEN round(sum(total_hours) / sum(available_hours), 4) END AS total_utilization
        FROM bi.utilization_weekly GROUP BY coalesce(department, '(none)'), iso_week, week_start
        """
    )
    grant_bi_to_reader()


def downgrade() -> None:
    raise NotImplementedError("warehouse migrations only move forward: a downgrade would lose data")
