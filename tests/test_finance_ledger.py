"""The run ledger, the Finance page, the CLI and the alerts, against real runs in real PostgreSQL."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import ANCHOR, PG_PORT, ROOT

TIMESHEETS = "timesheets_weekly_to_accounting"
WEEK_END = datetime(2026, 10, 30, 16, 0, tzinfo=UTC)


def ledger():
    from backbone.ledger import Ledger

    return Ledger.from_settings()


def test_ledger_holds_one_row_per_run_with_the_warehouses_counts(dagbag, sandbox, psa_warehouse, accounting_warehouse):
    assert dagbag.get_dag("crm_closed_won_to_psa").test(logical_date=ANCHOR).state == "success"
    assert dagbag.get_dag(TIMESHEETS).test(logical_date=WEEK_END).state == "success"
    assert dagbag.get_dag(TIMESHEETS).test(logical_date=WEEK_END).state == "success"  # a rerun: still one row
    runs, total = ledger().runs()
    assert total == 2 and {r["flow"] for r in runs} == {"crm_closed_won_to_psa", TIMESHEETS}
    sheet = next(r for r in runs if r["flow"] == TIMESHEETS)
    with accounting_warehouse.connect() as connection:
        lines, hours = connection.execute(text("SELECT count(*), sum(hours) FROM acct.time_export WHERE posting_status = 'posted'")).one()
        exceptions = connection.execute(
            text("SELECT count(DISTINCT source_key) FROM ops.quarantine WHERE flow = :f"), {"f": TIMESHEETS}
        ).scalar_one()
    assert (sheet["posted"], sheet["exceptions"], sheet["hours"]) == (lines, exceptions, str(hours))
    assert "EUR" in sheet["amounts"] and sheet["interval"].startswith("Fri 2026-10-23 17:00")
    open_ = ledger().open_exceptions(flow=TIMESHEETS)
    assert {e["key"].split(":v")[0] for e in open_} == {
        k for k in sandbox.state.psa_time.bad_entries if any(k == e["key"].split(":v")[0] for e in open_)
    }
    assert all(e["reason"] and e["rule"] for e in open_)

    result = subprocess.run(
        [sys.executable, "-m", "backbone", "history", "--flow", "timesheets", "--week", "2026-W44"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    assert result.returncode == 0, result.stderr
    assert TIMESHEETS in result.stdout and "1 of 1 runs" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "backbone", "exceptions", "--flow", "timesheets"], capture_output=True, text=True, env=os.environ.copy()
    )
    assert "time_entry.hours.range" in result.stdout and f"{len(open_)} open exceptions" in result.stdout


def test_a_fixed_exception_leaves_the_open_list(dagbag, sandbox, accounting_warehouse, psa_warehouse):
    state = sandbox.state
    assert dagbag.get_dag(TIMESHEETS).test(logical_date=WEEK_END).state == "success"
    bad = next(entry for entry, rule in state.psa_time.bad_entries.items() if rule == "time_entry.hours.range")
    assert bad in {e["key"].split(":v")[0] for e in ledger().open_exceptions(flow=TIMESHEETS)}
    state.psa_time.edit(bad, {"hours": "5"}, approved_at=WEEK_END + timedelta(days=2))  # fixed in the PSA, approved again
    assert dagbag.get_dag(TIMESHEETS).test(logical_date=WEEK_END + timedelta(days=7)).state == "success"
    assert bad not in {e["key"].split(":v")[0] for e in ledger().open_exceptions(flow=TIMESHEETS)}
    with accounting_warehouse.connect() as connection:
        resolved = (
            connection.execute(text("SELECT resolved_at IS NOT NULL FROM ops.quarantine WHERE source_key LIKE :k"), {"k": f"{bad}:%"})
            .scalars()
            .all()
        )
    assert resolved and all(resolved)


def test_the_finance_role_can_only_read(services):
    from backbone_devtools.localenv import FINANCE_LOCAL_PASSWORD, FINANCE_LOGIN

    engine = create_engine(f"postgresql+psycopg2://{FINANCE_LOGIN}:{FINANCE_LOCAL_PASSWORD}@127.0.0.1:{PG_PORT}/accounting_warehouse")
    with engine.connect() as connection:
        connection.execute(text("SELECT count(*) FROM ops.flow_run")).scalar_one()
        connection.execute(text("SELECT count(*) FROM acct.invoice")).scalar_one()
        with pytest.raises(Exception, match="permission denied"):
            connection.execute(text("DELETE FROM ops.flow_run"))
    engine.dispose()


def test_page_and_cli_handle_empty_thousands_and_a_warehouse_that_is_down(accounting_warehouse, psa_warehouse, monkeypatch):
    from fastapi.testclient import TestClient

    from backbone.finance.app import create_app, finance_reader

    app = create_app()
    app.dependency_overrides[finance_reader] = lambda: "finance-tester"  # the login itself is tested against the API server
    client = TestClient(app)
    page = client.get("/")
    assert page.status_code == 200 and "runs-empty" in page.text and "exceptions-empty" in page.text

    start = datetime(2020, 1, 3, 16, tzinfo=UTC)
    with accounting_warehouse.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO ops.flow_run (flow, run_id, interval_start, interval_end, status) "
                "SELECT 'payments_to_psa', 'r' || n, :s + n * interval '1 day', :s + (n + 1) * interval '1 day', 'success' FROM "
                "generate_series(1, 3000) n"
            ),
            {"s": start},
        )
    page = client.get("/", params={"page": 2, "page_size": 100})
    assert page.status_code == 200 and page.text.count('<tr id="run-') == 100 and 'id="older"' in page.text
    assert "3,000 intervals" in page.text  # thousands separated
    csv_text = client.get("/runs.csv").text
    assert len(csv_text.strip().splitlines()) == 3001

    monkeypatch.setenv(
        "AIRFLOW_CONN_FINANCE_ACCOUNTING_WAREHOUSE",
        f'{{"conn_type": "postgres", "host": "127.0.0.1", "port": {_free_port()}, "login": "x", "schema": "accounting_warehouse"}}',
    )
    from backbone.warehouse.db import engine_for

    engine_for.cache_clear()
    try:
        down = client.get("/")
        assert down.status_code == 503 and "accounting warehouse cannot be read right now" in down.text and "Traceback" not in down.text
        env = {**os.environ}
        result = subprocess.run([sys.executable, "-m", "backbone", "history"], capture_output=True, text=True, env=env)
        assert result.returncode == 2 and "cannot be read right now" in result.stderr and "Traceback" not in result.stderr
    finally:
        engine_for.cache_clear()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Webhook(BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        _Webhook.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass


def test_a_failed_run_alerts_by_email_and_slack(dagbag, sandbox, accounting_warehouse, monkeypatch):
    from aiosmtpd.controller import Controller

    from backbone_sandbox.faults import FaultRule

    class Sink:
        messages: list[bytes] = []

        async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201, N802 - aiosmtpd's hook name
            Sink.messages.append(envelope.content)
            return "250 OK"

    server = HTTPServer(("127.0.0.1", 0), _Webhook)  # bound first: two probes of free ports can return one port twice
    hook_port = server.server_address[1]
    smtp_port = _free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=smtp_port)
    controller.start()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv(
            "AIRFLOW_CONN_SMTP_DEFAULT",
            json.dumps(
                {
                    "conn_type": "smtp",
                    "host": "127.0.0.1",
                    "port": smtp_port,
                    "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "backbone@example.com"},
                }
            ),
        )
        monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", f'{{"conn_type": "http", "password": "http://127.0.0.1:{hook_port}/hook"}}')
        monkeypatch.setenv("BACKBONE_ALERT_EMAIL_TO", "finance@example.com")
        monkeypatch.setenv("BACKBONE_ALERT_SLACK_CONN_ID", "slack_alerts")
        monkeypatch.setenv("BACKBONE_HTTP_MAX_ATTEMPTS", "2")
        sandbox.state.faults.arm(
            [FaultRule(kind="status", status=503, path_contains=path, method="POST", times=10_000) for path in ("/batch", "/timeactivity")]
        )
        dag = dagbag.get_dag(TIMESHEETS).partial_subset(task_ids=list(dagbag.get_dag(TIMESHEETS).task_ids), include_upstream=False)
        for task in dag.tasks:
            task.retries = 0
        assert dag.test(logical_date=WEEK_END).state == "failed"
        for _ in range(300):  # up to 30 s: under the full suite's load the alert can take longer than 5 s to arrive
            if Sink.messages and _Webhook.received:
                break
            time.sleep(0.1)
        import email

        message = email.message_from_bytes(Sink.messages[-1])
        mail = message["Subject"] + "".join(
            part.get_payload(decode=True).decode() for part in message.walk() if part.get_content_type() == "text/html"
        )
        assert "timesheets_weekly_to_accounting" in mail and "FAILED" in mail and "2026-10-23 17:00" in mail
        slack = _Webhook.received[-1].decode()
        assert TIMESHEETS in slack and "FAILED" in slack and "first exceptions" in slack and "time_entry." in slack
    finally:
        controller.stop()
        server.shutdown()


FINANCE_ROUTES = (
    "/finance/",
    "/finance/runs.csv",
    "/finance/exceptions.csv",
    "/finance/?page=2",
    "/finance/runs.csv?period=2026-10",
    "/finance/leadership",
)


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    import urllib.error
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - urllib's hook
            return None

    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=10) as answer:
            return answer.status, answer.read().decode(), dict(answer.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), dict(error.headers)


@pytest.fixture(scope="module")
def api_server(services, tmp_path_factory):
    """Airflow's own API server on a free loopback port, with the simple auth manager's users
    ``finance`` (viewer) and no anonymous admin; yields its URL and the finance password. One
    server for the module's tests (``SAME_WORKER`` keeps them on one worker): it holds no state of
    its own, every page reads the warehouses as the test left them."""
    import json

    tmp_path = tmp_path_factory.mktemp("api-server")
    port = _free_port()
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({"finance": "finance-page-test", "admin": "admin-test"}))
    env = {
        **os.environ,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "finance:viewer,admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__API_AUTH__JWT_SECRET": "finance-page-test-secret",
    }
    log = (tmp_path / "api-server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "airflow", "api-server", "--port", str(port), "--host", "127.0.0.1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if _get(f"{url}/api/v2/version")[0] in (200, 401, 403):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the Airflow API server did not start: " + (tmp_path / "api-server.log").read_text()[-2000:])
        yield url, "finance-page-test"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _login(url: str, username: str, password: str) -> str:
    import json
    import urllib.request

    request = urllib.request.Request(
        f"{url}/auth/token",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())["access_token"]


def test_finance_routes_refuse_anonymous_and_garbage_tokens(api_server, accounting_warehouse, psa_warehouse):
    url, password = api_server
    for route in FINANCE_ROUTES:
        assert _get(url + route)[0] == 401, route
        assert _get(url + route, {"Authorization": "Bearer not-a-token"})[0] in (401, 403), route
        assert _get(url + route, {"Cookie": "_token=eyJhbGciOiJIUzI1NiJ9.e30.garbage"})[0] in (401, 403), route
    status, _, headers = _get(url + "/finance/", {"Accept": "text/html"})
    assert (
        status == 303 and headers["location"].startswith("/auth/login") and "next=" in headers["location"]
    )  # a browser goes to the login page

    token = _login(url, "finance", password)
    status, body, _ = _get(url + "/finance/", {"Authorization": f"Bearer {token}"})
    assert status == 200 and "Finance: runs and exceptions" in body
    status, body, headers = _get(url + "/finance/runs.csv", {"Cookie": f"_token={token}"})
    assert status == 200 and headers["content-type"].startswith("text/csv")
    assert _get(url + "/finance/?page=-1", {"Cookie": f"_token={token}"})[0] == 400
    assert _get(url + "/finance/runs.csv?period=garbage", {"Cookie": f"_token={token}"})[0] == 400


CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = os.environ.get("BACKBONE_SCREENSHOT_DIR")
"""Set to a directory (``docs/``) to save the pages as the browser test sees them."""


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (make test installs it when run as root)")
def test_finance_and_leadership_pages_in_a_real_browser(dagbag, sandbox, accounting_warehouse, psa_warehouse, api_server):
    """Logged in through Airflow's own login: totals, the status and period filters, an exception
    followed to its run (with its attempts), the CSV's columns, and charts drawn with their marks."""
    from playwright.sync_api import sync_playwright

    assert dagbag.get_dag("crm_closed_won_to_psa").test(logical_date=ANCHOR).state == "success"
    for week in (WEEK_END, WEEK_END + timedelta(days=7)):
        assert dagbag.get_dag(TIMESHEETS).test(logical_date=week).state == "success"
    assert dagbag.get_dag(TIMESHEETS).test(logical_date=WEEK_END).state == "success"  # a rerun: a second attempt
    with accounting_warehouse.begin() as connection:
        hours, posted = connection.execute(
            text("SELECT sum(hours), count(*) FROM acct.time_export WHERE posting_status = 'posted' AND action = 'create'")
        ).one()
    url, password = api_server
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--headless=new", "--disable-background-networking"]
        )
        page = browser.new_page(accept_downloads=True, viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/finance/")
        page.wait_for_url("**/auth/login**")  # no login yet: Airflow's login page
        page.fill("input[name=username]", "finance")
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url("**/finance/**", timeout=30_000)  # and back to the page asked for
        assert page.locator("#totals-heading").inner_text().endswith("the last 8 weeks)")  # no period: the recent past
        page.fill("#f-from", "2026-10-01")  # a date range (the test's runs are in October, whatever today is)
        page.fill("#f-to", "2026-11-30")
        page.click("form.filters button[type=submit]")
        page.wait_for_url("**from=2026-10-01**")
        if SCREENSHOTS:
            page.screenshot(path=f"{SCREENSHOTS}/finance-page.png", full_page=True)

        # totals per flow and currency for what is shown
        sheet = page.locator("#totals tbody tr", has_text="Friday timesheet export")
        cells = sheet.locator("td").all_inner_texts()
        assert cells[0] == "2" and cells[4] == str(posted) and cells[5] == f"{hours:,.2f}"
        assert page.locator("#totals thead th", has_text="amount EUR").count() == 1
        assert not page.locator("#runs").evaluate("t => t.scrollWidth > document.documentElement.clientWidth")  # fits 1280 px

        # charts: one bar per exported week, drawn as SVG marks
        assert page.locator("#chart-hours [role=graphics-symbol][aria-roledescription=bar]").count() == 2
        assert page.locator("#chart-exceptions [role=graphics-symbol]").count() >= 1

        # filters: status and period (the weekly export ending Fri 30 Oct 17:00 is week 44's only run)
        page.select_option("#f-status", "failed")
        page.click("form.filters button[type=submit]")
        assert page.locator("#runs-empty").is_visible() and page.locator("#f-status").input_value() == "failed"
        page.goto(f"{url}/finance/?period=2026-W44")
        assert page.locator("#runs > tbody > tr").count() == 1
        page.fill("#f-period", "2026-W99")
        page.click("form.filters button[type=submit]")
        assert "not a week" in page.locator("#bad-input").inner_text() and page.locator("#f-period").input_value() == "2026-W99"

        # an exception, followed to its run: that interval alone, its attempts listed
        page.goto(f"{url}/finance/?flow={TIMESHEETS}&period=2026-W44")
        row = page.locator("#exceptions tbody tr", has_text="time_entry.hours.range").first
        assert "Friday timesheet export" in row.inner_text()
        row.locator("a.run-link").click()
        page.wait_for_url("**run=run-*")
        runs = page.locator("#runs > tbody > tr")
        assert runs.count() == 1 and "2026-10-30 17:00" in runs.first.inner_text()
        attempts = runs.first.locator("table.attempts tbody tr")
        assert attempts.count() == 2 and attempts.first.is_visible()  # opened: both attempts, newest first
        assert [c.strip() for c in attempts.all_inner_texts()][0].split("\t")[-1] == "0"  # the rerun posted nothing again

        # the CSV: one column per field and currency, BOM, named after flow and period
        page.goto(f"{url}/finance/?flow={TIMESHEETS}&period=2026-10")
        with page.expect_download() as download:
            page.click("#runs-csv")
        assert download.value.suggested_filename == f"runs-{TIMESHEETS}-2026-10.csv"
        import csv as csv_module

        content = Path(download.value.path()).read_text(encoding="utf-8")
        assert content.startswith("\ufeff")
        table = list(csv_module.DictReader(content.lstrip("\ufeff").splitlines()))
        assert {"interval_start", "interval_end", "attempts", "posted", "amount_EUR"} <= set(table[0])
        assert [r["interval_end"] for r in table] == ["2026-10-30 17:00"]

        # the Leadership page: same login, its marts and charts
        page.click("nav.pages a:has-text('Leadership')")
        page.wait_for_url("**/finance/leadership")
        assert page.locator("#summary li").count() == 3
        assert page.locator("#margins tbody tr").count() >= 1
        assert page.locator("#chart-margin [role=graphics-symbol]").count() >= 2
        assert page.locator("#pipeline tbody tr").count() >= 1 and page.locator("#chart-pipeline [role=graphics-symbol]").count() >= 1
        if SCREENSHOTS:
            page.screenshot(path=f"{SCREENSHOTS}/leadership-page.png", full_page=True)
        browser.close()


def test_csv_cells_that_look_like_formulas_are_neutralised():
    from backbone.ledger import to_csv

    text = to_csv(
        [{"key": '=HYPERLINK("http://x")', "rule": "+1", "reason": "-2+3", "flow": "@SUM(A1)", "amount": -5}],
        ["key", "rule", "reason", "flow", "amount"],
    )
    import csv
    import io

    assert list(csv.reader(io.StringIO(text)))[1] == ['\'=HYPERLINK("http://x")', "'+1", "'-2+3", "'@SUM(A1)", "-5"]


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (["history", "--page", "0"], {}, "between 1 and"),
        (["history", "--page", "-1"], {}, "between 1 and"),
        (["history", "--page-size", "10000000"], {}, "between 1 and"),
        (["history", "--week", "2026-W99"], {}, "is not a week"),
        (["history", "--week", "last week"], {}, "is not an ISO week"),
        (["history", "--month", "2026-W47"], {}, "is not a month"),
        (["history", "--json", "--csv"], {}, "not allowed with argument"),
        (["history"], {"BACKBONE_COMPANY_TIMEZONE": "Mars/Olympus"}, "not an IANA time zone"),
        (["exceptions"], {"BACKBONE_FINANCE_ACCOUNTING_CONN_ID": "no_such_connection"}, "no_such_connection"),
    ],
)
def test_cli_answers_bad_input_with_a_sentence_not_a_traceback(args, env, words):
    result = subprocess.run([sys.executable, "-m", "backbone", *args], capture_output=True, text=True, env={**os.environ, **env})
    assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_cli_for_scripts_json_status_iso_weeks_and_exit_codes(accounting_warehouse, psa_warehouse):
    """``backbone`` (the console script): --json, --status, --week 2026-47, exit 1 on failures or gaps."""
    import json

    week = datetime(2026, 11, 20, 16, tzinfo=UTC)  # Friday 20 November 17:00 in Amsterdam
    with accounting_warehouse.begin() as connection:
        for n, status in enumerate(("success", "failed")):
            start = week + timedelta(days=n)
            connection.execute(
                text(
                    "INSERT INTO ops.flow_run (flow, run_id, interval_start, interval_end, status) "
                    "VALUES ('payments_to_psa', :r, :s, :e, :status)"
                ),
                {"r": f"cli-{n}", "s": start, "e": start + timedelta(days=1), "status": status},
            )
    backbone = Path(sys.executable).parent / "backbone"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(backbone), *args], capture_output=True, text=True, env=os.environ.copy())

    failed = cli("history", "--flow", "payments", "--status", "failed", "--week", "2026-47", "--json")
    assert failed.returncode == 1, failed.stderr  # the selection holds a failed run
    assert [r["status"] for r in json.loads(failed.stdout)] == ["failed"]
    fine = cli("history", "--flow", "payments", "--status", "success", "--json")
    assert fine.returncode == 0 and [r["status"] for r in json.loads(fine.stdout)] == ["success"]
    assert cli("gaps", "--flow", "payments", "--json").returncode == 1  # the days since are due and nobody ran them
    csv_text = cli("history", "--flow", "payments", "--csv").stdout
    assert csv_text.startswith("\ufeffflow,")  # Excel reads UTF-8 with the BOM


def test_cli_tables_wrap_long_reasons_instead_of_cutting_them():
    from backbone.ledger import to_table

    reason = "the hours are outside 0.25 to 24 for one day, which a person cannot have worked " * 2
    table = to_table([{"key": "TE-1", "reason": reason}], ["key", "reason"])
    lines = table.splitlines()[2:]
    assert len(lines) > 1 and " ".join(lines).split() == ["TE-1", *reason.split()]  # every word, none cut
    assert max(len(line) for line in table.splitlines()) <= 60 + 2 + 4


def test_held_invoices_show_the_amount_at_stake_rule_and_reason_on_the_page_and_in_the_cli(accounting_warehouse, psa_warehouse):
    from fastapi.testclient import TestClient

    from backbone.finance.app import create_app, finance_reader
    from tests.test_bi_marts import add_invoice

    with accounting_warehouse.begin() as connection:
        add_invoice(connection, "H-1", "invoice", "EUR", "12100.50", "held", None, None)
        add_invoice(connection, "H-2", "invoice", "USD", "300.00", "held", None, None)
        connection.execute(
            text("UPDATE acct.invoice SET hold_rule = 'invoice.time.reconciles', hold_reason = :r WHERE psa_invoice_id = 'H-1'"),
            {"r": "hours on the invoice (12.00) differ from the exported time of PJ in 2026-10 (10.00) by more than 0.01"},
        )
    app = create_app()
    app.dependency_overrides[finance_reader] = lambda: "finance-tester"
    page = TestClient(app).get("/", params={"period": "2026-10"})
    assert page.status_code == 200
    assert "12,100.50 EUR" in page.text and "invoice.time.reconciles" in page.text and "differ from the exported time" in page.text
    assert "held in EUR" in page.text and "held in USD" in page.text  # totals per currency, never one sum
    result = subprocess.run(
        [sys.executable, "-m", "backbone", "held", "--month", "2026-10", "--json"], capture_output=True, text=True, env=os.environ.copy()
    )
    assert result.returncode == 0, result.stderr
    held = {r["number"]: r for r in json.loads(result.stdout)}
    assert held["H-1"]["total"] == "12100.50" and held["H-1"]["rule"] == "invoice.time.reconciles" and held["H-2"]["currency"] == "USD"


def test_the_data_audit_shows_on_the_finance_page_as_the_daily_run_left_it(accounting_warehouse, psa_warehouse):
    from fastapi.testclient import TestClient

    from backbone.audit import Finding, save_findings
    from backbone.finance.app import create_app, finance_reader

    app = create_app()
    app.dependency_overrides[finance_reader] = lambda: "finance-tester"
    client = TestClient(app)
    assert "audit-empty" in client.get("/").text
    findings = [
        Finding("client_without_customer", "psa", "ACME Corporation", "no accounting customer named so", "Acme Corp", 95.0, "CL-7"),
        Finding("duplicate_customer", "accounting", "<b>Acme</b>", "2 customers are one company"),
    ]
    with psa_warehouse.begin() as connection:
        save_findings(connection, findings, run_id="r-1", found_at=datetime(2026, 11, 2, 3, 30, tzinfo=UTC))
    page = client.get("/")
    assert page.status_code == 200
    assert "2 findings, as of 2026-11-02 04:30" in page.text
    assert "ACME Corporation" in page.text and "Acme Corp" in page.text and "95.0" in page.text
    assert "&lt;b&gt;Acme&lt;/b&gt;" in page.text and "<b>Acme</b>" not in page.text  # a vendor's name is text, never markup
    with psa_warehouse.begin() as connection:
        save_findings(connection, findings[:1], run_id="r-2", found_at=datetime(2026, 11, 3, 3, 30, tzinfo=UTC))
    assert "1 finding, as of 2026-11-03 04:30" in client.get("/").text  # each run replaces the last
