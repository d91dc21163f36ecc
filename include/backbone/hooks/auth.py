"""How a vendor call proves who it is: ``requests`` auth classes, so request code never touches a
token or a header. One class per scheme; a hook's ``auth`` picks one.

- :class:`BearerTokenAuth`: a fixed token from the Connection (HubSpot private apps, the PSA).
- :class:`ApiKeyBasicAuth`: an API key as the Basic user name with a throw-away password (BambooHR).
- :class:`RefreshingBearerAuth`: a token that expires; refreshed once on a 401 and the request sent
  again (QuickBooks and Xero OAuth with rotating refresh tokens, the Salesforce session).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from requests.auth import AuthBase, HTTPBasicAuth


class BearerTokenAuth(AuthBase):
    """``Authorization: Bearer <token>`` with a token that does not change while the hook lives."""

    def __init__(self, token: str):
        self.token = token

    def __call__(self, request: Any) -> Any:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class ApiKeyBasicAuth(HTTPBasicAuth):
    """HTTP Basic with the API key as user name and a password the vendor ignores (BambooHR: "x")."""

    def __init__(self, api_key: str, password: str = "x"):
        super().__init__(api_key, password)


class RefreshingBearerAuth(AuthBase):
    """``requests`` auth for an OAuth bearer token that expires: request code never touches tokens.

    Adds ``Authorization: Bearer <token>`` to each request; when the answer is 401 (the token
    expired early or was revoked) it asks for a fresh token once and sends the request again.
    A second 401 is returned as it is, for the caller's error handling to judge.
    """

    def __init__(self, token: Callable[..., str]):
        self.token = token
        """``token()`` gives the current access token, ``token(force_refresh=True)`` a new one."""

    def __call__(self, request: Any) -> Any:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        request.register_hook("response", self._resend_once_on_401)
        return request

    def _resend_once_on_401(self, response: Any, **kwargs: Any) -> Any:
        if response.status_code != 401 or getattr(response.request, "bearer_refreshed", False):
            return response
        response.content  # noqa: B018 - read the body so the connection can be reused
        response.close()
        retry = response.request.copy()
        retry.headers["Authorization"] = f"Bearer {self.token(force_refresh=True)}"
        retry.bearer_refreshed = True
        answer = response.connection.send(retry, **kwargs)
        answer.history.append(response)
        answer.request = retry
        return answer
