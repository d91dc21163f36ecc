"""Charts for the Finance and Leadership pages: Vega-Lite specifications built with Altair and
rendered to SVG on the server by vl-convert (no JavaScript, nothing fetched by the browser).

Each function takes plain rows and returns an SVG string, or ``""`` when there is nothing to draw
(the page then says so in words). Marks carry the ``role-mark`` class vl-convert gives them, so
tests count what a person sees.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd

WIDTH = 480
HEIGHT = 180


def _svg(chart: alt.TopLevelMixin) -> str:
    import vl_convert

    spec = (
        chart.configure_view(stroke=None)
        .configure_axis(labelFontSize=11, titleFontSize=11)
        .configure_axisX(labelAngle=0)
        .configure_legend(orient="bottom", labelLimit=0, titleFontSize=11, labelFontSize=11)
        .to_dict()
    )
    return vl_convert.vegalite_to_svg(spec)


def hours_per_week(runs: list[dict[str, Any]]) -> str:
    """Approved hours exported per ISO week (the weekly export's runs of the selection)."""
    points = [{"week": _iso_week(r["interval_end"]), "hours": float(r["hours"])} for r in runs if r.get("hours") not in (None, "")]
    if not points:
        return ""
    frame = pd.DataFrame(points).groupby("week", as_index=False)["hours"].sum()
    chart = (
        alt.Chart(frame, title="Hours exported per week")
        .mark_bar(color="#2563eb")
        .encode(x=alt.X("week:O", title="ISO week"), y=alt.Y("hours:Q", title="hours"), tooltip=["week", "hours"])
        .properties(width=WIDTH, height=HEIGHT)
    )
    return _svg(chart)


def amounts_per_week(runs: list[dict[str, Any]]) -> str:
    """Exported amounts per ISO week, one colour per currency (never added across currencies)."""
    points = [
        {"week": _iso_week(r["interval_end"]), "currency": currency, "amount": float(amount)}
        for r in runs
        if r["flow"] == "timesheets_weekly_to_accounting"
        for currency, amount in r.get("amount_by_currency", {}).items()
    ]
    if not points:
        return ""
    return _bars_per_currency(points, "week", x_title="ISO week", y_title="amount", title="Amounts exported per week, by currency")


def exceptions_over_time(rows: list[dict[str, Any]]) -> str:
    """New exceptions per ISO week, stacked by flow."""
    if not rows:
        return ""
    chart = (
        alt.Chart(pd.DataFrame(rows), title="New exceptions per week")
        .mark_bar()
        .encode(
            x=alt.X("week:O", title="ISO week"),
            y=alt.Y("exceptions:Q", title="records held"),
            color=alt.Color("flow:N", title="flow"),
            tooltip=["week", "flow", "exceptions"],
        )
        .properties(width=WIDTH, height=HEIGHT)
    )
    return _svg(chart)


def held_value_per_month(held: list[dict[str, Any]]) -> str:
    """Value of held invoices per billing month, one bar per currency."""
    points = [{"month": h["billing_month"], "currency": h["currency"], "amount": float(h["total"])} for h in held]
    if not points:
        return ""
    return _bars_per_currency(points, "month", x_title="billing month", y_title="amount held", title="Held invoice value per billing month")


def utilization_per_week(rows: list[dict[str, Any]], target: float) -> str:
    """Team billable and total utilization per ISO week, with the target as a rule."""
    points = [
        {"week": r["iso_week"], "measure": measure, "utilization": float(r[key])}
        for r in rows
        for measure, key in (("billable", "billable_utilization"), ("total", "total_utilization"))
        if r.get(key) is not None
    ]
    if not points:
        return ""
    lines = (
        alt.Chart(pd.DataFrame(points))
        .mark_line(point=True)
        .encode(
            x=alt.X("week:O", title="ISO week"),
            y=alt.Y("utilization:Q", title="utilization", axis=alt.Axis(format="%")),
            color=alt.Color("measure:N", title="hours"),
            tooltip=["week", "measure", alt.Tooltip("utilization:Q", format=".0%")],
        )
    )
    rule = alt.Chart(pd.DataFrame([{"target": target}])).mark_rule(color="#b42318", strokeDash=[4, 3]).encode(y="target:Q")
    return _svg(alt.layer(lines, rule, title=f"Team utilization per week (target {target:.0%})").properties(width=WIDTH, height=HEIGHT))


def margin_per_project(rows: list[dict[str, Any]]) -> str:
    """Revenue and cost per project for a month (one currency per chart row)."""
    points = [
        {"project": f"{r['project_id']} ({r['currency']})", "measure": m, "amount": float(r[m])}
        for r in rows
        for m in ("revenue", "cost")
        if r.get(m) is not None
    ]
    if not points:
        return ""
    chart = (
        alt.Chart(pd.DataFrame(points), title="Revenue and cost per project")
        .mark_bar()
        .encode(
            y=alt.Y("project:N", title=None, sort="-x"),
            yOffset="measure:N",
            x=alt.X("amount:Q", title="amount"),
            color=alt.Color("measure:N", title=None, scale=alt.Scale(domain=["revenue", "cost"], range=["#2563eb", "#f59e0b"])),
            tooltip=["project", "measure", alt.Tooltip("amount:Q", format=",.2f")],
        )
        .properties(width=WIDTH - 120)
    )
    return _svg(chart)


def pipeline_by_stage(rows: list[dict[str, Any]]) -> str:
    """Weighted open pipeline per stage and currency."""
    points = [
        {"stage": r["stage"], "probability": float(r["probability"]), "currency": r["currency"], "weighted": float(r["weighted_amount"])}
        for r in rows
    ]
    if not points:
        return ""
    chart = (
        alt.Chart(pd.DataFrame(points), title="Weighted pipeline by stage")
        .mark_bar()
        .encode(
            x=alt.X("stage:N", title="deal stage (by probability)", sort=alt.EncodingSortField("probability", op="max", order="ascending")),
            xOffset="currency:N",
            y=alt.Y("weighted:Q", title="weighted amount"),
            color=alt.Color("currency:N", title="currency"),
            tooltip=["stage", "currency", alt.Tooltip("weighted:Q", format=",.2f")],
        )
        .properties(width=WIDTH, height=HEIGHT)
    )
    return _svg(chart)


def _bars_per_currency(points: list[dict[str, Any]], x: str, *, x_title: str, y_title: str, title: str) -> str:
    """Amounts summed per ``x`` and currency, one bar per currency side by side (never one sum
    across currencies)."""
    frame = pd.DataFrame(points).groupby([x, "currency"], as_index=False)["amount"].sum()
    chart = (
        alt.Chart(frame, title=title)
        .mark_bar()
        .encode(
            x=alt.X(f"{x}:O", title=x_title),
            xOffset="currency:N",
            y=alt.Y("amount:Q", title=y_title),
            color=alt.Color("currency:N", title="currency"),
            tooltip=[x, "currency", alt.Tooltip("amount:Q", format=",.2f")],
        )
        .properties(width=WIDTH, height=HEIGHT)
    )
    return _svg(chart)


def _iso_week(local_end: str) -> str:
    """``2026-10-30 17:00`` (an interval's end in company time) → ``2026-W44``."""
    from datetime import date

    year, week, _ = date.fromisoformat(local_end[:10]).isocalendar()
    return f"{year}-W{week:02d}"
