"""Standard cost rates (``dictionary/cost_rates.yaml``): what an hour costs, by billing code and
currency; the margin mart's cost side. Finance owns the file; the weekly timesheet flow copies it
into ``psa.cost_rate`` so margins follow a change after the next export."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from functools import cache
from typing import TYPE_CHECKING

import yaml

from backbone.data_dictionary import DICTIONARY_DIR

if TYPE_CHECKING:
    from sqlalchemy import Connection

COST_RATES_FILE = DICTIONARY_DIR / "cost_rates.yaml"


class CostRateError(ValueError):
    """The cost-rate file cannot be used; the message names the code and currency."""


@cache
def load_cost_rates() -> dict[tuple[str, str], Decimal]:
    """``{(billing_code, currency): hourly_cost}``; a negative, non-numeric or badly keyed rate is refused."""
    raw = yaml.safe_load(COST_RATES_FILE.read_text(encoding="utf-8")) or {}
    rates: dict[tuple[str, str], Decimal] = {}
    for code, by_currency in (raw.get("cost_rates") or {}).items():
        if not isinstance(by_currency, dict):
            raise CostRateError(f"{COST_RATES_FILE.name}: {code}: expected {{CURRENCY: rate}}, got {by_currency!r}")
        for currency, rate in by_currency.items():
            try:
                value = Decimal(str(rate))
            except InvalidOperation:
                raise CostRateError(f"{COST_RATES_FILE.name}: {code} {currency}: {rate!r} is not a number") from None
            if value < 0 or len(str(currency)) != 3:
                raise CostRateError(f"{COST_RATES_FILE.name}: {code} {currency}: a rate is ≥ 0 per ISO currency (got {rate!r})")
            rates[(str(code), str(currency).upper())] = value
    return rates


def sync_cost_rates(connection: Connection) -> int:
    """Make ``psa.cost_rate`` equal to the file (inside the caller's transaction); returns the row count."""
    from sqlalchemy import delete, insert

    from backbone.warehouse.tables import cost_rate

    rates = load_cost_rates()
    connection.execute(delete(cost_rate))
    if rates:
        connection.execute(
            insert(cost_rate),
            [{"billing_code": code, "currency": currency, "hourly_cost": rate} for (code, currency), rate in rates.items()],
        )
    return len(rates)
