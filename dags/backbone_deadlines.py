"""
### Deadline watchdog: a flow whose run has not succeeded by its business deadline alerts finance

Runs hourly. Reads the run ledger of both warehouses and alerts, once per interval, when a flow's
interval ended longer ago than its deadline (`backbone.schedules.FLOW_DEADLINES`: the Friday export
by 18:00, month-end within three days, the daily flows within three hours) and no successful run
covers it. The hour that just ended is the moment it judges, so a rerun judges the same way.

1. `check_deadlines` — overdue intervals of every flow, newly alerted ones recorded in `ops.deadline_alert`
   of their warehouse, and one alert naming them (e-mail / Slack as configured, else the log).
2. `watch_utilization` — when `BACKBONE_UTILIZATION_TARGET` is set: people and departments whose billable
   utilization stayed below it for the last `BACKBONE_UTILIZATION_WEEKS` complete weeks, alerted to HR once.

Connections: `psa_warehouse`, `accounting_warehouse`, and the alert channels.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

from backbone.schedules import dag_arguments
from backbone.settings import load_settings

FLOW = "backbone_deadlines"
SETTINGS = load_settings()


@dag(
    doc_md=__doc__,
    tags=["ops", "finance", "alerts"],
    **dag_arguments(FLOW, SETTINGS.company_timezone, retry_delay=timedelta(minutes=5)),
)
def backbone_deadlines() -> None:
    @task(multiple_outputs=False)
    def check_deadlines(**context) -> dict[str, int]:
        from backbone.deadlines import alert_overdue, newly_overdue
        from backbone.schedules import FLOW_WAREHOUSES
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        conn_ids = {"psa": settings.psa_warehouse_conn_id, "accounting": settings.accounting_warehouse_conn_id}
        overdue = []
        for warehouse, flows in FLOW_WAREHOUSES.items():
            overdue += newly_overdue(
                engine_for(conn_ids[warehouse]), flows, now=context["data_interval_end"], timezone=settings.company_timezone
            )
        alert_overdue(overdue, timezone=settings.company_timezone)
        return {"overdue": len(overdue)}

    @task(multiple_outputs=False)
    def watch_utilization(**context) -> dict[str, int]:
        from zoneinfo import ZoneInfo

        from backbone.utilization import watch
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        today = context["data_interval_end"].astimezone(ZoneInfo(settings.company_timezone)).date()
        return {"breaches": len(watch(engine_for(settings.psa_warehouse_conn_id), settings, before=today))}

    check_deadlines()
    watch_utilization()


backbone_deadlines()
