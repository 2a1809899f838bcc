from __future__ import annotations

import pytest

from sovrouter.clock import SimClock
from sovrouter.config import BreakerSettings
from sovrouter.contracts import Candidate, ModelCall
from sovrouter.errors import CircuitOpenError, UpstreamError, UpstreamRejectedError, UpstreamUnavailableError
from sovrouter.intake import normalize_chat
from sovrouter.reliability.breaker import CircuitBreaker
from sovrouter.testing import FakeAdapter, FlakyAdapter, MidStreamFailingAdapter

C = Candidate(slot="s", deployment="d")


def _call() -> ModelCall:
    req = normalize_chat({"messages": [{"role": "user", "content": "hi"}]}, tenant="t", request_id="r")
    return ModelCall(request=req, allowed=[C])


def _settings(**kw: float) -> BreakerSettings:
    base = {"consecutive_failures": 3, "cooldown_s": 10.0, "window": 10, "eject_error_rate": 0.5}
    base.update(kw)
    return BreakerSettings(**base)  # type: ignore[arg-type]


async def _fail(br: CircuitBreaker) -> type[Exception]:
    try:
        await br.generate(_call())
    except (UpstreamUnavailableError, CircuitOpenError) as exc:
        return type(exc)
    return type(None)  # type: ignore[return-value]


async def test_opens_after_consecutive_failures_and_refuses_without_calling() -> None:
    clock = SimClock()
    inner = FlakyAdapter(C, fail_times=1000, error=UpstreamUnavailableError("503"))
    br = CircuitBreaker(inner, _settings(), clock)
    for _ in range(3):
        assert await _fail(br) is UpstreamUnavailableError
    assert br.state == "open"
    call = _call()
    with pytest.raises(CircuitOpenError):
        await br.generate(call)
    assert inner.calls == 3
    assert call.attempts[-1].outcome == "circuit_open"


async def test_half_open_probe_closes_on_success() -> None:
    clock = SimClock()
    inner = FlakyAdapter(C, fail_times=3, error=UpstreamUnavailableError("503"))
    br = CircuitBreaker(inner, _settings(), clock)
    for _ in range(3):
        await _fail(br)
    clock.set(9_999.0)
    assert br.state == "open"
    clock.set(10_000.0)
    assert br.state == "half_open"
    out = await br.generate(_call())
    assert out.text == "ok" and br.state == "closed"


async def test_half_open_probe_failure_reopens_for_another_cooldown() -> None:
    clock = SimClock()
    inner = FlakyAdapter(C, fail_times=1000, error=UpstreamUnavailableError("503"))
    br = CircuitBreaker(inner, _settings(), clock)
    for _ in range(3):
        await _fail(br)
    clock.set(10_000.0)
    assert await _fail(br) is UpstreamUnavailableError  # the probe went through and failed
    assert br.state == "open"
    assert await _fail(br) is CircuitOpenError
    clock.set(19_999.0)
    assert br.state == "open"
    clock.set(20_000.0)
    assert br.state == "half_open"


async def test_only_one_probe_while_half_open() -> None:
    clock = SimClock()
    inner = FlakyAdapter(C, fail_times=3, error=UpstreamUnavailableError("503"))
    br = CircuitBreaker(inner, _settings(), clock)
    for _ in range(3):
        await _fail(br)
    clock.set(10_000.0)
    agen = br.stream(_call())
    first = await agen.__anext__()  # probe in flight
    assert first.delta
    with pytest.raises(CircuitOpenError):
        await br.generate(_call())
    async for _ in agen:
        pass
    assert br.state == "closed"


async def test_outlier_ejection_on_error_rate_without_consecutive_run() -> None:
    clock = SimClock()
    ok, bad = FakeAdapter(C), FlakyAdapter(C, fail_times=1000, error=UpstreamUnavailableError("503"))
    br = CircuitBreaker(ok, _settings(consecutive_failures=100, window=10, eject_error_rate=0.5), clock)
    # alternate fail, fail, ok: never 3 in a row, but 2/3 of calls fail
    for i in range(9):
        br.inner = bad if i % 3 != 2 else ok
        await _fail(br)
    assert br.state == "closed"  # window not full yet (9 < 10)
    br.inner = bad
    await _fail(br)
    assert br.state == "open" and br.open_reason is not None and "error rate" in br.open_reason


async def test_client_side_rejections_do_not_open_the_breaker() -> None:
    inner = FlakyAdapter(C, fail_times=1000, error=UpstreamRejectedError("400"))
    br = CircuitBreaker(inner, _settings(), SimClock())
    for _ in range(5):
        with pytest.raises(UpstreamRejectedError):
            await br.generate(_call())
    assert br.state == "closed"


async def test_mid_stream_failure_counts_as_failure() -> None:
    br = CircuitBreaker(MidStreamFailingAdapter(C), _settings(consecutive_failures=1), SimClock())
    with pytest.raises(UpstreamError):
        async for _ in br.stream(_call()):
            pass
    assert br.state == "open"
