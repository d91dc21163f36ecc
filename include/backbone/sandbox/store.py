"""What sandbox stores share: a lock left out when the state is pickled, and a rotating-token OAuth server."""

from __future__ import annotations

import base64
import secrets
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

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
    """An OAuth2 token server whose refresh tokens rotate: each one works once (QuickBooks, Xero).

    The store using it sets ``refresh_tokens``, ``access_tokens`` and ``token_refreshes`` in its
    ``__init__`` (so they are pickled with it) and names its tokens and answer with the class fields.
    """

    token_prefix: str
    access_lifetime: timedelta
    token_answer: dict[str, Any]
    """Fields the vendor adds to every token answer (token type, scope, ...)."""
    _lock: threading.Lock
    refresh_tokens: set[str]
    access_tokens: dict[str, datetime]
    token_refreshes: int

    def refresh(self, refresh_token: str) -> dict[str, Any] | None:
        with self._lock:
            if refresh_token not in self.refresh_tokens:
                return None
            self.refresh_tokens.discard(refresh_token)
            self.token_refreshes += 1
            new_refresh = f"sandbox-{self.token_prefix}-refresh-{self.token_refreshes}-{secrets.token_hex(4)}"
            self.refresh_tokens.add(new_refresh)
            access = f"{self.token_prefix}-access-{secrets.token_hex(16)}"
            self.access_tokens[access] = datetime.now(UTC) + self.access_lifetime
            return {**self.token_answer, "access_token": access, "expires_in": int(self.access_lifetime.total_seconds()), "refresh_token": new_refresh}

    def token_valid(self, token: str) -> bool:
        expiry = self.access_tokens.get(token)
        return expiry is not None and expiry > datetime.now(UTC)

    def token_endpoint(self, authorization: str | None, grant_type: str, refresh_token: str, *, client_id: str, client_secret: str, bad_client_status: int) -> JSONResponse:
        """The refresh-token grant with the client in Basic auth, answered as the vendor does."""
        if authorization != "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode():
            return JSONResponse({"error": "invalid_client"}, status_code=bad_client_status)
        if grant_type != "refresh_token":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        issued = self.refresh(refresh_token)
        if issued is None:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        return JSONResponse(issued)
