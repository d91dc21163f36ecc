"""Non-secret tunables, in one place, each with a default and an environment override.

Secrets never live here: they come from Airflow Connections. Every setting reads an
environment variable named ``BACKBONE_<NAME>``; the table in the README lists them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta


def _env(name: str, default: str) -> str:
    return os.environ.get(f"BACKBONE_{name}", default)


@dataclass(frozen=True)
class Settings:
    """Tunables of every flow. Build with :func:`load_settings` so the environment applies."""

    company_timezone: str = field(default_factory=lambda: _env("COMPANY_TIMEZONE", "Europe/Amsterdam"))
    """IANA zone in which schedules and intervals are shown and cut (e.g. 'Friday 17:00')."""

    crm_conn_id: str = field(default_factory=lambda: _env("CRM_CONN_ID", "hubspot_default"))
    psa_conn_id: str = field(default_factory=lambda: _env("PSA_CONN_ID", "psa_default"))
    accounting_conn_id: str = field(default_factory=lambda: _env("ACCOUNTING_CONN_ID", "quickbooks_default"))
    hr_conn_id: str = field(default_factory=lambda: _env("HR_CONN_ID", "bamboohr_default"))
    psa_warehouse_conn_id: str = field(default_factory=lambda: _env("PSA_WAREHOUSE_CONN_ID", "psa_warehouse"))
    accounting_warehouse_conn_id: str = field(default_factory=lambda: _env("ACCOUNTING_WAREHOUSE_CONN_ID", "accounting_warehouse"))

    finance_psa_conn_id: str = field(default_factory=lambda: _env("FINANCE_PSA_CONN_ID", "finance_psa_warehouse"))
    finance_accounting_conn_id: str = field(default_factory=lambda: _env("FINANCE_ACCOUNTING_CONN_ID", "finance_accounting_warehouse"))
    """Connections the Finance page and CLI read through: a login that is a member of the
    read-only role ``backbone_finance_reader`` (created by the migrations)."""
    alert_email_to: str = field(default_factory=lambda: _env("ALERT_EMAIL_TO", ""))
    """Comma-separated addresses; e-mail alerts go out through the ``smtp_default`` Connection when set."""
    alert_slack_conn_id: str = field(default_factory=lambda: _env("ALERT_SLACK_CONN_ID", ""))
    """Connection whose password (or host) is a Slack incoming-webhook URL; Slack alerts when set."""
    alert_exception_threshold: int = field(default_factory=lambda: int(_env("ALERT_EXCEPTION_THRESHOLD", "25")))
    """A successful run with more exceptions than this alerts too."""

    crm_lookback_minutes: int = field(default_factory=lambda: int(_env("CRM_LOOKBACK_MINUTES", "15")))
    """Extra minutes read before each interval: HubSpot's search index lags its writes."""

    crm_search_requests_per_second: float = field(default_factory=lambda: float(_env("CRM_SEARCH_REQUESTS_PER_SECOND", "3.8")))
    crm_requests_per_second: float = field(default_factory=lambda: float(_env("CRM_REQUESTS_PER_SECOND", "10")))
    http_max_attempts: int = field(default_factory=lambda: int(_env("HTTP_MAX_ATTEMPTS", "6")))
    http_timeout_seconds: float = field(default_factory=lambda: float(_env("HTTP_TIMEOUT_SECONDS", "30")))
    http_max_backoff_seconds: float = field(default_factory=lambda: float(_env("HTTP_MAX_BACKOFF_SECONDS", "30")))

    qbo_requests_per_minute: float = field(default_factory=lambda: float(_env("QBO_REQUESTS_PER_MINUTE", "480")))
    """Client-side budget for QuickBooks (its limit is 500 a minute per company; a little headroom)."""
    qbo_max_concurrency: int = field(default_factory=lambda: int(_env("QBO_MAX_CONCURRENCY", "4")))
    """Parallel QuickBooks calls while posting (QuickBooks allows 10 per company)."""
    payments_overlap_hours: int = field(default_factory=lambda: int(_env("PAYMENTS_OVERLAP_HOURS", "48")))
    """Payments are read from this many hours before the interval start: accounting's clock and late edits."""
    company_country: str = field(default_factory=lambda: _env("COMPANY_COUNTRY", "NL"))
    """ISO country whose public holidays (``holidays`` package) are taken out of capacity."""
    hr_time_off_days_back: int = field(default_factory=lambda: int(_env("HR_TIME_OFF_DAYS_BACK", "30")))
    hr_time_off_days_ahead: int = field(default_factory=lambda: int(_env("HR_TIME_OFF_DAYS_AHEAD", "120")))
    hr_full_snapshot_every_days: int = field(default_factory=lambda: int(_env("HR_FULL_SNAPSHOT_EVERY_DAYS", "7")))
    hr_change_overlap_minutes: int = field(default_factory=lambda: int(_env("HR_CHANGE_OVERLAP_MINUTES", "60")))
    psa_page_size: int = field(default_factory=lambda: int(_env("PSA_PAGE_SIZE", "500")))

    chunk_size: int = field(default_factory=lambda: int(_env("CHUNK_SIZE", "5000")))
    """Rows handled per chunk when staging, validating and loading: bounds memory."""

    def __post_init__(self) -> None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.company_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"BACKBONE_COMPANY_TIMEZONE={self.company_timezone!r} is not an IANA time zone (e.g. Europe/Amsterdam)"
            ) from None

    @property
    def finance_conn_ids(self) -> dict[str, str]:
        return {"psa": self.finance_psa_conn_id, "accounting": self.finance_accounting_conn_id}

    @property
    def crm_lookback(self) -> timedelta:
        return timedelta(minutes=self.crm_lookback_minutes)


def load_settings() -> Settings:
    """Read the settings from the environment now (tests change the environment between runs)."""
    return Settings()
