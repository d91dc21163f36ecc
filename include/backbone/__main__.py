"""``python -m backbone history|exceptions`` — the run ledger in a terminal, for finance and support.

  python -m backbone history                         the latest runs of every flow
  python -m backbone history --flow timesheets --week 2026-W44
  python -m backbone exceptions --flow month_end --month 2026-10
  python -m backbone history --csv > runs.csv        the same as CSV
  python -m backbone gaps                            due intervals no successful run covers yet
  python -m backbone waiting                         T&M invoices waiting for their month's time export

Reads the warehouses through the read-only finance Connections (``finance_psa_warehouse``,
``finance_accounting_warehouse``); see the README's Configuration.
"""

from __future__ import annotations

import argparse
import sys

from backbone.ledger import (
    EXCEPTION_COLUMNS,
    GAP_COLUMNS,
    RUN_COLUMNS,
    WAITING_COLUMNS,
    Ledger,
    LedgerUnavailable,
    check_paging,
    parse_period,
    resolve_flow,
    to_csv,
    to_table,
)

TABLE_RUN_COLUMNS = ["flow", "interval", "status", "extracted", "exceptions", "loaded", "posted", "hours", "amounts"]
TABLE_EXCEPTION_COLUMNS = ["flow", "entity", "key", "rule", "reason", "first_seen"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backbone", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["history", "exceptions", "gaps", "waiting"])
    parser.add_argument("--flow", help="a flow id or an unambiguous part of it (timesheets, month_end, roster, ...)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--week", help="ISO week in company time, e.g. 2026-W47")
    group.add_argument("--month", help="calendar month in company time, e.g. 2026-10")
    group.add_argument("--day", help="a day in company time, e.g. 2026-10-30")
    parser.add_argument("--page", type=int, default=1)
    parser.add_argument("--page-size", type=int, default=50)
    parser.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    args = parser.parse_args(argv)
    try:
        check_paging(args.page, args.page_size)
        ledger = Ledger.from_settings()
        flow = resolve_flow(args.flow)
        period = parse_period(args.week or args.month or args.day, ledger.timezone)
        if args.command == "history":
            rows, total = ledger.runs(flow=flow, period=period, page=args.page, page_size=args.page_size)
            print(to_csv(rows, RUN_COLUMNS) if args.csv else to_table(rows, TABLE_RUN_COLUMNS))
            if not args.csv:
                print(f"\n{len(rows)} of {total} runs (page {args.page}); times in {ledger.timezone}")
        elif args.command == "gaps":
            rows = ledger.gaps(flow=flow)
            print(to_csv(rows, GAP_COLUMNS) if args.csv else (to_table(rows, ["flow", "interval"]) if rows else "gaps: none"))
        elif args.command == "waiting":
            rows = ledger.waiting_invoices(period=period)
            print(to_csv(rows, WAITING_COLUMNS) if args.csv else (to_table(rows, WAITING_COLUMNS) if rows else "waiting invoices: none"))
        else:
            rows = ledger.open_exceptions(flow=flow, period=period)
            print(to_csv(rows, EXCEPTION_COLUMNS) if args.csv else to_table(rows, TABLE_EXCEPTION_COLUMNS))
            if not args.csv:
                print(f"\n{len(rows)} open exceptions")
    except (LedgerUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `python -m backbone history | head`: the reader left, nothing went wrong
        sys.stderr.close()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
