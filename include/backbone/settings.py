"""Non-secret tunables, in one place, each with a default and an environment override.

Secrets never live here: they come from Airflow Connections. Every setting reads an
environment variable named ``BACKBONE_<NAME>``; the table in the README lists them.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Literal

from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Tunables of every flow, each read from ``BACKBONE_<NAME>`` (pydantic-settings: typed, and a
    wrong value is an error that names the variable). Build with :func:`load_settings`."""

    model_config = SettingsConfigDict(env_prefix="BACKBONE_", frozen=True, extra="ignore")

    pilot_flows: str = ""
    """Flows in pilot mode (comma-separated ids, or ``all``) when the Variable ``backbone_pilot_flows``
    is not set: they run for real but send nothing to accounting (``backbone.pilot``)."""
    rollout_scope: str = ""
    """JSON limiting what the flows send (``{"clients": [...], "projects": [...], "people": [...],
    "departments": [...]}``) when the Variable ``backbone_rollout_scope`` is not set; empty: everything
    (``backbone.rollout``)."""
    retry_delay_seconds: int | None = None
    """When set, every flow's first retry waits this long (then doubles) instead of its own default."""

    company_timezone: str = "Europe/Amsterdam"
    """IANA zone in which schedules and intervals are shown and cut (e.g. 'Friday 17:00')."""

    crm_conn_id: str = "hubspot_default"
    psa_conn_id: str = "psa_default"
    accounting_conn_id: str = "quickbooks_default"
    hr_conn_id: str = "bamboohr_default"
    psa_warehouse_conn_id: str = "psa_warehouse"
    accounting_warehouse_conn_id: str = "accounting_warehouse"

    finance_psa_conn_id: str = "finance_psa_warehouse"
    finance_accounting_conn_id: str = "finance_accounting_warehouse"
    """Connections the Finance page and CLI read through: a login that is a member of the
    read-only role ``backbone_finance_reader`` (created by the migrations)."""
    alert_email_to: str = ""
    """Comma-separated addresses; e-mail alerts go out through the ``smtp_default`` Connection when set."""
    alert_slack_conn_id: str = ""
    """Connection whose password (or host) is a Slack incoming-webhook URL; Slack alerts when set."""
    hr_alert_email_to: str = ""
    """Where utilization alerts go (HR's channel); empty: the general alert channel."""
    hr_alert_slack_conn_id: str = ""
    utilization_target: float | None = None
    """Billable utilization (0–1) under which a person or department, for ``utilization_weeks``
    complete weeks in a row, is named to HR (``backbone.utilization``); unset: no watch."""
    utilization_weeks: int = 2
    alert_exception_threshold: int = 25
    """A successful run with more exceptions than this alerts too."""

    crm_lookback_minutes: int = 15
    """Extra minutes read before each interval: HubSpot's search index lags its writes."""

    crm_search_requests_per_second: float = 3.8
    crm_requests_per_second: float = 10
    http_max_attempts: int = 6
    http_timeout_seconds: float = 30
    http_max_backoff_seconds: float = 30

    qbo_requests_per_minute: float = 480
    """Client-side budget for QuickBooks (its limit is 500 a minute per company; a little headroom)."""
    qbo_max_concurrency: int = 4
    """Parallel QuickBooks calls while posting (QuickBooks allows 10 per company)."""
    qbo_batch_size: int = 30
    """New time activities sent per QuickBooks batch call (at most 30, Intuit's limit); 1 posts one call per entry."""
    qbo_batch_requests_per_minute: float = 38
    """Client-side budget for QuickBooks batch calls (its limit is 40 a minute per company, apart from the 500)."""
    xero_time_aggregation: Literal["entry", "day"] = "entry"
    """How the weekly flow posts time to Xero: ``entry`` (one Projects time entry per PSA entry) or
    ``day`` (one per person, project, task and day, summing its entries; the outbox keeps which
    entries each holds). ``day`` cuts Xero calls by the entries per person-day, for tenants whose
    week would not fit 60 calls a minute and 5,000 a day. Switch it between weeks, with nothing pending."""
    payments_overlap_hours: int = 48
    """Payments are read from this many hours before the interval start: accounting's clock and late edits."""
    invoice_timing: Literal["on_pm_approval", "after_finance_approval"] = "on_pm_approval"
    """When an invoice goes to accounting: as soon as the PM approves it in the PSA, or only once finance has released it there."""
    budget_source: Literal["psa", "accounting"] = "psa"
    """Where project budgets live, the one source of truth: ``psa`` (the PSA holds budgets and each
    month's project actuals are pushed to accounting as journals) or ``accounting`` (accounting holds
    them: each month's project budgets are read into the PSA warehouse, and no journal is sent)."""
    month_end_waits_for_time_export: bool = True
    """Month-end starts only once the weekly export has covered every week of the month, up to the
    week holding its last day (so T&M invoices reconcile against all of the month's time)."""
    month_end_wait_poke_seconds: int = 3600
    """How often month-end looks whether that export has happened (it waits up to five days, then fails and alerts)."""
    catch_up_max_days: int = 35
    """How far back a run reaches to cover missed intervals (since the last successful run); older gaps stay listed as gaps."""
    psa_ui_url: str = ""
    """Where people open PSA records in a browser (``https://psa.example.com``): the Finance page links
    held invoices to ``<url>/invoices/<id>``. Empty: no links."""
    gap_grace_minutes: int = 120
    """How long after its end an interval may stay without a successful run before the ledger calls it a gap."""
    company_country: str = "NL"
    """ISO country whose public holidays (``holidays`` package) are taken out of capacity."""
    hr_time_off_days_back: int = 30
    hr_time_off_days_ahead: int = 120
    hr_full_snapshot_every_days: int = 7
    hr_change_overlap_minutes: int = 60
    psa_page_size: int = 500

    chunk_size: int = 5000
    """Rows handled per chunk when staging, validating and loading: bounds memory."""

    @field_validator("company_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Amsterdam)") from None
        return value

    @property
    def finance_conn_ids(self) -> dict[str, str]:
        return {"psa": self.finance_psa_conn_id, "accounting": self.finance_accounting_conn_id}

    @property
    def crm_lookback(self) -> timedelta:
        return timedelta(minutes=self.crm_lookback_minutes)


def load_settings() -> Settings:
    """The settings the environment holds now (tests change the environment between runs).

    Built again only when a ``BACKBONE_*`` variable changed since the last call: pydantic-settings
    reads the whole environment on every build (5 ms; a weekly run asks 38 times). ``Settings`` is
    frozen, so every caller may share one. A wrong value raises ``ValueError`` naming each variable
    and what was wrong with it."""
    global _last_loaded
    key = tuple(sorted((name.upper(), value) for name, value in os.environ.items() if name.upper().startswith("BACKBONE_")))
    last = _last_loaded
    if last is not None and last[0] == key:
        return last[1]
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(f"BACKBONE_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"invalid settings: {problems}") from None
    _last_loaded = (key, settings)
    return settings


_last_loaded: tuple[tuple[tuple[str, str], ...], Settings] | None = None
"""The environment's ``BACKBONE_*`` variables at the last build, and what they built."""
