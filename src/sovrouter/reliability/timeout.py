"""Timeout wrapper: a total deadline per call, and for streams a first-token deadline too.

``generate`` must finish within ``total_s``. ``stream`` must yield its first chunk within ``first_token_s`` and
finish within ``total_s`` (both measured from the start of the call, on the event loop's monotonic clock).
On expiry the inner call is cancelled and :class:`UpstreamTimeoutError` raised. The deadline is applied to each
step of the inner stream, never across a ``yield``, so the consumer's own time is never interrupted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from sovrouter.contracts import Candidate, ModelCall, ModelResult, StreamChunk
from sovrouter.errors import UpstreamTimeoutError
from sovrouter.protocols import ModelAdapter


class TimeoutAdapter:
    def __init__(self, inner: ModelAdapter, total_s: float, first_token_s: float | None = None) -> None:
        if total_s <= 0 or (first_token_s is not None and first_token_s <= 0):
            raise ValueError("timeouts must be positive")
        self.inner = inner
        self.total_s = total_s
        self.first_token_s = first_token_s

    @property
    def target(self) -> Candidate:
        return self.inner.target

    async def generate(self, call: ModelCall) -> ModelResult:
        call.deadline_at = asyncio.get_running_loop().time() + self.total_s
        try:
            async with asyncio.timeout_at(call.deadline_at):
                return await self.inner.generate(call)
        except TimeoutError:
            raise UpstreamTimeoutError(
                f"upstream {self.target.key} did not answer within {self.total_s:g}s") from None

    async def stream(self, call: ModelCall) -> AsyncIterator[StreamChunk]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        total_at = start + self.total_s
        first_at = start + self.first_token_s if self.first_token_s is not None else total_at
        it = aiter(self.inner.stream(call))
        first = True
        try:
            while True:
                deadline = min(total_at, first_at) if first else total_at
                call.deadline_at = deadline
                try:
                    async with asyncio.timeout_at(deadline):
                        chunk = await anext(it)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    which = "first token" if first and deadline == first_at else "answer"
                    limit = (deadline - start)
                    raise UpstreamTimeoutError(
                        f"upstream {self.target.key}: no {which} within {limit:g}s") from None
                first = False
                yield chunk
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()
