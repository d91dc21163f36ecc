"""Utilization watch: tell HR when a person's or a department's billable utilization has stayed
below target for N complete weeks (the seed's Step 8: "notify HR when utilization drops below target").

Reads the BI marts (``bi.utilization_weekly``, ``bi.utilization_department_weekly``) of the PSA
warehouse. A breach is every one of the last ``weeks`` complete ISO weeks below
``BACKBONE_UTILIZATION_TARGET`` with hours available (a week nobody was available breaks no target).
Each breach is alerted once (``ops.deadline_alert``, key ``utilization:<kind>:<id>``); a breach that
goes on is named again after another ``weeks`` weeks. The alert goes to HR's channel
(``BACKBONE_HR_ALERT_EMAIL_TO`` / ``BACKBONE_HR_ALERT_SLACK_CONN_ID``, else the general one).
The hourly ``backbone_deadlines`` DAG runs it; no target set, no watch.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from backbone.settings import Settings

log = logging.getLogger(__name__)

BREACH_QUERY = """
WITH recent AS (
    SELECT DISTINCT week_start FROM bi.utilization_weekly
    WHERE week_start + 7 <= %(before)s ORDER BY week_start DESC LIMIT %(weeks)s
)
SELECT 'person' AS kind, hr_id AS key, name AS label, max(week_start) AS last_week,
       array_agg(billable_utilization ORDER BY week_start) AS ratios
FROM bi.utilization_weekly
WHERE week_start IN (SELECT week_start FROM recent) AND available_hours > 0
GROUP BY hr_id, name
HAVING count(*) = %(weeks)s AND (SELECT count(*) FROM recent) = %(weeks)s AND bool_and(billable_utilization < %(target)s)
UNION ALL
SELECT 'department', department, department, max(week_start), array_agg(billable_utilization ORDER BY week_start)
FROM bi.utilization_department_weekly
WHERE week_start IN (SELECT week_start FROM recent) AND available_hours > 0
GROUP BY department
HAVING count(*) = %(weeks)s AND (SELECT count(*) FROM recent) = %(weeks)s AND bool_and(billable_utilization < %(target)s)
ORDER BY 1 DESC, 3
"""


def new_breaches(connection: Connection, *, target: Decimal, weeks: int, before: date) -> list[dict[str, Any]]:
    """Breaches over the last ``weeks`` complete weeks before ``before`` not alerted in that span;
    marked alerted in the same transaction."""
    found = []
    for row in connection.exec_driver_sql(BREACH_QUERY, {"target": target, "weeks": weeks, "before": before}).mappings().all():
        key = f"utilization:{row['kind']}:{row['key']}"[:100]
        week_end = datetime.combine(row["last_week"] + timedelta(days=7), time(), tzinfo=UTC)
        recently = connection.exec_driver_sql(
            "SELECT 1 FROM ops.deadline_alert WHERE flow = %(key)s AND interval_end > %(since)s",
            {"key": key, "since": week_end - timedelta(weeks=weeks)},
        ).first()
        if recently is not None:
            continue
        connection.exec_driver_sql(
            "INSERT INTO ops.deadline_alert (flow, interval_end) VALUES (%(key)s, %(end)s) ON CONFLICT DO NOTHING",
            {"key": key, "end": week_end},
        )
        found.append({**dict(row), "ratios": [Decimal(r) for r in row["ratios"]]})
    return found


def watch(engine: Engine, settings: Settings, *, before: date) -> list[dict[str, Any]]:
    """Find new breaches and alert HR once about them (nothing when no target is set)."""
    if settings.utilization_target is None:
        return []
    target = Decimal(str(settings.utilization_target))
    with engine.begin() as connection:
        breaches = new_breaches(connection, target=target, weeks=settings.utilization_weeks, before=before)
    if breaches:
        alert_hr(breaches, settings)
    return breaches


def alert_hr(breaches: list[dict[str, Any]], settings: Settings) -> list[str]:
    from backbone.alerts import Alert, send

    target = f"{settings.utilization_target:.0%}"
    lines = [f"Billable utilization below {target} for the last {settings.utilization_weeks} complete weeks:"]
    for b in breaches:
        ratios = ", ".join(f"{r:.0%}" for r in b["ratios"])
        lines.append(f"  - {b['kind']} {b['label']}: {ratios} (weeks up to {b['last_week']:%G-W%V})")
    lines.append("From bi.utilization_weekly: approved hours ÷ available hours (capacity less holidays and approved time off).")
    log.warning("\n".join(lines))
    channel = settings.model_copy(
        update={
            "alert_email_to": settings.hr_alert_email_to or settings.alert_email_to,
            "alert_slack_conn_id": settings.hr_alert_slack_conn_id or settings.alert_slack_conn_id,
        }
    )
    return send(Alert(subject=f"[backbone] utilization below {target}: {len(breaches)} to look at", text="\n".join(lines)), channel)
