"""Sliding-window rate limits the sandbox enforces the way the vendors do (429 + Retry-After)."""

from __future__ import annotations

import math
import threading
import time
from collections import deque


class SlidingWindowLimit:
    """At most ``calls`` per ``seconds`` per key; ``check`` returns seconds to wait when over."""

    def __init__(self, calls: int, seconds: float, *, clock=time.monotonic):
        self.calls = calls
        self.seconds = seconds
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self.rejected = 0

    def check(self, key: str) -> float | None:
        if self.calls <= 0:
            return None
        now = self._clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.seconds:
                hits.popleft()
            if len(hits) >= self.calls:
                self.rejected += 1
                return max(0.0, hits[0] + self.seconds - now)
            hits.append(now)
            return None

    def remaining(self, key: str) -> int:
        """Calls left in the current window for ``key`` (what the vendors' "remaining" headers say)."""
        if self.calls <= 0:
            return 0
        now = self._clock()
        with self._lock:
            hits = self._hits.get(key) or deque()
            return max(0, self.calls - sum(1 for hit in hits if hit > now - self.seconds))


def retry_after_header(wait: float) -> str:
    return str(max(1, math.ceil(wait)))
