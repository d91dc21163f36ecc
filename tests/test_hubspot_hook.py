"""HubSpotHook against the sandbox: paging, the 10k cap, Retry-After, fatal 4xx, bad bodies."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import requests

from backbone.hooks.hubspot import HubSpotHook
from backbone.http import FatalApiError, RepeatedCursorError, RetriableApiError
from backbone_sandbox.faults import FaultRule
from tests.conftest import ANCHOR, free_port, start_sandbox

WON = [{"propertyName": "dealstage", "operator": "IN", "values": ["closedwon", "renewal_signed"]}]


@pytest.fixture
def hook(sandbox, monkeypatch) -> HubSpotHook:
    return HubSpotHook()


def window(hook, **kw):
    return list(hook.search_modified("deals", start=ANCHOR - timedelta(minutes=30), end=ANCHOR, properties=["dealname"], **kw))


def test_won_stages_come_from_the_pipelines_endpoint(hook):
    won = {s.stage_id for s in hook.deal_stages().values() if s.is_won}
    assert won == {"closedwon", "renewal_signed"}


def test_search_pages_through_every_match_100_at_a_time(hook, sandbox):
    pages = window(hook, extra_filters=WON)
    assert [len(p) for p in pages] == [80]  # 80 won deals: one page
    pages = window(hook)
    assert [len(p) for p in pages] == [100, 20]
    ids = [int(o["id"]) for p in pages for o in p]
    assert ids == sorted(ids) and len(set(ids)) == 120


def test_search_gets_past_the_10000_result_cap_by_windowing_on_object_id(monkeypatch):
    running, server, thread = start_sandbox(free_port(), deals=10_250, hubspot_search_per_second=0, hubspot_calls_per_ten_seconds=0)
    try:
        monkeypatch.setenv(
            "AIRFLOW_CONN_HUBSPOT_CAP",
            json.dumps(
                {
                    "conn_type": "hubspot",
                    "host": running.hubspot_url,
                    "password": "sandbox-token",
                    "extra": {"search_requests_per_second": 1000},
                }
            ),
        )
        hook = HubSpotHook("hubspot_cap")
        ids = [int(o["id"]) for page in window(hook) for o in page]
        assert len(ids) == 10_250 == len(set(ids))
        assert ids == sorted(ids)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_429_with_retry_after_is_waited_out(hook, sandbox):
    sandbox.state.faults.arm([FaultRule(kind="status", status=429, retry_after=1, path_contains="/search", times=2)])
    pages = window(hook, extra_filters=WON)
    assert sum(len(p) for p in pages) == 80
    assert sandbox.state.faults.fired["status"] == 2


def test_server_errors_malformed_bodies_and_resets_are_retried(hook, sandbox):
    sandbox.state.faults.arm(
        [
            FaultRule(kind="status", status=502, path_contains="/search"),
            FaultRule(kind="malformed", path_contains="/search"),
            FaultRule(kind="reset", path_contains="/search"),
        ]
    )
    assert sum(len(p) for p in window(hook)) == 120
    assert sandbox.state.faults.fired == {"status": 1, "malformed": 1, "reset": 1}


def test_malformed_json_that_persists_fails_with_a_clear_error(hook, sandbox, monkeypatch):
    monkeypatch.setenv("BACKBONE_HTTP_MAX_ATTEMPTS", "2")
    sandbox.state.faults.arm([FaultRule(kind="malformed", path_contains="/pipelines", times=5)])
    with pytest.raises(RetriableApiError, match="not valid JSON"):
        HubSpotHook().deal_stages()


def test_wrong_token_fails_at_once_with_a_clear_message(sandbox, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_HUBSPOT_BAD", json.dumps({"conn_type": "hubspot", "host": sandbox.hubspot_url, "password": "wrong"}))
    with pytest.raises(FatalApiError, match="401.*credentials"):
        HubSpotHook("hubspot_bad").deal_stages()
    assert HubSpotHook("hubspot_bad").test_connection()[0] is False


def test_other_4xx_fail_at_once(hook):
    with pytest.raises(FatalApiError, match="400"):
        hook.request("POST", "/crm/v3/objects/deals/search", json={"limit": 500})


def test_a_repeated_cursor_stops_paging(hook, sandbox):
    sandbox.state.faults.arm([FaultRule(kind="repeat_cursor", path_contains="/search")])
    with pytest.raises(RepeatedCursorError):
        list(hook.search("deals", filters=[], properties=["dealname"]))


def test_associations_and_batch_reads(hook, sandbox):
    links = hook.associations("deals", "companies", ["3000000", "3000003"])
    assert "3000003" not in links  # the seeded deal without a company
    company_id = str(links["3000000"][0]["toObjectId"])
    companies = hook.batch_read("companies", [company_id, "999"], ["name"])
    assert list(companies) == [company_id]
    assert companies[company_id]["properties"]["name"]


def test_associations_that_page_are_read_to_the_last_page(hook, sandbox):
    """HubSpot's v4 batch read answers a page of an object's associations and, "only if there are
    more pages", ``paging.next.after``; "the 'after' field in a returned paging object can be added
    alongside the 'id' to retrieve the next page of associations from that objectId"
    (https://developers.hubspot.com/docs/api-reference/latest/crm/associations/associate-records/batch/get-associations).
    A deal with 1,203 contacts (three pages) and one with two come back whole, each contact once."""
    links = sandbox.state.crm.associations[("deals", "contacts")]
    crowded, plain = sorted(links)[:2]
    links[crowded] = [str(2_500_000 + n) for n in range(1203)]
    found = hook.associations("deals", "contacts", [crowded, plain])
    assert [str(t["toObjectId"]) for t in found[crowded]] == links[crowded]
    assert len(found[plain]) == len(links[plain])


def test_an_associations_batch_of_more_than_1000_ids_is_refused_as_hubspot_does(sandbox):
    """Since 2025-02-10 a batch read of associations takes at most 1,000 inputs
    (https://developers.hubspot.com/changelog/bug-fix-batch-read-limit-for-hubspot-associations-api);
    the hook sends 100 at a time."""
    from backbone.hooks.hubspot import BATCH_SIZE

    answer = requests.post(
        f"{sandbox.url}/hubspot/crm/v4/associations/deals/contacts/batch/read",
        json={"inputs": [{"id": str(n)} for n in range(1001)]},
        headers={"Authorization": "Bearer sandbox-token"},
        timeout=10,
    )
    assert answer.status_code == 400 and answer.json()["category"] == "VALIDATION_ERROR" and BATCH_SIZE <= 1000
