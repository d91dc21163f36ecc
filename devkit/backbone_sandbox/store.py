"""What sandbox stores share: a lock left out when the state is pickled, and a rotating-token OAuth server."""

from __future__ import annotations

import base64
import secrets
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Form, Request
from fastapi.responses import JSONResponse


class PicklableLockMixin:
    """Pickle everything but ``_lock``; a restored store gets a fresh lock."""

    _lock: threading.Lock

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class RotatingTokenIssuer:
    """An OAuth2 token server whose refresh tokens rotate (QuickBooks, Xero).

    A used refresh token is replaced by a new one. Within ``refresh_grace`` of its use it may be
    presented again and answers with the same successor (and a fresh access token): Xero keeps a
    used refresh token valid for 30 minutes "in case the initial response containing your new
    Refresh and Access tokens is lost" (Xero's developer community, official reply on
    refresh-token expiry; thread 105714701). QuickBooks states no such window, so its grace is 0:
    a used token is refused at once, which is the strict case the hooks must survive too.

    The store using it sets ``refresh_tokens``, ``access_tokens`` and ``token_refreshes`` in its
    ``__init__`` (so they are pickled with it) and names its tokens and answer with the class fields.
    """

    token_prefix: str
    access_lifetime: timedelta
    refresh_grace: timedelta = timedelta(0)
    token_answer: dict[str, Any]
    """Fields the vendor adds to every token answer (token type, scope, ...)."""
    _lock: threading.Lock
    refresh_tokens: set[str]
    access_tokens: dict[str, datetime]
    token_refreshes: int

    def refresh(self, refresh_token: str) -> dict[str, Any] | None:
        with self._lock:
            superseded = getattr(self, "superseded_tokens", None)
            if superseded is None:
                superseded = self.superseded_tokens = {}
            if refresh_token in self.refresh_tokens:
                self.refresh_tokens.discard(refresh_token)
                self.token_refreshes += 1
                new_refresh = f"sandbox-{self.token_prefix}-refresh-{self.token_refreshes}-{secrets.token_hex(4)}"
                self.refresh_tokens.add(new_refresh)
                superseded[refresh_token] = (new_refresh, datetime.now(UTC))
            elif refresh_token in superseded and datetime.now(UTC) - superseded[refresh_token][1] < self.refresh_grace:
                new_refresh = superseded[refresh_token][0]
                self.grace_replays = getattr(self, "grace_replays", 0) + 1
                if new_refresh not in self.refresh_tokens:  # the successor was itself used since: this replay is too late
                    return None
            else:
                return None
            access = f"{self.token_prefix}-access-{secrets.token_hex(16)}"
            self.access_tokens[access] = datetime.now(UTC) + self.access_lifetime
            return {
                **self.token_answer,
                "access_token": access,
                "expires_in": int(self.access_lifetime.total_seconds()),
                "refresh_token": new_refresh,
            }

    def token_valid(self, token: str) -> bool:
        expiry = self.access_tokens.get(token)
        return expiry is not None and expiry > datetime.now(UTC)

    def token_endpoint(
        self,
        authorization: str | None,
        grant_type: str,
        refresh_token: str,
        *,
        client_id: str,
        client_secret: str,
        bad_client_status: int,
        body_client: tuple[str, str] = ("", ""),
    ) -> JSONResponse:
        """The refresh-token grant, answered as the vendor does. The client authenticates with HTTP
        Basic or with ``client_id`` and ``client_secret`` in the form body: RFC 6749 §2.3.1 lets a
        server accept both, and Intuit's and Xero's token endpoints do (their SDKs use either)."""
        if not client_authenticated(authorization, body_client, client_id=client_id, client_secret=client_secret):
            return JSONResponse({"error": "invalid_client"}, status_code=bad_client_status)
        if grant_type != "refresh_token":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        issued = self.refresh(refresh_token)
        if issued is None:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        return JSONResponse(issued)


def add_refresh_token_route(app: Any, path: str, issuer: RotatingTokenIssuer, *, client: tuple[str, str], bad_client_status: int) -> None:
    """The vendor's OAuth token endpoint at ``path``: the refresh-token grant, the client (id,
    secret) in Basic or in the form body."""

    @app.post(path)
    def token(
        request: Request,
        grant_type: str = Form(...),
        refresh_token: str = Form(""),
        client_id: str = Form(""),
        client_secret: str = Form(""),
    ) -> JSONResponse:
        return issuer.token_endpoint(
            request.headers.get("authorization"),
            grant_type,
            refresh_token,
            client_id=client[0],
            client_secret=client[1],
            bad_client_status=bad_client_status,
            body_client=(client_id, client_secret),
        )


def client_authenticated(authorization: str | None, body_client: tuple[str, str], *, client_id: str, client_secret: str) -> bool:
    """An OAuth client's credentials in the Basic header, or in the form body (not both different)."""
    basic = "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    in_header = authorization == basic
    in_body = body_client == (client_id, client_secret)
    if authorization and authorization.startswith("Basic ") and not in_header:
        return False
    return in_header or in_body


def dumps_any_depth(value: Any) -> str:
    """``json.dumps`` that also writes the deeply nested hostile records the fault suite plants
    (a real vendor's serialiser has no recursion limit)."""
    import json
    import sys

    try:
        return json.dumps(value)
    except RecursionError:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 12_000))
        try:
            return json.dumps(value)
        finally:
            sys.setrecursionlimit(limit)
