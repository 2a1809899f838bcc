"""``x-sovrouter-request-id`` on every response, not only on chat's.

Chat sets the id of its record itself (the id the record, the logs and the client share). Every other response
(the models list, files and batches, health, a framework 404/405) gets a fresh id here, so a client can always
quote one when it reports a problem. A pure ASGI middleware: it never buffers a body, streams included.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-sovrouter-request-id"


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp, new_id: Callable[[], str] | None = None) -> None:
        self.app = app
        self.new_id = new_id or (lambda: uuid.uuid4().hex)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == HEADER for name, _ in headers):
                    headers.append((HEADER, self.new_id().encode("ascii")))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)
