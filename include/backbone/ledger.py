"""The run ledger finance reads: every run of every flow, and the exceptions still open.

Runs and exceptions live in each warehouse's ``ops`` schema (``ops.flow_run``, ``ops.quarantine``);
this module reads both warehouses through the read-only finance Connections and merges them.
Nothing here writes.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from backbone.months import first_of_next_month

if TYPE_CHECKING:
    from sqlalchemy import Engine

FLOW_NAMES = {
    "crm_closed_won_to_psa": "closed-won deals → PSA",
    "hr_roster_pto_to_psa": "HR roster and time off → PSA",
    "accounting_codes_to_psa": "accounting codes → PSA",
    "timesheets_weekly_to_accounting": "Friday timesheet export",
    "expenses_weekly_to_accounting": "Friday expense export",
    "invoices_month_end_to_accounting": "month-end invoicing",
    "invoices_to_accounting": "invoices on approval",
    "project_actuals_to_accounting": "project actuals → accounting",
    "payments_to_psa": "payments → PSA",
    "psa_milestones_to_crm": "milestones → CRM",
}


class LedgerUnavailable(RuntimeError):
    """A warehouse could not be read; the message says which and why, without a stack trace."""


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime
    label: str


def parse_period(text: str | None, timezone: str) -> Period | None:
    """``2026-W47`` (ISO week), ``2026-10`` (month) or ``2026-10-30`` (day), in company time."""
    if not text:
        return None
    zone = ZoneInfo(timezone)
    try:
        first, last = _period_days(text)
    except ValueError as exc:
        raise ValueError(f"period {text!r} is not a week (2026-W47), a month (2026-10) or a day (2026-10-30): {exc}") from None
    return Period(datetime.combine(first, time(), tzinfo=zone), datetime.combine(last, time(), tzinfo=zone), text)


def parse_range(first: str | None, last: str | None, timezone: str) -> Period | None:
    """A date range ``2026-10-01`` … ``2026-10-15`` (both days included), in company time."""
    if not first and not last:
        return None
    if not (first and last):
        raise ValueError("a date range needs both a first and a last day (2026-10-01 and 2026-10-15)")
    try:
        start, end = date.fromisoformat(first), date.fromisoformat(last)
    except ValueError:
        raise ValueError(f"{first!r} … {last!r} is not a date range: write days as 2026-10-01") from None
    if start > end:
        raise ValueError(f"the first day {first} is after the last day {last}")
    zone = ZoneInfo(timezone)
    return Period(
        datetime.combine(start, time(), tzinfo=zone), datetime.combine(end + timedelta(days=1), time(), tzinfo=zone), f"{first}_to_{last}"
    )


PERIOD_RULE = "interval_end > :start AND interval_end <= :end"
"""A run belongs to the period in which its interval **ends** (the week's export ending Friday 17:00
is that ISO week's, October's month-end is October's, a day's run is that day's): each run is in
exactly one week, month or day."""


def _period_days(text: str) -> tuple[date, date]:
    if match := re.fullmatch(r"(\d{4})-W(\d{1,2})", text):
        monday = date.fromisocalendar(int(match[1]), int(match[2]), 1)
        first, last = monday, monday + timedelta(days=7)
    elif match := re.fullmatch(r"(\d{4})-(\d{2})", text):
        first = date(int(match[1]), int(match[2]), 1)
        last = first_of_next_month(first)
    elif re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        first = date.fromisoformat(text)
        last = first + timedelta(days=1)
    else:
        raise ValueError("unknown form")
    return first, last


MAX_PAGE = 100_000
MAX_PAGE_SIZE = 100_000


def check_paging(page: int, page_size: int, *, max_page_size: int = MAX_PAGE_SIZE) -> None:
    """A page and page size a person asked for, refused with a sentence when out of range."""
    if not 1 <= page <= MAX_PAGE:
        raise ValueError(f"page must be between 1 and {MAX_PAGE} (got {page})")
    if not 1 <= page_size <= max_page_size:
        raise ValueError(f"page size must be between 1 and {max_page_size} (got {page_size})")


def resolve_flow(name: str | None) -> str | None:
    """Accept a flow's id or any unambiguous part of it (``timesheets``, ``invoices``)."""
    if not name:
        return None
    if name in FLOW_NAMES:
        return name
    hits = [flow for flow in FLOW_NAMES if name.lower() in flow]
    if len(hits) != 1:
        raise ValueError(f"flow {name!r} matches {hits or 'nothing'}; choose one of {', '.join(FLOW_NAMES)}")
    return hits[0]


@dataclass
class Ledger:
    """Both warehouses, read through the finance (read-only) Connections."""

    engines: dict[str, Engine]
    timezone: str
    runs_cache: list[dict[str, Any]] = field(default_factory=list)
    gap_grace: timedelta = timedelta(hours=2)
    """How long after its end an interval may wait for its run before it counts as a gap."""

    @classmethod
    def from_settings(cls) -> Ledger:
        from backbone.settings import load_settings
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        engines = {}
        for name, conn_id in settings.finance_conn_ids.items():
            try:
                engines[name] = engine_for(conn_id)
            except Exception as exc:  # noqa: BLE001 - Airflow's "not found" and a bad Connection alike: say which
                raise LedgerUnavailable(
                    f"the {name} warehouse cannot be read: Connection {conn_id!r} is missing or unusable ({exc})"
                ) from None
        return cls(engines=engines, timezone=settings.company_timezone, gap_grace=timedelta(minutes=settings.gap_grace_minutes))

    def _query(self, sql: str, params: dict[str, Any], *, warehouses: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        rows: list[dict[str, Any]] = []
        for name, engine in self.engines.items():
            if warehouses is not None and name not in warehouses:
                continue
            try:
                with engine.connect() as connection:
                    rows += [{**dict(r._mapping), "warehouse": name} for r in connection.execute(text(sql), params)]
            except SQLAlchemyError as exc:
                reason = (
                    str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(getattr(exc, "orig", exc)).strip() else type(exc).__name__
                )
                raise LedgerUnavailable(
                    f"the {name} warehouse cannot be read right now ({reason}); the ledger is shown again once it answers"
                ) from None
        return rows

    def runs(
        self,
        *,
        flow: str | None = None,
        period: Period | None = None,
        status: str | None = None,
        page: int = 1,
        page_size: int = 50,
    ) -> tuple[list[dict[str, Any]], int]:
        """Intervals newest first, each with its latest attempt's state and the attempts behind it
        (``attempts``, newest first). ``period`` keeps intervals that end in it (:data:`PERIOD_RULE`),
        ``status`` those whose latest attempt is in that state. Returns (page, total)."""
        condition, params = self._run_filter(flow, period, status)
        params["limit"] = page * page_size
        rows = self._query(f"{RUN_QUERY} WHERE {condition} ORDER BY r.interval_end DESC, r.flow LIMIT :limit", params)
        total = sum(r["n"] for r in self._query(f"SELECT count(*) AS n FROM ops.flow_run r WHERE {condition}", params))
        rows.sort(key=lambda r: (r["interval_end"], r["flow"]), reverse=True)
        shown = rows[(page - 1) * page_size : page * page_size]
        attempts = self._attempts_of(shown)
        return [self._run_view(r, attempts.get((r["flow"], r["run_id"]), [])) for r in shown], total

    def all_runs(self, *, flow: str | None = None, period: Period | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Every interval of the selection (for totals, charts and CSV), without the attempt lists."""
        condition, params = self._run_filter(flow, period, status)
        rows = self._query(f"{RUN_QUERY} WHERE {condition} ORDER BY r.interval_end DESC, r.flow", params)
        rows.sort(key=lambda r: (r["interval_end"], r["flow"]), reverse=True)
        return [self._run_view(r, []) for r in rows]

    def runs_by_anchor(self, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """These intervals (from :meth:`all_runs`) with the attempts behind each."""
        attempts = self._attempts_of(runs)
        return [{**r, "attempt_list": attempts.get((r["flow"], r["run_id"]), [])} for r in runs]

    @staticmethod
    def _run_filter(flow: str | None, period: Period | None, status: str | None) -> tuple[str, dict[str, Any]]:
        where, params = _flow_and_period("r", flow, period, ["true"])
        if status:
            where.append("r.status = :status")
            params["status"] = status
        return " AND ".join(where), params

    def _attempts_of(self, runs: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
        by_warehouse: dict[str, list[str]] = {}
        for r in runs:
            by_warehouse.setdefault(r["warehouse"], []).append(f"{r['flow']}|{r['run_id']}")
        found: dict[tuple[str, str], list[dict[str, Any]]] = {}
        zone = ZoneInfo(self.timezone)
        for warehouse, keys in by_warehouse.items():
            rows = self._query(
                "SELECT * FROM ops.flow_run_attempt WHERE flow || '|' || run_id = ANY(:keys) ORDER BY started_at DESC",
                {"keys": keys},
                warehouses=(warehouse,),
            )
            for a in rows:
                details = a.get("details") or {}
                found.setdefault((a["flow"], a["run_id"]), []).append(
                    {
                        "started": _local(a["started_at"], zone),
                        "finished": _local(a.get("finished_at"), zone),
                        "status": a["status"],
                        "triggered_by": details.get("triggered_by") or _run_type(details.get("airflow_run_id")),
                        "airflow_run_id": details.get("airflow_run_id", ""),
                        "extracted": a["extracted"],
                        "exceptions": a["quarantined"],
                        "loaded": a["loaded"],
                        "posted": a["written_back"],
                        "failure": details.get("failure", ""),
                        "airflow_url": a.get("airflow_url") or "",
                    }
                )
        return found

    def _run_view(self, row: dict[str, Any], attempts: list[dict[str, Any]]) -> dict[str, Any]:
        zone = ZoneInfo(self.timezone)
        details = row.get("details") or {}
        amounts = {currency: Decimal(str(amount)) for currency, amount in (details.get("amount_by_currency") or {}).items()}
        start, end = row["interval_start"].astimezone(zone), row["interval_end"].astimezone(zone)
        rules = row.get("rules") or {}
        return {
            "flow": row["flow"],
            "flow_name": FLOW_NAMES.get(row["flow"], row["flow"]),
            "run_id": row["run_id"],
            "anchor": run_anchor(row["flow"], row["run_id"]),
            "interval": f"{start:%a %Y-%m-%d %H:%M} → {end:%a %Y-%m-%d %H:%M}",
            "interval_start": f"{start:%Y-%m-%d %H:%M}",
            "interval_end": f"{end:%Y-%m-%d %H:%M}",
            "status": row["status"],
            "triggered_by": details.get("triggered_by") or _run_type(details.get("airflow_run_id")),
            "attempts": int(row.get("attempt_count") or 1),
            "started": _local(row.get("started_at"), zone),
            "finished": _local(row.get("finished_at"), zone),
            "extracted": row["extracted"],
            "valid": row["valid"],
            "exceptions": row["quarantined"],
            "loaded": row["loaded"],
            "posted_by_latest_attempt": row["written_back"],
            "posted": int(row["posted_so_far"] if row.get("posted_so_far") is not None else row["written_back"]),
            "hours": details.get("hours", ""),
            "amount_by_currency": amounts,
            "amounts": ", ".join(f"{amount} {currency}" for currency, amount in sorted(amounts.items())),
            "failed_rules": ", ".join(f"{rule} ({n})" for rule, n in sorted(rules.items())),
            "failure": details.get("failure", ""),
            "pilot": _pilot_note(details.get("pilot")),
            "airflow_url": row.get("airflow_url") or "",
            "warehouse": row["warehouse"],
            "attempt_list": attempts,
        }

    def gaps(self, *, flow: str | None = None, now: datetime | None = None) -> list[dict[str, Any]]:
        """Intervals of each flow, since its first run, that are due (ended more than ``gap_grace``
        ago) and that no successful run covers: the work nobody has done yet. The next run of the
        flow covers them (catch-up); a gap older than the catch-up limit needs a rerun in Airflow."""
        from datetime import UTC

        from backbone.schedules import FLOW_SCHEDULES
        from backbone.schedules import gaps as find_gaps
        from backbone.warehouse.ops import HISTORY_QUERY, histories_from_rows

        now = now or datetime.now(UTC)  # the ledger is a view of today, not a flow: "now" is when one looks
        flows = [flow] if flow else list(FLOW_SCHEDULES)
        rows = self._query(HISTORY_QUERY, {"flows": flows, "excluding": ""})
        histories = histories_from_rows([(r["flow"], r["interval_start"], r["interval_end"], r["status"], r["covers_from"]) for r in rows])
        zone = ZoneInfo(self.timezone)
        found = []
        for name in FLOW_SCHEDULES:
            history = histories.get(name)
            if history is None:
                continue
            spans = find_gaps(name, self.timezone, first_start=history.first_start, covered=history.covered, now=now, grace=self.gap_grace)
            for start, end in spans:
                found.append(
                    {
                        "flow": name,
                        "flow_name": FLOW_NAMES.get(name, name),
                        "interval": f"{start.astimezone(zone):%a %Y-%m-%d %H:%M} → {end.astimezone(zone):%a %Y-%m-%d %H:%M}",
                        "interval_start": start,
                        "interval_end": end,
                    }
                )
        return found

    def audit_findings(self, *, limit: int = 500) -> list[dict[str, Any]]:
        """The latest cross-system data audit (kept by ``accounting_codes_to_psa``), in its order."""
        if "psa" not in self.engines:
            return []
        zone = ZoneInfo(self.timezone)
        found = self._query(
            'SELECT "check", system, subject, detail, suggestion, score, found_at FROM psa.audit_finding ORDER BY position LIMIT :limit',
            {"limit": limit},
            warehouses=("psa",),
        )
        return [{**f, "found_at": f["found_at"].astimezone(zone).strftime("%Y-%m-%d %H:%M")} for f in found]

    def waiting_invoices(self, *, period: Period | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """Time-and-materials invoices waiting for the weekly export of their month's time: not
        exceptions, nothing for finance to fix; the daily invoicing run judges them again and posts
        them once the month's time is exported (or holds them if they still do not reconcile)."""
        if "accounting" not in self.engines:
            return []
        zone = ZoneInfo(self.timezone)
        where, params = ["i.posting_status = 'waiting'"], {"limit": limit}
        if period:
            where.append("i.issue_date >= :start_day AND i.issue_date < :end_day")
            params.update(start_day=period.start.astimezone(zone).date(), end_day=period.end.astimezone(zone).date())
        params["flows"] = list(WAITING_FLOWS)
        rows = self._query(
            f"""
            SELECT i.number, i.client_name, i.period, i.currency, i.total, i.hold_reason, min(r.started_at) AS since
            FROM acct.invoice i LEFT JOIN ops.flow_run r ON r.run_id = i.run_id AND r.flow = ANY(:flows)
            WHERE {" AND ".join(where)}
            GROUP BY i.number, i.client_name, i.period, i.currency, i.total, i.hold_reason ORDER BY i.period, i.number LIMIT :limit
            """,
            params,
            warehouses=("accounting",),
        )
        return [
            {
                "number": r["number"],
                "client": r["client_name"],
                "billing_month": r["period"],
                "amount": f"{r['total']} {r['currency']}",
                "reason": r["hold_reason"] or "",
                "waiting_since": f"{r['since'].astimezone(zone):%Y-%m-%d %H:%M}" if r.get("since") else "",
            }
            for r in rows
        ]

    def would_post(self, *, limit: int = 5000) -> list[dict[str, Any]]:
        """What the accounting outbox holds unsent: in pilot mode, exactly what switching pilot off
        will post (time records and expenses to create, update or delete; invoices, credit notes, voids)."""
        if "accounting" not in self.engines:
            return []
        rows = self._query(
            """
            SELECT * FROM (
                SELECT 'time export' AS outbox, action AS what, entry_id || ' v' || entry_version AS key, person_name AS who,
                       client_name AS customer, work_date::text AS day, hours, amount, currency
                FROM acct.time_export WHERE posting_status = 'pending'
                UNION ALL
                SELECT 'expense export', action || ' ' || kind, expense_id || ' v' || expense_version, person_name,
                       client_name, spent_date::text, NULL::numeric, amount, currency
                FROM acct.expense_export WHERE posting_status = 'pending'
                UNION ALL
                SELECT 'invoicing', CASE WHEN posting_status = 'void_pending' THEN 'void' ELSE kind END, number, '',
                       client_name, issue_date::text, hours, total, currency
                FROM acct.invoice WHERE posting_status IN ('pending', 'void_pending')
            ) outbox ORDER BY outbox DESC, day, key LIMIT :limit
            """,
            {"limit": limit},
            warehouses=("accounting",),
        )
        return [{**r, "hours": "" if r["hours"] is None else str(r["hours"]), "amount": f"{r['amount']} {r['currency']}"} for r in rows]

    def open_exceptions(self, *, flow: str | None = None, period: Period | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """Open exceptions, one per record and rule, oldest first, with when they were first seen."""
        where, params = _exception_filter(flow, period, ["q.resolved_at IS NULL"])
        params["limit"] = limit
        rows = self._query(
            f"""
            SELECT q.flow, q.entity, q.source_key, q.rule, min(q.reason) AS reason, min(q.quarantined_at) AS first_seen,
                max(r.interval_end) AS last_interval_end,
                (array_agg(q.run_id ORDER BY q.quarantined_at DESC))[1] AS run_id,
                (array_agg(r.airflow_url ORDER BY q.quarantined_at DESC))[1] AS airflow_url,
                (array_agg(q.raw ORDER BY q.quarantined_at DESC))[1] AS raw
            FROM ops.quarantine q JOIN ops.flow_run r ON r.flow = q.flow AND r.run_id = q.run_id
            WHERE {" AND ".join(where)}
            GROUP BY q.flow, q.entity, q.source_key, q.rule ORDER BY min(q.quarantined_at), q.flow, q.source_key LIMIT :limit
            """,
            params,
        )
        zone = ZoneInfo(self.timezone)
        return [
            {
                "flow": r["flow"],
                "flow_name": FLOW_NAMES.get(r["flow"], r["flow"]),
                "entity": r["entity"],
                "key": r["source_key"],
                "rule": r["rule"],
                "reason": r["reason"],
                "at_stake": at_stake(r["entity"], r.get("raw")),
                "first_seen": f"{r['first_seen'].astimezone(zone):%Y-%m-%d %H:%M}",
                "run_anchor": run_anchor(r["flow"], r["run_id"]),
                "airflow_url": r.get("airflow_url") or "",
                "resolved_at": "",
            }
            for r in sorted(rows, key=lambda r: (r["first_seen"], r["flow"], r["source_key"]))[:limit]
        ]

    def held_invoices(self, *, period: Period | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """Invoices held for finance (not posted), with the amount at stake and every failed rule in full."""
        if "accounting" not in self.engines:
            return []
        zone = ZoneInfo(self.timezone)
        where, params = ["i.posting_status = 'held'"], {"limit": limit}
        if period:
            where.append("i.issue_date >= :start_day AND i.issue_date < :end_day")
            params.update(start_day=period.start.astimezone(zone).date(), end_day=period.end.astimezone(zone).date())
        rows = self._query(
            f"""
            SELECT i.psa_invoice_id, i.number, i.kind, i.client_name, i.period, i.currency, i.total, i.hold_rule, i.hold_reason,
                   i.run_id, r.flow, r.airflow_url
            FROM acct.invoice i LEFT JOIN ops.flow_run r ON r.run_id = i.run_id AND r.flow = ANY(:flows)
            WHERE {" AND ".join(where)} ORDER BY i.period, i.number LIMIT :limit
            """,
            {**params, "flows": list(WAITING_FLOWS)},
            warehouses=("accounting",),
        )
        return [
            {
                "number": r["number"],
                "kind": r["kind"],
                "client": r["client_name"],
                "billing_month": r["period"],
                "currency": r["currency"],
                "total": Decimal(r["total"]),
                "amount": f"{r['total']} {r['currency']}",
                "rule": r["hold_rule"] or "",
                "reason": r["hold_reason"] or "",
                "psa_invoice_id": r["psa_invoice_id"],
                "run_anchor": run_anchor(r["flow"], r["run_id"]) if r.get("flow") else "",
                "airflow_url": r.get("airflow_url") or "",
            }
            for r in rows
        ]

    def exceptions_per_week(self, *, flow: str | None = None, period: Period | None = None) -> list[dict[str, Any]]:
        """New exceptions (records first held) per ISO week and flow, for the chart."""
        where, params = _exception_filter(flow, period, ["true"])
        rows = self._query(
            f"""
            SELECT q.flow, to_char(min(q.quarantined_at) AT TIME ZONE :tz, 'IYYY-"W"IW') AS week
            FROM ops.quarantine q JOIN ops.flow_run r ON r.flow = q.flow AND r.run_id = q.run_id
            WHERE {" AND ".join(where)} GROUP BY q.flow, q.entity, q.source_key
            """,
            {**params, "tz": self.timezone},
        )
        counts: dict[tuple[str, str], int] = {}
        for r in rows:
            counts[(r["week"], r["flow"])] = counts.get((r["week"], r["flow"]), 0) + 1
        return [{"week": w, "flow": FLOW_NAMES.get(f, f), "exceptions": n} for (w, f), n in sorted(counts.items())]


RUN_QUERY = """
SELECT r.*, a.attempt_count, a.posted_so_far, q.rules
FROM ops.flow_run r
LEFT JOIN LATERAL (
    SELECT count(*) AS attempt_count, sum(written_back) AS posted_so_far FROM ops.flow_run_attempt a
    WHERE a.flow = r.flow AND a.run_id = r.run_id
) a ON true
LEFT JOIN LATERAL (
    SELECT jsonb_object_agg(rule, n) AS rules FROM (
        SELECT rule, count(DISTINCT source_key) AS n FROM ops.quarantine q WHERE q.flow = r.flow AND q.run_id = r.run_id GROUP BY rule
    ) per_rule
) q ON true
"""
"""One row per interval: its latest attempt (``ops.flow_run``), how many attempts it has had and
what they posted together (``ops.flow_run_attempt``), and its exceptions per rule (``ops.quarantine``)."""


def _exception_filter(flow: str | None, period: Period | None, where: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Conditions on ``ops.quarantine q`` joined to its run ``r``: the flow, and the period its run's interval ends in."""
    return _flow_and_period("q", flow, period, where)


def _flow_and_period(alias: str, flow: str | None, period: Period | None, where: list[str]) -> tuple[list[str], dict[str, Any]]:
    """``where`` plus the flow (of the row ``alias``, ``r`` or ``q``) and the period its run's
    interval ``r.interval_end`` ends in (``PERIOD_RULE``)."""
    params: dict[str, Any] = {}
    if flow:
        where.append(f"{alias}.flow = :flow")
        params["flow"] = flow
    if period:
        where.append(PERIOD_RULE.replace("interval_end", "r.interval_end"))
        params.update(start=period.start, end=period.end)
    return where, params


def run_anchor(flow: str, run_id: str) -> str:
    """The HTML id of an interval's row on the Finance page (exceptions and holds link to it)."""
    return "run-" + re.sub(r"[^A-Za-z0-9_-]", "-", f"{flow}-{run_id}")


def _pilot_note(report: Any) -> str:
    """``pilot: would send 122 time records (create 120, update 2)`` for a run in pilot mode."""
    if not isinstance(report, dict):
        return ""
    actions = ", ".join(f"{action} {n}" for action, n in sorted((report.get("by_action") or {}).items()))
    return f"pilot: would send {report.get('would_post', 0)} {report.get('unit', '')}" + (f" ({actions})" if actions else "")


def _local(moment: datetime | None, zone: ZoneInfo) -> str:
    return f"{moment.astimezone(zone):%Y-%m-%d %H:%M}" if moment else ""


def _run_type(airflow_run_id: str | None) -> str:
    """``scheduled`` / ``manual`` / ``backfill`` / ``asset`` from an Airflow run id's prefix (records
    written before ``triggered_by`` was kept)."""
    kind = (airflow_run_id or "").split("__", 1)[0]
    return {"asset_triggered": "asset"}.get(kind, kind) if "__" in (airflow_run_id or "") else ""


def at_stake(entity: str, raw: Any) -> str:
    """What an exception holds back, from its raw record: an invoice's total, a time entry's hours
    (and value at its rate), an expense's amount. Empty when the record does not say."""
    if not isinstance(raw, dict):
        return ""
    try:
        currency = str(raw.get("currency") or "")
        if "total" in raw and raw["total"] not in (None, ""):
            return f"{Decimal(str(raw['total'])):,.2f} {currency}".strip()
        if raw.get("hours") not in (None, ""):
            hours = Decimal(str(raw["hours"]))
            rate = raw.get("hourly_rate") or raw.get("billable_rate") or raw.get("rate")
            value = f" ({hours * Decimal(str(rate)):,.2f} {currency})".rstrip() if rate not in (None, "") else ""
            return f"{hours:,.2f} h{value}"
        if raw.get("amount") not in (None, ""):
            return f"{Decimal(str(raw['amount'])):,.2f} {currency}".strip()
    except (ArithmeticError, ValueError):
        return ""
    return ""


def totals_by_flow(runs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Totals of the selected intervals per flow: intervals, failed ones, records, exceptions,
    posted (for the intervals so far), hours and each currency's amount. Returns (rows, currencies)."""
    currencies = sorted({c for r in runs for c in r.get("amount_by_currency", {})})
    totals: dict[str, dict[str, Any]] = {}
    for r in runs:
        t = totals.setdefault(
            r["flow"],
            {"flow": r["flow"], "flow_name": r["flow_name"], "intervals": 0, "failed": 0, "extracted": 0, "exceptions": 0, "posted": 0,
             "hours": Decimal(0), "has_hours": False, "amounts": {c: Decimal(0) for c in currencies}},
        )  # fmt: skip
        t["intervals"] += 1
        t["failed"] += r["status"] == "failed"
        for k in ("extracted", "exceptions", "posted"):
            t[k] += int(r[k] or 0)
        if r.get("hours") not in (None, ""):
            t["hours"] += Decimal(str(r["hours"]))
            t["has_hours"] = True
        for c, amount in r.get("amount_by_currency", {}).items():
            t["amounts"][c] += amount
    return [totals[f] for f in FLOW_NAMES if f in totals] + [t for f, t in totals.items() if f not in FLOW_NAMES], currencies


def runs_for_csv(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Runs as spreadsheet rows: one column per field and per currency (``amount_EUR``), the
    interval as two columns, numbers as numbers. Returns (rows, columns)."""
    currencies = sorted({c for r in rows for c in r.get("amount_by_currency", {})})
    out = [{**r, **{f"amount_{c}": r.get("amount_by_currency", {}).get(c, "") for c in currencies}} for r in rows]
    return out, [*RUN_CSV_COLUMNS[:-2], *(f"amount_{c}" for c in currencies), *RUN_CSV_COLUMNS[-2:]]


RUN_CSV_COLUMNS = [
    "flow",
    "flow_name",
    "interval_start",
    "interval_end",
    "status",
    "triggered_by",
    "attempts",
    "started",
    "finished",
    "extracted",
    "valid",
    "exceptions",
    "loaded",
    "posted_by_latest_attempt",
    "posted",
    "hours",
    "failed_rules",
    "airflow_url",
]
EXCEPTION_COLUMNS = ["flow", "flow_name", "entity", "key", "rule", "reason", "at_stake", "first_seen", "airflow_url"]
HELD_COLUMNS = ["number", "kind", "client", "billing_month", "currency", "total", "rule", "reason", "psa_invoice_id", "airflow_url"]
GAP_COLUMNS = ["flow", "flow_name", "interval"]
WAITING_COLUMNS = ["number", "client", "billing_month", "amount", "reason", "waiting_since"]
WAITING_FLOWS = ("invoices_to_accounting", "invoices_month_end_to_accounting")
WOULD_POST_COLUMNS = ["outbox", "what", "key", "who", "customer", "day", "hours", "amount"]


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""Cells a spreadsheet would read as a formula (OWASP "CSV injection")."""


def neutralise_cell(value: Any) -> Any:
    """A text cell starting like a formula gets a leading apostrophe, so Excel shows it as text.
    Numbers stay numbers (a negative amount is data, not a formula)."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def to_csv(rows: Iterable[dict[str, Any]], columns: list[str], *, bom: bool = True) -> str:
    """CSV for a spreadsheet: a UTF-8 byte-order mark first (Excel then reads accents and non-Latin
    names right), formula-like cells neutralised."""
    out = io.StringIO()
    if bom:
        out.write("\ufeff")
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({c: neutralise_cell(row.get(c, "")) for c in columns} for row in rows)
    return out.getvalue()


TABLE_CELL_WIDTH = 60


def to_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain text table for the CLI; a cell longer than 60 characters wraps onto more lines
    (nothing is cut: a reason is read in full)."""
    import textwrap

    if not rows:
        return "(nothing)"
    widths = {c: min(TABLE_CELL_WIDTH, max(len(c), *(len(str(r.get(c, ""))) for r in rows))) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns).rstrip(), "  ".join("-" * widths[c] for c in columns)]
    for r in rows:
        cells = {c: textwrap.wrap(str(r.get(c, "")), widths[c], break_long_words=True) or [""] for c in columns}
        for i in range(max(len(parts) for parts in cells.values())):
            line = "  ".join((cells[c][i] if i < len(cells[c]) else "").ljust(widths[c]) for c in columns)
            lines.append(line.rstrip())
    return "\n".join(lines)
