"""Retry wrapper with a retry budget (as in Finagle's RetryBudget / Envoy's retry_budget).

A failed call is retried (up to ``retries`` times, with a short jittered backoff) only when

- the error is transient (:class:`UpstreamUnavailableError`: connect refused/reset, 429, 5xx), and
- the budget allows it: over the last ``window_s`` seconds of the injected clock, the retries already made stay
  within ``max(min_retries, ratio * calls)``, where ``calls`` counts the calls this wrapper received.

So under a wide outage retries add at most ``ratio`` extra load instead of multiplying it. When a retry is
wanted but the budget refuses it, :class:`RetryBudgetExhaustedError` is raised (chained to the last failure).
A stream is retried only if it failed before yielding its first chunk; after that the error propagates.
Retry attempts run with ``call.purpose = "retry"`` so the call log shows them.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import AsyncIterator

from sovrouter.contracts import Candidate, ModelCall, ModelResult, StreamChunk
from sovrouter.errors import RetryBudgetExhaustedError, UpstreamError, UpstreamUnavailableError
from sovrouter.protocols import Clock, ModelAdapter, closing_stream


def is_retryable(exc: UpstreamError) -> bool:
    """Transient failures a retry of the same call may fix. Timeouts are left to fallback (another
    deployment), which also bounds the worst-case latency to one timeout per deployment."""
    return isinstance(exc, UpstreamUnavailableError)


class RetryBudget:
    """Sliding-window budget: a retry is allowed while ``retries + 1 <= max(min_retries, ratio * calls)``."""

    def __init__(self, clock: Clock, ratio: float, window_s: float = 10.0, min_retries: int = 3) -> None:
        self.clock = clock
        self.ratio = ratio
        self.window_ms = window_s * 1000.0
        self.min_retries = min_retries
        self._calls: deque[float] = deque()
        self._retries: deque[float] = deque()

    def _expire(self, now: float) -> None:
        horizon = now - self.window_ms
        for q in (self._calls, self._retries):
            while q and q[0] <= horizon:
                q.popleft()

    def record_call(self) -> None:
        now = self.clock.now_ms()
        self._expire(now)
        self._calls.append(now)

    def try_acquire(self) -> bool:
        """Spend one retry if the budget allows it."""
        now = self.clock.now_ms()
        self._expire(now)
        allowed = max(float(self.min_retries), self.ratio * len(self._calls))
        if len(self._retries) + 1 > allowed:
            return False
        self._retries.append(now)
        return True


class RetryAdapter:
    def __init__(
        self,
        inner: ModelAdapter,
        clock: Clock,
        *,
        retries: int = 1,
        budget_ratio: float = 0.2,
        budget_window_s: float = 10.0,
        budget_min_retries: int = 3,
        backoff_s: float = 0.02,
        rng: random.Random | None = None,
    ) -> None:
        self.inner = inner
        self.retries = retries
        self.budget = RetryBudget(clock, budget_ratio, budget_window_s, budget_min_retries)
        self.backoff_s = backoff_s
        self._rng = rng or random.Random()

    @property
    def target(self) -> Candidate:
        return self.inner.target

    async def _before_retry(self, attempt: int, exc: UpstreamError) -> None:
        """Raise if no retry may follow ``exc``; otherwise wait the backoff."""
        if attempt >= self.retries or not is_retryable(exc):
            raise exc
        if not self.budget.try_acquire():
            raise RetryBudgetExhaustedError(
                f"upstream {self.target.key} failed and its retry budget is exhausted") from exc
        if self.backoff_s > 0:
            await asyncio.sleep(self._rng.uniform(0, self.backoff_s * (2 ** attempt)))

    async def generate(self, call: ModelCall) -> ModelResult:
        self.budget.record_call()
        purpose = call.purpose
        attempt = 0
        try:
            while True:
                try:
                    return await self.inner.generate(call)
                except UpstreamError as exc:
                    await self._before_retry(attempt, exc)
                attempt += 1
                call.purpose = "retry"
        finally:
            call.purpose = purpose

    async def stream(self, call: ModelCall) -> AsyncIterator[StreamChunk]:
        self.budget.record_call()
        purpose = call.purpose
        attempt = 0
        try:
            while True:
                started = False
                try:
                    async with closing_stream(self.inner.stream(call)) as chunks:
                        async for chunk in chunks:
                            started = started or bool(chunk.delta) or chunk.final is not None  # shown: see fallback
                            yield chunk
                    return
                except UpstreamError as exc:
                    if started:
                        raise  # part of the answer is out: never retried, never hidden
                    await self._before_retry(attempt, exc)
                attempt += 1
                call.purpose = "retry"
        finally:
            call.purpose = purpose
