from __future__ import annotations

import pytest

from sovrouter.clock import SimClock
from sovrouter.config import BreakerSettings, ReliabilitySettings
from sovrouter.contracts import Candidate, ModelCall
from sovrouter.errors import CircuitOpenError, UpstreamTimeoutError, UpstreamUnavailableError
from sovrouter.intake import normalize_chat
from sovrouter.reliability import stack
from sovrouter.reliability.breaker import CircuitBreaker
from sovrouter.testing import FakeAdapter, FlakyAdapter

C = Candidate(slot="s", deployment="d")


def _call() -> ModelCall:
    req = normalize_chat({"messages": [{"role": "user", "content": "hi"}]}, tenant="t", request_id="r")
    return ModelCall(request=req, allowed=[C])


def _settings(**kw: object) -> ReliabilitySettings:
    base: dict[str, object] = {"timeout_s": 0.2, "first_token_timeout_s": 0.1, "retries": 1,
                               "retry_backoff_s": 0.0,
                               "breaker": BreakerSettings(consecutive_failures=2, cooldown_s=5.0)}
    base.update(kw)
    return ReliabilitySettings(**base)  # type: ignore[arg-type]


async def test_order_breaker_retry_instrumented_timeout() -> None:
    wrapped = stack.wrap(FakeAdapter(C), _settings(), SimClock())
    names = []
    layer: object = wrapped
    while layer is not None:
        names.append(type(layer).__name__)
        layer = getattr(layer, "inner", None)
    assert names == ["CircuitBreaker", "RetryAdapter", "InstrumentedAdapter", "TimeoutAdapter", "FakeAdapter"]


async def test_each_try_logged_then_breaker_opens_and_refuses() -> None:
    base = FlakyAdapter(C, fail_times=1000, error=UpstreamUnavailableError("503"))
    wrapped = stack.wrap(base, _settings(), SimClock())
    call = _call()
    for _ in range(2):
        with pytest.raises(UpstreamUnavailableError):
            await wrapped.generate(call)
    assert [a.purpose for a in call.attempts] == ["primary", "retry", "primary", "retry"]
    assert isinstance(wrapped, CircuitBreaker) and wrapped.state == "open"
    with pytest.raises(CircuitOpenError):
        await wrapped.generate(call)
    assert base.calls == 4 and call.attempts[-1].outcome == "circuit_open"


async def test_timeout_logged_as_timeout_and_not_retried() -> None:
    base = FakeAdapter(C, delay_s=1.0)
    wrapped = stack.wrap(base, _settings(), SimClock())
    call = _call()
    with pytest.raises(UpstreamTimeoutError):
        await wrapped.generate(call)
    assert [a.outcome for a in call.attempts] == ["timeout"] and base.calls == 1
