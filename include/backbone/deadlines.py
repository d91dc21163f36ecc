"""The deadline watchdog: a flow whose run has not succeeded by its business deadline alerts finance.

Airflow's own ``DeadlineAlert`` would be the natural tool, but Airflow 3.3.2's ``dag.test()`` (which
the demo and every end-to-end test use) fails on a DAG that carries one. So a small hourly DAG
(``backbone_deadlines``) reads each warehouse's run ledger instead: every interval of a flow, since
its first run, that ended more than ``FLOW_DEADLINES[flow]`` ago and that no successful run covers
is overdue. Each overdue interval is alerted once (``ops.deadline_alert``), naming the flow, the
interval and the deadline.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from backbone.schedules import FLOW_DEADLINES, gaps

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger(__name__)


def newly_overdue(engine: Engine, flows: tuple[str, ...], *, now: datetime, timezone: str) -> list[dict[str, Any]]:
    """Overdue intervals of ``flows`` (their ledger is in ``engine``'s warehouse) not alerted on yet;
    they are marked alerted in the same transaction, so each is reported once."""
    from backbone.warehouse.ops import flow_histories

    found: list[dict[str, Any]] = []
    with engine.begin() as connection:
        for flow, history in flow_histories(connection, flows).items():
            ran = history.covered + history.piloted  # a pilot run is not late, though it sent nothing
            overdue = gaps(flow, timezone, first_start=history.first_start, covered=ran, now=now, grace=FLOW_DEADLINES[flow])
            for start, end in overdue:
                marked = connection.exec_driver_sql(
                    "INSERT INTO ops.deadline_alert (flow, interval_end) VALUES (%(flow)s, %(end)s) ON CONFLICT DO NOTHING RETURNING flow",
                    {"flow": flow, "end": end},
                ).first()
                if marked is not None:
                    found.append({"flow": flow, "interval_start": start, "interval_end": end, "deadline": end + FLOW_DEADLINES[flow]})
    return found


def alert_overdue(overdue: list[dict[str, Any]], *, timezone: str) -> list[str]:
    """One alert listing every newly overdue interval (nothing when there is none)."""
    from backbone.alerts import Alert, send
    from backbone.settings import load_settings

    if not overdue:
        return []
    zone = ZoneInfo(timezone)
    lines = [f"{len(overdue)} run(s) have not succeeded by their business deadline:"]
    for o in overdue:
        start, end, due = (o[k].astimezone(zone) for k in ("interval_start", "interval_end", "deadline"))
        lines.append(f"  - {o['flow']}: {start:%a %Y-%m-%d %H:%M} → {end:%a %Y-%m-%d %H:%M}, due by {due:%a %Y-%m-%d %H:%M} ({timezone})")
    lines.append("Look at these runs in Airflow; until one succeeds, the interval stays a gap in the ledger.")
    log.warning("\n".join(lines))
    return send(Alert(subject=f"[backbone] {len(overdue)} run(s) past their deadline", text="\n".join(lines)), load_settings())
