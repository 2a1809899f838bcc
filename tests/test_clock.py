"""The gateway's clock: epoch milliseconds that never step back, so times stored or shared with other hosts
compare (cache expiry, record times, affinity events)."""

from __future__ import annotations

import time

import pytest

from sovrouter.clock import SimClock, WallClock


def test_wall_clock_reads_epoch_milliseconds_on_every_instance() -> None:
    a, b = WallClock(), WallClock()
    now = time.time() * 1000.0
    # Not the monotonic clock (an arbitrary origin per host and boot): the Unix epoch, as other hosts read it.
    assert abs(a.now_ms() - now) < 1000.0 and abs(b.now_ms() - a.now_ms()) < 1000.0
    assert a.now_ms() > 1.6e12  # after 2020


def test_wall_clock_never_steps_back_when_the_system_clock_does(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = WallClock()
    first = clock.now_ms()
    monkeypatch.setattr(time, "time", lambda: 0.0)  # an NTP step back to 1970, after start
    later = clock.now_ms()
    assert later >= first and later - first < 1000.0


def test_sim_clock_only_moves_forward_when_set() -> None:
    clock = SimClock(5.0)
    clock.set(3.0)
    assert clock.now_ms() == 5.0
    clock.set(8.0)
    assert clock.now_ms() == 8.0
