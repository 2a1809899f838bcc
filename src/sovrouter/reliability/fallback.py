"""Ordered fallback over several adapters, itself an adapter (like pydantic-ai's FallbackModel).

Non-streaming: try each in order until one answers. Streaming: fall back freely until the first chunk has been
yielded; after that a failure cannot be hidden, so the error propagates and the caller ends the stream with an
explicit error event (never a silently truncated answer).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from sovrouter.contracts import Candidate, ModelCall, ModelResult, StreamChunk
from sovrouter.errors import (
    AllCandidatesFailedError,
    AllCandidatesRejectedError,
    PolicyGuardError,
    UpstreamError,
    UpstreamRejectedError,
)
from sovrouter.protocols import ModelAdapter, closing_stream


class FallbackAdapter:
    def __init__(self, adapters: Sequence[ModelAdapter]) -> None:
        if not adapters:
            raise ValueError("FallbackAdapter needs at least one adapter")
        self.adapters = list(adapters)

    @property
    def target(self) -> Candidate:
        return self.adapters[0].target

    async def generate(self, call: ModelCall) -> ModelResult:
        first_purpose = call.purpose
        errors: list[UpstreamError] = []
        for i, adapter in enumerate(self.adapters):
            call.purpose = first_purpose if i == 0 else "fallback"
            try:
                return await adapter.generate(call)
            except UpstreamError as exc:
                errors.append(exc)
        raise _all_failed(errors)

    async def stream(self, call: ModelCall) -> AsyncIterator[StreamChunk]:
        first_purpose = call.purpose
        errors: list[UpstreamError] = []
        for i, adapter in enumerate(self.adapters):
            call.purpose = first_purpose if i == 0 else "fallback"
            started = False
            try:
                async with closing_stream(adapter.stream(call)) as chunks:
                    async for chunk in chunks:
                        started = started or _shows(chunk)
                        yield chunk
                return
            except UpstreamError as exc:
                if started:
                    raise
                errors.append(exc)
        raise _all_failed(errors)


def _shows(chunk: StreamChunk) -> bool:
    """Whether the chunk carries part of the answer. An empty one (an upstream gathering a tool call's fragments)
    shows the client nothing, so a failure after it may still fall back (found in review, 2026-11-28)."""
    return bool(chunk.delta) or chunk.final is not None


def _all_failed(errors: list[UpstreamError]) -> UpstreamError:
    if errors and all(isinstance(e, PolicyGuardError) for e in errors):
        return errors[-1]
    if errors and all(isinstance(e, UpstreamRejectedError) and e.request_specific for e in errors):
        return AllCandidatesRejectedError("every model refused the request as invalid (for example, a prompt longer "
                                          "than its context); change the request before sending it again")
    codes = ",".join(sorted({e.code for e in errors}))
    return AllCandidatesFailedError(f"every candidate failed ({codes})")
