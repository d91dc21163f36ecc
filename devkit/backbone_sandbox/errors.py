"""Parameter and body mistakes answered in each vendor's own envelope, never FastAPI's default
``422 {"detail": [...]}``: a hook that sends something the vendor would reject must meet the
vendor's answer here, so its error handling is tested against what it will really read."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

OAUTH_TOKEN_PATHS = ("/oauth2/v1/tokens/bearer", "/connect/token", "/services/oauth2/token")


def describe(exc: RequestValidationError) -> str:
    """One sentence naming each bad parameter or body field, the way a vendor's message would."""
    parts = []
    for error in exc.errors():
        where = [str(p) for p in error.get("loc", ()) if p not in ("query", "body", "path", "header")]
        parts.append(f"{'.'.join(where) or 'request'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def answer_bad_requests(
    app: FastAPI, respond: Callable[[Request, str], Response], *, not_found: Callable[[Request, str], Response] | None = None
) -> None:
    """Route validation errors of ``app`` to ``respond`` (the vendor's envelope, status 400); OAuth
    token endpoints answer as RFC 6749 §5.2 says: ``{"error": "invalid_request"}``."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path.endswith(OAUTH_TOKEN_PATHS):
            return JSONResponse({"error": "invalid_request", "error_description": describe(exc)}, status_code=400)
        return respond(request, describe(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        """An unknown path or method in the vendor's envelope too (not ``{"detail": "Not Found"}``)."""
        if exc.status_code not in (404, 405):
            return await http_exception_handler(request, exc)
        default = {404: "Not Found", 405: "Method Not Allowed"}[exc.status_code]
        detail = str(exc.detail) if exc.detail and exc.detail != default else None
        words = detail or (
            f"The requested resource {request.url.path} does not exist"
            if exc.status_code == 404
            else f"{request.method} is not allowed on {request.url.path}"
        )
        response = (not_found or respond)(request, words)
        response.status_code = exc.status_code
        return response
