"""The BI marts (``bi`` schema views) against hand-computed numbers, on real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import text

from tests.helpers import rows
from tests.test_hostile_conditions import slack_alerts as slack_alerts  # the alert sink fixture

pytestmark = pytest.mark.db
WEEK = date(2026, 11, 16)  # Monday of ISO week 2026-W47


def add_person(connection, hr_id: str, email: str, department: str) -> None:  # noqa: ANN001
    connection.execute(
        text(
            "INSERT INTO hr.person (hr_id, name, email, department, employment_status, is_active, hire_date, weekly_hours, last_run_id) "
            "VALUES (:i, :i, :e, :d, 'Active', true, '2020-01-01', 40, 'test')"
        ),
        {"i": hr_id, "e": email, "d": department},
    )


def add_capacity(connection, hr_id: str, available: str, time_off: str = "0") -> None:  # noqa: ANN001
    connection.execute(
        text(
            "INSERT INTO hr.capacity (hr_id, iso_week, week_start, standard_hours, holiday_hours, time_off_hours, available_hours, as_of) "
            "VALUES (:i, '2026-W47', :w, 40, 0, :o, :a, :w)"
        ),
        {"i": hr_id, "w": WEEK, "o": time_off, "a": available},
    )


def add_time(connection, entry: str, email: str, day: date, hours: str, *, billable: bool) -> None:  # noqa: ANN001
    connection.execute(
        text(
            "INSERT INTO psa.time_entry (entry_id, entry_version, person_id, person_email, project_id, client_id, billing_code, "
            "work_date, hours, billable, hourly_rate, currency, approved_at, last_run_id) "
            "VALUES (:n, 1, 'P', :e, 'PJ', 'CL', 'CONS', :d, :h, :b, 100, 'EUR', :at, 'test')"
        ),
        {"n": entry, "e": email, "d": day, "h": hours, "b": billable, "at": datetime(2026, 11, 20, tzinfo=UTC)},
    )


def test_utilization_per_person_and_department_is_approved_hours_over_available_hours(hr_warehouse, accounting_warehouse):
    with hr_warehouse.begin() as connection:
        add_person(connection, "101", "ann@ourfirm.example", "Consulting")
        add_person(connection, "102", "Bob@OurFirm.example", "Consulting")  # e-mail case differs from the PSA's
        add_person(connection, "103", "cy@ourfirm.example", "Delivery")
        add_capacity(connection, "101", "40")
        add_capacity(connection, "102", "32", time_off="8")
        add_capacity(connection, "103", "0", time_off="40")  # a week off
        add_time(connection, "T1", "ann@ourfirm.example", date(2026, 11, 16), "8", billable=True)
        add_time(connection, "T2", "ann@ourfirm.example", date(2026, 11, 17), "6", billable=True)
        add_time(connection, "T3", "ann@ourfirm.example", date(2026, 11, 18), "4", billable=False)
        add_time(connection, "T4", "ann@ourfirm.example", date(2026, 11, 23), "5", billable=True)  # the next week
        add_time(connection, "T5", "bob@ourfirm.example", date(2026, 11, 20), "8", billable=True)
        add_time(connection, "T6", "bob@ourfirm.example", date(2026, 11, 22), "8", billable=True)  # Sunday: same ISO week
    people = {r.hr_id: r for r in rows(hr_warehouse, "SELECT * FROM bi.utilization_weekly WHERE iso_week = '2026-W47'")}
    assert (people["101"].billable_hours, people["101"].total_hours) == (Decimal("14.00"), Decimal("18.00"))
    assert (people["101"].billable_utilization, people["101"].total_utilization) == (Decimal("0.3500"), Decimal("0.4500"))
    assert (people["102"].billable_utilization, people["102"].total_utilization) == (Decimal("0.5000"), Decimal("0.5000"))
    assert people["103"].total_hours == 0 and people["103"].billable_utilization is None  # no capacity: no ratio, not 0 %
    departments = {r.department: r for r in rows(hr_warehouse, "SELECT * FROM bi.utilization_department_weekly")}
    consulting = departments["Consulting"]
    assert (consulting.people, consulting.available_hours, consulting.billable_hours) == (2, Decimal("72.00"), Decimal("30.00"))
    assert (consulting.billable_utilization, consulting.total_utilization) == (Decimal("0.4167"), Decimal("0.4722"))  # 30/72, 34/72
    assert departments["Delivery"].billable_utilization is None


def add_invoice(
    connection, invoice_id: str, kind: str, currency: str, total: str, status: str, paid: str | None, balance: str | None
) -> None:  # noqa: ANN001, E501, PLR0913
    connection.execute(
        text(
            "INSERT INTO acct.invoice (psa_invoice_id, number, kind, period, billing_type, project_id, client_id, client_name, currency, "
            "issue_date, due_date, hours, subtotal, tax_code, tax_amount, total, psa_status, content_hash, run_id, request_id, "
            "posting_status, amount_paid, balance) VALUES (:i, :i, :k, '2026-10', 'time_and_materials', 'PJ', 'CL', 'Client', :c, "
            "'2026-10-31', '2026-11-30', 0, :t, 'VAT21', 0, :t, 'approved', 'h', 'r', :i, :s, :p, :b)"
        ),
        {"i": invoice_id, "k": kind, "c": currency, "t": total, "s": status, "p": paid, "b": balance},
    )


def test_cash_per_month_is_invoiced_paid_open_and_days_sales_outstanding(accounting_warehouse):
    with accounting_warehouse.begin() as connection:
        add_invoice(connection, "I1", "invoice", "EUR", "1210.00", "posted", "1210.00", "0.00")
        add_invoice(connection, "I2", "invoice", "EUR", "605.00", "posted", "105.00", "500.00")
        add_invoice(connection, "C1", "credit_note", "EUR", "100.00", "posted", None, None)
        add_invoice(connection, "H1", "invoice", "EUR", "1000.00", "held", None, None)  # never reached accounting
        add_invoice(connection, "I3", "invoice", "USD", "500.00", "posted", None, None)  # no payment read back yet
    cash = {r.currency: r for r in rows(accounting_warehouse, "SELECT * FROM bi.cash_monthly WHERE billing_month = '2026-10'")}
    eur, usd = cash["EUR"], cash["USD"]
    assert (eur.invoices, eur.invoiced, eur.paid, eur.open_balance) == (2, Decimal("1715.00"), Decimal("1315.00"), Decimal("500.00"))
    assert eur.days_sales_outstanding == Decimal("9.0")  # 500 / 1715 × 31 days = 9.04
    assert (usd.invoiced, usd.paid, usd.open_balance, usd.days_sales_outstanding) == (
        Decimal("500.00"),
        0,
        Decimal("500.00"),
        Decimal("31.0"),
    )


def test_the_read_only_role_reads_the_marts(hr_warehouse, accounting_warehouse):
    for engine, view in ((hr_warehouse, "bi.utilization_weekly"), (accounting_warehouse, "bi.cash_monthly")):
        with engine.begin() as connection:
            connection.execute(text("SET LOCAL ROLE backbone_finance_reader"))
            connection.execute(text(f"SELECT count(*) FROM {view}")).scalar_one()  # noqa: S608 - a constant view name


def test_hr_hears_once_when_utilization_stays_below_target_for_the_weeks_set(hr_warehouse, accounting_warehouse, slack_alerts, monkeypatch):
    from datetime import timedelta

    from backbone.settings import load_settings
    from backbone.utilization import watch

    earlier = WEEK - timedelta(days=7)
    with hr_warehouse.begin() as connection:
        add_person(connection, "101", "ann@ourfirm.example", "Consulting")
        add_person(connection, "102", "bob@ourfirm.example", "Delivery")
        for week in (earlier, WEEK):
            for hr_id in ("101", "102"):
                connection.execute(
                    text(
                        "INSERT INTO hr.capacity (hr_id, iso_week, week_start, standard_hours, holiday_hours, time_off_hours, "
                        "available_hours, as_of) VALUES (:i, to_char(CAST(:w AS date), 'IYYY-\"W\"IW'), :w, 40, 0, 0, 40, :w)"
                    ),
                    {"i": hr_id, "w": week},
                )
            add_time(connection, f"A{week}", "ann@ourfirm.example", week, "12", billable=True)  # 30 %: below 60 %
            add_time(connection, f"B{week}", "bob@ourfirm.example", week, "32", billable=True)  # 80 %: fine
    monkeypatch.setenv("BACKBONE_UTILIZATION_TARGET", "0.6")
    monkeypatch.setenv("BACKBONE_UTILIZATION_WEEKS", "2")
    after_two_weeks = WEEK + timedelta(days=7)

    breaches = watch(hr_warehouse, load_settings(), before=after_two_weeks)
    assert [(b["kind"], b["key"]) for b in breaches] == [("person", "101"), ("department", "Consulting")]
    assert breaches[0]["ratios"] == [Decimal("0.3"), Decimal("0.3")]
    assert watch(hr_warehouse, load_settings(), before=after_two_weeks) == []  # once per breach
    assert watch(hr_warehouse, load_settings(), before=WEEK) == []  # one week of data is not two weeks below target
    alerts = slack_alerts()
    assert len(alerts) == 1 and "person 101: 30%, 30%" in alerts[0] and "below 60%" in alerts[0]


def test_project_margin_per_month_is_billable_value_less_hours_at_standard_cost(psa_warehouse, accounting_warehouse):
    """Hand-computed: PJ in 2026-11, EUR: 8 h billable at 100 + 2 h non-billable, CONS costs 60/h →
    revenue 800, cost 600, margin 200 (25 %); a USD hour with no USD cost rate is counted, not priced."""
    with psa_warehouse.begin() as connection:
        connection.execute(text("INSERT INTO psa.cost_rate VALUES ('CONS', 'EUR', 60)"))
        add_time(connection, "M1", "ann@ourfirm.example", date(2026, 11, 16), "8", billable=True)
        add_time(connection, "M2", "ann@ourfirm.example", date(2026, 11, 17), "2", billable=False)
        add_time(connection, "M3", "ann@ourfirm.example", date(2026, 10, 30), "1", billable=True)  # October
        connection.execute(text("UPDATE psa.time_entry SET currency = 'USD', project_id = 'PJ-US' WHERE entry_id = 'M3'"))
    margins = {(r.project_id, r.month): r for r in rows(psa_warehouse, "SELECT * FROM bi.project_margin_monthly")}
    november = margins[("PJ", "2026-11")]
    assert (november.hours, november.billable_hours, november.revenue, november.cost) == (
        Decimal("10.00"),
        Decimal("8.00"),
        Decimal("800.00"),
        Decimal("600.00"),
    )
    assert (november.margin, november.margin_ratio, november.hours_without_cost_rate) == (Decimal("200.00"), Decimal("0.2500"), 0)
    october = margins[("PJ-US", "2026-10")]
    assert (october.revenue, october.cost, october.hours_without_cost_rate) == (Decimal("100.00"), 0, Decimal("1.00"))


def test_cost_rates_come_from_the_data_dictionary():
    from backbone.cost_rates import load_cost_rates

    rates = load_cost_rates()
    assert rates[("CONSULT", "EUR")] == Decimal("62.00") and all(rate >= 0 for rate in rates.values())
    from backbone.accounting_mapping import load_mapping

    assert {code for code, _ in rates} == set(load_mapping().billing_codes)  # every billing code has a cost


def test_pipeline_by_stage_weights_open_deals_by_their_stage_probability(psa_warehouse):
    """Hand-computed: two EUR deals in Contract Sent (90 %): 1,000 + 3,000 → weighted 3,600; one
    Qualified (40 %) 500 → 200; a deal without an amount counts as a deal worth nothing."""
    with psa_warehouse.begin() as connection:
        for deal, stage, probability, amount, start in (
            ("D1", "Contract Sent", "0.9", "1000", "2026-12-01"),
            ("D2", "Contract Sent", "0.9", "3000", "2027-01-15"),
            ("D3", "Qualified To Buy", "0.4", "500", None),
            ("D4", "Qualified To Buy", "0.4", None, "2027-02-01"),
        ):
            connection.execute(
                text(
                    "INSERT INTO psa.pipeline_deal (crm_deal_id, crm_system, stage, probability, amount, currency, expected_start, "
                    "snapshot_run_id, snapshot_at) VALUES (:d, 'hubspot', :s, :p, :a, 'EUR', :e, 'r', now())"
                ),
                {"d": deal, "s": stage, "p": probability, "a": amount, "e": start},
            )
    stages = {r.stage: r for r in rows(psa_warehouse, "SELECT * FROM bi.pipeline_by_stage")}
    sent, qualified = stages["Contract Sent"], stages["Qualified To Buy"]
    assert (sent.deals, sent.amount, sent.weighted_amount) == (2, Decimal("4000.00"), Decimal("3600.00"))
    assert (sent.first_expected_month, sent.last_expected_month) == ("2026-12", "2027-01")
    assert (qualified.deals, qualified.amount, qualified.weighted_amount) == (2, Decimal("500.00"), Decimal("200.00"))


def test_the_closed_won_run_snapshots_the_open_pipeline_from_the_crm(dagbag, sandbox, psa_warehouse):
    """Every deal the sandbox CRM holds open (not won or lost) is in the snapshot, at its stage's
    probability from the pipelines endpoint; a second run replaces it rather than adding to it."""
    from backbone_sandbox.seed import PIPELINES
    from tests.conftest import ANCHOR

    probability = {stage: Decimal(p) for pipeline in PIPELINES for stage, _, closed, p in pipeline["stages"] if closed == "false"}
    expected = {d for d, deal in sandbox.state.crm.objects["deals"].items() if deal["properties"]["dealstage"] in probability}
    for _ in range(2):
        assert dagbag.get_dag("crm_closed_won_to_psa").test(logical_date=ANCHOR).state == "success"
    snapshot = {r.crm_deal_id: r for r in rows(psa_warehouse, "SELECT * FROM psa.pipeline_deal")}
    assert set(snapshot) == expected and expected
    some = next(iter(expected))
    assert snapshot[some].probability == probability[sandbox.state.crm.objects["deals"][some]["properties"]["dealstage"]]


def test_the_read_only_role_reads_the_new_marts(psa_warehouse):
    with psa_warehouse.begin() as connection:
        connection.execute(text("SET LOCAL ROLE backbone_finance_reader"))
        for view in ("bi.project_margin_monthly", "bi.pipeline_by_stage"):
            connection.execute(text(f"SELECT count(*) FROM {view}")).scalar_one()  # noqa: S608 - a constant view name
