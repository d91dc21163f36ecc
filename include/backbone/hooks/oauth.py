"""OAuth2 with rotating refresh tokens (QuickBooks Online, Xero): where the newest token is kept,
and how an access token is refreshed and shared between tasks."""

from __future__ import annotations

import json
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


ACCESS_TOKEN_MARGIN_SECONDS = 300
"""An access token is used until this long before its expiry (at least its first minute), then a new one is fetched."""


def token_variable_names(*conn_ids: str) -> tuple[str, ...]:
    """The keys a rotating-OAuth hook writes in its token store, for each Connection: the newest
    refresh token and the access token the Connection's tasks share."""
    return tuple(f"{conn_id}_{kind}" for conn_id in conn_ids for kind in ("refresh_token", "access_token"))


class TokenStore(Protocol):
    """Where the newest OAuth refresh token, and the access token tasks share, are kept between runs."""

    def load(self, key: str) -> str | None: ...

    def save(self, key: str, token: str) -> None: ...

    def lock(self, key: str) -> AbstractContextManager[None]:
        """Held around one refresh: one refresh of a Connection at a time, across workers."""
        ...


class AirflowVariableTokenStore:
    """Keeps the rotated refresh token in an Airflow Variable named ``<conn_id>_refresh_token``, and
    the access token (with its expiry) in ``<conn_id>_access_token``.

    Workers cannot write Connections in Airflow 3 (the Task SDK offers no such call), but they can
    write Variables through the execution API; Variables are Fernet-encrypted at rest and a key
    containing "token" is masked in logs and the UI. The Connection keeps the first refresh token.
    """

    DESCRIPTION = "OAuth token of this Connection (the newest refresh token, or the access token its tasks share); written by its hook"

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
    whose ``refresh_token`` extra is the first refresh token; rotated ones go to ``token_store``.

    The access token is shared through ``token_store`` too: a task takes the one an earlier task
    stored until ``ACCESS_TOKEN_MARGIN_SECONDS`` before it expires, so the refresh token is
    spent about once an access-token lifetime (QuickBooks 1 hour, Xero 30 minutes) instead of once
    a task. Intuit asks for exactly that ("access tokens are valid for one hour", reuse them until
    then: Intuit's blog "OAuth token management done the right way", 2024-06-03), and it narrows
    the one window nothing can close: a worker killed after the vendor rotated the refresh token
    and before the new one was stored leaves the Connection to be reconnected by a person, since
    QuickBooks documents no grace for a used refresh token.
    """

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
    _access_use_until: float = 0.0
    """Wall-clock time (``time.time()``, as tasks on other hosts share it) until which ``_access_token`` is used."""

    @property
    def token_key(self) -> str:
        return f"{self.conn_id}_refresh_token"

    @property
    def access_token_key(self) -> str:
        return f"{self.conn_id}_access_token"

    @cached_property
    def auth(self) -> RefreshingBearerAuth:
        """The ``requests`` auth every call of the hook sends with (token added, one refresh on 401)."""
        return RefreshingBearerAuth(self.access_token)

    def access_token(self, *, force_refresh: bool = False) -> str:
        """A usable access token: this hook's own, else the one the Connection's tasks share, else a
        new one from the vendor. ``force_refresh`` (the vendor refused this hook's token) never gives
        that token back: it takes a newer shared one, or fetches one (always, when the hook had none)."""
        if self._token_lock is None:
            self._token_lock = threading.Lock()
        with self._token_lock:
            if not force_refresh and self._access_token is not None and time.time() < self._access_use_until:
                return self._access_token
            refused = self._access_token if force_refresh else None
            may_share = not (force_refresh and refused is None)
            if not (may_share and self._adopt_shared_access_token(refused)):
                with self.token_store.lock(self.token_key):
                    # another task may have refreshed while this one waited for the lock
                    if not (may_share and self._adopt_shared_access_token(refused)):
                        self._refresh_access_token()
            assert self._access_token is not None
            return self._access_token

    def _adopt_shared_access_token(self, refused: str | None) -> bool:
        """Take the access token the Connection's tasks share, when it is usable and not ``refused``."""
        stored = self.token_store.load(self.access_token_key)
        if not stored:
            return False
        try:
            shared = json.loads(stored)
            token, use_until = str(shared["access_token"]), float(shared["use_until"])
        except (ValueError, KeyError, TypeError):
            log.warning("the shared access token of %s is unreadable; fetching a new one", self.conn_id)
            return False
        if token == refused or time.time() >= use_until:
            return False
        from airflow.sdk.log import mask_secret

        mask_secret(token)
        self._take_access_token(shared)
        return True

    def _take_access_token(self, record: dict[str, Any]) -> None:
        """Use the access token of ``record`` (``access_token``, ``use_until``, optional ``scope``),
        the shape the token store shares it in."""
        self._access_token, self._access_use_until = str(record["access_token"]), float(record["use_until"])
        if isinstance(record.get("scope"), str):
            self.granted_scopes = frozenset(record["scope"].split())

    def _refresh_access_token(self) -> None:
        """Refresh, called under the Connection's lock; reads the newest refresh token inside it.

        Order matters for rotating tokens: the new refresh token is stored *before* the new access
        token is shared or used, so a crash after storing loses nothing. If the answer is lost on
        the way (a timeout after the vendor rotated), the retry sends the same refresh token again,
        which Xero honours for 30 minutes; a token the vendor refuses for good raises
        :class:`ReauthorisationRequired` with the steps to reconnect.
        """
        refresh_token = self.token_store.load(self.token_key) or self.extras.get("refresh_token")
        body = self._exchange(refresh_token)
        new_refresh = body.get("refresh_token")
        if new_refresh and new_refresh != refresh_token:
            from airflow.sdk.log import mask_secret

            mask_secret(new_refresh)
            self.token_store.save(self.token_key, new_refresh)
            log.info("%s rotated the refresh token of %s; stored the new one", self.system_name, self.conn_id)
        lifetime = int(body.get("expires_in", 3600))
        record = {"access_token": body["access_token"], "use_until": time.time() + max(60, lifetime - ACCESS_TOKEN_MARGIN_SECONDS)}
        if isinstance(body.get("scope"), str):
            record["scope"] = body["scope"]
        self._take_access_token(record)
        try:
            self.token_store.save(self.access_token_key, json.dumps(record))
        except Exception:  # noqa: BLE001 - sharing only spares later tasks a refresh; this task has its token
            log.warning("could not share the access token of %s; later tasks will refresh their own", self.conn_id, exc_info=True)

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
