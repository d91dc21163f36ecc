"""The weekly flow's posting step against an in-memory accounting system (``tests.fakes``) and the
real accounting warehouse: no sandbox, no Airflow run."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import text

from backbone.hooks.oauth import ReauthorisationRequired
from backbone.warehouse.ops import RunRef
from tests.fakes import FakeAccounting

pytestmark = pytest.mark.db
WEEK = (datetime(2026, 10, 23, 15, tzinfo=UTC), datetime(2026, 10, 30, 16, tzinfo=UTC))
RUN = RunRef("timesheets_weekly_to_accounting", f"{WEEK[0].isoformat()}/{WEEK[1].isoformat()}", *WEEK)


def outbox_line(entry_id: str, *, attempts: int = 0) -> dict:
    return {
        "entry_id": entry_id,
        "entry_version": 1,
        "run_id": RUN.run_id,
        "interval_end": RUN.interval_end,
        "content_hash": "h" * 64,
        "person_id": "EMP-1",
        "person_name": "Ada",
        "name_of": "Employee",
        "person_ref_id": "55",
        "client_id": "CL-1",
        "client_name": "Acme",
        "customer_ref_id": "7",
        "project_id": "PJ-1",
        "project_name": "Pilot",
        "billing_code": "CONSULT",
        "item_ref_id": "3",
        "item_name": "Consulting",
        "gl_account": "8000 Revenue",
        "work_date": date(2026, 10, 26),
        "hours": "2.00",
        "minutes": 120,
        "hourly_rate": "100.00",
        "amount": "200.00",
        "currency": "EUR",
        "billable_status": "Billable",
        "action": "create",
        "request_id": f"req-{entry_id}",
        "attempts": attempts,
    }


@pytest.fixture
def outbox(accounting_warehouse):
    def fill(*lines: dict) -> None:
        from backbone.warehouse.tables import time_export

        with accounting_warehouse.begin() as connection:
            connection.execute(time_export.insert(), list(lines))

    return fill


def statuses(engine) -> dict[str, tuple[str, str | None]]:
    with engine.connect() as connection:
        return {
            r[0]: (r[1], r[2]) for r in connection.execute(text("SELECT entry_id, posting_status, accounting_id FROM acct.time_export"))
        }


def test_a_line_tried_before_is_found_by_its_key_and_never_created_twice(accounting_warehouse, outbox):
    from backbone.flows.timesheets import post_time_activities

    accounting = FakeAccounting()
    already = accounting.post_time_entry(outbox_line("TE-2"), target=None, request_id="req-TE-2")  # the answer to this was lost
    outbox(outbox_line("TE-1"), outbox_line("TE-2", attempts=1), outbox_line("TE-3"))
    result = post_time_activities(accounting, accounting_warehouse, RUN, concurrency=2)
    assert result["posted"] == 3 and accounting.creates == 3  # one create each: TE-2's earlier one adopted
    assert accounting.lookups == 1  # only the line tried before was looked up
    assert statuses(accounting_warehouse)["TE-2"] == ("posted", already.object_id)


def test_a_refused_line_is_an_exception_and_the_others_go_through(accounting_warehouse, outbox):
    from backbone.flows.timesheets import post_time_activities

    accounting = FakeAccounting(refuse={"TE-2": "Business Validation Error: the customer is inactive"})
    outbox(outbox_line("TE-1"), outbox_line("TE-2"), outbox_line("TE-3"))
    result = post_time_activities(accounting, accounting_warehouse, RUN, concurrency=2)
    assert (result["posted"], result["rejected"]) == (2, 1)
    assert statuses(accounting_warehouse)["TE-2"][0] == "failed"


def test_a_dead_connection_stops_posting_and_leaves_every_line_pending(accounting_warehouse, outbox):
    from backbone.flows.timesheets import post_time_activities

    accounting = FakeAccounting(dead_connection=ReauthorisationRequired("QuickBooks refused the refresh token", status=400))
    outbox(outbox_line("TE-1"), outbox_line("TE-2"))
    with pytest.raises(ReauthorisationRequired):
        post_time_activities(accounting, accounting_warehouse, RUN, concurrency=2)
    assert {status for status, _ in statuses(accounting_warehouse).values()} == {"pending"}
    assert accounting.creates == 0


def test_new_lines_go_in_batch_calls_and_lines_tried_before_are_looked_up_one_by_one(accounting_warehouse, outbox):
    """First creates never tried go in the vendor's batch calls (QuickBooks: 30 a call); a line
    tried before is looked up first on its own, so a batch whose answer was lost never duplicates."""
    from backbone.flows.timesheets import post_time_activities
    from tests.fakes import FakeBatchAccounting

    accounting = FakeBatchAccounting(refuse={"TE-5": "Invalid Reference Id : Customer 7 is inactive"})
    already = accounting.post_time_entry(outbox_line("TE-8"), target=None, request_id="req-TE-8")  # an earlier batch's lost answer
    outbox(*(outbox_line(f"TE-{n}") for n in range(1, 8)), outbox_line("TE-8", attempts=1))
    result = post_time_activities(accounting, accounting_warehouse, RUN, concurrency=2)
    assert sorted(accounting.batch_calls) == [1, 3, 3]  # seven new lines, three to a call
    assert (result["posted"], result["rejected"]) == (7, 1)
    assert accounting.lookups == 1 and accounting.creates == 7  # TE-8 adopted, not created again; TE-5 refused
    final = statuses(accounting_warehouse)
    assert final["TE-5"][0] == "failed" and final["TE-8"] == ("posted", already.object_id)
    assert {status for key, (status, _) in final.items() if key != "TE-5"} == {"posted"}


def test_lines_read_ahead_but_never_sent_get_their_attempt_back(accounting_warehouse, outbox, monkeypatch):
    """Posting reads the next batch while it sends this one; when the run stops, the batch read
    ahead was never sent, so its lines are not looked up needlessly next time."""
    from backbone.flows import timesheets

    monkeypatch.setattr(timesheets, "POST_BATCH_ENTRIES", 2)
    accounting = FakeAccounting(dead_connection=ReauthorisationRequired("QuickBooks refused the refresh token", status=400))
    outbox(*(outbox_line(f"TE-{n}") for n in range(1, 7)))
    with pytest.raises(ReauthorisationRequired):
        timesheets.post_time_activities(accounting, accounting_warehouse, RUN, concurrency=2)
    with accounting_warehouse.connect() as connection:
        attempts = dict(connection.execute(text("SELECT entry_id, attempts FROM acct.time_export")).all())
    assert attempts == {"TE-1": 1, "TE-2": 1, "TE-3": 0, "TE-4": 0, "TE-5": 0, "TE-6": 0}
