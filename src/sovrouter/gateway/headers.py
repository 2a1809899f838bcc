"""What the gateway reads from a request besides the API key: the declared data class, a bounded body."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Message

from sovrouter.contracts import DATA_CLASS_ORDER, DataClass
from sovrouter.errors import InvalidRequestError, RequestTooLargeError


def limited(request: Request, limit: int, what: str = "request body") -> Request:
    """``request`` whose body stream raises :class:`RequestTooLargeError` once more than ``limit`` bytes have
    arrived, whatever ``Content-Length`` said or whether it was sent: a chunked body is refused while it streams,
    never buffered (or spooled to disk, for an upload) in full first."""
    receive = request.receive
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise RequestTooLargeError(f"{what} exceeds {limit} bytes")
        return message

    return Request(request.scope, counted)


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refused past ``limit`` bytes: by ``Content-Length`` before reading anything, else while it
    streams in (:func:`limited`)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise InvalidRequestError("invalid Content-Length header")
        if int(declared) > limit:
            raise RequestTooLargeError(f"request body exceeds {limit} bytes")
    return await limited(request, limit).body()


def data_class_header(value: str | None) -> DataClass:
    """The declared data class of ``X-Data-Class`` (``public`` when absent); anything else is a 400."""
    if value is None:
        return "public"
    v = value.strip().lower()
    if v not in DATA_CLASS_ORDER:
        raise InvalidRequestError("invalid X-Data-Class header: expected one of " + ", ".join(DATA_CLASS_ORDER),
                                  param="X-Data-Class")
    return v
