"""The Finance and Leadership pages' pure parts: periods, totals, CSV shape, amounts at stake, gap
groups, who triggered a run, and charts that draw the right marks and escape what they show.
No database: the pages themselves are driven against real runs in test_finance_ledger.py."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

import pytest

from backbone.finance import charts
from backbone.finance.app import Filters, gap_groups, money
from backbone.flows.runtime import triggered_by
from backbone.ledger import at_stake, parse_period, parse_range, runs_for_csv, totals_by_flow

ZONE = "Europe/Amsterdam"


def run(flow: str, end: str, *, status: str = "success", hours: str = "", amounts: dict[str, str] | None = None, posted: int = 0) -> dict:
    return {
        "flow": flow,
        "flow_name": flow,
        "status": status,
        "interval_end": end,
        "extracted": 10,
        "exceptions": 1,
        "posted": posted,
        "hours": hours,
        "amount_by_currency": {c: Decimal(a) for c, a in (amounts or {}).items()},
    }


def test_totals_are_per_flow_and_per_currency_never_added_across_currencies():
    rows = [
        run("timesheets_weekly_to_accounting", "2026-10-30 17:00", hours="10.5", amounts={"EUR": "1000.10", "USD": "5"}, posted=3),
        run("timesheets_weekly_to_accounting", "2026-11-06 17:00", status="failed", hours="2", amounts={"EUR": "0.90"}),
        run("crm_closed_won_to_psa", "2026-11-06 17:00", posted=7),
    ]
    totals, currencies = totals_by_flow(rows)
    assert currencies == ["EUR", "USD"]
    closed_won, sheets = totals  # in the ledger's flow order
    assert (sheets["intervals"], sheets["failed"], sheets["posted"], sheets["hours"]) == (2, 1, 3, Decimal("12.5"))
    assert sheets["amounts"] == {"EUR": Decimal("1001.00"), "USD": Decimal("5")}
    assert (closed_won["has_hours"], closed_won["amounts"]) == (False, {"EUR": 0, "USD": 0})


def test_runs_csv_has_one_column_per_currency_and_the_interval_in_two_columns():
    rows, columns = runs_for_csv([run("t", "2026-10-30 17:00", amounts={"USD": "5", "EUR": "1"}), run("t", "2026-11-06 17:00")])
    assert columns[columns.index("hours") + 1 : columns.index("hours") + 3] == ["amount_EUR", "amount_USD"]
    assert {"interval_start", "interval_end"} <= set(columns) and "interval" not in columns and "amounts" not in columns
    assert rows[0]["amount_EUR"] == Decimal("1") and rows[1]["amount_USD"] == ""


@pytest.mark.parametrize(
    ("first", "last", "words"),
    [("2026-10-15", "2026-10-01", "after the last day"), ("2026-10-01", None, "needs both"), ("1 Oct", "2 Oct", "write days as")],
)
def test_a_bad_date_range_is_a_sentence(first, last, words):
    with pytest.raises(ValueError, match=words):
        parse_range(first, last, ZONE)


def test_a_date_range_includes_both_days_and_a_period_is_one_form_or_the_other():
    period = parse_range("2026-10-01", "2026-10-15", ZONE)
    assert (period.start.day, period.end.day, period.label) == (1, 16, "2026-10-01_to_2026-10-15")
    assert parse_period("2026-W44", ZONE).start.isoformat() == "2026-10-26T00:00:00+01:00"
    with pytest.raises(ValueError, match="not both"):
        Filters(None, None, "2026-10", "2026-10-01", "2026-10-02").resolve(ZONE)
    with pytest.raises(ValueError, match="status 'lost'"):
        Filters(None, "lost", None, None, None).resolve(ZONE)


def test_what_an_exception_holds_back_is_read_from_its_raw_record():
    assert at_stake("invoice", {"total": "1210.5", "currency": "EUR"}) == "1,210.50 EUR"
    assert at_stake("time_entry", {"hours": "2.5", "billable_rate": "100", "currency": "EUR"}) == "2.50 h (250.00 EUR)"
    assert at_stake("time_entry", {"hours": "not a number"}) == ""
    assert at_stake("deal", None) == "" and at_stake("deal", {"name": "x"}) == ""


def test_gaps_are_grouped_per_flow_with_their_first_and_last_interval():
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 11, 1, tzinfo=UTC)
    gaps = [{"flow": "f", "flow_name": "F", "interval_start": start + timedelta(hours=n), "interval": f"interval {n}"} for n in (2, 0, 1)]
    (group,) = gap_groups(gaps)
    assert (group["count"], group["first"], group["last"]) == (3, "interval 0", "interval 2")


def test_who_triggered_a_run_reads_airflows_run_type_and_user():
    manual = SimpleNamespace(run_type="manual", triggering_user_name="alice")
    assert triggered_by({"dag_run": manual}) == "manual by alice"
    assert triggered_by({"dag_run": SimpleNamespace(run_type="scheduled", triggering_user_name=None)}) == "scheduled"
    assert triggered_by({"run_id": "asset_triggered__2026-11-06"}) == "asset"


def test_money_separates_thousands():
    assert (money(Decimal("48842.5")), money("9757.5"), money(0)) == ("48,842.50", "9,757.50", "0.00")


def test_charts_draw_one_bar_per_week_and_escape_what_they_show():
    rows = [
        run("timesheets_weekly_to_accounting", "2026-10-30 17:00", hours="10", amounts={"EUR": "1"}),
        run("timesheets_weekly_to_accounting", "2026-11-06 17:00", hours="5", amounts={"EUR": "2", "USD": "3"}),
    ]
    svg = charts.hours_per_week(rows)
    assert svg.count('aria-roledescription="bar"') == 2
    assert charts.amounts_per_week(rows).count('aria-roledescription="bar"') == 3  # one per week and currency
    assert charts.hours_per_week([]) == ""
    hostile = charts.held_value_per_month([{"billing_month": '<script>alert(1)</script>"', "currency": "EUR", "total": Decimal(5)}])
    assert "<script>" not in hostile and "&lt;script&gt;" in hostile


def test_a_pilot_run_says_what_it_would_have_sent():
    from backbone.ledger import _pilot_note

    report = {"would_post": 3, "unit": "PSA projects", "by_action": {"create": 2, "update": 1}}
    assert _pilot_note(report) == "pilot: would send 3 PSA projects (create 2, update 1)"
    assert _pilot_note(None) == ""


def test_loading_the_plugin_imports_no_page_and_the_first_request_serves_the_real_app():
    """Every Airflow process and every task loads the plugins: the pages (their templates, Altair and
    pandas for the charts) are imported only when the API server first serves ``/finance``."""
    import asyncio
    import importlib.util
    import subprocess
    import sys
    from pathlib import Path

    plugin_file = Path(__file__).resolve().parents[1] / "plugins" / "finance_page.py"
    probe = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('finance_page', {str(plugin_file)!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(sorted(m for m in ('backbone.finance.app', 'backbone.finance.charts', 'altair', 'pandas') if m in sys.modules))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"

    spec = importlib.util.spec_from_file_location("finance_page_under_test", plugin_file)
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    (mounted,) = plugin.FinancePagePlugin.fastapi_apps
    assert mounted["url_prefix"] == "/finance"
    sent: list[dict] = []
    scope = {"type": "http", "method": "GET", "path": "/nowhere", "raw_path": b"/nowhere", "root_path": "", "query_string": b""}
    scope["headers"] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(mounted["app"](scope, receive, send))
    from backbone.finance.app import app

    assert mounted["app"].app is app
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] in (401, 404)  # the real app answered
