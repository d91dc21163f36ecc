"""The Finance page (FastAPI): runs by flow and period with totals, open exceptions, CSV downloads.

Served by the Airflow API server through ``plugins/finance_page.py`` at ``/finance``. It only reads,
through the finance Connections (a role that can only select), and says so plainly when a
warehouse is down instead of showing a stack trace.

Every route sits behind Airflow's login: the caller is the user of the Airflow UI's token (the
``_token`` cookie the UI sets, or an ``Authorization: Bearer`` token from ``POST /auth/token``),
resolved by Airflow's auth manager, and must be allowed the custom view ``Finance``
(``is_authorized_custom_view``: with the simple auth manager every role from ``viewer`` up; with
the FAB auth manager the role needs the "Finance" permission). A browser without a login is sent
to Airflow's login page and comes back; anything else gets 401 (no token) or 403 (bad token, or a
user without the permission).
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backbone.ledger import (
    EXCEPTION_COLUMNS,
    FLOW_NAMES,
    RUN_COLUMNS,
    WAITING_COLUMNS,
    WAITING_FLOWS,
    Ledger,
    LedgerUnavailable,
    check_paging,
    parse_period,
    resolve_flow,
    to_csv,
)

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1f2933}h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;font-size:.85rem}
th,td{border-bottom:1px solid #d9e2ec;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f0f4f8}.failed{color:#b42318;font-weight:600}.success{color:#067647}.num{text-align:right}form{margin:.5rem 0}
.notice{background:#fff4e5;border:1px solid #f5a524;padding:.8rem;border-radius:4px}
"""


FINANCE_VIEW = "Finance"
"""The custom-view resource name a user must be allowed (``GET``) to read the Finance page."""
PAGE_SIZE_LIMIT = 500
_bearer = HTTPBearer(auto_error=False)


class LoginRequired(Exception):
    """No usable Airflow login on a page request: the browser goes to Airflow's login page."""


async def finance_reader(request: Request, bearer: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Any:
    """The Airflow user behind the request, allowed to read the Finance view (else 401 / 403)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.core_api.security import get_user

    try:
        user = await get_user(request, None, bearer)
    except HTTPException as exc:
        if exc.status_code == 401 and "text/html" in request.headers.get("accept", "") and not request.url.path.endswith(".csv"):
            raise LoginRequired from exc
        raise
    if not get_auth_manager().is_authorized_custom_view(method="GET", resource_name=FINANCE_VIEW, user=user):
        raise HTTPException(status_code=403, detail=f"user {user.get_name()!r} may not read the {FINANCE_VIEW} page")
    return user


def _paging(page: str, page_size: str) -> tuple[int, int]:
    """Page numbers as a person types them; a bad one is a 400 with a sentence, not a 422 or a 503."""
    try:
        number, size = int(page), int(page_size)
    except ValueError:
        raise ValueError(f"page and page_size must be whole numbers (got {page!r}, {page_size!r})") from None
    check_paging(number, size, max_page_size=PAGE_SIZE_LIMIT)
    return number, size


def create_app() -> FastAPI:
    app = FastAPI(title="Finance", docs_url=None, redoc_url=None, openapi_url=None, dependencies=[Depends(finance_reader)])

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, _: LoginRequired) -> Response:
        from airflow.api_fastapi.app import get_auth_manager

        return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)

    def ledger() -> Ledger:
        return Ledger.from_settings()

    def filters(flow: str | None, period: str | None) -> tuple[str | None, Any]:
        led = ledger()
        return resolve_flow(flow), (led, parse_period(period, led.timezone))

    @app.get("/", response_class=HTMLResponse)
    def page(flow: str | None = None, period: str | None = None, page: str = "1", page_size: str = "50") -> HTMLResponse:
        try:
            number, size = _paging(page, page_size)
            flow_id, (led, when) = filters(flow, period)
            runs, total = led.runs(flow=flow_id, period=when, page=number, page_size=size)
            exceptions = led.open_exceptions(flow=flow_id, period=when)
            gaps = led.gaps(flow=flow_id)
            waiting = led.waiting_invoices(period=when) if flow_id in (None, *WAITING_FLOWS) else []
        except LedgerUnavailable as exc:
            return HTMLResponse(_document(f'<p class="notice" id="unavailable">{escape(str(exc))}</p>'), status_code=503)
        except ValueError as exc:
            return HTMLResponse(
                _document(_filter_form(flow, period) + f'<p class="notice" id="bad-input">{escape(str(exc))}</p>'), status_code=400
            )
        query = {k: v for k, v in {"flow": flow, "period": period}.items() if v}
        body = [_filter_form(flow, period), f"<h2>Gaps <small>({len(gaps)})</small></h2>"]
        if gaps:
            body.append(
                "<p>Due intervals no successful run covers yet. The flow's next run covers them by itself; "
                "one older than the catch-up limit needs a rerun in Airflow.</p>"
            )
            body.append(_table("gaps", gaps, ["flow_name", "interval"]))
        else:
            body.append('<p id="gaps">gaps: none</p>')
        if waiting:
            body.append(f"<h2>Waiting invoices <small>({len(waiting)})</small></h2>")
            body.append(
                "<p>Time-and-materials invoices whose month's time the weekly export has not fully sent yet. "
                "Not exceptions: the daily invoicing run posts them once it has (or holds them if they still do not reconcile).</p>"
            )
            body.append(_table("waiting", waiting, WAITING_COLUMNS))
        body.append(f"<h2>Runs <small>({total}, times in {escape(led.timezone)})</small></h2>")
        body.append(f'<p><a id="runs-csv" href="runs.csv?{urlencode(query)}">Download runs (CSV)</a></p>')
        body.append(
            _table(
                "runs",
                runs,
                [
                    "flow_name",
                    "interval",
                    "status",
                    "extracted",
                    "exceptions",
                    "loaded",
                    "posted",
                    "hours",
                    "amounts",
                    "failed_rules",
                    "airflow_url",
                ],
            )
        )
        body.append(_pager(number, size, total, query))
        body.append(f"<h2>Open exceptions <small>({len(exceptions)})</small></h2>")
        body.append(f'<p><a id="exceptions-csv" href="exceptions.csv?{urlencode(query)}">Download open exceptions (CSV)</a></p>')
        body.append(_table("exceptions", exceptions, ["flow", "entity", "key", "rule", "reason", "first_seen"]))
        return HTMLResponse(_document("".join(body)))

    @app.get("/runs.csv")
    def runs_csv(flow: str | None = None, period: str | None = None) -> Response:
        try:
            flow_id, (led, when) = filters(flow, period)
            rows, _ = led.runs(flow=flow_id, period=when, page=1, page_size=100_000)
        except LedgerUnavailable as exc:
            return PlainTextResponse(str(exc), status_code=503)
        except ValueError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        return _csv_download(to_csv(rows, RUN_COLUMNS), "runs", flow_id, when)

    @app.get("/exceptions.csv")
    def exceptions_csv(flow: str | None = None, period: str | None = None) -> Response:
        try:
            flow_id, (led, when) = filters(flow, period)
            rows = led.open_exceptions(flow=flow_id, period=when, limit=100_000)
        except LedgerUnavailable as exc:
            return PlainTextResponse(str(exc), status_code=503)
        except ValueError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        return _csv_download(to_csv(rows, EXCEPTION_COLUMNS), "exceptions", flow_id, when)

    return app


def _csv_download(body: str, what: str, flow: str | None, period: Any) -> Response:
    """A CSV download named after what it holds (``runs-timesheets_weekly_to_accounting-2026-W47.csv``);
    flow and period were validated (a known flow id, a period of a known form) before they get here."""
    name = f"{what}-{flow or 'all-flows'}-{period.label if period else 'all-periods'}.csv"
    return Response(body, media_type="text/csv; charset=utf-8", headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _document(body: str) -> str:
    head = f"<meta charset='utf-8'><title>Finance</title><style>{STYLE}</style>"
    return f"<!doctype html><html><head>{head}</head><body><h1>Finance: runs and exceptions</h1>{body}</body></html>"


def _filter_form(flow: str | None, period: str | None) -> str:
    options = "".join(f'<option value="{f}"{" selected" if f == flow else ""}>{escape(name)}</option>' for f, name in FLOW_NAMES.items())
    return (
        f'<form method="get"><label>Flow <select name="flow"><option value="">all flows</option>{options}</select></label> '
        f'<label>Period <input name="period" placeholder="2026-W47 or 2026-10" value="{escape(period or "")}"></label> '
        "<button>Show</button></form>"
    )


def _table(table_id: str, rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return f'<p id="{table_id}-empty">Nothing here.</p>'
    head = "".join(f"<th>{escape(c.replace('_', ' '))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c, "")
            if c == "airflow_url" and value:
                cells.append(f'<td><a href="{escape(str(value))}" target="_top">run</a></td>')
            elif c == "status":
                cells.append(f'<td class="{escape(str(value))}">{escape(str(value))}</td>')
            else:
                cells.append(f"<td{' class=num' if isinstance(value, int) else ''}>{escape(str(value))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _pager(page: int, page_size: int, total: int, query: dict[str, str]) -> str:
    links = []
    if page > 1:
        links.append(f'<a href="?{urlencode({**query, "page": page - 1, "page_size": page_size})}">newer</a>')
    if page * page_size < total:
        links.append(f'<a id="older" href="?{urlencode({**query, "page": page + 1, "page_size": page_size})}">older</a>')
    return f"<p>{' · '.join(links)}</p>" if links else ""


app = create_app()
