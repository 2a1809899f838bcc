"""Clocks: wall time for the gateway, simulated time (driven by the stream's ``t_ms``) for replay."""

from __future__ import annotations

import time


class WallClock:
    """Milliseconds since the Unix epoch: the wall clock read once, at construction, then advanced by the
    monotonic clock.

    So it never steps back within a process (an NTP step after start does not move it; durations stay
    non-negative), and its readings mean the same on every host and across restarts (hosts synchronised by NTP
    agree to milliseconds). Times that leave the process depend on that: cache expiry stored in SQLite or shared
    through Redis, record times shipped to PostgreSQL, the prefix-affinity events other gateway instances apply,
    trace timestamps. (Until 2026-11-27 this returned the monotonic clock itself, which counts from an arbitrary
    point per host and per boot: another host's times were off by the difference in uptime.)"""

    __slots__ = ("_epoch_ms", "_mono0")

    def __init__(self) -> None:
        self._mono0 = time.monotonic()
        self._epoch_ms = time.time() * 1000.0

    def now_ms(self) -> float:
        return self._epoch_ms + (time.monotonic() - self._mono0) * 1000.0


class SimClock:
    """Time only moves when the replay harness sets it; deterministic by construction."""

    def __init__(self, start_ms: float = 0.0) -> None:
        self._now = start_ms

    def now_ms(self) -> float:
        return self._now

    def set(self, t_ms: float) -> None:
        self._now = max(self._now, t_ms)
