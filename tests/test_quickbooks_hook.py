"""QuickBooksHook and the PSA time listing against the sandbox: OAuth rotation, requestid, paging, limits."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from backbone.hooks.accounting import request_id_for
from backbone.hooks.oauth import MemoryTokenStore
from backbone.hooks.psa import PsaHook
from backbone.hooks.quickbooks import QuickBooksHook
from backbone.http import FatalApiError, RepeatedCursorError
from backbone_sandbox.faults import FaultRule

WEEK = (datetime(2026, 10, 23, 15, tzinfo=UTC), datetime(2026, 10, 30, 16, tzinfo=UTC))


@pytest.fixture
def tokens() -> MemoryTokenStore:
    return MemoryTokenStore()


@pytest.fixture
def hook(sandbox, tokens) -> QuickBooksHook:
    return QuickBooksHook(token_store=tokens)


def an_activity(state) -> dict:
    employee = next(iter(state.qbo.entities["Employee"].values()))
    customer = next(iter(state.qbo.entities["Customer"].values()))
    item = next(iter(state.qbo.entities["Item"].values()))
    return {
        "TxnDate": "2026-10-26",
        "NameOf": "Employee",
        "EmployeeRef": {"value": employee["Id"]},
        "CustomerRef": {"value": customer["Id"]},
        "ItemRef": {"value": item["Id"]},
        "BillableStatus": "Billable",
        "HourlyRate": 110.0,
        "Hours": 2,
        "Minutes": 30,
    }


def test_a_repeated_requestid_returns_the_original_object_not_a_second(hook, sandbox):
    body = an_activity(sandbox.state)
    request_id = request_id_for("TimeActivity", "TE-1", "1")
    first = hook.create("TimeActivity", body, request_id=request_id)
    again = hook.create("TimeActivity", {**body, "Hours": 9}, request_id=request_id)
    assert again.object_id == first.object_id and again.body["Hours"] == 2
    assert len(sandbox.state.qbo.entities["TimeActivity"]) == 1
    assert len(request_id) <= 50 and request_id == request_id_for("TimeActivity", "TE-1", "1")


def test_update_uses_the_current_sync_token(hook, sandbox):
    created = hook.create("TimeActivity", an_activity(sandbox.state), request_id="r-create")
    updated = hook.update("TimeActivity", created.object_id, {**an_activity(sandbox.state), "Hours": 3}, request_id="r-update")
    assert (updated.object_id, updated.sync_token, updated.body["Hours"]) == (created.object_id, "1", 3)


def test_refresh_token_rotates_and_the_new_one_is_stored(hook, sandbox, tokens):
    list(hook.query_all("Item"))
    stored = tokens.tokens["quickbooks_default_refresh_token"]
    assert stored in sandbox.state.qbo.refresh_tokens
    # Once the shared access token is past its use, the next hook (the next task) refreshes with
    # the stored refresh token; the first one is gone.
    shared = json.loads(tokens.tokens["quickbooks_default_access_token"])
    tokens.save("quickbooks_default_access_token", json.dumps({**shared, "use_until": time.time() - 1}))
    list(QuickBooksHook(token_store=tokens).query_all("Customer"))
    assert tokens.tokens["quickbooks_default_refresh_token"] != stored
    assert sandbox.state.qbo.token_refreshes == 2


def test_the_next_task_reuses_the_access_token_until_shortly_before_it_expires(hook, sandbox, tokens):
    """Intuit: access tokens are valid for one hour; use them until then rather than refreshing
    (Intuit's blog "OAuth token management done the right way", 2024-06-03). Spending the rotating
    refresh token once an hour, not once a task, also leaves a killed worker far fewer moments in
    which the vendor has rotated it and the new one is not stored yet."""
    list(hook.query_all("Item"))
    token = hook.access_token()
    shared = json.loads(tokens.tokens["quickbooks_default_access_token"])
    assert shared["access_token"] == token
    assert 3600 - 300 - 60 < shared["use_until"] - time.time() <= 3600 - 300  # the sandbox's (and Intuit's) hour, less the margin
    for _ in range(3):  # three more tasks within the hour
        next_task = QuickBooksHook(token_store=tokens)
        list(next_task.query_all("Customer"))
        assert next_task.access_token() == token
    assert sandbox.state.qbo.token_refreshes == 1
    # A token the vendor refuses (revoked early) is never taken again, from the hook or the store.
    sandbox.state.qbo.access_tokens.clear()
    after_refusal = QuickBooksHook(token_store=tokens)
    assert sum(len(p) for p in after_refusal.query_all("Item")) == len(sandbox.state.qbo.entities["Item"])
    assert after_refusal.access_token() != token and sandbox.state.qbo.token_refreshes == 2
    assert json.loads(tokens.tokens["quickbooks_default_access_token"])["access_token"] == after_refusal.access_token()


def test_a_lost_refresh_token_fails_at_once_with_a_clear_message(sandbox):
    tokens = MemoryTokenStore()
    tokens.save("quickbooks_default_refresh_token", "revoked-token")
    with pytest.raises(FatalApiError, match="reconnect the app"):
        list(QuickBooksHook(token_store=tokens).query_all("Item"))


def test_an_expired_access_token_is_refreshed_once(hook, sandbox):
    list(hook.query_all("Item"))
    sandbox.state.qbo.access_tokens.clear()  # Intuit revoked or expired it early
    assert sum(len(p) for p in hook.query_all("Item")) == len(sandbox.state.qbo.entities["Item"])
    assert sandbox.state.qbo.token_refreshes == 2


def test_query_pages_with_startposition(hook, sandbox):
    for n in range(7):
        hook.create("TimeActivity", {**an_activity(sandbox.state), "Hours": n}, request_id=f"page-{n}")
    pages = list(hook.query_all("TimeActivity", page_size=3))
    assert [len(p) for p in pages] == [3, 3, 1]
    assert len({a["Id"] for p in pages for a in p}) == 7


def test_query_limits_are_the_vendors(hook):
    with pytest.raises(FatalApiError, match="MAXRESULTS"):
        hook.call("GET", "/query", params={"query": "SELECT * FROM Item STARTPOSITION 1 MAXRESULTS 1001"})


def test_rejected_writes_fail_at_once_with_the_fault_message(hook, sandbox):
    body = {**an_activity(sandbox.state), "CustomerRef": {"value": "999999"}}
    with pytest.raises(FatalApiError, match="Invalid Reference Id"):
        hook.create("TimeActivity", body, request_id="bad-ref")


def test_throttling_and_server_errors_are_retried(hook, sandbox):
    sandbox.state.faults.arm(
        [
            FaultRule(kind="status", status=429, path_contains="/query", times=2),
            FaultRule(kind="status", status=503, path_contains="/query", times=1),
        ]
    )
    assert sum(len(p) for p in hook.query_all("Item")) == len(sandbox.state.qbo.entities["Item"])
    assert sandbox.state.faults.fired["status"] == 3


def test_parallel_posting_stays_within_the_concurrency_limit(hook, sandbox):
    body = an_activity(sandbox.state)
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda n: hook.create("TimeActivity", body, request_id=f"par-{n}"), range(60)))
    assert len(sandbox.state.qbo.entities["TimeActivity"]) == 60
    assert sandbox.state.qbo_in_flight["rejected"] == 0


def test_psa_time_entries_page_by_approval_time(sandbox):
    pages = list(PsaHook().iter_approved_time_entries(*WEEK, page_size=25))
    entries = [e for p in pages for e in p]
    assert len(pages) > 3 and all(len(p) <= 25 for p in pages)
    assert all(WEEK[0].isoformat()[:19] <= e["approved_at"][:19] < WEEK[1].isoformat()[:19] for e in entries)
    assert all(e["approval_status"] == "approved" for e in entries)
    assert [e["approved_at"] for e in entries] == sorted(e["approved_at"] for e in entries)


def test_psa_time_entries_refuse_a_repeated_cursor(sandbox, monkeypatch):
    hook = PsaHook()
    original = hook.request
    first_cursor: list[str] = []

    def stuck(method, path, **kwargs):  # a PSA that keeps answering with its first cursor
        body = original(method, path, **kwargs)
        first_cursor[:] = first_cursor or [body["next_cursor"]]
        return {**body, "next_cursor": first_cursor[0]}

    monkeypatch.setattr(hook, "request", stuck)
    with pytest.raises(RepeatedCursorError):
        list(hook.iter_approved_time_entries(*WEEK, page_size=10))


def test_a_voided_credit_note_is_deleted_because_quickbooks_cannot_void_a_creditmemo(hook, sandbox):
    """QuickBooks' API reference lists no void for CreditMemo (create, read, query, update, delete,
    send, PDF), and python-quickbooks gives CreditMemo a delete but no void (its void map: Invoice,
    Payment, SalesReceipt, BillPayment). The sandbox refuses ``operation=void`` on it as unsupported;
    the hook deletes the credit memo instead, once, and an already deleted one counts as done."""
    import requests

    qbo = sandbox.state.qbo
    customer = next(iter(qbo.entities["Customer"].values()))
    item = next(iter(qbo.entities["Item"].values()))
    body = {
        "DocNumber": "CN-VOID-1",
        "CustomerRef": {"value": customer["Id"]},
        "Line": [{"Amount": 50.0, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": item["Id"]}}}],
    }
    credit = hook.create("CreditMemo", body, request_id="cn-void-create")
    refused = requests.post(
        f"{sandbox.quickbooks_url}/v3/company/9341455000000001/creditmemo",
        params={"operation": "void"},
        json={"Id": credit.object_id, "SyncToken": credit.sync_token},
        headers={"Authorization": f"Bearer {hook.access_token()}"},
        timeout=10,
    )
    assert refused.status_code == 400 and "not supported" in refused.text
    hook.void_invoice("credit_note", credit.object_id, request_id="cn-void-1")
    assert credit.object_id not in qbo.entities["CreditMemo"]
    hook.void_invoice("credit_note", credit.object_id, request_id="cn-void-1")  # a retry: already gone, nothing more
    assert qbo.deletes.get("CreditMemo") == 1


def outbox_lines(state, count: int, *, bad: tuple[int, ...] = ()) -> list[dict]:
    """Outbox lines for new time activities; the ``bad`` positions name a customer QuickBooks does not have."""
    employee = next(iter(state.qbo.entities["Employee"].values()))
    customer = next(iter(state.qbo.entities["Customer"].values()))
    item = next(iter(state.qbo.entities["Item"].values()))
    return [
        {
            "entry_id": f"TE-B{n}",
            "entry_version": 1,
            "work_date": "2026-10-26",
            "name_of": "Employee",
            "person_ref_id": employee["Id"],
            "person_name": employee["DisplayName"],
            "customer_ref_id": "999999" if n in bad else customer["Id"],
            "client_name": customer["DisplayName"],
            "item_ref_id": item["Id"],
            "item_name": item["Name"],
            "billable_status": "Billable",
            "hourly_rate": "110.00",
            "minutes": 90,
            "hours": "1.5",
            "billing_code": "CONSULT",
            "project_id": "PJ-1",
            "project_name": "Data platform",
            "request_id": request_id_for("TimeActivity", f"TE-B{n}", "1"),
        }
        for n in range(count)
    ]


def test_a_batch_creates_each_item_once_and_a_refused_item_leaves_the_others_standing(hook, sandbox):
    """Intuit's batch operation: items answered one by one (an object or a Fault), in one call."""
    state = sandbox.state
    lines = outbox_lines(state, 30, bad=(7,))
    answers = hook.create_time_entries(lines)
    assert [isinstance(a, FatalApiError) for a in answers] == [n == 7 for n in range(30)]
    assert "Invalid Reference Id" in str(answers[7])
    assert len(state.qbo.entities["TimeActivity"]) == 29 and state.qbo.batches == 1
    assert {a.object_id for a in answers if not isinstance(a, FatalApiError)} == set(state.qbo.entities["TimeActivity"])


def test_a_batch_whose_answer_was_lost_is_replayed_not_created_twice(hook, sandbox, monkeypatch):
    """The batch is applied and its answer comes too late: the hook's retry carries the same
    requestid (derived from the lines' own) and QuickBooks answers with the first result."""
    monkeypatch.setenv("BACKBONE_HTTP_TIMEOUT_SECONDS", "1")
    state = sandbox.state
    state.faults.arm([FaultRule(kind="slow_response", path_contains="/batch", method="POST", delay_seconds=2.5, times=1)])
    lines = outbox_lines(state, 12)
    first = QuickBooksHook(token_store=hook.token_store).create_time_entries(lines)
    assert state.faults.fired.get("slow_response") == 1 and state.qbo.replays >= 1
    again = hook.create_time_entries(lines)  # a later task attempt with the same lines
    assert [a.object_id for a in again] == [a.object_id for a in first]
    assert len(state.qbo.entities["TimeActivity"]) == 12


def test_batch_limits_are_the_vendors(hook, sandbox):
    """At most 30 items a batch; a 31st is refused by QuickBooks and never sent by the hook."""
    lines = outbox_lines(sandbox.state, 31)
    with pytest.raises(ValueError, match="at most 30"):
        hook.create_time_entries(lines)
    from backbone.hooks.quickbooks import time_activity_body

    items = [{"bId": str(n), "operation": "create", "TimeActivity": time_activity_body(line)} for n, line in enumerate(lines)]
    with pytest.raises(FatalApiError, match="at most 30 items"):
        hook.call("POST", "/batch", json={"BatchItemRequest": items})
    assert sandbox.state.qbo.entities["TimeActivity"] == {}


def test_a_batch_throttled_without_retry_after_is_retried(hook, sandbox):
    sandbox.state.faults.arm([FaultRule(kind="status", status=429, path_contains="/batch", times=2)])
    answers = hook.create_time_entries(outbox_lines(sandbox.state, 5))
    assert len(answers) == 5 and len(sandbox.state.qbo.entities["TimeActivity"]) == 5


def test_an_access_token_that_cannot_be_shared_still_serves_its_own_task(sandbox, caplog):
    """Sharing only spares later tasks a refresh: the rotated refresh token must be stored, the access token need not."""

    class NoSharing(MemoryTokenStore):
        def save(self, key: str, token: str) -> None:
            if key.endswith("_access_token"):
                raise OSError("the Variable backend is down")
            super().save(key, token)

    tokens = NoSharing()
    hook = QuickBooksHook(token_store=tokens)
    assert sum(len(p) for p in hook.query_all("Item")) == len(sandbox.state.qbo.entities["Item"])
    assert tokens.load("quickbooks_default_refresh_token") in sandbox.state.qbo.refresh_tokens
    assert "could not share the access token" in caplog.text
