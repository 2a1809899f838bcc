"""What the gateway reads from a request besides the API key: the declared data class, a bounded body."""

from __future__ import annotations

from starlette.requests import Request

from sovrouter.contracts import DATA_CLASS_ORDER, DataClass
from sovrouter.errors import InvalidRequestError, RequestTooLargeError


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refused with :class:`RequestTooLargeError` past ``limit`` bytes: by ``Content-Length`` before
    reading anything, and by counting while a chunked body streams in (never buffered past the limit)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise InvalidRequestError("invalid Content-Length header")
        if int(declared) > limit:
            raise RequestTooLargeError(f"request body exceeds {limit} bytes")
        raw = await request.body()  # the server never delivers more than Content-Length
    else:
        buf = bytearray()
        async for part in request.stream():
            buf += part
            if len(buf) > limit:
                raise RequestTooLargeError(f"request body exceeds {limit} bytes")
        raw = bytes(buf)
    if len(raw) > limit:
        raise RequestTooLargeError(f"request body exceeds {limit} bytes")
    return raw


def data_class_header(value: str | None) -> DataClass:
    """The declared data class of ``X-Data-Class`` (``public`` when absent); anything else is a 400."""
    if value is None:
        return "public"
    v = value.strip().lower()
    if v not in DATA_CLASS_ORDER:
        raise InvalidRequestError("invalid X-Data-Class header: expected one of " + ", ".join(DATA_CLASS_ORDER),
                                  param="X-Data-Class")
    return v
