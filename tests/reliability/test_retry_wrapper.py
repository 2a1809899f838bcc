from __future__ import annotations

import pytest

from sovrouter.adapters.instrumented import InstrumentedAdapter
from sovrouter.clock import SimClock
from sovrouter.contracts import Candidate, ModelCall
from sovrouter.errors import (
    RetryBudgetExhaustedError,
    UpstreamRejectedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from sovrouter.intake import normalize_chat
from sovrouter.reliability.retry import RetryAdapter, RetryBudget
from sovrouter.testing import FlakyAdapter, MidStreamFailingAdapter

C = Candidate(slot="s", deployment="d")


def _call() -> ModelCall:
    req = normalize_chat({"messages": [{"role": "user", "content": "hi"}]}, tenant="t", request_id="r")
    return ModelCall(request=req, allowed=[C])


def _retry(inner: object, clock: SimClock | None = None, **kw: object) -> RetryAdapter:
    return RetryAdapter(inner, clock or SimClock(), backoff_s=0.0, **kw)  # type: ignore[arg-type]


async def test_transient_failure_is_retried_and_logged_as_retry() -> None:
    base = FlakyAdapter(C, fail_times=1, error=UpstreamUnavailableError("503"))
    ad = _retry(InstrumentedAdapter(base, timer=lambda: 0.0), retries=1)
    call = _call()
    out = await ad.generate(call)
    assert out.text == "ok" and base.calls == 2
    assert [(a.outcome, a.purpose) for a in call.attempts] == [("error", "primary"), ("ok", "retry")]
    assert call.purpose == "primary"


@pytest.mark.parametrize("error", [UpstreamRejectedError("400"), UpstreamTimeoutError("slow")])
async def test_non_transient_failure_is_not_retried(error: Exception) -> None:
    base = FlakyAdapter(C, fail_times=1, error=error)  # type: ignore[arg-type]
    with pytest.raises(type(error)):
        await _retry(base, retries=3).generate(_call())
    assert base.calls == 1


async def test_retries_stop_at_the_configured_count() -> None:
    base = FlakyAdapter(C, fail_times=10, error=UpstreamUnavailableError("503"))
    with pytest.raises(UpstreamUnavailableError):
        await _retry(base, retries=2, budget_min_retries=10).generate(_call())
    assert base.calls == 3


async def test_budget_exhaustion_under_outage() -> None:
    """ratio 0.2, no free retries: over 10 failing calls in one window only 2 retries are allowed."""
    base = FlakyAdapter(C, fail_times=1000, error=UpstreamUnavailableError("503"))
    ad = _retry(base, retries=1, budget_ratio=0.2, budget_min_retries=0, budget_window_s=10.0)
    exhausted = 0
    for _ in range(10):
        try:
            await ad.generate(_call())
        except RetryBudgetExhaustedError:
            exhausted += 1
        except UpstreamUnavailableError:
            pass
    assert base.calls == 12  # 10 first tries + 2 retries
    assert exhausted == 8


async def test_budget_window_slides_with_the_clock() -> None:
    clock = SimClock()
    budget = RetryBudget(clock, ratio=0.0, window_s=1.0, min_retries=1)
    budget.record_call()
    assert budget.try_acquire()
    assert not budget.try_acquire()
    clock.set(1500.0)
    assert budget.try_acquire()


async def test_stream_retried_before_first_chunk() -> None:
    base = FlakyAdapter(C, fail_times=1, error=UpstreamUnavailableError("reset"), text="abc")
    chunks = [c async for c in _retry(base, retries=1).stream(_call())]
    assert "".join(c.delta for c in chunks) == "abc" and chunks[-1].final is not None
    assert base.calls == 2


async def test_stream_never_retried_after_first_chunk() -> None:
    base = MidStreamFailingAdapter(C)
    got = []
    with pytest.raises(Exception, match="mid-stream"):
        async for chunk in _retry(base, retries=3, budget_min_retries=10).stream(_call()):
            got.append(chunk)
    assert base.calls == 1 and len(got) == 1
