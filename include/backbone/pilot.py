"""Pilot mode: a flow runs for real — extract, validate, load the warehouses, fill its outbox — but
sends **nothing** to a vendor. For the flows that post to accounting, what they would send is the
outbox's pending lines, reported on the run (``details.pilot``) and by ``backbone pilot``; switching
pilot off lets the next run post exactly those lines, once (the outbox's idempotency keys are the
same whether or not a pilot saw them). The flows that write to the PSA and the CRM (closed-won,
roster, milestones, payments) have no outbox: in pilot they report what they would write, keep
nothing that decides what to write, and leave their intervals to be caught up by the next real run.

Which flows are in pilot: the Airflow Variable ``backbone_pilot_flows`` (flow ids, comma-separated,
or ``all``), else ``BACKBONE_PILOT_FLOWS``. A Variable switches without a deployment: set it before a
first rollout, delete it when finance has read the pilot report.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from backbone.warehouse.ops import RunRef

log = logging.getLogger(__name__)

PILOT_VARIABLE = "backbone_pilot_flows"
OUTBOX_PILOTS = (
    "timesheets_weekly_to_accounting",
    "expenses_weekly_to_accounting",
    "invoices_month_end_to_accounting",
    "invoices_to_accounting",
    "project_actuals_to_accounting",
)
"""Flows whose outbox holds what a pilot did not send: the next real run posts it."""
WRITE_PILOTS = ("crm_closed_won_to_psa", "hr_roster_pto_to_psa", "psa_milestones_to_crm", "payments_to_psa")
"""Flows that write to the PSA or the CRM without an outbox: in pilot they report what they would
write, keep nothing that decides what to write, and their runs do not cover their intervals
(``ops.WRITES_SKIPPED``), so the next real run catches those intervals up and writes it all."""
PILOT_CAPABLE = OUTBOX_PILOTS + WRITE_PILOTS


def pilot_flows() -> frozenset[str]:
    """The flows in pilot now (Variable first, then the setting)."""
    from backbone.settings import load_settings
    from backbone.variables import get_variable

    raw: str | None = None
    try:
        raw = get_variable(PILOT_VARIABLE)
    except Exception:  # noqa: BLE001 - no Variable backend here: the setting decides
        log.debug("no Variable backend for %s", PILOT_VARIABLE, exc_info=True)
    raw = raw if raw is not None else load_settings().pilot_flows
    names = {name.strip() for name in (raw or "").split(",") if name.strip()}
    return frozenset(PILOT_CAPABLE) if "all" in names else frozenset(names)


def is_pilot(flow: str) -> bool:
    return flow in pilot_flows()


def time_export_report(connection: Connection, run: RunRef) -> dict[str, Any]:
    """What the weekly export would send now: its pending outbox lines up to this interval."""
    rows = connection.exec_driver_sql(
        """
        SELECT action, currency, count(*), sum(hours), sum(amount)
        FROM acct.time_export WHERE posting_status = 'pending' AND interval_end <= %(end)s
        GROUP BY action, currency ORDER BY action, currency
        """,
        {"end": run.interval_end},
    ).all()
    return _report(rows, unit="time records")


def expense_export_report(connection: Connection, run: RunRef) -> dict[str, Any]:
    """What the expense export would send now: its pending outbox lines up to this interval."""
    rows = connection.exec_driver_sql(
        """
        SELECT action, currency, count(*), NULL::numeric, sum(amount)
        FROM acct.expense_export WHERE posting_status = 'pending' AND interval_end <= %(end)s
        GROUP BY action, currency ORDER BY action, currency
        """,
        {"end": run.interval_end},
    ).all()
    return _report(rows, unit="expense records")


def invoice_report(connection: Connection) -> dict[str, Any]:
    """What invoicing would send now: pending invoices and credit notes, and voids."""
    rows = connection.exec_driver_sql(
        """
        SELECT CASE WHEN posting_status = 'void_pending' THEN 'void' ELSE kind END, currency, count(*), NULL::numeric,
               sum(CASE WHEN posting_status = 'void_pending' THEN 0 WHEN kind = 'credit_note' THEN -total ELSE total END)
        FROM acct.invoice WHERE posting_status IN ('pending', 'void_pending')
        GROUP BY 1, currency ORDER BY 1, currency
        """
    ).all()
    return _report(rows, unit="invoices")


def _report(rows: list[Any], *, unit: str) -> dict[str, Any]:
    by_action: dict[str, int] = {}
    amounts: dict[str, Decimal] = {}
    hours = Decimal(0)
    for action, currency, lines, line_hours, amount in rows:
        by_action[action] = by_action.get(action, 0) + int(lines)
        amounts[currency] = amounts.get(currency, Decimal(0)) + Decimal(amount or 0)
        hours += Decimal(line_hours or 0)
    report: dict[str, Any] = {
        "would_post": sum(by_action.values()),
        "unit": unit,
        "by_action": by_action,
        "amount_by_currency": {c: str(a) for c, a in sorted(amounts.items())},
    }
    if unit == "time records":
        report["hours"] = str(hours)
    return report


def pilot_time_export(engine: Engine, run: RunRef) -> dict[str, Any]:
    """The weekly export's post step in pilot: report, record, send nothing."""
    with engine.connect() as connection:
        return record_pilot(engine, run, time_export_report(connection, run))


def pilot_expense_export(engine: Engine, run: RunRef) -> dict[str, Any]:
    """The expense export's post step in pilot: report, record, send nothing."""
    with engine.connect() as connection:
        return record_pilot(engine, run, expense_export_report(connection, run))


def pilot_invoices(engine: Engine, run: RunRef) -> dict[str, Any]:
    """An invoicing flow's post step in pilot: report, record, send nothing."""
    with engine.connect() as connection:
        return record_pilot(engine, run, invoice_report(connection))


def pilot_actuals(engine: Engine, run: RunRef, period: str) -> dict[str, Any]:
    """The actuals flow's post step in pilot: the month's queued journals reported, none sent."""
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT CASE WHEN seq = 1 THEN 'journal' ELSE 'correction' END, currency, count(*), sum(hours), sum(amount) "
            "FROM acct.actuals_journal WHERE period = %(period)s AND posting_status = 'pending' GROUP BY 1, 2 ORDER BY 1, 2",
            {"period": period},
        ).all()
    return record_pilot(engine, run, _report(rows, unit="actuals journals"))


def record_pilot(engine: Engine, run: RunRef, report: dict[str, Any], *, writes_skipped: bool = False) -> dict[str, Any]:
    """The run's record says it was a pilot and what it would have sent; nothing was written back.
    ``writes_skipped`` (the flows without an outbox): the run does not cover its interval, so the
    next real run catches it up."""
    from backbone.warehouse import ops

    details: dict[str, Any] = {"pilot": report, **({ops.WRITES_SKIPPED: True} if writes_skipped else {})}
    with engine.begin() as connection:
        ops.record_run(connection, run, written_back=0, details=details)
    log.warning(
        "%s is in PILOT mode (Variable %s): nothing was sent; it would send %d %s %s%s",
        run.flow,
        PILOT_VARIABLE,
        report["would_post"],
        report["unit"],
        report["by_action"],
        "; the next real run covers this interval" if writes_skipped else "",
    )
    return {"posted": 0, "would_post": report["would_post"]}


def pilot_closed_won(engine: Engine, run: RunRef) -> dict[str, Any]:
    """Closed-won's write-back in pilot: the valid deals of the run would become PSA projects
    (created, or updated when the PSA already has one for the deal) and be linked on the CRM deal."""
    with engine.connect() as connection:
        create, update = connection.exec_driver_sql(
            """
            SELECT count(*) FILTER (WHERE p.psa_project_id IS NULL), count(*) FILTER (WHERE p.psa_project_id IS NOT NULL)
            FROM ops.staged_record s LEFT JOIN psa.project p ON p.crm_deal_id = s.source_key
            WHERE s.flow = %(flow)s AND s.run_id = %(run)s AND s.entity = 'deal' AND s.status = 'valid'
            """,
            {"flow": run.flow, "run": run.run_id},
        ).one()
    report = {
        "would_post": int(create) + int(update),
        "unit": "PSA projects (and their CRM deal links)",
        "by_action": {"create": int(create), "update": int(update)},
    }
    return record_pilot(engine, run, report, writes_skipped=True)


def pilot_roster(engine: Engine, run: RunRef) -> dict[str, Any]:
    """The roster's load and push in pilot: the HR warehouse is left as it is (its changes decide
    what is pushed, so the next real run must still find them), the validated people and time-off
    requests are reported."""
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT entity, count(*) FROM ops.staged_record WHERE flow = %(flow)s AND run_id = %(run)s AND status = 'valid' "
            "GROUP BY entity ORDER BY entity",
            {"flow": run.flow, "run": run.run_id},
        ).all()
    by_entity = {str(entity): int(n) for entity, n in rows}
    report = {"would_post": by_entity.get("person", 0), "unit": "HR people (and their time off)", "by_action": by_entity}
    return record_pilot(engine, run, report, writes_skipped=True)
