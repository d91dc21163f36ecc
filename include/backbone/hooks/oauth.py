"""OAuth2 with rotating refresh tokens (QuickBooks Online, Xero): where the newest token is kept,
and how an access token is refreshed."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import cached_property
from typing import Any, Protocol

from backbone.hooks.auth import RefreshingBearerAuth
from backbone.http import FatalApiError, check_response

log = logging.getLogger(__name__)


class ReauthorisationRequired(FatalApiError):
    """The vendor refused the refresh token for good: no retry can help, a person must reconnect
    the app. Like every ``FatalApiError`` the task fails at once (no retries) and the run's failure
    alert goes out within the minute, carrying these steps; flows let it through even where they
    catch a single record's rejection, since no other record could be sent either."""


class TokenStore(Protocol):
    """Where the newest OAuth refresh token is kept between runs (it rotates about daily)."""

    def load(self, key: str) -> str | None: ...

    def save(self, key: str, token: str) -> None: ...

    def lock(self, key: str) -> AbstractContextManager[None]:
        """Held around one refresh: one refresh of a Connection at a time, across workers."""
        ...


class AirflowVariableTokenStore:
    """Keeps the rotated refresh token in an Airflow Variable named ``<conn_id>_refresh_token``.

    Workers cannot write Connections in Airflow 3 (the Task SDK offers no such call), but they can
    write Variables through the execution API; Variables are Fernet-encrypted at rest and a key
    containing "token" is masked in logs and the UI. The Connection keeps the first refresh token.
    """

    DESCRIPTION = "Newest OAuth refresh token of this Connection (rotated by the vendor; written by its hook)"

    def load(self, key: str) -> str | None:
        from backbone.variables import get_variable

        try:
            return get_variable(key)
        except Exception:  # noqa: BLE001 - no Variable backend reachable: fall back to the Connection
            log.warning("no Variable backend reachable for %s", key, exc_info=True)
            return None

    def save(self, key: str, token: str) -> None:
        from backbone.variables import set_variable

        set_variable(key, token, description=self.DESCRIPTION)

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """A row lock in the accounting warehouse (``ops.flow_lock``, waiting up to two minutes), so
        two workers never spend the same rotating refresh token; a thread lock when no warehouse
        is configured (a one-off script)."""
        from backbone.settings import load_settings
        from backbone.warehouse.db import engine_for
        from backbone.warehouse.ops import waiting_lock

        try:
            engine = engine_for(load_settings().accounting_warehouse_conn_id)
        except Exception:  # noqa: BLE001 - no warehouse Connection here: fall back to this process
            log.debug("no warehouse for the token lock of %s", key, exc_info=True)
            with _PROCESS_LOCK:
                yield
            return
        with waiting_lock(engine, f"oauth:{key}", timeout_seconds=120):
            yield


_PROCESS_LOCK = threading.Lock()


class MemoryTokenStore:
    """Tokens kept in memory: for tests and one-off scripts."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self._lock = threading.Lock()

    def load(self, key: str) -> str | None:
        return self.tokens.get(key)

    def save(self, key: str, token: str) -> None:
        self.tokens[key] = token

    def lock(self, key: str) -> AbstractContextManager[None]:
        return self._lock


class RotatingOAuthMixin:
    """For a hook whose Connection holds an OAuth client (login = client id, password = secret) and
    whose ``refresh_token`` extra is the first refresh token; rotated ones go to ``token_store``."""

    default_token_url = ""
    system_name: str
    conn_id: str
    token_store: TokenStore
    connection: Any
    extras: dict[str, Any]
    retry_policy: Any
    timeout: float
    _token_lock: threading.Lock | None = None
    _access_token: str | None = None
    _access_expires: float = 0.0

    @property
    def token_key(self) -> str:
        return f"{self.conn_id}_refresh_token"

    @cached_property
    def auth(self) -> RefreshingBearerAuth:
        """The ``requests`` auth every call of the hook sends with (token added, one refresh on 401)."""
        return RefreshingBearerAuth(self.access_token)

    def access_token(self, *, force_refresh: bool = False) -> str:
        if self._token_lock is None:
            self._token_lock = threading.Lock()
        with self._token_lock:
            if force_refresh or self._access_token is None or time.monotonic() >= self._access_expires:
                self._refresh_access_token()
            assert self._access_token is not None
            return self._access_token

    def _refresh_access_token(self) -> None:
        """Refresh under the Connection's lock, reading the newest refresh token inside it.

        Order matters for rotating tokens: the new refresh token is stored *before* the new access
        token is used, so a crash after storing loses nothing. If the answer is lost on the way
        (a timeout after the vendor rotated), the retry sends the same refresh token again, which
        Xero honours for 30 minutes; a token the vendor refuses for good raises
        :class:`ReauthorisationRequired` with the steps to reconnect.
        """
        with self.token_store.lock(self.token_key):
            refresh_token = self.token_store.load(self.token_key) or self.extras.get("refresh_token")
            body = self._exchange(refresh_token)
            new_refresh = body.get("refresh_token")
            if new_refresh and new_refresh != refresh_token:
                from airflow.sdk.log import mask_secret

                mask_secret(new_refresh)
                self.token_store.save(self.token_key, new_refresh)
                log.info("%s rotated the refresh token of %s; stored the new one", self.system_name, self.conn_id)
        if isinstance(body.get("scope"), str):
            self.granted_scopes = frozenset(body["scope"].split())
        self._access_token = body["access_token"]
        self._access_expires = time.monotonic() + max(60, int(body.get("expires_in", 3600)) - 300)

    def _exchange(self, refresh_token: str | None) -> dict[str, Any]:
        import requests
        from airflow.sdk.log import mask_secret

        conn = self.connection
        if not (conn.login and conn.password and refresh_token):
            raise FatalApiError(f"Connection {self.conn_id!r} needs login (client id), password (client secret) and a refresh_token extra")
        url = self.extras.get("token_url") or self.default_token_url

        def attempt() -> Any:
            response = requests.post(
                url,
                data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                auth=(conn.login, conn.password),
                headers={"Accept": "application/json"},
                timeout=self.timeout,
            )
            if response.status_code == 400:
                raise ReauthorisationRequired(
                    f"{self.system_name} refused the refresh token of Connection {self.conn_id!r} ({response.text[:200]}): it was revoked, "
                    "expired, or already used. Nothing more can be sent until someone reconnects: (1) reconnect the app to "
                    f"{self.system_name} "
                    f"(its OAuth consent flow) to get a new refresh token; (2) set the Airflow Variable {self.token_key!r} to it "
                    f"(or delete that Variable and put the token in the Connection's refresh_token extra); (3) clear the failed task. "
                    "Pending work stays pending and goes out with the next run.",
                    status=400,
                )
            return check_response(response, system=f"{self.system_name} OAuth")

        body = self.retry_policy.call(attempt, description=f"{self.system_name} OAuth token refresh")
        mask_secret(body["access_token"])
        return body
