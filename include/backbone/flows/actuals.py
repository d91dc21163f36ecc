"""Monthly project actuals: what each project cost in a month, pushed to accounting as journals,
and reconciled between the two warehouses.

Budgets live in the PSA (``BACKBONE_BUDGET_SOURCE=psa``, the one source of truth), so accounting
receives the actuals: per project and month, the hours exported to accounting priced at the
standard cost rate of their billing code in the home currency (``cost_rates.yaml``), as a journal
that debits the project's labour cost (naming its customer) and credits the payroll cost it moves
onto projects (``accounting_mapping.yaml`` → ``actuals``). Expenses are counted in the actuals
(the expense export's, in the home currency) but never journaled again: the expense export has
already booked them.

Exactly once, over time: ``acct.actuals_journal`` is the outbox. A project's first journal for a
month is ``seq`` 1; when its actuals change later (a late approval, an edit after export), the
next run adds a journal for the difference, signed, and posts only that. Each journal has a
document number (``ACT<yyyymm>-<project>[-<seq>]``) looked up in accounting before it is created,
and a deterministic requestid / Idempotency-Key.

Reconciliation: ``acct.project_actual`` holds, per project and month, the PSA warehouse's approved
hours (``psa.time_entry``) beside the hours exported to accounting, the labour cost, the expenses
and what the posted journals add up to. A project is reconciled when both warehouses count the
same hours and accounting holds the labour cost to the cent.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from backbone.accounting_mapping import load_mapping, normalise
from backbone.hooks.accounting import RejectedByAccounting, request_id_for
from backbone.hooks.oauth import ReauthorisationRequired
from backbone.months import first_of_next_month
from backbone.warehouse import ops
from backbone.warehouse.ops import QuarantineRow, RunRef

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from backbone.hooks.accounting import AccountingSystem

log = logging.getLogger(__name__)

FLOW = "project_actuals_to_accounting"
ENTITY = "project_actual"
CENT = Decimal("0.01")


@dataclass
class ProjectActuals:
    """One project's month: hours by billing code on each side, and the exported expenses."""

    project_id: str
    project_name: str | None = None
    client_id: str | None = None
    client_name: str | None = None
    customer_ref_id: str | None = None
    psa_hours: Decimal = Decimal(0)
    exported_hours_by_code: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    expense_cost: Decimal = Decimal(0)

    @property
    def exported_hours(self) -> Decimal:
        return sum(self.exported_hours_by_code.values(), Decimal(0))


def labour_cost(
    hours_by_code: dict[str, Decimal], rates: dict[tuple[str, str], Decimal], currency: str
) -> tuple[Decimal, Decimal, list[str]]:
    """(cost, hours without a cost rate, the codes lacking one): hours × the code's rate in ``currency``."""
    cost = unpriced = Decimal(0)
    missing = []
    for code, hours in sorted(hours_by_code.items()):
        rate = rates.get((code, currency))
        if rate is None:
            unpriced += hours
            missing.append(code)
        else:
            cost += hours * rate
    return cost.quantize(CENT), unpriced, missing


def journal_doc_number(project_id: str, period: str, seq: int) -> str:
    """``ACT<yyyymm>-<project>`` for a month's first journal, ``…-<seq>`` for each correction (≤ 21 characters)."""
    base = f"ACT{period.replace('-', '')}-{project_id}"[:18]
    return base if seq == 1 else f"{base}-{seq}"[:21]


def month_dates(period: str) -> tuple[date, date, date]:
    """(first day, first day of the next month, last day) of ``YYYY-MM``."""
    from datetime import timedelta

    first = date.fromisoformat(f"{period}-01")
    following = first_of_next_month(first)
    return first, following, following - timedelta(days=1)


def gather(psa_warehouse: Engine, accounting_warehouse: Engine, period: str) -> dict[str, ProjectActuals]:
    """Both warehouses' view of the month, by project: the PSA's approved hours, the hours accounting
    holds (each entry's newest posted version, none for one withdrawn), the exported expenses."""
    start, end, _ = month_dates(period)
    projects: dict[str, ProjectActuals] = {}

    def project(project_id: str) -> ProjectActuals:
        return projects.setdefault(project_id, ProjectActuals(project_id))

    with psa_warehouse.connect() as connection:
        for project_id, client_id, hours in connection.exec_driver_sql(
            "SELECT project_id, min(client_id), sum(hours) FROM psa.time_entry "
            "WHERE work_date >= %(start)s AND work_date < %(end)s GROUP BY project_id",
            {"start": start, "end": end},
        ):
            found = project(project_id)
            found.psa_hours, found.client_id = hours, client_id
    with accounting_warehouse.connect() as connection:
        exported = connection.exec_driver_sql(
            """
            SELECT project_id, project_name, client_id, client_name, customer_ref_id, billing_code, sum(hours) FROM (
                SELECT DISTINCT ON (entry_id) * FROM acct.time_export ORDER BY entry_id, entry_version DESC
            ) latest
            WHERE posting_status = 'posted' AND action <> 'delete' AND work_date >= %(start)s AND work_date < %(end)s
            GROUP BY 1, 2, 3, 4, 5, 6
            """,
            {"start": start, "end": end},
        )
        for project_id, name, client_id, client_name, customer, code, hours in exported:
            found = project(project_id)
            found.project_name, found.client_id, found.client_name, found.customer_ref_id = name, client_id, client_name, customer
            found.exported_hours_by_code[code] += hours
        expenses = connection.exec_driver_sql(
            """
            SELECT project_id, sum(amount * coalesce(exchange_rate, 1)) FROM (
                SELECT DISTINCT ON (expense_id) * FROM acct.expense_export ORDER BY expense_id, expense_version DESC
            ) latest
            WHERE posting_status = 'posted' AND action <> 'delete' AND spent_date >= %(start)s AND spent_date < %(end)s
            GROUP BY 1
            """,
            {"start": start, "end": end},
        )
        for project_id, amount in expenses:
            project(project_id).expense_cost = Decimal(amount).quantize(CENT)
    return projects


def compute_actuals(
    psa_warehouse: Engine, accounting_warehouse: Engine, run: RunRef, *, period: str, journals: bool = True
) -> dict[str, Any]:
    """Write the month's ``acct.project_actual`` rows and (``journals``: budgets in the PSA) queue a
    journal for each project whose labour cost differs from what its journals already carry. Hours
    without a cost rate are an exception."""
    from backbone.cost_rates import load_cost_rates
    from backbone.warehouse.db import upsert
    from backbone.warehouse.tables import actuals_journal, project_actual

    mapping = load_mapping()
    currency = mapping.expenses.home_currency
    rates = load_cost_rates()
    projects = gather(psa_warehouse, accounting_warehouse, period)
    _, _, last_day = month_dates(period)
    rows, queued, exceptions = [], [], []
    with accounting_warehouse.begin() as connection:
        carried = _journaled(connection, period)
        next_seq = _next_seq(connection, period)
        for project_id, p in sorted(projects.items()):
            cost, unpriced, missing = labour_cost(p.exported_hours_by_code, rates, currency)
            if missing:
                exceptions.append(
                    QuarantineRow(
                        ENTITY,
                        f"{project_id}:{period}",
                        "project_actual.cost_rate.missing",
                        f"{unpriced} h of {project_id} in {period} have no standard cost rate in {currency} "
                        f"(cost_rates.yaml: {', '.join(missing)}); they are left out of the labour actuals",
                        {"project_id": project_id, "period": period, "billing_codes": missing},
                    )
                )
            rows.append(
                {
                    "project_id": project_id,
                    "period": period,
                    "project_name": p.project_name,
                    "client_id": p.client_id,
                    "client_name": p.client_name,
                    "currency": currency,
                    "psa_hours": p.psa_hours,
                    "exported_hours": p.exported_hours,
                    "hours_without_cost_rate": unpriced,
                    "labour_cost": cost,
                    "expense_cost": p.expense_cost,
                    "journaled": carried.get(project_id, Decimal(0)),
                    "reconciled": False,
                    "detail": None,
                    "run_id": run.run_id,
                }
            )
            difference = cost - carried.get(project_id, Decimal(0))
            if journals and abs(difference) >= CENT:
                seq = next_seq.get(project_id, 1)
                queued.append(
                    {
                        "project_id": project_id,
                        "period": period,
                        "seq": seq,
                        "customer_ref_id": p.customer_ref_id,
                        "description": _description(p, period, seq, difference),
                        "hours": p.exported_hours,
                        "amount": difference,
                        "currency": currency,
                        "journal_date": last_day,
                        "doc_number": journal_doc_number(project_id, period, seq),
                        "request_id": request_id_for("actuals", project_id, period, str(seq)),
                        "run_id": run.run_id,
                    }
                )
        upsert(connection, project_actual, rows, key=["project_id", "period"], bookkeeping=("run_id",))
        if queued:
            connection.execute(actuals_journal.insert(), queued)
        ops.add_quarantine(connection, run, exceptions)
        ops.record_run(
            connection,
            run,
            extracted=len(projects),
            loaded=len(rows),
            quarantined=len(exceptions),
            details={
                "period": period,
                "projects": len(rows),
                "journals_queued": len(queued),
                "labour_cost": str(sum((r["labour_cost"] for r in rows), Decimal(0))),
                "expense_cost": str(sum((r["expense_cost"] for r in rows), Decimal(0))),
                "currency": currency,
            },
        )
    log.info("%s: %d projects, %d journals queued, %d with hours lacking a cost rate", period, len(rows), len(queued), len(exceptions))
    return {"projects": len(rows), "journals_queued": len(queued), "exceptions": len(exceptions)}


def _description(p: ProjectActuals, period: str, seq: int, amount: Decimal) -> str:
    what = "Labour actuals" if seq == 1 else "Labour actuals correction"
    return f"{what} {period}: {p.project_id} {p.project_name or ''} ({p.client_name or p.client_id or ''}), {amount} at standard cost"


def _journaled(connection: Connection, period: str) -> dict[str, Decimal]:
    """Project → the labour cost its journals of ``period`` carry (queued or posted; failed ones do not count)."""
    rows = connection.exec_driver_sql(
        "SELECT project_id, sum(amount) FROM acct.actuals_journal WHERE period = %(period)s AND posting_status <> 'failed' GROUP BY 1",
        {"period": period},
    )
    return {project_id: amount for project_id, amount in rows}


def _next_seq(connection: Connection, period: str) -> dict[str, int]:
    rows = connection.exec_driver_sql(
        "SELECT project_id, max(seq) + 1 FROM acct.actuals_journal WHERE period = %(period)s GROUP BY 1", {"period": period}
    )
    return {project_id: seq for project_id, seq in rows}


def load_budgets(
    accounting: AccountingSystem, psa_warehouse: Engine, accounting_warehouse: Engine, run: RunRef, *, period: str
) -> dict[str, Any]:
    """Budgets live in accounting (``BACKBONE_BUDGET_SOURCE=accounting``): the month's project budgets
    read from it replace the month's rows of ``psa.project_budget`` (one transaction), so a budget
    changed or removed in accounting is changed or gone after the next run."""
    from backbone.warehouse.tables import project_budget

    start, end, _ = month_dates(period)
    budgets = [b for b in accounting.project_budgets(start, end) if b.period == period]
    with psa_warehouse.begin() as connection:
        connection.execute(project_budget.delete().where(project_budget.c.period == period))
        if budgets:
            connection.execute(
                project_budget.insert(),
                [
                    {
                        "project_id": b.project_id,
                        "period": b.period,
                        "amount": b.amount,
                        "source": accounting.system,
                        "budget_name": b.budget_name[:255],
                        "run_id": run.run_id,
                    }
                    for b in budgets
                ],
            )
    total = sum((b.amount for b in budgets), Decimal(0))
    with accounting_warehouse.begin() as connection:
        ops.record_run(connection, run, details={"budgets_read": len(budgets), "budget_total": str(total)})
    log.info("%s: %d project budgets read from %s (%s in all)", period, len(budgets), accounting.system, total)
    return {"budgets": len(budgets)}


def reconcile_only(warehouse: Engine, run: RunRef, *, period: str) -> dict[str, int]:
    """Budgets in accounting: nothing is sent; the two warehouses' hours are reconciled and recorded."""
    reconciled = reconcile(warehouse, period, journals=False)
    with warehouse.begin() as connection:
        ops.record_run(connection, run, written_back=0, details={"reconciled": reconciled})
    return reconciled


def pending_journals(warehouse: Engine, period: str) -> list[dict[str, Any]]:
    with warehouse.connect() as connection:
        return [
            dict(r._mapping)
            for r in connection.exec_driver_sql(
                "SELECT * FROM acct.actuals_journal WHERE period = %(period)s AND posting_status = 'pending' ORDER BY project_id, seq",
                {"period": period},
            )
        ]


def post_journals(accounting: AccountingSystem, warehouse: Engine, run: RunRef, *, period: str) -> dict[str, Any]:
    """Post every queued journal of the month once: looked up by its document number first (an
    earlier attempt whose answer was lost), else created with its requestid / Idempotency-Key."""
    from backbone.flows.references import load_references

    mapping = load_mapping().actuals
    references = load_references(warehouse)
    debit = references.accounts.get(normalise(mapping.labour_cost_account))
    credit = references.accounts.get(normalise(mapping.labour_allocated_account))
    pending = pending_journals(warehouse, period)
    if pending and (debit is None or credit is None):
        missing = [a for a, ref in ((mapping.labour_cost_account, debit), (mapping.labour_allocated_account, credit)) if ref is None]
        raise RejectedByAccounting(f"accounting has no account {' or '.join(missing)} (accounting_mapping.yaml: actuals)")
    posted = found = failed = 0
    for row in pending:
        assert debit is not None and credit is not None
        journal = {**row, "debit_account_ref_id": debit.ref_id, "credit_account_ref_id": credit.ref_id}
        _mark(warehouse, row, attempts=row["attempts"] + 1)
        try:
            existing = accounting.find_journal(journal)  # type: ignore[arg-type]
            if existing is not None:
                _mark(warehouse, row, posting_status="posted", accounting_id=existing, last_error=None)
                found += 1
                continue
            answer = accounting.create_journal(journal, request_id=row["request_id"])  # type: ignore[arg-type]
            _mark(warehouse, row, posting_status="posted", accounting_id=answer.object_id, last_error=None)
            posted += 1
        except ReauthorisationRequired:
            raise
        except RejectedByAccounting as exc:
            _mark(warehouse, row, posting_status="failed", last_error=str(exc))
            failed += 1
    reconciled = reconcile(warehouse, period)
    with warehouse.begin() as connection:
        journals_held = connection.exec_driver_sql(
            "SELECT count(*) FROM acct.actuals_journal WHERE period = %(period)s AND posting_status = 'posted'", {"period": period}
        ).scalar_one()
        ops.record_run(
            connection,
            run,
            written_back=posted + found,
            details={
                "journals_posted": posted,
                "journals_found": found,
                "journals_failed": failed,
                "journals_in_accounting": journals_held,
                "reconciled": reconciled,
            },
        )
    log.info("%s: %d journals posted, %d found posted already, %d rejected", period, posted, found, failed)
    return {"posted": posted, "found": found, "failed": failed, **reconciled}


def _mark(warehouse: Engine, row: dict[str, Any], **values: Any) -> None:
    from sqlalchemy import func

    from backbone.warehouse.tables import actuals_journal

    if values.get("posting_status") == "posted":
        values["posted_at"] = func.now()
    with warehouse.begin() as connection:
        connection.execute(
            actuals_journal.update()
            .where(
                actuals_journal.c.project_id == row["project_id"],
                actuals_journal.c.period == row["period"],
                actuals_journal.c.seq == row["seq"],
            )
            .values(**values)
        )


def reconcile(warehouse: Engine, period: str, *, journals: bool = True) -> dict[str, int]:
    """Mark each project of the month reconciled or not, with the difference in words: the two
    warehouses' hours, and (``journals``: budgets in the PSA) the journals against the labour cost."""
    from backbone.warehouse.tables import project_actual

    with warehouse.begin() as connection:
        posted = dict(
            connection.exec_driver_sql(
                "SELECT project_id, sum(amount) FROM acct.actuals_journal "
                "WHERE period = %(period)s AND posting_status = 'posted' GROUP BY 1",
                {"period": period},
            ).all()
        )
        rows = connection.exec_driver_sql(
            "SELECT project_id, psa_hours, exported_hours, labour_cost FROM acct.project_actual WHERE period = %(period)s",
            {"period": period},
        ).all()
        counts = {"reconciled": 0, "not_reconciled": 0}
        for project_id, psa_hours, exported_hours, cost in rows:
            journaled = posted.get(project_id, Decimal(0))
            problems = []
            if psa_hours != exported_hours:
                problems.append(f"the PSA counts {psa_hours} h, accounting holds {exported_hours} h")
            if journals and abs(journaled - cost) >= CENT:
                problems.append(f"labour cost {cost}, accounting's journals carry {journaled}")
            counts["reconciled" if not problems else "not_reconciled"] += 1
            connection.execute(
                project_actual.update()
                .where(project_actual.c.project_id == project_id, project_actual.c.period == period)
                .values(journaled=journaled, reconciled=not problems, detail="; ".join(problems) or None)
            )
    return counts
