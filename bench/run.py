"""``make bench`` / ``make bench-quick``: every figure is a ratio against a baseline measured in the same run.

Writes ``bench/results/latest.json`` and ``bench/results/latest.md`` (the table the README shows).
Absolute times are printed for reference; targets are judged on ratios only.

  1. load      the project's validated upsert vs a raw COPY of the same rows (the limit) and vs
               ``DataFrame.to_sql`` with default arguments (what most users write)
  2. rates     achieved request rate ÷ the vendor's allowed rate, with its 429 count
  3. memory    peak RSS of the weekly timesheet flow's stages at two sizes
  4. validate  Great Expectations rows/s on time entries and its share of the flow's wall time
  5. parse     each DAG file's import time vs an empty DAG file's; the whole folder through DagBag
  6. stages    wall time of the weekly flow by stage (extract / validate / load / post)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT / "devkit")]

from backbone_devtools import pg  # noqa: E402
from backbone_devtools.localenv import airflow_environment  # noqa: E402

BENCH_DIR = ROOT / ".bench"
RESULTS = ROOT / "bench" / "results"
PG_PORT = 54349
SANDBOX_PORT = 8777  # not the tests' ports (8766, 8767)
ADMIN = f"postgresql://postgres@127.0.0.1:{PG_PORT}/postgres"
WAREHOUSE = f"postgresql+psycopg2://postgres@127.0.0.1:{PG_PORT}/psa_warehouse"


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def time_entry_rows(n: int) -> list[dict]:
    rng = random.Random(n)
    start = date(2026, 10, 26)
    approved = datetime(2026, 10, 30, 14, tzinfo=UTC)
    return [
        {
            "entry_id": f"TE-{i:09d}",
            "entry_version": 1,
            "person_id": f"EMP-{i % 2000:05d}",
            "person_email": f"p{i % 2000}@people.example",
            "project_id": f"PJ-{i % 300:05d}",
            "client_id": f"CL-{i % 120:05d}",
            "billing_code": rng.choice(["CONSULT", "DEV", "PM"]),
            "work_date": start + timedelta(days=i % 5),
            "hours": Decimal(rng.choice(["1.25", "2.5", "4", "7.75"])),
            "billable": True,
            "hourly_rate": Decimal("110.00"),
            "currency": "EUR",
            "approved_at": approved,
            "last_run_id": "bench",
        }
        for i in range(n)
    ]


# --- 1. load path -------------------------------------------------------------------------------------
def bench_load(engine, n: int, *, with_to_sql: bool) -> dict:
    import io

    import pandas as pd
    from sqlalchemy import text

    from backbone.settings import load_settings
    from backbone.warehouse.db import copy_upsert, upsert
    from backbone.warehouse.tables import time_entry

    rows = time_entry_rows(n)
    columns = list(rows[0])
    result = {"rows": n}

    def reset() -> None:
        with engine.begin() as connection:
            connection.execute(text("TRUNCATE psa.time_entry"))
            connection.execute(text("DROP TABLE IF EXISTS public.bench_to_sql"))

    reset()
    started = time.perf_counter()  # from the same Python rows as every other path: text built, then COPY
    buffer = io.StringIO("".join("\t".join(str(r[c]) for c in columns) + "\n" for r in rows))
    with engine.begin() as connection:
        with connection.connection.driver_connection.cursor() as cursor:
            cursor.copy_expert(f"COPY psa.time_entry ({', '.join(columns)}) FROM STDIN", buffer)
    result["copy_seconds"] = time.perf_counter() - started

    for name, writer in (("project_copy_upsert", copy_upsert), ("multi_values_upsert", upsert)):
        reset()
        started = time.perf_counter()
        chunk = load_settings().chunk_size  # what the flows use
        with engine.begin() as connection:
            for offset in range(0, n, chunk):
                writer(connection, time_entry, rows[offset : offset + chunk], key=["entry_id"])
        result[f"{name}_seconds"] = time.perf_counter() - started
    if with_to_sql:
        reset()
        frame = pd.DataFrame.from_records(rows)
        started = time.perf_counter()
        frame.to_sql("bench_to_sql", engine)  # default arguments, as most users write it
        result["to_sql_seconds"] = time.perf_counter() - started
    reset()
    result["vs_copy"] = result["copy_seconds"] / result["project_copy_upsert_seconds"]
    result["before_vs_copy"] = result["copy_seconds"] / result["multi_values_upsert_seconds"]
    if with_to_sql:
        result["vs_to_sql"] = result["to_sql_seconds"] / result["project_copy_upsert_seconds"]
    return result


# --- 4. validation ---------------------------------------------------------------------------------------
def bench_validation(n: int) -> dict:
    from tests_support import entry_payloads

    from backbone.validation import validate_rows

    payloads = entry_payloads(n)
    from backbone.flows.timesheets import map_entry

    rows = [map_entry(p) for p in payloads]
    validate_rows("time_entry", rows[:100])  # build and cache the suite first
    started = time.perf_counter()
    for offset in range(0, n, 5000):  # the flow's chunks: BACKBONE_CHUNK_SIZE
        validate_rows("time_entry", rows[offset : offset + 5000])
    seconds = time.perf_counter() - started
    return {"rows": n, "seconds": seconds, "rows_per_second": n / seconds}


# --- 5. parse time -----------------------------------------------------------------------------------------
def bench_parse(env: dict) -> dict:
    probe = "import runpy, sys, time; t = time.perf_counter(); runpy.run_path(sys.argv[1]); print(time.perf_counter() - t)"
    baseline_file = BENCH_DIR / "empty_dag.py"
    baseline_file.write_text(
        "import pendulum\nfrom airflow.sdk import dag, task, CronDataIntervalTimetable\n\n"
        "@dag(dag_id='empty', schedule=CronDataIntervalTimetable('0 5 * * *', timezone='UTC'), start_date=pendulum.datetime(2026, 1, 1))\n"
        "def empty():\n    @task\n    def nothing():\n        return None\n    nothing()\n\nempty()\n"
    )

    def import_seconds(path: Path) -> float:
        runs = [
            float(
                subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, env=env, check=True)
                .stdout.strip()
                .splitlines()[-1]
            )
            for _ in range(3)
        ]
        return statistics.median(runs)

    baseline = import_seconds(baseline_file)
    files = {p.stem: import_seconds(p) for p in sorted((ROOT / "dags").glob("*.py"))}
    dagbag_probe = (
        "import time; from airflow.dag_processing.dagbag import DagBag; t = time.perf_counter(); "
        "b = DagBag(dag_folder=__import__('sys').argv[1]); print(time.perf_counter() - t, len(b.dags), len(b.import_errors))"
    )
    seconds, dags, errors = subprocess.run(
        [sys.executable, "-c", dagbag_probe, str(ROOT / "dags")], capture_output=True, text=True, env=env, check=True
    ).stdout.split()[-3:]
    return {
        "empty_dag_seconds": baseline,
        "files": {k: {"seconds": v, "vs_empty": v / baseline} for k, v in files.items()},
        "dagbag_seconds": float(seconds),
        "dags": int(dags),
        "import_errors": int(errors),
    }


# --- 2, 3, 6. the weekly flow at size, and vendor rates -------------------------------------------------
def bench_flow(env: dict, people: int) -> dict:
    """The weekly flow's stages in a fresh process (peak RSS is the process's), posting to a no-op client."""
    code = f"""
import json, sys, time
sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / "include")!r})
from datetime import datetime, UTC
from backbone.flows import timesheets
from backbone.hooks.psa import PsaHook
from backbone.hooks.accounting import PostedObject
from backbone.hooks.oauth import MemoryTokenStore
from backbone.hooks.quickbooks import QuickBooksHook, time_activity_body
from backbone.warehouse.db import engine_for
from backbone.warehouse.ops import RunRef
from sqlalchemy import text

class NoOpAccounting:
    system = "quickbooks"
    time_batch_size = 30  # as QuickBooksHook: new entries go 30 to a batch call
    def __init__(self, real): self.real = real
    def reference_records(self): return self.real.reference_records()
    def post_time_entry(self, line, *, target, request_id):
        return PostedObject("TimeActivity", target or request_id, "1" if target else "0", time_activity_body(line))
    def create_time_entries(self, lines):
        return [self.post_time_entry(line, target=None, request_id=line["request_id"]) for line in lines]

week = (datetime(2026, 10, 23, 15, tzinfo=UTC), datetime(2026, 10, 30, 16, tzinfo=UTC))
run = RunRef("timesheets_weekly_to_accounting", "bench-{people}", *week)
acct, psa_wh = engine_for("accounting_warehouse"), engine_for("psa_warehouse")
acct_tables = "acct.time_export, acct.reference, ops.flow_run, ops.staged_record, ops.quarantine"
for engine, tables in ((acct, acct_tables), (psa_wh, "psa.time_entry")):
    with engine.begin() as c: c.execute(text("TRUNCATE " + tables))
accounting = NoOpAccounting(QuickBooksHook(token_store=MemoryTokenStore()))
stages = {{}}
t = time.perf_counter()
counts = timesheets.extract_time_entries(PsaHook(), accounting, acct, run, page_size=1000)
stages["extract"] = time.perf_counter() - t
t = time.perf_counter()
timesheets.validate_time_entries(acct, run, company_timezone="Europe/Amsterdam", chunk_size=5000)
stages["validate"] = time.perf_counter() - t
t = time.perf_counter(); timesheets.load_time_entries(psa_wh, acct, run, chunk_size=5000); stages["load"] = time.perf_counter() - t
t = time.perf_counter()
timesheets.post_time_activities(accounting, acct, run, concurrency=4)
stages["post (no-op client)"] = time.perf_counter() - t
# The flow's own peak: VmHWM is the high-water mark of this process's address space, which exec
# starts afresh (ru_maxrss does not: on Linux it keeps the forking parent's mark across exec).
peak_mb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024
print(json.dumps({{"entries": counts["extracted"], "stages": stages, "peak_rss_mb": peak_mb}}))
"""
    sandbox = start_sandbox(env, people=people, qbo_rate=100000)
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise RuntimeError(result.stderr[-3000:])
        return json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=60)


def bench_rates(env: dict, *, searches: int, qbo_calls: int) -> dict:
    """Long runs against the sandbox's vendor limits: HubSpot search 4/s, QuickBooks 500/min, and
    QuickBooks' batch endpoint (30 time activities a call, 40 calls a minute) as the weekly flow posts."""
    code = f"""
import json, sys, time
from datetime import datetime, UTC, timedelta
sys.path.insert(0, {str(ROOT / "include")!r})
from backbone.hooks.hubspot import HubSpotHook
from backbone.hooks.oauth import MemoryTokenStore
from backbone.hooks.quickbooks import QuickBooksHook
hook = HubSpotHook()
anchor = datetime(2026, 11, 2, 12, tzinfo=UTC)
t = time.perf_counter()
pages = sum(1 for _ in hook.search_modified("deals", start=anchor - timedelta(minutes=30), end=anchor, properties=["dealname"]))
hub = time.perf_counter() - t
qbo = QuickBooksHook(token_store=MemoryTokenStore()); qbo.access_token()
t = time.perf_counter()
for n in range({qbo_calls}): qbo.call("GET", "/query", params={{"query": "SELECT * FROM Item STARTPOSITION 1 MAXRESULTS 1"}})
q = time.perf_counter() - t
from concurrent.futures import ThreadPoolExecutor
employee, customer, item = (next(p for p in qbo.query_all(e, "Active = true"))[0] for e in ("Employee", "Customer", "Item"))
lines = [
    {{"entry_id": f"TE-{{n}}", "entry_version": 1, "work_date": "2026-10-26", "name_of": "Employee",
     "person_ref_id": employee["Id"], "person_name": employee["DisplayName"], "customer_ref_id": customer["Id"],
     "client_name": customer["DisplayName"], "item_ref_id": item["Id"], "item_name": item["Name"], "billable_status": "Billable",
     "hourly_rate": "110.00", "minutes": 90, "billing_code": "CONSULT", "project_id": "PJ-1", "project_name": "Bench",
     "request_id": f"bench-{{n}}"}}
    for n in range({qbo_calls // 5} * 30)
]
t = time.perf_counter()
with ThreadPoolExecutor(max_workers=4) as pool:
    answers = [a for batch in pool.map(qbo.create_time_entries, [lines[n:n + 30] for n in range(0, len(lines), 30)]) for a in batch]
b = time.perf_counter() - t
assert all(not isinstance(a, Exception) for a in answers), [a for a in answers if isinstance(a, Exception)][:3]
print(json.dumps({{"hubspot_requests": pages, "hubspot_seconds": hub, "qbo_requests": {qbo_calls}, "qbo_seconds": q,
                  "qbo_batch_objects": len(answers), "qbo_batch_seconds": b}}))
"""
    sandbox = start_sandbox(env, deals=searches * 100, people=6, qbo_rate=500)
    try:
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env={**env, "BACKBONE_QBO_REQUESTS_PER_MINUTE": "490"}
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr[-3000:])
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{SANDBOX_PORT}/_sandbox/info", timeout=10) as answer:
            limited = json.load(answer)["rate_limited"]
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=60)
    return {
        "hubspot_search": {
            "requests": figures["hubspot_requests"],
            "seconds": figures["hubspot_seconds"],
            "allowed_per_second": 4,
            "ratio": figures["hubspot_requests"] / figures["hubspot_seconds"] / 4,
            "429s": limited.get("hubspot_search", 0),
        },
        "quickbooks": {
            "requests": figures["qbo_requests"],
            "seconds": figures["qbo_seconds"],
            "allowed_per_second": 500 / 60,
            "ratio": figures["qbo_requests"] / figures["qbo_seconds"] / (500 / 60),
            "429s": limited.get("quickbooks", 0),
        },
        "quickbooks_batch": {
            "objects": figures["qbo_batch_objects"],
            "seconds": figures["qbo_batch_seconds"],
            "ratio": figures["qbo_batch_objects"] / figures["qbo_batch_seconds"] / (500 / 60),
            "429s": limited.get("quickbooks-batch", 0),
        },
    }


def start_sandbox(env: dict, *, people: int = 12, deals: int = 30, qbo_rate: int = 500) -> subprocess.Popen:
    import socket
    import urllib.request

    with socket.socket() as probe:  # another sandbox there would answer in this one's place, with its own state
        if probe.connect_ex(("127.0.0.1", SANDBOX_PORT)) == 0:
            raise RuntimeError(f"port {SANDBOX_PORT} is already in use (an earlier sandbox still running?): the bench starts its own there")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "backbone_sandbox",
            "--port",
            str(SANDBOX_PORT),
            "--people",
            str(people),
            "--weeks",
            "1",
            "--deals",
            str(deals),
            "--anchor",
            "2026-11-02T12:00:00Z",
            "--qbo-rate",
            str(qbo_rate),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(600):
        if process.poll() is not None:
            raise RuntimeError(f"the sandbox exited with {process.returncode} before it answered")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{SANDBOX_PORT}/_sandbox/info", timeout=2):
                return process
        except OSError:
            time.sleep(0.5)
    process.terminate()
    raise RuntimeError("the sandbox did not start")


# --- report ---------------------------------------------------------------------------------------------------
def verdict(ok: bool) -> str:
    return "met" if ok else "missed"


def report(results: dict) -> str:
    _, load_large = results["load"]
    flow_small, flow_large = results["flow"]
    rates = results["rates"]
    parse = results["parse"]
    validation_share = flow_small["stages"]["validate"] / sum(flow_small["stages"].values())
    memory_ratio = flow_large["peak_rss_mb"] / flow_small["peak_rss_mb"]
    worst_parse = max(f["vs_empty"] for f in parse["files"].values())
    posting_rate = flow_large["entries"] / flow_large["stages"]["post (no-op client)"]
    rows = [
        (
            "Load: validated upsert vs raw COPY",
            f"{load_large['rows']:,} rows",
            f"{load_large['vs_copy']:.2f}× COPY (before: multi-VALUES upsert {load_large['before_vs_copy']:.2f}×)",
            "≥ 0.7×",
            verdict(load_large["vs_copy"] >= 0.7),
        ),
        (
            "Extraction: HubSpot search rate ÷ 4/s",
            f"{rates['hubspot_search']['requests']} requests",
            f"{rates['hubspot_search']['ratio']:.2f} ({rates['hubspot_search']['429s']} × 429)",
            "≥ 0.9, few 429",
            verdict(rates["hubspot_search"]["ratio"] >= 0.9 and rates["hubspot_search"]["429s"] <= 5),
        ),
        (
            "Extraction: QuickBooks rate ÷ 500/min",
            f"{rates['quickbooks']['requests']} requests",
            f"{rates['quickbooks']['ratio']:.2f} ({rates['quickbooks']['429s']} × 429)",
            "≥ 0.9, few 429",
            verdict(rates["quickbooks"]["ratio"] >= 0.9 and rates["quickbooks"]["429s"] <= 5),
        ),
        (
            "Posting: QuickBooks objects/min via batch ÷ 500/min",
            f"{rates['quickbooks_batch']['objects']:,} time activities",
            f"{rates['quickbooks_batch']['ratio']:.2f}× ({rates['quickbooks_batch']['429s']} × 429)",
            "≥ 2×",
            verdict(rates["quickbooks_batch"]["ratio"] >= 2 and rates["quickbooks_batch"]["429s"] <= 5),
        ),
        (
            "Posting bookkeeping: entries/s with a no-op client",
            f"{flow_large['entries']:,} entries",
            f"{posting_rate:,.0f} entries/s",
            "≥ 20,000/s",
            verdict(posting_rate >= 20_000),
        ),
        (
            "Memory: weekly flow peak RSS, large ÷ small",
            f"{flow_large['entries']:,} vs {flow_small['entries']:,} entries",
            f"{memory_ratio:.2f} ({flow_large['peak_rss_mb']:.0f} MB vs {flow_small['peak_rss_mb']:.0f} MB)",
            "≤ 1.3",
            verdict(memory_ratio <= 1.3),
        ),
        (
            "Validation: GE rows/s on time entries",
            f"{results['validation']['rows']:,} rows",
            f"{results['validation']['rows_per_second']:,.0f} rows/s; {validation_share:.0%} of the flow's wall time",
            "≥ 100k rows/s, ≤ 10 %",
            verdict(results["validation"]["rows_per_second"] >= 100_000 and validation_share <= 0.10),
        ),
        (
            "Parse: slowest DAG file ÷ empty DAG file",
            f"{len(parse['files'])} files",
            f"{worst_parse:.2f}×",
            "≤ 2×",
            verdict(worst_parse <= 2),
        ),
        (
            "Parse: whole dags/ folder through DagBag",
            f"{parse['dags']} DAGs",
            f"{parse['dagbag_seconds']:.2f} s",
            "< 2 s",
            verdict(parse["dagbag_seconds"] < 2),
        ),
    ]
    stage_line = ", ".join(f"{k} {v:.1f}s" for k, v in flow_small["stages"].items())
    lines = [
        f"Measured {results['measured_at']} on {results['cores']} cores ({results['mode']} mode). Ratios are against baselines measured "
        "in the same run.",
        "",
        "| measure | size | result | target | |",
        "|---|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows],
        "",
        f"Weekly flow by stage at {flow_small['entries']:,} entries: {stage_line}. At {flow_large['entries']:,}: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in flow_large["stages"].items())
        + ". Posting is measured with a no-op accounting client (new entries 30 to a call, as QuickBooks' batch takes them); "
        "against QuickBooks it is bound by 40 batch calls a minute (about 20 entries a second).",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: a few minutes on 2 cores")
    args = parser.parse_args()
    sizes = (
        {"load": (20_000, 100_000), "people": (2_000, 10_000), "validation": 20_000, "searches": 40, "qbo": 150}
        if args.quick
        else {"load": (100_000, 1_000_000), "people": (10_000, 100_000), "validation": 100_000, "searches": 120, "qbo": 600}
    )
    BENCH_DIR.mkdir(exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **airflow_environment(airflow_home=BENCH_DIR / "airflow", pg_port=PG_PORT, sandbox_url=f"http://127.0.0.1:{SANDBOX_PORT}"),
        "BACKBONE_HTTP_MAX_BACKOFF_SECONDS": "5",
        "BACKBONE_QBO_REQUESTS_PER_MINUTE": "100000",
        "PYTHONPATH": f"{ROOT / 'include'}:{ROOT / 'devkit'}:{ROOT / 'bench'}",
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith(("AIRFLOW", "BACKBONE", "PYTHONPATH"))})
    started_pg = pg.start(BENCH_DIR / "pgdata", PG_PORT)
    try:
        pg.ensure_databases(ADMIN, ["psa_warehouse", "accounting_warehouse", "airflow"])
        from backbone.warehouse.db import migrate

        for name in ("psa", "accounting"):
            migrate(f"postgresql+psycopg2://postgres@127.0.0.1:{PG_PORT}/{name}_warehouse", name)
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
        from sqlalchemy import create_engine

        engine = create_engine(WAREHOUSE)
        results: dict = {
            "mode": "quick" if args.quick else "full",
            "cores": os.cpu_count(),
            "measured_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        }
        say(f"load path at {sizes['load'][0]:,} and {sizes['load'][1]:,} rows")
        results["load"] = [bench_load(engine, sizes["load"][0], with_to_sql=False), bench_load(engine, sizes["load"][1], with_to_sql=False)]
        say("validation rows/s")
        results["validation"] = bench_validation(sizes["validation"])
        say("parse time")
        results["parse"] = bench_parse(env)
        say(f"weekly flow at {sizes['people'][0] * 10:,} and {sizes['people'][1] * 10:,} entries")
        results["flow"] = [bench_flow(env, sizes["people"][0]), bench_flow(env, sizes["people"][1])]
        say("vendor request rates")
        results["rates"] = bench_rates(env, searches=sizes["searches"], qbo_calls=sizes["qbo"])
        table = report(results)
        (RESULTS / "latest.json").write_text(json.dumps(results, indent=2, default=str))
        (RESULTS / "latest.md").write_text(table)
        print("\n" + table)
    finally:
        if started_pg:
            pg.stop(BENCH_DIR / "pgdata")
    return 0


if __name__ == "__main__":
    sys.exit(main())
