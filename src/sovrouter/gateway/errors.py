"""Errors at the gateway boundary: every error leaves as OpenAI-style JSON with the right status.

``{"error": {"message", "type", "param", "code"}}`` and nothing else: no stack trace, no prompt text, no key.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from sovrouter.errors import SovrouterError

log = logging.getLogger("sovrouter.gateway")

_HTTP_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
               405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error"}


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}}).encode()


def error_response(exc: SovrouterError, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(exc.to_openai()).encode(), status_code=exc.status,
                    media_type="application/json", headers=headers)


def internal_error_response(exc: BaseException, headers: dict[str, str] | None = None) -> Response:
    # Log the class only: the message of an unexpected error may quote request content.
    log.error("unexpected error at the gateway boundary: %s", type(exc).__name__)
    # a fresh request id when the caller has none: Starlette answers this outside the request-id middleware
    headers = {"x-sovrouter-request-id": uuid.uuid4().hex, **(headers or {})}
    return Response(error_body("internal server error", "server_error", "internal_error"), status_code=500,
                    media_type="application/json", headers=headers)


def install_handlers(app: FastAPI) -> None:
    """Framework-level errors (unknown path, wrong method, FastAPI validation) in the same OpenAI shape."""

    async def on_sovrouter(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SovrouterError)
        return error_response(exc)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors: list[Any] = list(exc.errors())
        first = errors[0] if errors else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body") or None
        msg = f"invalid request: {first.get('msg', 'invalid value')}"
        return Response(error_body(msg, "invalid_request_error", "invalid_request", where), status_code=400,
                        media_type="application/json")

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        type_ = _HTTP_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
        msg = "not found" if status == 404 else "method not allowed" if status == 405 else "request failed"
        code = {404: "not_found", 405: "method_not_allowed"}.get(status, type_)
        return Response(error_body(msg, type_, code), status_code=status,
                        media_type="application/json", headers=getattr(exc, "headers", None))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        return internal_error_response(exc)

    app.add_exception_handler(SovrouterError, on_sovrouter)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
