"""Circuit breaker with outlier ejection, on the injected clock.

States:

- **closed**: calls pass. It opens after ``consecutive_failures`` failures in a row, or (outlier ejection) when
  the error rate over the last ``window`` calls exceeds ``eject_error_rate`` (evaluated once ``window`` calls
  have been seen since the breaker last closed).
- **open**: calls are refused with :class:`CircuitOpenError` without reaching the upstream (and logged in the
  call log as ``circuit_open``) until ``cooldown_s`` has passed.
- **half-open**: one probe call is let through (others are refused meanwhile); success closes the breaker and
  clears its history, failure opens it for another cooldown.

A failure is any :class:`UpstreamError` except :class:`UpstreamRejectedError` (the upstream refused this
particular call: a client problem, not an unhealthy upstream). A stream counts as a success only once its final
chunk arrives; a stream abandoned by the consumer counts as neither.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from typing import Literal

from sovrouter.config import BreakerSettings
from sovrouter.contracts import CallAttempt, Candidate, ModelCall, ModelResult, StreamChunk
from sovrouter.errors import CircuitOpenError, UpstreamError, UpstreamRejectedError
from sovrouter.protocols import Clock, ModelAdapter, closing_stream

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(self, inner: ModelAdapter, settings: BreakerSettings, clock: Clock) -> None:
        self.inner = inner
        self.settings = settings
        self.clock = clock
        self._state: State = "closed"
        self._opened_ms = 0.0
        self._consecutive = 0
        self._outcomes: deque[bool] = deque(maxlen=settings.window)  # True = failure
        self._probe_in_flight = False
        self.open_reason: str | None = None

    @property
    def target(self) -> Candidate:
        return self.inner.target

    @property
    def state(self) -> State:
        if self._state == "open" and self.clock.now_ms() - self._opened_ms >= self.settings.cooldown_s * 1000:
            self._state = "half_open"
        return self._state

    # ------------------------------------------------------------------ bookkeeping
    def _admit(self, call: ModelCall) -> bool:
        """Return whether this call is the half-open probe; raise if refused."""
        state = self.state
        if state == "closed":
            return False
        if state == "half_open" and not self._probe_in_flight:
            self._probe_in_flight = True
            return True
        call.attempts.append(CallAttempt(candidate=self.target, outcome="circuit_open", purpose=call.purpose,
                                         error=CircuitOpenError.code))
        raise CircuitOpenError(f"deployment {self.target.key} is temporarily unavailable (circuit open)")

    def _open(self, reason: str) -> None:
        self._state = "open"
        self._opened_ms = self.clock.now_ms()
        self.open_reason = reason
        self._consecutive = 0
        self._outcomes.clear()

    def _on_success(self, probe: bool) -> None:
        if probe:
            self._probe_in_flight = False
            self._state = "closed"
            self.open_reason = None
            self._outcomes.clear()
        elif self._state != "closed":
            return  # a call admitted before the breaker opened: it does not close it
        self._consecutive = 0
        self._outcomes.append(False)

    def _on_failure(self, probe: bool) -> None:
        if probe:
            self._probe_in_flight = False
            self._open("half-open probe failed")
            return
        if self._state != "closed":
            return  # a call admitted before the breaker opened; it is open already
        self._consecutive += 1
        self._outcomes.append(True)
        if self._consecutive >= self.settings.consecutive_failures:
            self._open(f"{self._consecutive} consecutive failures")
            return
        window = self._outcomes
        if len(window) == window.maxlen and sum(window) / len(window) > self.settings.eject_error_rate:
            self._open(f"error rate {sum(window) / len(window):.2f} over the last {len(window)} calls")

    def _on_abandon(self, probe: bool) -> None:
        if probe:
            self._probe_in_flight = False

    @staticmethod
    def _counts(exc: UpstreamError) -> bool:
        return not isinstance(exc, UpstreamRejectedError)

    # ------------------------------------------------------------------ adapter
    async def generate(self, call: ModelCall) -> ModelResult:
        probe = self._admit(call)
        try:
            result = await self.inner.generate(call)
        except UpstreamError as exc:
            if self._counts(exc):
                self._on_failure(probe)
            else:
                self._on_success(probe)
            raise
        except BaseException:
            self._on_abandon(probe)
            raise
        self._on_success(probe)
        return result

    async def stream(self, call: ModelCall) -> AsyncIterator[StreamChunk]:
        probe = self._admit(call)
        settled = False
        try:
            async with closing_stream(self.inner.stream(call)) as chunks:
                async for chunk in chunks:
                    if chunk.final is not None and not settled:
                        settled = True
                        self._on_success(probe)
                    yield chunk
            if not settled:  # ended without a final chunk: a truncated answer is a failure
                settled = True
                self._on_failure(probe)
        except UpstreamError as exc:
            if not settled:
                settled = True
                if self._counts(exc):
                    self._on_failure(probe)
                else:
                    self._on_success(probe)
            raise
        finally:
            if not settled:
                self._on_abandon(probe)
