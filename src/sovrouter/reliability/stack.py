"""The reliability stack every base adapter is wrapped in, outermost first:

    PolicyGuard (added by the Executor) -> CircuitBreaker -> Retry -> Instrumented -> Timeout -> base adapter

- The breaker is outermost so an open circuit refuses at once (no retry, no timeout spent) and one logical call,
  retries included, counts once towards its failure statistics.
- Retry sits outside Instrumented so each try is logged as its own call (``purpose="retry"``).
- Timeout sits inside Instrumented so a timed-out try is logged with outcome ``timeout``, and each try gets
  its own deadline.
- Ordered fallback across deployments is the Executor's ``FallbackAdapter`` around these chains.
"""

from __future__ import annotations

import time

from sovrouter.adapters.instrumented import InstrumentedAdapter
from sovrouter.config import ReliabilitySettings
from sovrouter.protocols import Clock, ModelAdapter
from sovrouter.reliability.breaker import CircuitBreaker
from sovrouter.reliability.retry import RetryAdapter
from sovrouter.reliability.timeout import TimeoutAdapter


def wrap(base: ModelAdapter, settings: ReliabilitySettings, clock: Clock) -> ModelAdapter:
    timed = TimeoutAdapter(base, settings.timeout_s, settings.first_token_timeout_s)
    logged = InstrumentedAdapter(timed, timer=lambda: time.perf_counter() * 1000.0)
    retried = RetryAdapter(
        logged,
        clock,
        retries=settings.retries,
        budget_ratio=settings.retry_budget_ratio,
        budget_window_s=settings.retry_budget_window_s,
        budget_min_retries=settings.retry_budget_min_retries,
        backoff_s=settings.retry_backoff_s,
    )
    return CircuitBreaker(retried, settings.breaker, clock)
