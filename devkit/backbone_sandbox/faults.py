"""Fault switches: tests arm them through ``POST /_sandbox/faults`` to make a vendor misbehave."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

FaultKind = Literal["status", "slow", "slow_response", "malformed", "truncated", "reset", "empty_page", "repeat_cursor"]
"""``slow`` delays before the endpoint runs; ``slow_response`` lets it run (the write happens) and
then delays the answer, like a vendor that commits and times out on the way back."""


class FaultRule(BaseModel):
    """Misbehave on the next ``times`` requests whose method and path match."""

    kind: FaultKind
    path_contains: str = ""
    method: str | None = None
    times: int = 1
    status: int = 500
    retry_after: float | None = None
    delay_seconds: float = 0.0


@dataclass
class _Armed:
    rule: FaultRule
    remaining: int


class FaultBoard:
    """Armed faults; each request consumes at most one."""

    def __init__(self) -> None:
        self._armed: list[_Armed] = []
        self._lock = threading.Lock()
        self.fired: dict[str, int] = {}

    def arm(self, rules: list[FaultRule]) -> None:
        with self._lock:
            self._armed.extend(_Armed(rule, rule.times) for rule in rules)

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    def take(self, method: str, path: str, *, kinds: tuple[str, ...] | None = None) -> FaultRule | None:
        with self._lock:
            for armed in self._armed:
                rule = armed.rule
                if kinds is not None and rule.kind not in kinds:
                    continue
                if armed.remaining > 0 and rule.path_contains in path and (rule.method is None or rule.method.upper() == method):
                    armed.remaining -= 1
                    self.fired[rule.kind] = self.fired.get(rule.kind, 0) + 1
                    return rule
        return None


# Faults applied before the endpoint runs; the paging faults are applied by the endpoints.
TRANSPORT_KINDS = ("status", "slow", "malformed", "truncated", "reset")


async def apply_transport_fault(board: FaultBoard, request: Request) -> Response | None:
    rule = board.take(request.method, request.url.path, kinds=TRANSPORT_KINDS)
    if rule is None:
        return None
    if rule.kind == "slow":
        await asyncio.sleep(rule.delay_seconds)
        return None
    if rule.kind == "status":
        headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
        return JSONResponse(
            {"status": "error", "message": f"injected fault {rule.status}", "category": "INJECTED"},
            status_code=rule.status,
            headers=headers,
        )
    if rule.kind == "malformed":
        return Response('{"results": [{"id": "1", "properties": ', media_type="application/json")
    if rule.kind == "truncated":
        return Response("<html>502 Bad Gateway</html>", media_type="application/json")
    # "reset": promise a body, send a fragment; the server then drops the connection mid-answer.
    return Response('{"results": [', media_type="application/json", headers={"content-length": "4096"})
