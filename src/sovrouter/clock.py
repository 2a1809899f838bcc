"""Clocks: wall time for the gateway, simulated time (driven by the stream's ``t_ms``) for replay."""

from __future__ import annotations

import time


class WallClock:
    def now_ms(self) -> float:
        return time.monotonic() * 1000.0


class SimClock:
    """Time only moves when the replay harness sets it; deterministic by construction."""

    def __init__(self, start_ms: float = 0.0) -> None:
        self._now = start_ms

    def now_ms(self) -> float:
        return self._now

    def set(self, t_ms: float) -> None:
        self._now = max(self._now, t_ms)
