"""Replica outlier ejection (``HealthAwareChooser``) around any replica chooser."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from sovrouter.adapters.replicas import HealthAwareChooser, LeastOutstandingChooser, ReplicaChooser
from sovrouter.clock import SimClock
from sovrouter.contracts import NormalizedRequest
from sovrouter.intake import normalize_chat

REPLICAS = ["http://a", "http://b", "http://c"]


class _First:
    """Always the first replica it is offered (an affinity chooser whose model says that one holds the prompt);
    records what the wrapper forwards."""

    def __init__(self) -> None:
        self.offered: list[list[str]] = []
        self.events: list[tuple[str, str, bool | None]] = []

    def choose(self, request: NormalizedRequest, replicas: Sequence[str]) -> int:
        self.offered.append(list(replicas))
        return 0

    def observe_start(self, request: NormalizedRequest, replicas: Sequence[str], index: int) -> None:
        self.events.append(("start", replicas[index], None))

    def observe_done(self, request: NormalizedRequest, replicas: Sequence[str], index: int, ok: bool,
                     latency_ms: float, *, rejected: bool = False, abandoned: bool = False) -> None:
        self.events.append(("done", replicas[index], ok))


def _req(rid: str) -> NormalizedRequest:
    return normalize_chat({"messages": [{"role": "user", "content": "hello"}]}, tenant="t", request_id=rid)


def _call(chooser: HealthAwareChooser, rid: str, ok: bool) -> str:
    req = _req(rid)
    i = chooser.choose(req, REPLICAS)
    chooser.observe_start(req, REPLICAS, i)
    chooser.observe_done(req, REPLICAS, i, ok, 1.0)
    return REPLICAS[i]


def test_is_a_replica_chooser_and_forwards_every_observation_with_the_full_list() -> None:
    inner = _First()
    chooser = HealthAwareChooser(inner, SimClock())
    assert isinstance(chooser, ReplicaChooser)
    assert _call(chooser, "r1", ok=True) == "http://a"
    assert inner.events == [("start", "http://a", None), ("done", "http://a", True)]
    assert inner.offered == [REPLICAS]


def test_the_retry_of_a_request_does_not_go_back_to_the_replica_it_failed_on() -> None:
    inner = _First()
    chooser = HealthAwareChooser(inner, SimClock(), consecutive_failures=5)
    assert _call(chooser, "r1", ok=False) == "http://a"
    assert _call(chooser, "r1", ok=False) == "http://b"  # same request: a is left out
    assert _call(chooser, "r1", ok=True) == "http://c"
    assert _call(chooser, "r2", ok=True) == "http://a"  # another request: a is not ejected (2 failures < 5)
    assert not chooser.ejected("http://a")


def test_consecutive_failures_eject_a_replica_until_the_cooldown_ends() -> None:
    clock = SimClock()
    chooser = HealthAwareChooser(_First(), clock, consecutive_failures=3, cooldown_s=10.0)
    for k in range(3):
        assert _call(chooser, f"f{k}", ok=False) == "http://a"
    assert chooser.ejected("http://a")
    assert _call(chooser, "x", ok=True) == "http://b"
    clock.set(9_999)
    assert _call(chooser, "y", ok=True) == "http://b"
    clock.set(10_001)  # cooldown over: tried again; one more failure ejects it anew
    assert _call(chooser, "z", ok=False) == "http://a"
    assert chooser.ejected("http://a")
    clock.set(30_000)
    assert _call(chooser, "w", ok=True) == "http://a"  # a success clears it
    assert not chooser.ejected("http://a")
    assert _call(chooser, "v", ok=False) == "http://a"
    assert not chooser.ejected("http://a")  # the count started again at zero


def test_only_failures_in_a_row_count() -> None:
    chooser = HealthAwareChooser(_First(), SimClock(), consecutive_failures=2)
    assert _call(chooser, "1", ok=False) == "http://a"
    assert _call(chooser, "2", ok=True) == "http://a"  # a answered another request: its count starts again
    assert _call(chooser, "3", ok=False) == "http://a"
    assert not chooser.ejected("http://a")
    assert _call(chooser, "4", ok=False) == "http://a"
    assert chooser.ejected("http://a")


def test_never_leaves_nothing_to_choose() -> None:
    chooser = HealthAwareChooser(_First(), SimClock(), consecutive_failures=1, cooldown_s=60.0)
    assert [_call(chooser, "r", ok=False) for _ in range(3)] == REPLICAS  # all ejected, all failed for r
    assert all(chooser.ejected(u) for u in REPLICAS)
    assert _call(chooser, "r", ok=False) == "http://a"  # every replica failed this request: all are candidates
    assert _call(chooser, "s", ok=True) == "http://a"  # all ejected: all are candidates
    assert not chooser.ejected("http://a")


def test_works_with_the_least_outstanding_chooser_and_one_replica() -> None:
    chooser = HealthAwareChooser(LeastOutstandingChooser(), SimClock(), consecutive_failures=1)
    seen = {_call(chooser, f"q{k}", ok=True) for k in range(6)}
    assert seen == set(REPLICAS)
    assert chooser.choose(_req("solo"), ["http://only"]) == 0


def test_remembers_failed_requests_only_up_to_a_bound() -> None:
    chooser = HealthAwareChooser(_First(), SimClock(), consecutive_failures=100, remember_requests=2)
    for rid in ("r1", "r2", "r3"):
        _call(chooser, rid, ok=False)
    assert _call(chooser, "r1", ok=True) == "http://a"  # r1 forgotten: a is offered again
    assert _call(chooser, "r3", ok=True) == "http://b"  # r3 remembered


@pytest.mark.parametrize("kw", [{"consecutive_failures": 0}, {"cooldown_s": 0.0}])
def test_bad_settings_are_refused(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        HealthAwareChooser(_First(), SimClock(), **kw)  # type: ignore[arg-type]


def test_refused_requests_are_no_health_failures() -> None:
    """A client that keeps sending prompts past the context (HTTP 400) ejected healthy replicas for everyone."""
    chooser = HealthAwareChooser(_First(), SimClock(), consecutive_failures=2, cooldown_s=10.0)
    for k in range(6):
        req = _req(f"bad{k}")
        i = chooser.choose(req, REPLICAS)
        chooser.observe_start(req, REPLICAS, i)
        chooser.observe_done(req, REPLICAS, i, False, 1.0, rejected=True)
        assert REPLICAS[i] == "http://a"  # not steered away either
    assert not any(chooser.ejected(r) for r in REPLICAS)
