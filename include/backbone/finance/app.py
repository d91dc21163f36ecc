"""The Finance and Leadership pages (FastAPI + Jinja2 templates, charts rendered to SVG on the server).

Served by the Airflow API server through ``plugins/finance_page.py`` at ``/finance`` (Finance) and
``/finance/leadership`` (Leadership). They only read, through the finance Connections (a role that
can only select), and say so plainly when a warehouse is down instead of showing a stack trace.

Every route sits behind Airflow's login: the caller is the user of the Airflow UI's token (the
``_token`` cookie the UI sets, or an ``Authorization: Bearer`` token from ``POST /auth/token``),
resolved by Airflow's auth manager, and must be allowed the custom view ``Finance`` (or
``Leadership`` for that page) (``is_authorized_custom_view``: with the simple auth manager every
role from ``viewer`` up; with the FAB auth manager the role needs that permission). A browser
without a login is sent to Airflow's login page and comes back; anything else gets 401 (no token)
or 403 (bad token, or a user without the permission).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jinja2 import Environment, FileSystemLoader, select_autoescape

from backbone.finance import charts
from backbone.ledger import (
    EXCEPTION_COLUMNS,
    FLOW_NAMES,
    WAITING_FLOWS,
    Ledger,
    LedgerUnavailable,
    Period,
    check_paging,
    parse_period,
    parse_range,
    resolve_flow,
    runs_for_csv,
    to_csv,
    totals_by_flow,
)

FINANCE_VIEW = "Finance"
"""The custom-view resource name a user must be allowed (``GET``) to read the Finance page."""
LEADERSHIP_VIEW = "Leadership"
"""… and the Leadership page."""
PAGE_SIZE_LIMIT = 500
RUN_STATUSES = ("success", "failed", "running")
BASE = "/finance"
_bearer = HTTPBearer(auto_error=False)


def money(value: Any) -> str:
    """``48842.5`` → ``48,842.50`` (thousands separated, two decimals)."""
    try:
        return f"{Decimal(str(value)):,.2f}"
    except ArithmeticError:
        return str(value)


def number(value: Any) -> str:
    return f"{int(value):,}" if isinstance(value, int | bool) else str(value)


templates = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")), autoescape=select_autoescape(default=True), trim_blocks=True
)
templates.filters.update(money=money, number=number)


class LoginRequired(Exception):
    """No usable Airflow login on a page request: the browser goes to Airflow's login page."""


async def finance_reader(request: Request, bearer: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Any:
    """The Airflow user behind the request, allowed to read the page's view (else 401 / 403)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.core_api.security import get_user

    try:
        user = await get_user(request, None, bearer)
    except HTTPException as exc:
        if exc.status_code == 401 and "text/html" in request.headers.get("accept", "") and not request.url.path.endswith(".csv"):
            raise LoginRequired from exc
        raise
    view = LEADERSHIP_VIEW if request.url.path.rstrip("/").endswith("/leadership") else FINANCE_VIEW
    if not get_auth_manager().is_authorized_custom_view(method="GET", resource_name=view, user=user):
        raise HTTPException(status_code=403, detail=f"user {user.get_name()!r} may not read the {view} page")
    return user


def _paging(page: str, page_size: str) -> tuple[int, int]:
    """Page numbers as a person types them; a bad one is a 400 with a sentence, not a 422 or a 503."""
    try:
        number_, size = int(page), int(page_size)
    except ValueError:
        raise ValueError(f"page and page_size must be whole numbers (got {page!r}, {page_size!r})") from None
    check_paging(number_, size, max_page_size=PAGE_SIZE_LIMIT)
    return number_, size


class Filters:
    """The page's filters as typed (kept for the form, even when wrong) and as the ledger reads them."""

    def __init__(self, flow: str | None, status: str | None, period: str | None, from_day: str | None, to_day: str | None) -> None:
        self.flow, self.status, self.period = flow or "", status or "", period or ""
        self.from_day, self.to_day = from_day or "", to_day or ""

    def resolve(self, timezone: str) -> tuple[str | None, str | None, Period | None]:
        flow = resolve_flow(self.flow or None)
        if self.status and self.status not in RUN_STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {', '.join(RUN_STATUSES)}")
        if self.period and (self.from_day or self.to_day):
            raise ValueError("choose either a week or month, or a date range, not both")
        period = parse_period(self.period or None, timezone) or parse_range(self.from_day or None, self.to_day or None, timezone)
        return flow, self.status or None, period

    def query(self, **extra: Any) -> dict[str, Any]:
        values = {"flow": self.flow, "status": self.status, "period": self.period, "from": self.from_day, "to": self.to_day, **extra}
        return {k: v for k, v in values.items() if v not in ("", None)}


def create_app() -> FastAPI:
    app = FastAPI(title="Finance", docs_url=None, redoc_url=None, openapi_url=None, dependencies=[Depends(finance_reader)])

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, _: LoginRequired) -> Response:
        from airflow.api_fastapi.app import get_auth_manager

        return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)

    @app.get("/", response_class=HTMLResponse)
    def page(
        request: Request,
        flow: str | None = None,
        status: str | None = None,
        period: str | None = None,
        page: str = "1",
        page_size: str = "50",
        run: str | None = None,
    ) -> HTMLResponse:
        form = Filters(flow, status, period, request.query_params.get("from"), request.query_params.get("to"))
        context: dict[str, Any] = {"form": form, "flows": FLOW_NAMES, "statuses": RUN_STATUSES, "timezone": ""}
        try:
            number_, size = _paging(page, page_size)
            led = Ledger.from_settings()
            context["timezone"] = led.timezone
            flow_id, status_, when = form.resolve(led.timezone)
            context.update(_finance_data(led, form, flow_id, status_, when, number_, size, run))
        except LedgerUnavailable as exc:
            return _render("finance.html", {**context, "unavailable": str(exc)}, status_code=503)
        except ValueError as exc:
            return _render("finance.html", {**context, "error": str(exc)}, status_code=400)
        return _render("finance.html", context)

    @app.get("/runs.csv")
    def runs_csv(request: Request, flow: str | None = None, status: str | None = None, period: str | None = None) -> Response:
        form = Filters(flow, status, period, request.query_params.get("from"), request.query_params.get("to"))
        try:
            led = Ledger.from_settings()
            flow_id, status_, when = form.resolve(led.timezone)
            rows, columns = runs_for_csv(led.all_runs(flow=flow_id, period=when, status=status_))
        except LedgerUnavailable as exc:
            return PlainTextResponse(str(exc), status_code=503)
        except ValueError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        return _csv_download(to_csv(rows, columns), "runs", flow_id, when)

    @app.get("/exceptions.csv")
    def exceptions_csv(request: Request, flow: str | None = None, status: str | None = None, period: str | None = None) -> Response:
        form = Filters(flow, status, period, request.query_params.get("from"), request.query_params.get("to"))
        try:
            led = Ledger.from_settings()
            flow_id, _, when = form.resolve(led.timezone)
            rows = led.open_exceptions(flow=flow_id, period=when, limit=100_000)
        except LedgerUnavailable as exc:
            return PlainTextResponse(str(exc), status_code=503)
        except ValueError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        return _csv_download(to_csv(rows, EXCEPTION_COLUMNS), "exceptions", flow_id, when)

    @app.get("/leadership", response_class=HTMLResponse)
    def leadership(month: str | None = None) -> HTMLResponse:
        from backbone.finance.leadership import leadership_context

        context: dict[str, Any] = {"month": month or ""}
        try:
            context.update(leadership_context(Ledger.from_settings(), month))
        except LedgerUnavailable as exc:
            return _render("leadership.html", {**context, "unavailable": str(exc)}, status_code=503, page="leadership")
        except ValueError as exc:
            return _render("leadership.html", {**context, "error": str(exc)}, status_code=400, page="leadership")
        return _render("leadership.html", context, page="leadership")

    return app


def _finance_data(
    led: Ledger, form: Filters, flow: str | None, status: str | None, when: Period | None, page: int, size: int, run: str | None
) -> dict[str, Any]:
    """Everything the Finance page shows for these filters. Without a period, totals and charts cover
    the last eight weeks (a ledger of years stays quick to read); the runs table still pages through all."""
    summary_period = when or _recent(led.timezone)
    selection = led.all_runs(flow=flow, period=summary_period, status=status)
    if run:
        shown = [r for r in led.all_runs(flow=flow, status=status) if r["anchor"] == run]
        if not shown:
            raise ValueError(f"no run {run!r} in this selection")
        runs, total = led.runs_by_anchor(shown), len(shown)
    else:
        runs, total = led.runs(flow=flow, period=when, status=status, page=page, page_size=size)
    totals, currencies = totals_by_flow(selection)
    gaps = led.gaps(flow=flow)
    held = led.held_invoices(period=when) if flow in (None, *WAITING_FLOWS) else []
    held_totals: dict[str, Decimal] = {}
    for h in held:
        held_totals[h["currency"]] = held_totals.get(h["currency"], Decimal(0)) + h["total"]
    query = form.query(page_size=size if size != 50 else None)
    from backbone.settings import load_settings

    return {
        "period_label": summary_period.label,
        "summary_count": len(selection),
        "total": total,
        "totals": totals,
        "currencies": currencies,
        "runs": runs,
        "open_run": runs[0]["run_id"] if run and runs else None,
        "exceptions": led.open_exceptions(flow=flow, period=when),
        "gaps": gaps,
        "gap_groups": gap_groups(gaps),
        "held": held,
        "held_totals": dict(sorted(held_totals.items())),
        "waiting": led.waiting_invoices(period=when) if flow in (None, *WAITING_FLOWS) else [],
        "audit": led.audit_findings() if flow in (None, "accounting_codes_to_psa") else [],
        "psa_url": load_settings().psa_ui_url.rstrip("/"),
        "charts": {
            "hours": charts.hours_per_week([r for r in selection if r["flow"] == "timesheets_weekly_to_accounting"]),
            "amounts": charts.amounts_per_week(selection),
            "exceptions": charts.exceptions_over_time(led.exceptions_per_week(flow=flow, period=when)),
            "held": charts.held_value_per_month(held),
        },
        "query": "?" + urlencode(form.query()) if form.query() else "",
        "prev_page": "?" + urlencode({**query, "page": page - 1}) if page > 1 and not run else "",
        "next_page": "?" + urlencode({**query, "page": page + 1}) if page * size < total and not run else "",
    }


SUMMARY_WINDOW = timedelta(weeks=8)


def _recent(timezone: str) -> Period:
    """The default span of the totals and charts: the eight weeks up to now (a view of today, so the clock)."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    now = datetime.now(UTC).astimezone(ZoneInfo(timezone))
    return Period(start=now - SUMMARY_WINDOW, end=now + timedelta(days=1), label="the last 8 weeks")


def gap_groups(gaps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Gaps per flow: how many, the first and the last (a flow every 30 minutes that stopped for a
    week has hundreds; the page names the span and lists the intervals on demand)."""
    groups: dict[str, dict[str, Any]] = {}
    for g in sorted(gaps, key=lambda g: g["interval_start"]):
        group = groups.setdefault(g["flow"], {"flow": g["flow"], "flow_name": g["flow_name"], "count": 0, "intervals": []})
        group["count"] += 1
        group["intervals"].append(g["interval"])
    for group in groups.values():
        group["first"], group["last"] = group["intervals"][0], group["intervals"][-1]
    return list(groups.values())


def _render(template: str, context: dict[str, Any], *, status_code: int = 200, page: str = "finance") -> HTMLResponse:
    headings = {"finance": "Finance: runs and exceptions", "leadership": "Leadership: utilization, margins, pipeline and cash"}
    html = templates.get_template(template).render(
        base=BASE,
        page=page,
        title=headings[page].split(":")[0],
        heading=headings[page],
        run_link=lambda anchor, *_: f"{BASE}/?{urlencode({'run': anchor})}#{anchor}",
        **context,
    )
    return HTMLResponse(html, status_code=status_code)


def _csv_download(body: str, what: str, flow: str | None, period: Period | None) -> Response:
    """A CSV download named after what it holds (``runs-timesheets_weekly_to_accounting-2026-W47.csv``);
    flow and period were validated (a known flow id, a period of a known form) before they get here."""
    name = f"{what}-{flow or 'all-flows'}-{period.label if period else 'all-periods'}.csv"
    return Response(body, media_type="text/csv; charset=utf-8", headers={"Content-Disposition": f'attachment; filename="{name}"'})


app = create_app()
