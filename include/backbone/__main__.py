"""``backbone history|exceptions|gaps|waiting|held|pilot|check`` — the run ledger in a terminal, for finance, support and scripts.

  backbone history                                   the latest runs of every flow
  backbone history --flow timesheets --week 2026-W44 (or --week 2026-44)
  backbone history --status failed --json            for scripts: JSON, exit code 1 when a failed run is shown
  backbone exceptions --flow month_end --month 2026-10
  backbone history --csv > runs.csv                  the same as CSV (UTF-8 with BOM: opens in Excel)
  backbone gaps                                      due intervals no successful run covers yet (exit code 1 if any)
  backbone waiting                                   T&M invoices waiting for their month's time export
  backbone held --month 2026-10                      invoices held for finance, with the amount at stake and every reason
  backbone pilot                                     what the accounting outbox would send (pilot mode's report)
  backbone check                                     every system the flows need: reachable, credentials accepted,
                                                     warehouses migrated, mapping coverage (exit 1 if one is missing)
  backbone audit [--days 56] [--until D] [--csv|--json]  what does not line up across CRM, PSA, accounting and HR
                                                     (read from the systems, read-only; exit 1 when it finds something)
  backbone audit --accept [--min-score 90] [--yes]   the suggested client matches into accounting_mapping.yaml:
                                                     shows the diff, writes only with --yes

(``python -m backbone …`` is the same.) Exit codes: 0 fine, 1 the selection holds failed runs or
gaps (``check``: a system the flows need fails), 2 bad input or a warehouse that cannot be read (a sentence on stderr, never a traceback).
Reads the warehouses through the read-only finance Connections (``finance_psa_warehouse``,
``finance_accounting_warehouse``); see the README's Configuration.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from backbone.ledger import (
    EXCEPTION_COLUMNS,
    GAP_COLUMNS,
    HELD_COLUMNS,
    WAITING_COLUMNS,
    WOULD_POST_COLUMNS,
    Ledger,
    LedgerUnavailable,
    check_paging,
    parse_period,
    resolve_flow,
    runs_for_csv,
    to_csv,
    to_table,
)

TABLE_RUN_COLUMNS = ["flow", "interval", "status", "extracted", "exceptions", "loaded", "posted", "hours", "amounts"]
TABLE_EXCEPTION_COLUMNS = ["flow", "entity", "key", "rule", "reason", "first_seen"]
RUN_STATUSES = ("success", "failed", "running")


def period_text(args: argparse.Namespace) -> str | None:
    """The period option as the ledger reads it; ``--week`` takes ``2026-W47``, ``2026-47`` or ``2026W47``."""
    if args.week:
        match = re.fullmatch(r"(\d{4})-?[Ww]?(\d{1,2})", args.week.strip())
        if not match:
            raise ValueError(f"--week {args.week!r} is not an ISO week such as 2026-W47")
        return f"{match[1]}-W{int(match[2]):02d}"
    if args.month and not re.fullmatch(r"\d{4}-\d{2}", args.month):
        raise ValueError(f"--month {args.month!r} is not a month such as 2026-10")
    if args.day and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", args.day):
        raise ValueError(f"--day {args.day!r} is not a day such as 2026-10-30")
    return args.month or args.day


def emit(rows: list[dict[str, Any]], columns: list[str], args: argparse.Namespace, *, empty: str | None = None) -> None:
    if args.json:
        print(json.dumps([{c: row.get(c, "") for c in columns} for row in rows], ensure_ascii=False, indent=2, default=str))
    elif args.csv:
        sys.stdout.write(to_csv(rows, columns))
    else:
        print(to_table(rows, columns) if rows or empty is None else empty)


def parser() -> argparse.ArgumentParser:
    parsing = argparse.ArgumentParser(prog="backbone", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parsing.add_argument("command", choices=["history", "exceptions", "gaps", "waiting", "held", "pilot", "check", "audit"])
    parsing.add_argument("--flow", help="a flow id or an unambiguous part of it (timesheets, month_end, roster, ...)")
    parsing.add_argument("--status", choices=RUN_STATUSES, help="history: only runs in this state")
    group = parsing.add_mutually_exclusive_group()
    group.add_argument("--week", help="ISO week in company time, e.g. 2026-W47")
    group.add_argument("--month", help="calendar month in company time, e.g. 2026-10")
    group.add_argument("--day", help="a day in company time, e.g. 2026-10-30")
    parsing.add_argument(
        "--days", type=int, default=56, help="audit: the window of PSA time and won CRM deals it reads (days back from now)"
    )
    parsing.add_argument("--until", help="audit: the window's end (ISO date or time, UTC; default now)")
    parsing.add_argument("--accept", action="store_true", help="audit: write the suggested client matches into the mapping")
    parsing.add_argument("--min-score", type=float, default=90.0, help="audit --accept: the lowest suggestion score accepted (0-100)")
    parsing.add_argument("--yes", action="store_true", help="audit --accept: write the change (without it, only the diff is shown)")
    parsing.add_argument("--page", type=int, default=1)
    parsing.add_argument("--page-size", type=int, default=50)
    output = parsing.add_mutually_exclusive_group()
    output.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    output.add_argument("--json", action="store_true", help="print JSON (a list of objects) instead of a table")
    return parsing


def check(args: argparse.Namespace) -> int:
    """``backbone check``: one line per system; 1 when one the flows need fails."""
    from dataclasses import asdict

    from backbone.connection_check import check_all
    from backbone.settings import load_settings

    findings = check_all(load_settings())
    rows = [{**asdict(f), "status": f.status} for f in findings]
    emit(rows, ["system", "connection", "status", "detail"], args)
    return 1 if any(not f.ok and f.blocking for f in findings) else 0


def audit(args: argparse.Namespace) -> int:
    """``backbone audit``: the findings; with ``--accept``, the diff of the mapping (written with ``--yes``)."""
    from datetime import UTC, datetime

    from backbone import audit as data_audit
    from backbone.accounting_mapping import MAPPING_FILE, load_mapping

    if args.days < 1:
        raise ValueError(f"--days {args.days} must be at least 1")
    try:
        until = datetime.fromisoformat(args.until).replace(tzinfo=UTC) if args.until else datetime.now(UTC)
    except ValueError:
        raise ValueError(f"--until {args.until!r} is not an ISO date or time such as 2026-11-30") from None
    findings = data_audit.audit(data_audit.read_systems(days=args.days, until=until), load_mapping())
    if args.accept:
        overrides = data_audit.accepted_overrides(findings, min_score=args.min_score)
        if not overrides:
            print(f"no client suggestion scores {args.min_score:g} or more: the mapping stays as it is")
            return 0
        new_text = data_audit.with_overrides(MAPPING_FILE.read_text(encoding="utf-8"), overrides)
        print(data_audit.mapping_diff(MAPPING_FILE, new_text), end="")
        if args.yes:
            MAPPING_FILE.write_text(new_text, encoding="utf-8")
            print(f"written: {len(overrides)} client override(s) in {MAPPING_FILE}")
        else:
            print("not written: review the diff, then run again with --yes")
        return 0
    if args.json:
        print(data_audit.to_json_text(findings))
    elif args.csv:
        sys.stdout.write(data_audit.to_csv_text(findings))
    else:
        rows = data_audit.as_rows(findings)
        print(to_table(rows, data_audit.COLUMNS) if rows else "")
        print(data_audit.summary(findings))
    return 1 if findings else 0


def pilot(ledger: Ledger, args: argparse.Namespace) -> int:
    """``backbone pilot``: the flows in pilot mode and every outbox line they would send."""
    from backbone.pilot import pilot_flows

    rows = ledger.would_post()
    emit(rows, WOULD_POST_COLUMNS, args, empty="the accounting outbox holds nothing unsent")
    if not (args.csv or args.json):
        flows = ", ".join(sorted(pilot_flows())) or "none"
        print(f"\n{len(rows)} outbox lines would be sent; flows in pilot mode: {flows}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.command == "audit":
        return audit(args)
    if args.command == "check":
        return check(args)
    from backbone.settings import load_settings

    # bad input is answered before any warehouse Connection is looked up (that imports Airflow: seconds)
    check_paging(args.page, args.page_size)
    flow = resolve_flow(args.flow)
    period = parse_period(period_text(args), load_settings().company_timezone)
    ledger = Ledger.from_settings()
    if args.command == "history":
        rows, total = ledger.runs(flow=flow, period=period, status=args.status, page=args.page, page_size=args.page_size)
        if args.csv or args.json:
            csv_rows, columns = runs_for_csv(rows)
            emit(csv_rows, columns, args)
        else:
            emit(rows, TABLE_RUN_COLUMNS, args)
        if not (args.csv or args.json):
            print(f"\n{len(rows)} of {total} runs (page {args.page}); times in {ledger.timezone}")
        return 1 if any(r["status"] == "failed" for r in rows) else 0
    if args.command == "gaps":
        rows = ledger.gaps(flow=flow)
        emit(rows, GAP_COLUMNS if args.csv or args.json else ["flow", "interval"], args, empty="gaps: none")
        return 1 if rows else 0
    if args.command == "pilot":
        return pilot(ledger, args)
    if args.command == "held":
        emit(ledger.held_invoices(period=period), HELD_COLUMNS, args, empty="held invoices: none")
        return 0
    if args.command == "waiting":
        emit(ledger.waiting_invoices(period=period), WAITING_COLUMNS, args, empty="waiting invoices: none")
        return 0
    rows = ledger.open_exceptions(flow=flow, period=period)
    emit(rows, EXCEPTION_COLUMNS if args.csv or args.json else TABLE_EXCEPTION_COLUMNS, args)
    if not (args.csv or args.json):
        print(f"\n{len(rows)} open exceptions")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except (LedgerUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `backbone history | head`: the reader left, nothing went wrong
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
