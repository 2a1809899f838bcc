"""Records every upstream call made (ok, error, timeout, cancelled) into the request's call log.

A call cancelled while in flight (the gateway shutting down, a client gone) is logged as ``cancelled`` before the
cancellation goes on: the upstream had the prompt and may have generated tokens, so the record prices it like a
broken stream (input tokens, and the output seen so far) instead of leaving its cost out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from sovrouter.contracts import CallAttempt, Candidate, ModelCall, ModelResult, StreamChunk
from sovrouter.errors import UpstreamError, UpstreamTimeoutError
from sovrouter.protocols import ModelAdapter, closing_stream


class InstrumentedAdapter:
    def __init__(self, inner: ModelAdapter, timer: Callable[[], float]) -> None:
        self.inner = inner
        self.timer = timer  # ms

    @property
    def target(self) -> Candidate:
        return self.inner.target

    def _log(self, call: ModelCall, outcome: str, started: float, result: ModelResult | None = None,
             error: UpstreamError | None = None, out_tokens: int = 0) -> None:
        elapsed = self.timer() - started
        call.attempts.append(
            CallAttempt(
                candidate=self.target,
                outcome=outcome,
                latency_ms=result.latency_ms if result is not None else elapsed,
                ttft_ms=result.ttft_ms if result is not None else None,
                input_tokens=result.input_tokens if result is not None else 0,
                output_tokens=result.output_tokens if result is not None else out_tokens,
                error=error.code if error is not None else None,
                purpose=call.purpose,
                spec_acceptance=result.spec_acceptance if result is not None else None,
                spec_drafted_tokens=result.spec_drafted_tokens if result is not None else None,
            )
        )

    async def generate(self, call: ModelCall) -> ModelResult:
        started = self.timer()
        try:
            result = await self.inner.generate(call)
        except UpstreamTimeoutError as exc:
            self._log(call, "timeout", started, error=exc)
            raise
        except UpstreamError as exc:
            self._log(call, "error", started, error=exc)
            raise
        except asyncio.CancelledError:
            self._log(call, "cancelled", started)
            raise
        self._log(call, "ok", started, result=result)
        return result

    async def stream(self, call: ModelCall) -> AsyncIterator[StreamChunk]:
        started = self.timer()
        chars = 0
        done = False  # logged "ok": a cancellation after the final chunk is the consumer's, not this call's
        try:
            async with closing_stream(self.inner.stream(call)) as chunks:
                async for chunk in chunks:
                    chars += len(chunk.delta)
                    if chunk.final is not None:
                        self._log(call, "ok", started, result=chunk.final)
                        done = True
                    yield chunk
        except UpstreamTimeoutError as exc:
            self._log(call, "timeout" if chars == 0 else "stream_error", started, error=exc,
                      out_tokens=(chars + 3) // 4)
            raise
        except UpstreamError as exc:
            self._log(call, "error" if chars == 0 else "stream_error", started, error=exc,
                      out_tokens=(chars + 3) // 4)
            raise
        except (asyncio.CancelledError, GeneratorExit):  # GeneratorExit: its reader stopped (since 2026-11-28)
            if not done:
                self._log(call, "cancelled", started, out_tokens=(chars + 3) // 4)
            raise
