"""HTTP plumbing every vendor hook shares: error split, retry policy, rate budget (paging: ``backbone.paging``).

The split follows what vendors mean: 429 and 5xx (and dropped connections, timeouts and
truncated bodies) are worth retrying, with ``Retry-After`` honoured when present and
exponential backoff with jitter otherwise; 401, 403 and every other 4xx fail at once with the
vendor's message, because repeating them cannot help.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

RETRIABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class ApiError(Exception):
    """A vendor call that did not give a usable answer."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class FatalApiError(ApiError, AirflowFailException):
    """Repeating the call cannot help (bad credentials, no permission, invalid request).

    It is also an ``AirflowFailException``: a task that lets it escape fails at once, without the
    DAG's retries (which would only delay the alert by their backoff, 35–70 minutes), and the run's
    failure alert goes out within the minute. Flows that judge one record at a time catch it for
    that record (``RejectedByAccounting``) and go on with the others."""


class RetriableApiError(ApiError):
    """Throttled, a server error, a dropped connection or a malformed body: try again later."""


class QuotaExhaustedError(ApiError):
    """The vendor's budget for a long period (a day) is used up. Waiting within the task cannot help
    and the request itself is fine: stop now, leave pending work pending for the next run or retry."""


class RepeatedCursorError(FatalApiError):
    """The vendor returned a cursor it had already returned: paging would never end."""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form); None when absent or unusable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def check_response(response: requests.Response, *, system: str) -> Any:
    """Return the decoded JSON body, or raise the error class the status calls for."""
    status = response.status_code
    where = f"{system} {response.request.method} {response.request.path_url.split('?')[0]}"
    if status in RETRIABLE_STATUS:
        raise RetriableApiError(
            f"{where} answered {status}: {_short(response.text)}",
            status=status,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    if status in (401, 403):
        raise FatalApiError(
            f"{where} answered {status}: the credentials in the Airflow Connection are missing, wrong or lack "
            f"the needed scope. Vendor said: {_short(response.text)}",
            status=status,
        )
    if status >= 400:
        raise FatalApiError(f"{where} answered {status}: {_short(response.text)}", status=status)
    if status == 204 or not response.content:
        return None
    try:
        return decode_json(response.text)
    except (json.JSONDecodeError, ValueError) as exc:
        raise RetriableApiError(f"{where} returned a body that is not valid JSON ({exc}): {_short(response.text, 120)}") from exc


MAX_JSON_DEPTH = 10_000
"""Nesting Python's JSON decoder is allowed for one body. Its default (the interpreter's recursion
limit, about 1,000) would make one deeply nested record fail the whole page; each record's own
depth is then judged by ``backbone.storable`` and the record quarantined, not the page."""
_decode_lock = threading.Lock()


def decode_json(text: str) -> Any:
    """``json.loads`` that reads bodies nested up to ``MAX_JSON_DEPTH`` deep instead of failing the page."""
    import sys

    try:
        return json.loads(text)
    except RecursionError:
        with _decode_lock:
            limit = sys.getrecursionlimit()
            sys.setrecursionlimit(max(limit, MAX_JSON_DEPTH + 100))
            try:
                return json.loads(text)
            except RecursionError:
                raise ValueError(f"the body is nested deeper than {MAX_JSON_DEPTH} levels") from None
            finally:
                sys.setrecursionlimit(limit)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to repeat a retriable call."""

    max_attempts: int = 6
    base_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def backoff(self, attempt: int, error: BaseException) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return min(retry_after, self.max_backoff_seconds)
        ceiling = min(self.max_backoff_seconds, self.base_backoff_seconds * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    def call(self, operation: Callable[[], Any], *, description: str) -> Any:
        """Run ``operation`` until it succeeds, fails fatally, or attempts run out."""
        import requests

        attempt = 0
        while True:
            attempt += 1
            try:
                return operation()
            except FatalApiError:
                raise
            except (RetriableApiError, requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                error = exc if isinstance(exc, RetriableApiError) else RetriableApiError(f"{description}: {exc}")
                if attempt >= self.max_attempts:
                    raise RetriableApiError(
                        f"{description} failed after {attempt} attempts; last error: {error}",
                        status=error.status,
                    ) from exc
                delay = self.backoff(attempt, error)
                log.warning("%s: attempt %d/%d failed (%s); retrying in %.1fs", description, attempt, self.max_attempts, error, delay)
                self.sleep(delay)


class RateLimiter:
    """Client-side budget: at most ``rate`` calls per second, spaced evenly, thread-safe."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next_slot = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self.interval
        wait = slot - now
        if wait > 0:
            self._sleep(wait)
