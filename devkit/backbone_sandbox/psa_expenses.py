"""The PSA's expenses: approved expense reports per person, project and client, seeded deterministically.

A third of the people spend something most weeks (travel and mileage billed on to the client,
meals, software on the company card); like time, expenses are approved on the Friday of their
week and served by approval time with a cursor. A few are bad on purpose:
``ExpenseSeed.bad_expenses`` names each and the rule that must make it an exception. Amounts are
decimal strings, tax included.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from backbone_sandbox.psa_time import ApprovedRecords, TimeSeed, _local
from backbone_sandbox.seed import iso_millis

CATEGORIES = {
    "TRAVEL": "Train and taxi",
    "LODGING": "Hotel",
    "MEALS": "Meals",
    "MILEAGE": "Mileage",
    "SOFTWARE": "Software",
}
BILLED_ON = frozenset({"TRAVEL", "LODGING", "MILEAGE"})
COMPANY_PAID = frozenset({"SOFTWARE"})
USD_RATE = "0.9210"
"""EUR per USD, as the PSA converted the seed's dollar expenses."""


@dataclass
class ExpenseSeed:
    expenses: list[dict[str, Any]] = field(default_factory=list)
    bad_expenses: dict[str, str] = field(default_factory=dict)
    """Expense id → the rule that must make it an exception."""
    payee_ids: set[str] = field(default_factory=set)
    """People accounting knows as suppliers (to reimburse): the seeded spenders."""


def seed_expenses(time_seed: TimeSeed, *, weeks: int, seed: int = 20261127) -> ExpenseSeed:
    """Expenses of every third employee in each of the last ``weeks`` export weeks, plus the planted bad ones."""
    rng = random.Random(seed + 1)  # its own stream: the time seed stays as it is
    zone = ZoneInfo(time_seed.timezone)
    out = ExpenseSeed()
    people = [p for p in time_seed.people if p not in time_seed.unknown_person_ids]
    spenders = [p for n, p in enumerate(people) if n % 3 == 0 and time_seed.people[p]["type"] == "employee"]
    out.payee_ids.update(spenders)
    project_ids = [p for p in time_seed.projects if time_seed.projects[p]["client_id"] not in time_seed.unmapped_client_ids]
    fridays = [time_seed.week_end.astimezone(zone).date() - timedelta(days=7 * k) for k in range(weeks)]
    for k, friday in enumerate(fridays):
        for n, person_id in enumerate(spenders):
            project_id = project_ids[(n * 3 + k) % len(project_ids)]
            # 14:30 onwards a minute apart, then seconds apart from 16:30: always before Friday 17:00
            spread = timedelta(minutes=30 + n) if n < 150 else timedelta(minutes=150, seconds=n % 1800)
            approved = _local(friday, 14, 0, zone) + spread
            monday = friday - timedelta(days=4)
            for category, day, amount in (
                ("TRAVEL", monday, f"{rng.randint(30, 180)}.{rng.randint(0, 99):02d}"),
                ("MILEAGE", monday + timedelta(days=1), f"{rng.randint(8, 24)}.{rng.choice(['00', '40', '80'])}"),
                ("MEALS" if (n + k) % 2 else "LODGING", monday + timedelta(days=2), f"{rng.randint(26, 140)}.{rng.randint(0, 99):02d}"),
                *([("SOFTWARE", monday + timedelta(days=3), "49.00")] if n == 0 else []),
            ):
                _append(out, time_seed, person_id, project_id, category, day, amount, approved)
    if fridays and len(spenders) >= 2:
        _plant_bad_expenses(out, time_seed, spenders, fridays[0], zone)
    return out


def _plant_bad_expenses(out: ExpenseSeed, time_seed: TimeSeed, spenders: list[str], friday: date, zone: ZoneInfo) -> None:
    approved = _local(friday, 15, 45, zone)
    monday = friday - timedelta(days=4)
    project_id = next(p for p, project in time_seed.projects.items() if project["client_id"] not in time_seed.unmapped_client_ids)

    def bad(rule: str, person_id: str, category: str = "TRAVEL", amount: str = "42.50", **overrides: Any) -> dict[str, Any]:
        record = _append(out, time_seed, person_id, project_id, category, monday, amount, approved, **overrides)
        out.bad_expenses[record["id"]] = rule
        return record

    first, second = spenders[0], spenders[1]
    bad("expense.category.mapped", first, category="GIFTS")
    bad("expense.receipt.required", first, amount="180.00", receipt=None)
    bad("expense.amount.range", second, amount="-5.00")
    bad("expense.exchange_rate.required", second, currency="USD", exchange_rate=None)
    stranger = next(p for p in time_seed.people if p not in out.payee_ids and p not in time_seed.unknown_person_ids)
    bad("expense.payee.mapped", stranger)  # accounting has no supplier record to reimburse them
    original = next(e for e in out.expenses if e["user"]["id"] == second and e["category"]["code"] == "TRAVEL")
    bad(
        "expense.duplicate.suspected",
        second,
        amount=original["amount"],
        currency=original["currency"],
        exchange_rate=original["exchange_rate"],
        spent_date=original["spent_date"],
        project=original["project"],
        client=original["client"],
    )
    # Submitted, never approved: not listed as approved, never exported.
    _append(out, time_seed, first, project_id, "TRAVEL", monday, "12.00", approved, approval_status="submitted", approved_at=None)


def _append(
    out: ExpenseSeed,
    time_seed: TimeSeed,
    person_id: str,
    project_id: str,
    category: str,
    day: date,
    amount: str,
    approved: datetime,
    **overrides: Any,
) -> dict[str, Any]:
    person, project = time_seed.people[person_id], time_seed.projects[project_id]
    client = time_seed.clients[project["client_id"]]
    number = len(out.expenses) + 1
    currency = client["currency"]
    record = {
        "id": f"EX-{number:07d}",
        "version": 1,
        "spent_date": day.isoformat(),
        "category": {"code": category, "name": CATEGORIES.get(category, category.title())},
        "amount": amount,
        "currency": currency,
        "exchange_rate": USD_RATE if currency == "USD" else None,
        "billable": category in BILLED_ON,
        "reimbursable": category not in COMPANY_PAID,
        "receipt": None if category == "MILEAGE" else {"id": f"RC-{number:07d}", "file_name": f"receipt-{number}.pdf"},
        "approval_status": "approved",
        "approved_at": iso_millis(approved),
        "updated_at": iso_millis(approved - timedelta(hours=2)),
        "notes": f"{CATEGORIES.get(category, category)} for {project['name']}",
        "user": {"id": person_id, "name": person["name"], "email": person["email"], "type": person["type"]},
        "client": {"id": client["id"], "name": client["name"]},
        "project": {"id": project_id, "name": project["name"]},
    }
    record.update(overrides)
    out.expenses.append(record)
    return record


class ExpenseStore(ApprovedRecords):
    """The seeded expenses, served and edited as time entries are."""

    def __init__(self, seed: ExpenseSeed):
        self.bad_expenses = seed.bad_expenses
        self.payee_ids = seed.payee_ids
        super().__init__(seed.expenses)
