"""Deterministic seed data: the same seed, size and anchor always give the same records.

Deals are modified inside the 30 minutes before ``anchor`` so that the run whose data interval
ends at ``anchor`` sees all of them. A few records are bad on purpose; ``CrmSeed.bad_deals`` names
them and the rule each must be quarantined by.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from faker import Faker

DEFAULT_PIPELINE = "default"
RENEWALS_PIPELINE = "renewals"
RENEWALS_WON_STAGE = "renewal_signed"

PIPELINES: list[dict[str, Any]] = [
    {
        "id": DEFAULT_PIPELINE,
        "label": "Sales Pipeline",
        "displayOrder": 0,
        "stages": [
            ("appointmentscheduled", "Appointment Scheduled", "false", "0.2"),
            ("qualifiedtobuy", "Qualified To Buy", "false", "0.4"),
            ("contractsent", "Contract Sent", "false", "0.9"),
            ("closedwon", "Closed Won", "true", "1.0"),
            ("closedlost", "Closed Lost", "true", "0.0"),
        ],
    },
    {
        "id": RENEWALS_PIPELINE,
        "label": "Services Renewals",
        "displayOrder": 1,
        "stages": [
            ("renewal_open", "Renewal Open", "false", "0.5"),
            (RENEWALS_WON_STAGE, "Renewal Signed", "true", "1.0"),
            ("renewal_lost", "Renewal Lost", "true", "0.0"),
        ],
    },
]

CURRENCIES = ["EUR", "EUR", "EUR", "USD", "GBP"]
INDUSTRIES = ["COMPUTER_SOFTWARE", "FINANCIAL_SERVICES", "HOSPITAL_HEALTH_CARE", "RETAIL", "LOGISTICS_AND_SUPPLY_CHAIN"]

DEAL_KINDS = ["Data platform", "ERP rollout", "Cloud migration", "Security audit", "Managed service"]


def iso_millis(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def default_anchor(now: datetime | None = None) -> datetime:
    """The last half-hour boundary before ``now``: the end of the most recent 30-minute interval."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return now.replace(minute=(now.minute // 30) * 30, second=0, microsecond=0)


@dataclass
class CrmSeed:
    companies: dict[str, dict[str, Any]] = field(default_factory=dict)
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    deals: dict[str, dict[str, Any]] = field(default_factory=dict)
    deal_companies: dict[str, list[str]] = field(default_factory=dict)
    deal_contacts: dict[str, list[str]] = field(default_factory=dict)
    bad_deals: dict[str, str] = field(default_factory=dict)
    """Deal id → the rule that must quarantine it."""
    bad_contacts: dict[str, str] = field(default_factory=dict)


def _object(object_id: int, properties: dict[str, Any], created: datetime, updated: datetime) -> dict[str, Any]:
    props = {k: (None if v is None else str(v)) for k, v in properties.items()}
    props.update(
        hs_object_id=str(object_id),
        createdate=iso_millis(created),
        hs_lastmodifieddate=iso_millis(updated),
    )
    return {
        "id": str(object_id),
        "properties": props,
        "createdAt": iso_millis(created),
        "updatedAt": iso_millis(updated),
        "archived": False,
    }


def seed_crm(*, deals: int = 120, anchor: datetime, seed: int = 20261127) -> CrmSeed:
    """Companies, contacts and deals; about two thirds of the deals are won."""
    fake = Faker(["en_US", "nl_NL", "de_DE"])
    fake.seed_instance(seed)
    rng = random.Random(seed)
    out = CrmSeed()
    window_start = anchor - timedelta(minutes=30)
    created_base = anchor - timedelta(days=120)

    company_count = max(3, deals // 3)
    name_pool = [fake.company() for _ in range(min(company_count, 2000))]
    for n in range(company_count):
        cid = 1_000_000 + n
        name = name_pool[n % len(name_pool)] + ("" if n < len(name_pool) else f" {n // len(name_pool)}")
        domain = ("".join(ch for ch in name.lower() if ch.isascii() and ch.isalnum())[:40] or f"client{n}") + ".example"
        out.companies[str(cid)] = _object(
            cid,
            {
                "name": name,
                "domain": domain,
                "country": rng.choice(["Netherlands", "Germany", "United States", "United Kingdom"]),
                "industry": rng.choice(INDUSTRIES),
            },
            created_base,
            created_base + timedelta(days=1),
        )
    company_ids = list(out.companies)

    contact_count = company_count * 2
    first_pool = [fake.first_name() for _ in range(300)]
    last_pool = [fake.last_name() for _ in range(300)]
    for n in range(contact_count):
        pid = 2_000_000 + n
        first, last = first_pool[n % 300], last_pool[(n * 7) % 300]
        email = f"{first}.{last}.{n}@{out.companies[company_ids[n // 2]]['properties']['domain']}".lower().replace(" ", "")
        out.contacts[str(pid)] = _object(
            pid,
            {
                "firstname": first,
                "lastname": last,
                "email": email,
                "jobtitle": rng.choice(["CFO", "CTO", "Head of Operations", "Project Sponsor"]),
            },
            created_base,
            created_base + timedelta(days=2),
        )

    span_seconds = 30 * 60  # whole seconds, as every CRM stores its modification stamps
    for n in range(deals):
        did = 3_000_000 + n
        company_id = company_ids[n % company_count]
        won = n % 3 != 2
        pipeline = RENEWALS_PIPELINE if n % 10 == 9 else DEFAULT_PIPELINE
        if pipeline == RENEWALS_PIPELINE:
            stage = RENEWALS_WON_STAGE if won else "renewal_open"
        else:
            stage = "closedwon" if won else rng.choice(["qualifiedtobuy", "contractsent", "closedlost"])
        modified = window_start + timedelta(seconds=(n * 7919) % span_seconds)
        start = (anchor + timedelta(days=7 + n % 30)).date()
        billing = "fixed_fee" if n % 4 == 0 else "time_and_materials"
        hours = 40 + (n * 37) % 1600
        props = {
            "dealname": f"{out.companies[company_id]['properties']['name']} — {rng.choice(DEAL_KINDS)}",
            "pipeline": pipeline,
            "dealstage": stage,
            "amount": f"{hours * rng.choice([95, 110, 125, 150])}.00",
            "deal_currency_code": rng.choice(CURRENCIES),
            "closedate": iso_millis(
                datetime.combine((modified - timedelta(hours=1)).astimezone(UTC).date(), time(), UTC)
            ),  # a date: midnight UTC
            "description": fake.sentence(nb_words=12),
            "estimated_hours": str(hours),
            "billing_type": billing,
            "contract_start_date": start.isoformat(),
            "contract_end_date": (start + timedelta(days=90 + n % 180)).isoformat(),
            "payment_terms_days": rng.choice(["14", "30", "45"]),
            "psa_project_id": None,
            "psa_project_url": None,
        }
        out.deals[str(did)] = _object(did, props, created_base + timedelta(days=n % 90), modified)
        out.deal_companies[str(did)] = [company_id]
        first_contact = (n % company_count) * 2
        out.deal_contacts[str(did)] = [str(2_000_000 + first_contact), str(2_000_000 + first_contact + 1)]

    _plant_bad_records(out)
    return out


def _won_deal_ids(out: CrmSeed) -> list[str]:
    return [d for d, obj in out.deals.items() if obj["properties"]["dealstage"] in ("closedwon", RENEWALS_WON_STAGE)]


def _plant_bad_records(out: CrmSeed) -> None:
    """Make a few won deals bad in the ways real CRMs are, and a few names hard but valid."""
    won = _won_deal_ids(out)
    if len(won) < 12:
        return

    def deal(i: int) -> dict[str, Any]:
        return out.deals[won[i]]["properties"]

    deal(1)["amount"] = "twelve thousand"
    out.bad_deals[won[1]] = "project.contract_value.type"

    out.deal_companies[won[2]] = []
    out.bad_deals[won[2]] = "project.crm_company_id.required"

    nameless = "1999999"
    out.companies[nameless] = _object(
        1999999,
        {"name": "", "domain": None, "country": None, "industry": None},
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    out.deal_companies[won[3]] = [nameless]
    out.bad_deals[won[3]] = "client.client_name.required"

    # A won stage id of another pipeline: the stage is unknown in the deal's own pipeline.
    deal(4)["pipeline"] = DEFAULT_PIPELINE
    deal(4)["dealstage"] = RENEWALS_WON_STAGE
    out.bad_deals[won[4]] = "project.deal_stage.known"

    deal(5)["deal_currency_code"] = "DOGE"
    out.bad_deals[won[5]] = "project.currency.allowed_values"

    # Valid but hostile or non-Latin text: must load unharmed.
    company_of = out.deal_companies
    out.companies[company_of[won[6]][0]]["properties"]["name"] = "Robert'); DROP TABLE psa.client;-- Consulting"
    out.companies[company_of[won[7]][0]]["properties"]["name"] = "株式会社テスト・ソリューションズ"
    deal(8)["dealname"] = "Zürich Ölwerke — Überführung 🚀 ☕"

    # A contact with a broken email: the contact is quarantined, the deal still loads.
    bad_contact = out.deal_contacts[won[9]][1]
    out.contacts[bad_contact]["properties"]["email"] = "not-an-email"
    out.bad_contacts[bad_contact] = "contact.email.type"
