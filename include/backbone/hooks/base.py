"""What the JSON-over-HTTP vendor hooks share: base URL and session from a Connection, retries."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from backbone.hooks.auth import BearerTokenAuth
from backbone.http import RateLimiter, RetryPolicy, check_response
from backbone.settings import load_settings

if TYPE_CHECKING:
    import requests
    from airflow.sdk import Connection
    from requests.auth import AuthBase


def base_url_of(conn: Connection, default: str) -> str:
    """The Connection's base URL: ``host`` may hold a full URL, or a host with ``schema``/``port``."""
    host = (conn.host or "").strip()
    if not host:
        return default.rstrip("/")
    if "://" in host:
        return host.rstrip("/")
    scheme = conn.schema or "https"
    port = f":{conn.port}" if conn.port else ""
    return f"{scheme}://{host}{port}".rstrip("/")


class JsonApiHook(BaseHook):
    """A JSON REST API; subclasses name the system, its auth, its limits and its response checks."""

    system_name = "api"
    default_base_url = ""

    def __init__(self, conn_id: str, *, retry_policy: RetryPolicy | None = None, session: requests.Session | None = None):
        super().__init__()
        self.conn_id = conn_id
        settings = load_settings()
        self.timeout = settings.http_timeout_seconds
        self.retry_policy = retry_policy or RetryPolicy(
            max_attempts=settings.http_max_attempts, max_backoff_seconds=settings.http_max_backoff_seconds
        )
        self._session = session

    @cached_property
    def connection(self) -> Connection:
        return self.get_connection(self.conn_id)

    @cached_property
    def extras(self) -> dict[str, Any]:
        return dict(self.connection.extra_dejson or {})

    def budget(self, extra: str, *, setting: float | None, default: float) -> float:
        """A rate or concurrency limit, read the same way by every hook: the Connection's extra
        ``extra``, else the ``BACKBONE_*`` setting (when there is one), else the vendor's own default."""
        value = self.extras.get(extra)
        if value in (None, ""):
            value = setting if setting is not None else default
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"Connection {self.conn_id!r}: extra {extra!r} must be a number, not {value!r}") from None
        if number <= 0:
            raise ValueError(f"Connection {self.conn_id!r}: extra {extra!r} must be positive, not {value!r}")
        return number

    @cached_property
    def base_url(self) -> str:
        return base_url_of(self.connection, self.default_base_url)

    @cached_property
    def auth(self) -> AuthBase:
        """How each request proves who it is (``backbone.hooks.auth``): here a fixed bearer token from
        the Connection's password; hooks with other schemes override this, and nothing else."""
        token = self.connection.password
        if not token:
            raise ValueError(f"Connection {self.conn_id!r} has no token: put the API token in its password field")
        return BearerTokenAuth(token)

    def get_conn(self) -> requests.Session:
        """The HTTP session of this hook (built once per hook instance; auth is added per request)."""
        if self._session is None:
            import requests

            session = requests.Session()
            session.headers.update({"Accept": "application/json"})
            self._session = session
        return self._session

    def url_for(self, path: str) -> str:
        """The full URL of ``path`` (a hook whose API lives elsewhere than its base URL overrides this)."""
        return f"{self.base_url}{path}"

    RATE_LIMIT_HEADERS: tuple[tuple[str, str], ...] = ()
    """(what it says, response header) pairs of the vendor's documented rate-limit headers."""
    REQUIRED_SCOPES: frozenset[str] = frozenset()
    """OAuth scopes the flows need; ``x.read`` is also satisfied by ``x``."""
    granted_scopes: frozenset[str] | None = None
    """The scopes the vendor's last token answer granted (None when it does not say)."""
    last_response_headers: Any = None

    def headroom(self) -> str:
        """The vendor's rate-limit headers of the last answer, in words (``connection_check``)."""
        if not self.RATE_LIMIT_HEADERS:
            return "rate-limit headroom: not published by the vendor"
        headers = self.last_response_headers or {}
        found = [f"{label} {headers[name]}" for label, name in self.RATE_LIMIT_HEADERS if name in headers]
        return "rate-limit headroom: " + (", ".join(found) if found else "no limit headers on the last answer")

    def missing_scopes(self) -> list[str]:
        """Scopes the flows need that the last token answer did not grant (empty when it names none)."""
        if self.granted_scopes is None:
            return []
        return sorted(
            scope
            for scope in self.REQUIRED_SCOPES
            if scope not in self.granted_scopes and scope.removesuffix(".read") not in self.granted_scopes
        )

    def before_send(self) -> None:
        """Called before every attempt: a hook that must stop before sending (a usage ceiling) raises here."""

    def validate_response(self, response: requests.Response) -> Any:
        """The one place an answer is judged: the decoded body, or the error class its status calls
        for. A vendor with its own signals (a daily-quota header, a usage header) overrides this."""
        return check_response(response, system=self.system_name)

    def request(
        self,
        method: str,
        path: str,
        *,
        limiter: RateLimiter | None = None,
        concurrency: AbstractContextManager[Any] | None = None,
        description: str | None = None,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> Any:
        """Send one call with the retry policy (``retry`` instead of the hook's, for a call that must
        not be repeated blindly); return decoded JSON (None for an empty body)."""
        return self.request_with_status(
            method, path, limiter=limiter, concurrency=concurrency, description=description, retry=retry, **kwargs
        )[1]

    def request_with_status(
        self,
        method: str,
        path: str,
        *,
        limiter: RateLimiter | None = None,
        concurrency: AbstractContextManager[Any] | None = None,
        description: str | None = None,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any]:
        """The request pipeline every vendor call goes through: usage check, rate budget,
        concurrency cap, auth, the vendor's response check, and retries of what is retriable.
        Also returns the HTTP status (201 vs 200 matters to upserts)."""
        session = self.get_conn()
        kwargs.setdefault("timeout", self.timeout)

        def attempt() -> tuple[int, Any]:
            self.before_send()
            if limiter is not None:
                limiter.acquire()
            with concurrency or nullcontext():
                response = session.request(method, self.url_for(path), auth=self.auth, **kwargs)
            self.last_response_headers = response.headers
            return response.status_code, self.validate_response(response)

        return (retry or self.retry_policy).call(attempt, description=description or f"{self.system_name} {method} {path}")
