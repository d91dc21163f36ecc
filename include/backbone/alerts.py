"""Alerts when a run fails or leaves more exceptions than finance should have to find by chance.

Channels are configured, never coded: e-mail through the Airflow SMTP provider (``smtp_default``
Connection) when ``BACKBONE_ALERT_EMAIL_TO`` is set; a Slack incoming webhook when
``BACKBONE_ALERT_SLACK_CONN_ID`` names a Connection holding the webhook URL. With neither, the
alert is logged. The message names the flow, the interval, the counts and the first exceptions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from backbone.settings import Settings

log = logging.getLogger(__name__)
FIRST_EXCEPTIONS = 5


@dataclass(frozen=True)
class Alert:
    subject: str
    text: str


def alert_for(flow: str, record: dict[str, Any], exceptions: list[dict[str, Any]], settings: Settings) -> Alert | None:
    """The alert a finished run deserves, or None."""
    failed = record.get("status") != "success"
    many = (record.get("quarantined") or 0) > settings.alert_exception_threshold
    if not failed and not many:
        return None
    zone = ZoneInfo(settings.company_timezone)
    start, end = record["interval_start"].astimezone(zone), record["interval_end"].astimezone(zone)
    interval = f"{start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} ({settings.company_timezone})"
    why = "FAILED" if failed else f"{record.get('quarantined')} exceptions (threshold {settings.alert_exception_threshold})"
    counts = ", ".join(f"{k} {record.get(k, 0)}" for k in ("extracted", "valid", "quarantined", "loaded", "written_back"))
    lines = [f"{flow}: {why}", f"interval: {interval}", f"counts: {counts}"]
    details = record.get("details") or {}
    if details.get("hours"):
        lines.append(f"hours: {details['hours']}")
    if details.get("amount_by_currency"):
        lines.append("amounts: " + ", ".join(f"{a} {c}" for c, a in sorted(details["amount_by_currency"].items())))
    if exceptions:
        lines.append("first exceptions:")
        lines += [f"  - {e['entity']} {e['source_key']}: {e['rule']} — {e['reason']}" for e in exceptions[:FIRST_EXCEPTIONS]]
    if record.get("airflow_url"):
        lines.append(f"run: {record['airflow_url']}")
    return Alert(subject=f"[backbone] {flow} {why}", text="\n".join(lines))


def send(alert: Alert, settings: Settings) -> list[str]:
    """Deliver on every configured channel; a channel that fails is logged, never raised."""
    sent = []
    if settings.alert_email_to:
        try:
            from airflow.providers.smtp.hooks.smtp import SmtpHook

            with SmtpHook(smtp_conn_id="smtp_default") as smtp:
                smtp.send_email_smtp(
                    to=[a.strip() for a in settings.alert_email_to.split(",") if a.strip()],
                    subject=alert.subject,
                    html_content=f"<pre>{_html(alert.text)}</pre>",
                    from_email=smtp.from_email or "backbone@localhost",
                )
            sent.append("email")
        except Exception:  # noqa: BLE001 - an alert channel must not fail the run it reports on
            log.exception("could not send the alert by e-mail")
    if settings.alert_slack_conn_id:
        try:
            import requests
            from airflow.sdk import BaseHook

            conn = BaseHook.get_connection(settings.alert_slack_conn_id)
            url = conn.password if (conn.password or "").startswith("http") else conn.host
            response = requests.post(url, json={"text": f"*{alert.subject}*\n```{alert.text}```"}, timeout=10)
            response.raise_for_status()
            sent.append("slack")
        except Exception:  # noqa: BLE001
            log.exception("could not send the alert to Slack")
    if not sent:
        log.warning("ALERT %s\n%s", alert.subject, alert.text)
    return sent


def _html(text: str) -> str:
    from html import escape

    return escape(text)
