"""``python -m backbone_devtools <command>`` — what the Makefile runs.

Commands:
  demo      start PostgreSQL (embedded unless configured) and the sandbox, migrate, run every
            flow with ``dag.test()`` (one process for all runs) for the sandbox's recent interval, print the runs
  migrate   bring both warehouses to the newest schema
  env       print the environment for running Airflow by hand (``eval $(... env)``)
  pg-start / pg-stop   the embedded PostgreSQL of the demo (``.demo/pgdata``)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from backbone_devtools import pg, uirecord
from backbone_devtools.localenv import (
    DEFAULT_PG_PORT,
    DEFAULT_SANDBOX_PORT,
    FLOWS,
    PROJECT_ROOT,
    SANDBOX_XERO_REQUESTS_PER_MINUTE,
    WAREHOUSE_DATABASES,
    airflow_environment,
)

VENDOR_PAIRS = {
    "hubspot-quickbooks": {
        "crm": "hubspot_default",
        "accounting": "quickbooks_default",
        "sandbox_crm": "hubspot",
        "payments": "quickbooks",
    },
    "salesforce-xero": {"crm": "salesforce_default", "accounting": "xero_default", "sandbox_crm": "salesforce", "payments": "xero"},
}
"""``BACKBONE_DEMO_VENDORS`` (``make demo VENDORS=salesforce-xero``) picks the pair; each pair keeps its own demo state."""
VENDORS = os.environ.get("BACKBONE_DEMO_VENDORS", "hubspot-quickbooks")
if VENDORS not in VENDOR_PAIRS:
    raise SystemExit(f"BACKBONE_DEMO_VENDORS={VENDORS!r}: choose one of {', '.join(VENDOR_PAIRS)}")
PSA_CONNECTIONS = {"psa": "psa_default", "kantata": "kantata_default"}
"""``BACKBONE_DEMO_PSA`` (``make demo PSA=kantata``) picks the PSA: our PSA API or Kantata OX."""
PSA = os.environ.get("BACKBONE_DEMO_PSA", "psa")
if PSA not in PSA_CONNECTIONS:
    raise SystemExit(f"BACKBONE_DEMO_PSA={PSA!r}: choose one of {', '.join(PSA_CONNECTIONS)}")
DEMO_NAME = "-".join(part for part in ("" if VENDORS == "hubspot-quickbooks" else VENDORS, "" if PSA == "psa" else PSA) if part)
DEMO_DIR = PROJECT_ROOT / (f".demo-{DEMO_NAME}" if DEMO_NAME else ".demo")
"""Each vendor pair and PSA keeps its own demo state: ``.demo``, ``.demo-kantata``, ``.demo-salesforce-xero``, …"""
WAREHOUSE_OF_FLOW = {
    "crm_closed_won_to_psa": "psa_warehouse",
    "hr_roster_pto_to_psa": "psa_warehouse",
    "accounting_codes_to_psa": "psa_warehouse",
    "timesheets_weekly_to_accounting": "accounting_warehouse",
    "expenses_weekly_to_accounting": "accounting_warehouse",
    "invoices_month_end_to_accounting": "accounting_warehouse",
    "invoices_to_accounting": "accounting_warehouse",
    "payments_to_psa": "accounting_warehouse",
    "psa_milestones_to_crm": "psa_warehouse",
    "project_actuals_to_accounting": "accounting_warehouse",
}


def _say(message: str) -> None:
    print(f"==> {message}", flush=True)


def _external_databases() -> bool:
    return all(
        k in os.environ for k in ("AIRFLOW_CONN_PSA_WAREHOUSE", "AIRFLOW_CONN_ACCOUNTING_WAREHOUSE", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    )


def _environment(port: int) -> dict[str, str]:
    env = {
        **os.environ,
        **airflow_environment(airflow_home=DEMO_DIR / "airflow", pg_port=port, sandbox_url=f"http://127.0.0.1:{DEFAULT_SANDBOX_PORT}"),
    }
    pair = VENDOR_PAIRS[VENDORS]
    env.setdefault("BACKBONE_CRM_CONN_ID", pair["crm"])
    env.setdefault("BACKBONE_ACCOUNTING_CONN_ID", pair["accounting"])
    env.setdefault("BACKBONE_PSA_CONN_ID", PSA_CONNECTIONS[PSA])
    if _external_databases():
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    return env


def _warehouse_url(env: dict[str, str], conn_id: str) -> str:
    os.environ.update({k: v for k, v in env.items() if k.startswith("AIRFLOW_CONN_")})
    from backbone.warehouse.db import url_from_connection

    return url_from_connection(conn_id)


def migrate(env: dict[str, str]) -> None:
    from backbone.warehouse.db import migrate as migrate_warehouse

    for conn_id in WAREHOUSE_DATABASES:
        migrate_warehouse(_warehouse_url(env, conn_id), conn_id.removesuffix("_warehouse"))


def gap_summary(intervals: list[str], *, listed: int = 3) -> str:
    """The gaps as the ledger names them: every one when few, else the first and the last with the count between."""
    if not intervals:
        return "none"
    if len(intervals) <= listed:
        return ", ".join(intervals)
    return f"{len(intervals)} intervals: {intervals[0]}, … , {intervals[-1]} (`backbone history` lists each)"


def demo_anchor(now: datetime, timezone: str) -> datetime:
    """The moment a fresh demo sandbox is seeded up to: the last half-hour boundary, unless the
    week holding the last closed month's final day has not been exported yet (its Friday 17:00 is
    still ahead, as on 1 to 4 December): month-end would rightly wait for it, so the demo is
    anchored just before this month began and closes the month before instead."""
    from backbone_sandbox.seed import default_anchor

    anchor = default_anchor(now)
    zone = ZoneInfo(timezone)
    month_start = anchor.astimezone(zone).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    last_day = (month_start - timedelta(days=1)).date()
    closing_friday = last_day + timedelta(days=(4 - last_day.weekday()) % 7 or 7)
    if datetime.combine(closing_friday, dt_time(17), tzinfo=zone) <= anchor:
        return anchor
    return (month_start - timedelta(minutes=30)).astimezone(UTC)


def _print_audit(env: dict[str, str], *, until: str) -> None:
    """The cross-system audit's summary line (``backbone audit`` lists every finding)."""
    audit = subprocess.run(
        [sys.executable, "-m", "backbone", "audit", "--until", until[:19], "--days", "60"], env=env, capture_output=True, text=True
    )
    lines = [line for line in audit.stdout.splitlines() if line.strip()]
    if audit.returncode in (0, 1) and lines:
        print(f"{lines[-1]} (`backbone audit --until {until[:10]}` lists them)")
    else:
        print(f"audit: could not run ({(audit.stderr.strip().splitlines() or ['no output'])[-1]})")


def _start_sandbox(env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = (DEMO_DIR / "sandbox.log").open("ab")
    anchor = demo_anchor(datetime.now(UTC), env.get("BACKBONE_COMPANY_TIMEZONE", "Europe/Amsterdam"))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "backbone_sandbox",
            "--port",
            str(DEFAULT_SANDBOX_PORT),
            "--state-file",
            str(DEMO_DIR / "sandbox-state.pickle"),
            "--crm",
            VENDOR_PAIRS[VENDORS]["sandbox_crm"],
            "--xero-rate",
            str(SANDBOX_XERO_REQUESTS_PER_MINUTE),
            "--anchor",
            anchor.isoformat(),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    for _ in range(100):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{DEFAULT_SANDBOX_PORT}/_sandbox/info", timeout=2) as response:
                json.load(response)
                return process
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"the sandbox exited early; see {DEMO_DIR / 'sandbox.log'}") from None
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError("the sandbox did not answer within 20 s")


def _sandbox_info() -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{DEFAULT_SANDBOX_PORT}/_sandbox/info", timeout=5) as response:
        return json.load(response)


def _print_runs(env: dict[str, str]) -> None:
    """The newest run record of every flow, as finance would read it."""
    from sqlalchemy import create_engine, text

    header = (
        f"{'flow':<32} {'interval (company time)':<40} {'status':<8} "
        f"{'extracted':>9} {'loaded':>7} {'exceptions':>10} {'posted/written back':>19}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    tz = env.get("BACKBONE_COMPANY_TIMEZONE", "Europe/Amsterdam")
    notes = []
    for flow in FLOWS:
        engine = create_engine(_warehouse_url(env, WAREHOUSE_OF_FLOW[flow]))
        with engine.connect() as connection:
            row = connection.execute(
                text(
                    "SELECT status, extracted, loaded, quarantined, written_back AS posted_now, details, "
                    "(SELECT sum(a.written_back) FROM ops.flow_run_attempt a WHERE a.flow = r.flow AND a.run_id = r.run_id) "
                    "AS written_back, "
                    "to_char(interval_start AT TIME ZONE :tz, 'Dy YYYY-MM-DD HH24:MI') || ' → ' || to_char(interval_end AT TIME ZONE "
                    ":tz, 'Dy MM-DD HH24:MI') AS span "
                    "FROM ops.flow_run r WHERE flow = :flow ORDER BY finished_at DESC NULLS LAST LIMIT 1"
                ),
                {"flow": flow, "tz": tz},
            ).first()
        engine.dispose()
        if row is None:
            print(f"{flow:<32} (no run record)")
            continue
        print(f"{flow:<32} {row.span:<40} {row.status:<8} {row.extracted:>9} {row.loaded:>7} {row.quarantined:>10} {row.written_back:>19}")
        details = row.details or {}
        if flow == "invoices_month_end_to_accounting":
            amounts = (
                ", ".join(f"{amount} {currency}" for currency, amount in sorted(details.get("amount_by_currency", {}).items())) or "none"
            )
            notes.append(
                f"{flow}: {details.get('period')}: {details.get('invoices', 0)} invoices, "
                f"{details.get('posted_total', row.written_back)} posted "
                f"({row.posted_now} by this run), "
                f"{details.get('held', 0)} held with reasons, {details.get('unapproved_in_psa', 0)} not yet approved in the PSA; "
                f"net invoiced {amounts}"
            )
        if flow == "invoices_to_accounting":
            notes.append(
                f"{flow}: {details.get('invoice_timing')}: {row.extracted} invoices judged "
                f"({details.get('held_rechecked', 0)} held ones again), {row.posted_now} posted by this run, "
                f"{row.quarantined} held"
            )
        if flow == "payments_to_psa":
            notes.append(
                f"{flow}: {details.get('payments_read', 0)} payments read, {details.get('invoices_checked', 0)} invoices checked, "
                f"{details.get('statuses_changed', 0)} statuses changed, {row.written_back} PSA updates"
            )
        if flow == "hr_roster_pto_to_psa":
            expiring = (
                ", ".join(f"{c['name']} of {c['hr_id']} on {c['expires_on']}" for c in details.get("certifications_expiring", [])) or "none"
            )
            notes.append(
                f"{flow}: {details.get('snapshot')} snapshot, {row.loaded} people, {details.get('time_off_days', 0)} approved time-off "
                "days, "
                f"{row.quarantined} exceptions; certifications expiring within 30 days: {expiring}"
            )
        if flow == "project_actuals_to_accounting":
            reconciled = details.get("reconciled", {})
            notes.append(
                f"{flow}: {details.get('period')}: {details.get('projects', 0)} projects, labour {details.get('labour_cost')} "
                f"{details.get('currency')} at standard cost (expenses {details.get('expense_cost')} already booked); "
                f"{details.get('journals_in_accounting', 0)} journals in accounting ({details.get('journals_posted', 0)} by this run); "
                f"{reconciled.get('reconciled', 0)} projects reconciled, {reconciled.get('not_reconciled', 0)} not"
            )
        if flow == "psa_milestones_to_crm":
            notes.append(f"{flow}: {row.extracted} milestones, {row.written_back} deals updated")
        if flow == "accounting_codes_to_psa":
            statuses = ", ".join(f"{n} {s}" for s, n in sorted(details.get("billing_codes", {}).items())) or "none"
            labels = {"gl_account": "GL accounts", "item": "items", "tax_code": "tax codes"}
            kinds = ", ".join(f"{n} {labels.get(k, k)}" for k, n in sorted(details.get("accounting_codes", {}).items())) or "none"
            notes.append(f"{flow}: accounting lists {kinds}; billing codes {statuses}; {row.written_back} PSA codes changed")
        if flow == "expenses_weekly_to_accounting":
            amounts = ", ".join(f"{a} {c}" for c, a in sorted(details.get("amount_by_currency", {}).items())) or "none"
            notes.append(
                f"{flow}: last week bills {details.get('bills', 0)}, purchases {details.get('purchases', 0)} ({amounts}); "
                f"{row.written_back} expense records in accounting, {row.quarantined} exceptions for finance"
            )
        if "hours" in details:
            amounts = (
                ", ".join(f"{amount} {currency}" for currency, amount in sorted(details.get("amount_by_currency", {}).items())) or "none"
            )
            notes.append(
                f"{flow}: {details['hours']} hours, {amounts}; {row.written_back} time records in accounting "
                f"({row.posted_now} posted by this run, {details.get('corrections', 0)} corrections); "
                f"{row.quarantined} exceptions for finance (ops.quarantine in accounting_warehouse)"
            )
    print()
    for note in notes:
        print(note)
    print()
    for flow, gaps in _gaps(env).items():
        print(f"{flow}: gaps: {gap_summary([g['interval'] for g in gaps])}")
    print()
    for line in _bi_summary(env):
        print(line)


def _bi_summary(env: dict[str, str]) -> list[str]:
    """What leadership's page shows first (its three-line summary from the BI marts), then cash per month."""
    from sqlalchemy import create_engine

    from backbone.finance.leadership import cash, summary
    from backbone.ledger import Ledger

    engines = {
        "psa": create_engine(_warehouse_url(env, "psa_warehouse")),
        "accounting": create_engine(_warehouse_url(env, "accounting_warehouse")),
    }
    try:
        ledger = Ledger(engines=engines, timezone=env.get("BACKBONE_COMPANY_TIMEZONE", "Europe/Amsterdam"))
        lines = [f"BI {line}" for line in summary(ledger)]
        for row in cash(ledger):
            lines.append(
                f"BI cash {row['billing_month']} {row['currency']}: invoiced {row['invoiced']}, paid {row['paid']}, "
                f"open {row['open_balance']}, DSO {row['days_sales_outstanding']} days — bi.cash_monthly"
            )
    finally:
        for engine in engines.values():
            engine.dispose()
    return lines


def _gaps(env: dict[str, str]) -> dict[str, list[dict[str, object]]]:
    """Per flow, the due intervals no successful run covers (the ledger's view, as of now)."""
    from sqlalchemy import create_engine

    from backbone.ledger import Ledger

    engines = {name: create_engine(_warehouse_url(env, name)) for name in sorted(set(WAREHOUSE_OF_FLOW.values()))}
    try:
        found = Ledger(engines=engines, timezone=env.get("BACKBONE_COMPANY_TIMEZONE", "Europe/Amsterdam")).gaps()
    finally:
        for engine in engines.values():
            engine.dispose()
    return {flow: [g for g in found if g["flow"] == flow] for flow in FLOWS}


def _demo_dates(flow: str, info: dict[str, Any], anchor: str) -> tuple[list[str], list[str]]:
    """The logical dates the demo runs a flow for, and those it skips to show catch-up: the weekly
    exports run for the seeded weeks (oldest first), so month-end finds its time exported; the
    timesheet export is "paused" over two Fridays, and the next run covers the missed weeks."""
    if flow == "expenses_weekly_to_accounting" and PSA == "kantata":
        _say(f"{flow} skipped: Kantata's expenses are not read yet (the export runs on the PSA API)")
        return [], []
    weekly = flow in ("timesheets_weekly_to_accounting", "expenses_weekly_to_accounting")
    dates = [str(d) for d in info["time_week_ends"]] if weekly else [anchor]
    return dates, dates[1:3] if len(dates) >= 4 and flow == "timesheets_weekly_to_accounting" else []


def demo() -> int:
    DEMO_DIR.mkdir(exist_ok=True)
    port = int(os.environ.get("BACKBONE_DEMO_PG_PORT", DEFAULT_PG_PORT))
    env = _environment(port)
    started_pg = False
    sandbox = None
    runner: subprocess.Popen[str] | None = None
    failures = 0
    try:
        if not _external_databases():
            _say(f"embedded PostgreSQL on 127.0.0.1:{port} (data in .demo/pgdata)")
            started_pg = pg.start(DEMO_DIR / "pgdata", port)
            pg.ensure_databases(f"postgresql://postgres@127.0.0.1:{port}/postgres", [*WAREHOUSE_DATABASES.values(), "airflow"])
        _say("migrating the warehouses")
        migrate(env)
        if not _external_databases():
            from backbone.warehouse.migrations.ops_ledger import FINANCE_READER_ROLE
            from backbone_devtools.localenv import FINANCE_LOCAL_PASSWORD, FINANCE_LOGIN

            pg.ensure_login(f"postgresql://postgres@127.0.0.1:{port}/postgres", FINANCE_LOGIN, FINANCE_LOCAL_PASSWORD, FINANCE_READER_ROLE)
        _say("migrating Airflow's metadata database")
        subprocess.run(["airflow", "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
        _say(f"starting the vendor sandbox on http://127.0.0.1:{DEFAULT_SANDBOX_PORT}")
        sandbox = _start_sandbox(env)
        info = _sandbox_info()
        anchor = str(info["anchor"])
        _say(
            f"vendors: {VENDORS} (CRM Connection {env['BACKBONE_CRM_CONN_ID']}, "
            f"accounting Connection {env['BACKBONE_ACCOUNTING_CONN_ID']}, PSA Connection {env['BACKBONE_PSA_CONN_ID']})"
        )
        if not info["resumed"]:  # a new sandbox knows only its first refresh tokens
            from backbone.hooks.oauth import token_variable_names

            for variable in token_variable_names("quickbooks_default", "xero_default"):
                subprocess.run(["airflow", "variables", "delete", variable], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(DEMO_DIR / "logs", ignore_errors=True)
        (DEMO_DIR / "logs").mkdir()
        for flow in FLOWS:
            if flow == "payments_to_psa":  # finance records a few customer payments in accounting first
                urllib.request.urlopen(
                    urllib.request.Request(
                        f"http://127.0.0.1:{DEFAULT_SANDBOX_PORT}/_sandbox/{VENDOR_PAIRS[VENDORS]['payments']}/record-payments",
                        method="POST",
                    ),
                    timeout=10,
                ).close()
            dates, paused = _demo_dates(flow, info, anchor)
            for logical_date in dates:
                if logical_date in paused:
                    if logical_date == paused[0]:
                        gaps = ", ".join(g["interval"] for g in _gaps(env)[flow]) or "none"
                        _say(
                            f"{flow} paused over {len(paused)} Fridays ({', '.join(paused)}); the ledger's gaps now (those and the weeks "
                            f"the demo has not run yet): {gaps}"
                        )
                    continue
                _say(f"dag.test() {flow} {logical_date}   (log: {DEMO_DIR.name}/logs/{flow}.log)")
                runner = runner or _flow_runner(env)
                began = datetime.now(UTC)
                ok, output = _run_flow(runner, flow, logical_date)
                with (DEMO_DIR / "logs" / f"{flow}.log").open("a") as log:
                    log.write(output)
                uirecord.record_in_ui(
                    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
                    Path(env["AIRFLOW_HOME"]) / "logs",
                    flow,
                    output,
                    began=began,
                    ended=datetime.now(UTC),
                )
                if not ok:
                    failures += 1
                    _say(f"{flow} FAILED; see {DEMO_DIR.name}/logs/{flow}.log")
        _print_runs(env)
        _print_audit(env, until=anchor)
        info = _sandbox_info()
        projects = f"{info['kantata_workspaces']} Kantata workspaces" if PSA == "kantata" else f"{info['psa_projects']} PSA projects"
        if VENDORS == "salesforce-xero":
            print(
                f"Sandbox: {projects}, {info['salesforce_calls']} Salesforce calls, "
                f"{sum(info['xero_creates'].values())} Xero objects created, "
                f"{info['xero_idempotent_replays']} Idempotency-Key replays"
            )
        else:
            print(
                f"Sandbox: {projects}, {sum(info['qbo_creates'].values())} QuickBooks objects created, "
                f"{info['qbo_requestid_replays']} requestid replays"
            )
        chosen = ("" if VENDORS == "hubspot-quickbooks" else f"VENDORS={VENDORS}", "" if PSA == "psa" else f"PSA={PSA}")
        options = " ".join(o for o in chosen if o)
        again = f"make demo {options}".strip()
        print(f"Run `{again}` again: nothing changes. `make demo-reset` starts over.")
        print(
            "Finance page:    http://localhost:8080/finance/ (after `make airflow`; 'Finance' in the Airflow menu)\n"
            "Leadership page: http://localhost:8080/finance/leadership ('Leadership' in the Airflow menu)\n"
            "CLI: `.venv/bin/backbone history` (after `eval $(.venv/bin/python -m backbone_devtools env)`)"
        )
    finally:
        if runner is not None:
            runner.communicate("\n", timeout=60)
        if sandbox is not None:
            sandbox.send_signal(signal.SIGINT)
            sandbox.wait(timeout=30)
        if started_pg:
            pg.stop(DEMO_DIR / "pgdata")
    return 1 if failures else 0


def _flow_runner(env: dict[str, str]) -> subprocess.Popen[str]:
    """One process that runs every demo interval with ``dag.test()`` (``backbone_devtools.flowrunner``):
    Airflow, the DAGs and Great Expectations are loaded once instead of once per ``airflow dags test``."""
    with (DEMO_DIR / "logs" / "flowrunner.log").open("a") as between_runs:
        return subprocess.Popen(
            [sys.executable, "-m", "backbone_devtools.flowrunner"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=between_runs,
            text=True,
        )


def _run_flow(runner: subprocess.Popen[str], flow: str, logical_date: str) -> tuple[bool, str]:
    """One run in the runner: (succeeded, everything it printed)."""
    import tempfile

    assert runner.stdin is not None and runner.stdout is not None
    with tempfile.NamedTemporaryFile("r", suffix=".log", dir=DEMO_DIR / "logs") as log:
        runner.stdin.write(json.dumps({"flow": flow, "logical_date": logical_date, "log": log.name}) + "\n")
        runner.stdin.flush()
        reply = runner.stdout.readline()
        if not reply:
            raise RuntimeError(f"the flow runner stopped during {flow} {logical_date} (exit {runner.wait()})")
        return bool(json.loads(reply)["ok"]), Path(log.name).read_text()


SANDBOX_INFO_KEYS = {"anchor", "resumed", "time_week_ends"}
"""What only this project's sandbox answers on ``/_sandbox/info``."""


def _running_sandbox() -> bool:
    """True when this project's sandbox already answers on its port; raises when something else holds it."""
    try:
        info = _sandbox_info()
    except OSError:
        return False
    except ValueError:
        info = {}
    if not SANDBOX_INFO_KEYS <= set(info):
        raise RuntimeError(
            f"port {DEFAULT_SANDBOX_PORT} answers, but not as this project's sandbox: stop what runs there, then `make airflow` again"
        )
    return True


def airflow_with_sandbox() -> int:
    """``make airflow``: the demo's PostgreSQL, the vendor sandbox (started unless this project's is
    already running) and ``airflow standalone``, all on the demo's state; the sandbox it started is
    stopped (its state saved) when Airflow stops."""
    port = int(os.environ.get("BACKBONE_DEMO_PG_PORT", DEFAULT_PG_PORT))
    DEMO_DIR.mkdir(exist_ok=True)
    pg.start(DEMO_DIR / "pgdata", port)
    pg.ensure_databases(f"postgresql://postgres@127.0.0.1:{port}/postgres", [*WAREHOUSE_DATABASES.values(), "airflow"])
    env = _environment(port)
    env["AIRFLOW__API__HOST"] = os.environ.get("AIRFLOW_HOST", "127.0.0.1")
    sandbox = None
    try:
        if _running_sandbox():
            _say(f"using the sandbox already running on http://127.0.0.1:{DEFAULT_SANDBOX_PORT}")
        else:
            _say(f"starting the vendor sandbox on http://127.0.0.1:{DEFAULT_SANDBOX_PORT} (log: {DEMO_DIR.name}/sandbox.log)")
            sandbox = _start_sandbox(env)
        return subprocess.run(["airflow", "standalone"], env=env).returncode
    except KeyboardInterrupt:
        return 0
    finally:
        if sandbox is not None:
            sandbox.send_signal(signal.SIGINT)
            sandbox.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m backbone_devtools", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["demo", "migrate", "env", "pg-start", "pg-stop", "airflow", "psa-contract"])
    args = parser.parse_args(argv)
    port = int(os.environ.get("BACKBONE_DEMO_PG_PORT", DEFAULT_PG_PORT))
    if args.command == "psa-contract":  # the PSA API's OpenAPI, as committed in docs/psa-api/
        from backbone_sandbox.psa import contract

        path = PROJECT_ROOT / "docs" / "psa-api" / "openapi.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(contract(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {path.relative_to(PROJECT_ROOT)}")
        return 0
    if args.command == "demo":
        return demo()
    if args.command == "airflow":
        return airflow_with_sandbox()
    if args.command == "migrate":
        migrate(_environment(port))
    elif args.command == "env":
        for key, value in airflow_environment(airflow_home=DEMO_DIR / "airflow", pg_port=port).items():
            print(f"export {key}='{value}'")
    elif args.command == "pg-start":
        pg.start(DEMO_DIR / "pgdata", port)
        pg.ensure_databases(f"postgresql://postgres@127.0.0.1:{port}/postgres", [*WAREHOUSE_DATABASES.values(), "airflow"])
        print(f"PostgreSQL on 127.0.0.1:{port}")
    elif args.command == "pg-stop":
        pg.stop(DEMO_DIR / "pgdata")
    return 0


if __name__ == "__main__":
    sys.exit(main())
