"""Parameter and body mistakes answered in each vendor's own envelope, never FastAPI's default
``422 {"detail": [...]}``: a hook that sends something the vendor would reject must meet the
vendor's answer here, so its error handling is tested against what it will really read."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

OAUTH_TOKEN_PATHS = ("/oauth2/v1/tokens/bearer", "/connect/token", "/services/oauth2/token")


def describe(exc: RequestValidationError) -> str:
    """One sentence naming each bad parameter or body field, the way a vendor's message would."""
    parts = []
    for error in exc.errors():
        where = [str(p) for p in error.get("loc", ()) if p not in ("query", "body", "path", "header")]
        parts.append(f"{'.'.join(where) or 'request'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def answer_bad_requests(app: FastAPI, respond: Callable[[Request, str], Response]) -> None:
    """Route validation errors of ``app`` to ``respond`` (the vendor's envelope, status 400); OAuth
    token endpoints answer as RFC 6749 §5.2 says: ``{"error": "invalid_request"}``."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path.endswith(OAUTH_TOKEN_PATHS):
            return JSONResponse({"error": "invalid_request", "error_description": describe(exc)}, status_code=400)
        return respond(request, describe(exc))
