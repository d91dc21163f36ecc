"""The HR schema of the PSA warehouse, read and derived: people, certifications, capacity.

The roster flow's SQL lives here, beside the tables it reads and writes (``backbone.warehouse.tables``).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Connection


def people_in_hr(connection: Connection) -> set[str]:
    """HR ids of everyone the warehouse knows who has not been deleted in the HR system."""
    return {r[0] for r in connection.exec_driver_sql("SELECT hr_id FROM hr.person WHERE NOT deleted_in_hr")}


def full_snapshots_between(connection: Connection, flow: str, *, since: datetime, until: datetime, excluding_run: str) -> int:
    """Successful full-snapshot runs of ``flow`` whose interval ended in ``(since, until]`` (other than ``excluding_run``)."""
    query = """
        SELECT count(*) FROM ops.flow_run WHERE flow = %(flow)s AND status = 'success' AND details->>'snapshot' = 'full'
           AND NOT details ? 'writes_skipped' AND interval_end > %(since)s AND interval_end <= %(end)s AND run_id <> %(run_id)s
    """
    return connection.exec_driver_sql(query, {"flow": flow, "since": since, "end": until, "run_id": excluding_run}).scalar_one()


def certifications_expiring(connection: Connection, as_of: date, *, within_days: int) -> list[dict[str, Any]]:
    """Certifications of active people that expire in ``[as_of, as_of + within_days]``, soonest first."""
    rows = connection.exec_driver_sql(
        "SELECT c.hr_id, c.name, c.expires_on FROM hr.certification c JOIN hr.person p USING (hr_id) "
        "WHERE p.is_active AND NOT p.deleted_in_hr AND c.expires_on BETWEEN %(d)s AND %(d)s::date + %(days)s ORDER BY c.expires_on, "
        "c.hr_id",
        {"d": as_of, "days": within_days},
    )
    return [{"hr_id": r[0], "name": r[1], "expires_on": r[2].isoformat()} for r in rows]


def recompute_capacity(connection: Connection, *, first_monday: date, weeks: int, as_of: date) -> int:
    """Replace ``hr.capacity`` for ``weeks`` ISO weeks from ``first_monday``: available hours per
    person and week = standard hours of the days employed − company holidays − approved time off
    (never below 0). Weeks before the window keep what was computed while they were current, so
    the table is also the capacity history utilization is measured against (``bi.utilization_weekly``).
    Returns the rows written."""
    connection.exec_driver_sql(
        "DELETE FROM hr.capacity WHERE week_start >= %(first)s AND week_start < %(first)s::date + 7 * %(weeks)s",
        {"first": first_monday, "weeks": weeks},
    )
    result = connection.exec_driver_sql(
        """
        INSERT INTO hr.capacity (hr_id, iso_week, week_start, standard_hours, holiday_hours, time_off_hours, available_hours, as_of)
        SELECT hr_id, to_char(week_start, 'IYYY-"W"IW'), week_start, sum(standard), sum(holiday), sum(away),
               greatest(0, sum(standard) - sum(holiday) - sum(away)), %(as_of)s
        FROM (
            SELECT p.hr_id, w.week_start::date AS week_start,
                   CASE WHEN employed THEN p.weekly_hours / 5 ELSE 0 END AS standard,
                   CASE WHEN employed AND h.day IS NOT NULL THEN p.weekly_hours / 5 ELSE 0 END AS holiday,
                   CASE WHEN employed AND h.day IS NULL THEN least(coalesce(t.hours, 0), p.weekly_hours / 5) ELSE 0 END AS away
            FROM hr.person p
            CROSS JOIN generate_series(%(first)s::date, %(first)s::date + 7 * (%(weeks)s - 1), interval '1 week') AS w(week_start)
            CROSS JOIN LATERAL generate_series(w.week_start, w.week_start + interval '4 days', interval '1 day') AS d(day)
            CROSS JOIN LATERAL (SELECT d.day::date >= p.hire_date AND (p.termination_date IS NULL OR d.day::date <= p.termination_date)
                                       AND p.employment_status <> 'Terminated' AS employed) e
            LEFT JOIN hr.company_holiday h ON h.day = d.day::date
            LEFT JOIN (SELECT hr_id, day, sum(hours) AS hours FROM hr.time_off_day GROUP BY hr_id, day) t ON t.hr_id = p.hr_id AND t.day
                = d.day::date
            WHERE NOT p.deleted_in_hr
        ) days
        GROUP BY hr_id, week_start
        """,
        {"first": first_monday, "weeks": weeks, "as_of": as_of},
    )
    return result.rowcount
