"""The small Protocols each concern of the request path sits behind (1-3 methods each).

Implementations swap through these without touching the pipeline: the baseline router is replaced by the
learned router, the null detector by the Presidio/spaCy one, the availability policy by the Cedar engine, the
HTTP adapter by the replay adapter.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from sovrouter.contracts import (
    CacheOutcome,
    Candidate,
    Detection,
    ModelCall,
    ModelResult,
    NormalizedRequest,
    PolicyVerdict,
    RequestRecord,
    RouteDecision,
    Signals,
    StreamChunk,
)


class Clock(Protocol):
    """Wall clock in production, simulated clock (from the stream's ``t_ms``) in replay."""

    def now_ms(self) -> float: ...


class Detector(Protocol):
    """Finds personal data in a request. Must return types only, never the values."""

    def detect(self, request: NormalizedRequest) -> Detection: ...


class Policy(Protocol):
    """Computes the allowed set for a request (hard constraints, before any scoring)."""

    def evaluate(
        self, request: NormalizedRequest, detection: Detection, candidates: Sequence[Candidate]
    ) -> PolicyVerdict: ...


class Classifier(Protocol):
    def classify(self, request: NormalizedRequest, detection: Detection) -> Signals: ...


class Router(Protocol):
    """Chooses among allowed candidates only, and reviews an answer to accept it or escalate."""

    name: str

    def decide(
        self, request: NormalizedRequest, signals: Signals, allowed: Sequence[Candidate]
    ) -> RouteDecision: ...

    def review(
        self, request: NormalizedRequest, signals: Signals, decision: RouteDecision, results: Sequence[ModelResult]
    ) -> Candidate | None:
        """``None``: accept the last result. A later plan entry: escalate to it. The candidate of an earlier
        result: serve that answer instead (e.g. the majority answer after an escalation). Called only for a
        decision whose evidence says ``"review": True``; any other decision's first answer is served as it comes,
        streamed or not."""
        ...


class DeploymentChooser(Protocol):
    """Orders the deployments of each slot for one request (a router has chosen the slots). ``options`` are
    allowed candidates only; the result holds exactly them, and only the order *within* a slot is meaningful."""

    def order(self, request: NormalizedRequest, signals: Signals, options: Sequence[Candidate]) -> list[Candidate]: ...

    def describe(self, request: NormalizedRequest, signals: Signals, plan: Sequence[Candidate]) -> dict[str, Any]:
        """Route evidence for ``plan`` (may be empty)."""
        ...


@runtime_checkable
class ModelAdapter(Protocol):
    """The adapter contract the model team implements. ``target`` is the deployment it calls."""

    @property
    def target(self) -> Candidate: ...

    async def generate(self, call: ModelCall) -> ModelResult: ...

    def stream(self, call: ModelCall) -> AsyncIterator[StreamChunk]: ...


_Item = TypeVar("_Item")


class closing_stream(Generic[_Item]):
    """``async with closing_stream(inner.stream(call)) as chunks``: ``contextlib.aclosing`` for a stream typed as an
    ``AsyncIterator`` (an adapter's): closed on the way out when it can be (an async generator). A wrapper that
    stops early, or is closed by its reader, closes the stream inside it at once, and so down to the upstream call:
    its attempt is logged, its in-flight count given back and its HTTP response closed before the request's
    record is written, not when the garbage collector gets to them (found in review, 2026-11-28)."""

    def __init__(self, stream: AsyncIterator[_Item]) -> None:
        self.stream = stream

    async def __aenter__(self) -> AsyncIterator[_Item]:
        return self.stream

    async def __aexit__(self, *exc: object) -> None:
        aclose = getattr(self.stream, "aclose", None)
        if aclose is not None:
            await aclose()


class ResponseCache(Protocol):
    """Reuse of earlier answers (exact or semantic). ``allowed`` is the current request's allowed set: an entry
    produced on a deployment outside it is never served."""

    async def lookup(
        self, request: NormalizedRequest, detection: Detection, allowed: Sequence[Candidate]
    ) -> tuple[CacheOutcome, ModelResult | None]: ...

    async def store(self, request: NormalizedRequest, detection: Detection, result: ModelResult) -> None: ...

    async def release(self, request: NormalizedRequest) -> None:
        """End this request's single-flight lead (stored or not); always called once a miss is finished."""
        ...


@runtime_checkable
class CacheGauges(Protocol):
    """A cache that reports its size and what it has done, read at each ``/metrics`` scrape: names to values,
    ``*_total`` being counters (purged, evicted, shared...), the rest gauges (entries held). A composite merges its
    layers' reports."""

    def cache_gauges(self) -> dict[str, float]: ...


def merged_gauges(*parts: object) -> dict[str, float]:
    """What a composite cache reports: its parts' reports merged (a name reported twice is summed)."""
    out: dict[str, float] = {}
    for part in parts:
        if isinstance(part, CacheGauges):
            for name, value in part.cache_gauges().items():
                out[name] = out.get(name, 0.0) + value
    return out


_Key = TypeVar("_Key", bound=Hashable)


class GaugeCounter(Counter[_Key]):
    """A ``Counter`` that the event loop counts into and ``/metrics`` reads from its worker thread: a name is set
    under a lock, and :meth:`snapshot` copies under it. Iterating a plain ``Counter`` there failed with
    "dictionary changed size during iteration" when the loop counted a name for the first time (found in review,
    2026-11-28); so did copying one with ``list(counter.items())``, rarely (a garbage collection during the copy can
    let the other thread run). Counting stays ``counter[name] += 1``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        super().__init__()

    def __setitem__(self, key: _Key, value: int) -> None:
        with self._lock:
            super().__setitem__(key, value)

    def snapshot(self) -> dict[_Key, int]:
        with self._lock:
            return dict(self)


@runtime_checkable
class AsyncClosable(Protocol):
    """A part holding connections (a shared cache's Redis client) that the server closes on shutdown."""

    async def aclose(self) -> None: ...


Release = Callable[[], None]
"""Gives a tenant's slot back; may be called more than once (the first call frees it), from a coroutine or a task's
done callback (it never waits)."""


class TenantLimit(Protocol):
    """Chat requests in flight per tenant, at most ``max_in_flight_per_tenant`` each: this instance's own count
    (``gateway/auth.py: TenantSlots``, the default) or every gateway instance's together, in Redis
    (``gateway/shared_slots.py: RedisTenantSlots``, with ``shared_in_flight``)."""

    async def take(self, tenant: str) -> Release:
        """A slot for ``tenant``, or :class:`~sovrouter.errors.TooManyRequestsError`."""
        ...

    async def in_flight(self, tenant: str) -> int: ...

    async def aclose(self) -> None: ...


class RecordSink(Protocol):
    def write(self, record: RequestRecord) -> None: ...
