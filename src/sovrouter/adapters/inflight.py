"""How many calls each deployment is serving now, as this process sees them.

``InFlightBoard`` keeps one count per deployment (``Candidate``); ``InFlightAdapter`` wraps a base adapter with
the same interface and holds its deployment's count up for the life of each call (a stream until it ends or is
closed, failures included). The latency-aware deployment chooser reads the board, so a deployment whose
speculative decoding pays only up to ``max_batch`` concurrent requests is estimated without its speed-up once
that many calls run on it (:func:`sovrouter.speculative.latency.expected_speedup`).

The count is this gateway instance's own: with several instances behind a load balancer (or other clients on
the same engines) each sees only its share of the deployment's load. An engine that publishes its own batch
(vLLM, SGLang and llama.cpp servers on ``/metrics``) can say more: :class:`~sovrouter.adapters.engine_load.
EngineLoadPoller` reports what the deployment's engines hold (running and waiting) into the board
(:meth:`InFlightBoard.report`).
A report lags by up to a poll, so the board carries it forward with this instance's own calls: the engines' count
at the report, plus the calls this instance started, less those it ended, since then (exact with one instance,
and the other instances' share of the change is what is left unknown). A deployment's count is that estimate or
this instance's own count, whichever is larger.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from sovrouter.contracts import Candidate, ModelCall, ModelResult, StreamChunk
from sovrouter.protocols import ModelAdapter, closing_stream


class InFlightBoard:
    """Calls in flight per deployment (slot and deployment id): this instance's own, and what the deployment's
    engines last reported holding, if anything reports."""

    def __init__(self) -> None:
        self._counts: dict[Candidate, int] = {}
        self._reported: dict[Candidate, tuple[int, int]] = {}  # engines' count, this instance's count at the report

    def count(self, target: Candidate) -> int:
        """The load a decision should assume: the engines' last report carried forward with this instance's calls
        since, or this instance's own count when that is higher (or nothing reports)."""
        own = self._counts.get(target, 0)
        reported = self._reported.get(target)  # one read: decisions run in a worker thread while polls report
        if reported is None:
            return own
        held, own_then = reported
        return max(own, held + own - own_then)

    def local(self, target: Candidate) -> int:
        return self._counts.get(target, 0)

    def snapshot(self) -> dict[Candidate, int]:
        """The deployments with calls in flight from this instance now, and how many."""
        return dict(self._counts)

    def reported(self) -> dict[Candidate, int]:
        """What each reporting deployment's engines held (running and waiting) at the last poll."""
        return {t: held for t, (held, _) in self._reported.items()}

    def report(self, target: Candidate, held: int | None) -> None:
        """The engines' own count of requests they hold now, running or waiting for a place in the batch
        (``None``: no current report; this instance's count alone)."""
        if held is None:
            self._reported.pop(target, None)
        else:
            self._reported[target] = (max(0, held), self._counts.get(target, 0))

    def enter(self, target: Candidate) -> None:
        self._counts[target] = self._counts.get(target, 0) + 1

    def leave(self, target: Candidate) -> None:
        left = self._counts.get(target, 0) - 1
        if left > 0:
            self._counts[target] = left
        else:
            self._counts.pop(target, None)


class InFlightAdapter:
    """A :class:`ModelAdapter` that counts its calls on ``board`` while they run."""

    def __init__(self, inner: ModelAdapter, board: InFlightBoard) -> None:
        self.inner = inner
        self.board = board

    @property
    def target(self) -> Candidate:
        return self.inner.target

    async def generate(self, call: ModelCall) -> ModelResult:
        self.board.enter(self.target)
        try:
            return await self.inner.generate(call)
        finally:
            self.board.leave(self.target)

    async def stream(self, call: ModelCall) -> AsyncIterator[StreamChunk]:
        self.board.enter(self.target)
        try:
            async with closing_stream(self.inner.stream(call)) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            self.board.leave(self.target)
