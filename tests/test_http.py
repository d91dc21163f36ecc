"""The shared retry policy, rate budget and paging guard."""

from __future__ import annotations

import pytest

from backbone.http import FatalApiError, RateLimiter, RetriableApiError, RetryPolicy, parse_retry_after


def policy(sleeps: list[float], attempts: int = 4) -> RetryPolicy:
    return RetryPolicy(max_attempts=attempts, base_backoff_seconds=1, max_backoff_seconds=8, sleep=sleeps.append)


def test_retry_after_is_honoured_before_backoff():
    sleeps: list[float] = []
    outcomes = [RetriableApiError("429", status=429, retry_after=3), "ok"]

    def call():
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert policy(sleeps).call(call, description="t") == "ok"
    assert sleeps == [3]


def test_server_errors_back_off_exponentially_with_jitter_then_give_up():
    sleeps: list[float] = []

    def call():
        raise RetriableApiError("503", status=503)

    with pytest.raises(RetriableApiError, match="failed after 4 attempts"):
        policy(sleeps).call(call, description="t")
    assert len(sleeps) == 3
    for attempt, delay in enumerate(sleeps, start=1):
        ceiling = min(8, 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling


def test_fatal_errors_are_not_retried():
    sleeps: list[float] = []
    calls = []

    def call():
        calls.append(1)
        raise FatalApiError("401", status=401)

    with pytest.raises(FatalApiError):
        policy(sleeps).call(call, description="t")
    assert calls == [1] and sleeps == []


def test_retry_after_parsing():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None


def test_rate_limiter_spaces_calls_evenly():
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(4, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        limiter.acquire()
    assert now[0] == pytest.approx(1.0)
    assert slept == pytest.approx([0.25] * 4)
