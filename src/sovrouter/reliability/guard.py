"""Defence in depth: refuse, before it leaves, any call to a deployment outside the request's allowed set.

The router only ever sees allowed candidates, but cascades, fallbacks and retries run through adapters; this
guard sits directly around every adapter, so none of them can reach a forbidden deployment whatever the layers
above decide.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from sovrouter.contracts import CallAttempt, Candidate, ModelCall, ModelResult, StreamChunk
from sovrouter.errors import PolicyGuardError
from sovrouter.protocols import ModelAdapter, closing_stream


class PolicyGuard:
    def __init__(self, inner: ModelAdapter) -> None:
        self.inner = inner

    @property
    def target(self) -> Candidate:
        return self.inner.target

    def _check(self, call: ModelCall) -> None:
        if self.target not in call.allowed:
            call.attempts.append(
                CallAttempt(candidate=self.target, outcome="guard_refused", purpose=call.purpose,
                            error="deployment not in the allowed set")
            )
            raise PolicyGuardError("call to a deployment outside the allowed set was refused")

    async def generate(self, call: ModelCall) -> ModelResult:
        self._check(call)
        return await self.inner.generate(call)

    async def stream(self, call: ModelCall) -> AsyncIterator[StreamChunk]:
        self._check(call)
        async with closing_stream(self.inner.stream(call)) as chunks:
            async for chunk in chunks:
                yield chunk
