"""Choosing one replica of a deployment for a call (load balancing inside one candidate).

A deployment (``slot/deployment``) may be served by several identical replicas (``Upstream.base_urls``). The
HTTP adapter asks a :class:`ReplicaChooser` which one to call, tells it when the call starts and when it ends.
The adapter's own default is :class:`LeastOutstandingChooser` (fewest in-flight requests, ties broken
round-robin); the gateway's wiring gives a deployment with several replicas the prefix/KV-affinity chooser
(``reuse/prefix.py``, same Protocol) unless its upstream configures ``replica_choice: least-outstanding``.

Stable contract (other components import it):

- ``choose(request, replicas) -> int``: index into ``replicas`` (``replicas[i]`` is a base URL).
- ``observe_start(request, replicas, index)``: the call to ``replicas[index]`` is about to be sent.
- ``observe_done(request, replicas, index, ok, latency_ms)``: that call ended (``ok`` False on any failure).

Every ``observe_start`` is followed by exactly one ``observe_done`` for the same index. Choosers keep their
state on the instance (one instance per deployment), never in module globals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from sovrouter.contracts import NormalizedRequest


@runtime_checkable
class ReplicaChooser(Protocol):
    def choose(self, request: NormalizedRequest, replicas: Sequence[str]) -> int: ...

    def observe_start(self, request: NormalizedRequest, replicas: Sequence[str], index: int) -> None: ...

    def observe_done(
        self, request: NormalizedRequest, replicas: Sequence[str], index: int, ok: bool, latency_ms: float
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
        self, request: NormalizedRequest, replicas: Sequence[str], index: int, ok: bool, latency_ms: float
    ) -> None:
        url = replicas[index]
        self._outstanding[url] = max(0, self._outstanding.get(url, 0) - 1)
