"""Choosing one replica of a deployment for a call (load balancing inside one candidate).

A deployment (``slot/deployment``) may be served by several identical replicas (``Upstream.base_urls``). The
HTTP adapter asks a :class:`ReplicaChooser` which one to call, tells it when the call starts and when it ends.
The adapter's own default is :class:`LeastOutstandingChooser` (fewest in-flight requests, ties broken
round-robin); the gateway's wiring gives a deployment with several replicas the prefix/KV-affinity chooser
(``reuse/prefix.py``, same Protocol) unless its upstream configures ``replica_choice: least-outstanding``,
either one inside :class:`HealthAwareChooser` (a failed replica is not retried for the same request, and one
that keeps failing is ejected for a while).

Stable contract (other components import it):

- ``choose(request, replicas) -> int``: index into ``replicas`` (``replicas[i]`` is a base URL).
- ``observe_start(request, replicas, index)``: the call to ``replicas[index]`` is about to be sent.
- ``observe_done(request, replicas, index, ok, latency_ms, *, rejected=False, abandoned=False)``: that call ended
  (``ok`` False on any failure). ``rejected``: the replica answered but refused the request with a client error
  (HTTP 4xx other than 429: a prompt longer than its context...), so ``ok`` is False but the replica is healthy
  and never prefilled the prompt: no health failure, and nothing it held before is lost. ``abandoned``: the
  gateway stopped waiting before any deadline (a batch cancelled, a shutdown), so ``ok`` is False but the replica
  did nothing wrong and keeps what it cached: no health failure, nothing forgotten. Until 2026-11-28 such calls
  counted as replica failures: cancelling a batch ejected healthy replicas and forgot their cached prefixes.

Every ``observe_start`` is followed by exactly one ``observe_done`` for the same index. Choosers keep their
state on the instance (one instance per deployment), never in module globals.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from sovrouter.contracts import NormalizedRequest
from sovrouter.protocols import Clock


@runtime_checkable
class ReplicaChooser(Protocol):
    def choose(self, request: NormalizedRequest, replicas: Sequence[str]) -> int: ...

    def observe_start(self, request: NormalizedRequest, replicas: Sequence[str], index: int) -> None: ...

    def observe_done(
        self, request: NormalizedRequest, replicas: Sequence[str], index: int, ok: bool, latency_ms: float,
        *, rejected: bool = False, abandoned: bool = False,
    ) -> None: ...


class LeastOutstandingChooser:
    """Fewest outstanding (in-flight) requests; ties go round-robin so idle replicas share the load."""

    def __init__(self) -> None:
        self._outstanding: dict[str, int] = {}
        self._next = 0

    def outstanding(self, replica: str) -> int:
        return self._outstanding.get(replica, 0)

    def choose(self, request: NormalizedRequest, replicas: Sequence[str]) -> int:
        n = len(replicas)
        if n <= 1:
            return 0
        start = self._next % n
        self._next = (self._next + 1) % n
        best, best_load = start, self.outstanding(replicas[start])
        for step in range(1, n):
            i = (start + step) % n
            load = self.outstanding(replicas[i])
            if load < best_load:
                best, best_load = i, load
        return best

    def observe_start(self, request: NormalizedRequest, replicas: Sequence[str], index: int) -> None:
        url = replicas[index]
        self._outstanding[url] = self._outstanding.get(url, 0) + 1

    def observe_done(
        self, request: NormalizedRequest, replicas: Sequence[str], index: int, ok: bool, latency_ms: float,
        *, rejected: bool = False, abandoned: bool = False,
    ) -> None:
        url = replicas[index]
        self._outstanding[url] = max(0, self._outstanding.get(url, 0) - 1)


class HealthAwareChooser:
    """Replica outlier ejection around any :class:`ReplicaChooser` (same Protocol, like Envoy's outlier detection
    and its "previous hosts" retry predicate).

    - A call that failed on a replica is not sent back there: the retry of the same request (same request id)
      chooses among the others. Without this an affinity chooser, whose model says the failed replica holds the
      prompt's prefix, would send the retry straight back.
    - ``consecutive_failures`` failed calls in a row eject a replica for ``cooldown_s``; afterwards it is tried
      again (one failure ejects it anew, one success clears it).
    - It never leaves nothing to choose: when every replica is ejected or has failed this request, all of them
      are candidates again (the deployment's circuit breaker and fallback handle a deployment that is down).

    The inner chooser sees the filtered replica list in ``choose`` and the full list in ``observe_*`` (the
    choosers here key their state by replica URL, so both agree).
    """

    def __init__(self, inner: ReplicaChooser, clock: Clock, *, consecutive_failures: int = 3,
                 cooldown_s: float = 10.0, remember_requests: int = 4096) -> None:
        if consecutive_failures < 1 or cooldown_s <= 0:
            raise ValueError("consecutive_failures must be >= 1 and cooldown_s > 0")
        self.inner = inner
        self._clock = clock
        self.consecutive_failures = consecutive_failures
        self.cooldown_s = cooldown_s
        self._remember = remember_requests
        self._failures: dict[str, int] = {}
        self._ejected_until: dict[str, float] = {}
        self._failed_for: OrderedDict[str, set[str]] = OrderedDict()  # request id -> replicas it failed on

    def ejected(self, replica: str) -> bool:
        return self._ejected_until.get(replica, float("-inf")) > self._clock.now_ms() / 1000.0

    def choose(self, request: NormalizedRequest, replicas: Sequence[str]) -> int:
        if len(replicas) <= 1:
            return 0
        failed = self._failed_for.get(request.request_id, set())
        usable = [i for i, r in enumerate(replicas) if r not in failed and not self.ejected(r)]
        if not usable:
            usable = [i for i, r in enumerate(replicas) if r not in failed] or list(range(len(replicas)))
        if len(usable) == len(replicas):
            return self.inner.choose(request, replicas)
        return usable[self.inner.choose(request, [replicas[i] for i in usable])]

    def observe_start(self, request: NormalizedRequest, replicas: Sequence[str], index: int) -> None:
        self.inner.observe_start(request, replicas, index)

    def observe_done(
        self, request: NormalizedRequest, replicas: Sequence[str], index: int, ok: bool, latency_ms: float,
        *, rejected: bool = False, abandoned: bool = False,
    ) -> None:
        self.inner.observe_done(request, replicas, index, ok, latency_ms, rejected=rejected, abandoned=abandoned)
        url = replicas[index]
        if rejected or abandoned:  # a client error, or nobody waited for the answer: the replica is healthy
            return
        if ok:
            self._failures.pop(url, None)
            self._ejected_until.pop(url, None)
            self._failed_for.pop(request.request_id, None)
            return
        n = self._failures.get(url, 0) + 1
        self._failures[url] = n
        if n >= self.consecutive_failures:
            self._ejected_until[url] = self._clock.now_ms() / 1000.0 + self.cooldown_s
        seen = self._failed_for.setdefault(request.request_id, set())
        seen.add(url)
        self._failed_for.move_to_end(request.request_id)
        while len(self._failed_for) > self._remember:
            self._failed_for.popitem(last=False)
