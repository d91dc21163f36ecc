"""What the Leadership page shows: the BI marts (``bi`` schema of both warehouses) as tables,
charts and a three-line summary (also printed by ``make demo``).

Reads only, through the ledger's read-only engines: utilization per week (``bi.utilization_weekly``),
project margins per month (``bi.project_margin_monthly``), the weighted open pipeline
(``bi.pipeline_by_stage``) and cash (``bi.cash_monthly``).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from backbone.finance import charts
from backbone.ledger import Ledger

DEFAULT_TARGET = 0.75
"""The target line drawn when ``BACKBONE_UTILIZATION_TARGET`` is unset (the watch itself stays off)."""
WEEKS_SHOWN = 12


def team_utilization(ledger: Ledger, *, weeks: int = WEEKS_SHOWN) -> list[dict[str, Any]]:
    """Team billable and total utilization per ISO week with approved time, oldest first."""
    rows = ledger._query(
        """
        SELECT iso_week, week_start, count(*) AS people, sum(available_hours) AS available_hours, sum(billable_hours) AS billable_hours,
               sum(total_hours) AS total_hours
        FROM bi.utilization_weekly GROUP BY iso_week, week_start
        HAVING sum(total_hours) > 0 ORDER BY week_start DESC LIMIT :weeks
        """,
        {"weeks": weeks},
        warehouses=("psa",),
    )
    for r in rows:
        available = Decimal(r["available_hours"] or 0)
        r["billable_utilization"] = (Decimal(r["billable_hours"]) / available).quantize(Decimal("0.0001")) if available else None
        r["total_utilization"] = (Decimal(r["total_hours"]) / available).quantize(Decimal("0.0001")) if available else None
    return sorted(rows, key=lambda r: r["week_start"])


def below_target(ledger: Ledger, iso_week: str, target: float) -> list[dict[str, Any]]:
    """People whose billable utilization in ``iso_week`` is under ``target``, lowest first."""
    return ledger._query(
        "SELECT name, department, available_hours, billable_hours, billable_utilization FROM bi.utilization_weekly "
        "WHERE iso_week = :week AND available_hours > 0 AND billable_utilization < :target ORDER BY billable_utilization, name",
        {"week": iso_week, "target": Decimal(str(target))},
        warehouses=("psa",),
    )


def project_margins(ledger: Ledger, month: str | None) -> tuple[str | None, list[dict[str, Any]]]:
    """The month asked for (else the latest with time) and its projects' margins, best first."""
    if month is None:
        latest = ledger._query("SELECT max(month) AS month FROM bi.project_margin_monthly", {}, warehouses=("psa",))
        month = latest[0]["month"] if latest else None
        if month is None:
            return None, []
    rows = ledger._query(
        "SELECT * FROM bi.project_margin_monthly WHERE month = :month ORDER BY margin DESC, project_id",
        {"month": month},
        warehouses=("psa",),
    )
    return month, rows


def pipeline(ledger: Ledger) -> list[dict[str, Any]]:
    return ledger._query("SELECT * FROM bi.pipeline_by_stage ORDER BY currency, probability, stage", {}, warehouses=("psa",))


def cash(ledger: Ledger) -> list[dict[str, Any]]:
    return ledger._query("SELECT * FROM bi.cash_monthly ORDER BY billing_month DESC, currency", {}, warehouses=("accounting",))


def summary(ledger: Ledger) -> list[str]:
    """Three lines for leadership: team utilization last week, the top margin project of the last
    month with time, the weighted open pipeline."""
    lines = []
    team = team_utilization(ledger, weeks=1)
    if team and team[-1]["billable_utilization"] is not None:
        t = team[-1]
        lines.append(
            f"Team utilization {t['iso_week']}: {t['billable_utilization']:.0%} billable, {t['total_utilization']:.0%} in all "
            f"({t['billable_hours']} billable of {t['available_hours']} available hours, {t['people']} people)"
        )
    else:
        lines.append("Team utilization: no week with both HR capacity and approved time yet")
    month, margins = project_margins(ledger, None)
    if margins:
        top = margins[0]
        ratio = f", {top['margin_ratio']:.0%}" if top["margin_ratio"] is not None else ""
        name = f"{top['project_name']} ({top['project_id']})" if top["project_name"] else top["project_id"]
        lines.append(
            f"Top margin {month}: {name}, margin {top['margin']:,.2f} {top['currency']}{ratio} "
            f"on revenue {top['revenue']:,.2f} {top['currency']}"
        )
    else:
        lines.append("Top margin: no approved time yet")
    stages = pipeline(ledger)
    if stages:
        by_currency: dict[str, list[Decimal]] = {}
        for s in stages:
            totals = by_currency.setdefault(s["currency"], [Decimal(0), Decimal(0), Decimal(0)])
            totals[0] += s["deals"]
            totals[1] += s["amount"]
            totals[2] += s["weighted_amount"]
        lines.append(
            "Weighted pipeline: "
            + "; ".join(
                f"{w:,.2f} {c} of {a:,.2f} in {int(n)} open deal{'s' if n != 1 else ''}" for c, (n, a, w) in sorted(by_currency.items())
            )
        )
    else:
        lines.append("Weighted pipeline: no open deals")
    return lines


def leadership_context(ledger: Ledger, month: str | None) -> dict[str, Any]:
    """Everything the Leadership page shows (``month``: ``2026-10`` for the margin table, else the latest)."""
    from backbone.settings import load_settings

    if month and not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
        raise ValueError(f"month {month!r} is not a month such as 2026-10")
    settings = load_settings()
    target = settings.utilization_target if settings.utilization_target is not None else DEFAULT_TARGET
    team = team_utilization(ledger)
    margin_month, margins = project_margins(ledger, month or None)
    stages = pipeline(ledger)
    return {
        "target": target,
        "target_configured": settings.utilization_target is not None,
        "team": team,
        "below": below_target(ledger, team[-1]["iso_week"], target) if team else [],
        "last_week": team[-1]["iso_week"] if team else None,
        "margin_month": margin_month,
        "margins": margins,
        "pipeline": stages,
        "cash": cash(ledger),
        "summary": summary(ledger),
        "charts": {
            "utilization": charts.utilization_per_week(team, target),
            "margin": charts.margin_per_project(margins[:15]),
            "pipeline": charts.pipeline_by_stage(stages),
        },
    }
