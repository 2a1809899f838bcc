"""How many calls each deployment is serving now, as this process sees them.

``InFlightBoard`` keeps one count per deployment (``Candidate``); ``InFlightAdapter`` wraps a base adapter with
the same interface and holds its deployment's count up for the life of each call (a stream until it ends or is
closed, failures included). The latency-aware deployment chooser reads the board, so a deployment whose
speculative decoding pays only up to ``max_batch`` concurrent requests is estimated without its speed-up once
that many calls run on it (:func:`sovrouter.speculative.latency.expected_speedup`).

The count is this gateway instance's own: with several instances behind a load balancer each sees its share of
the deployment's load, an underestimate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from sovrouter.contracts import Candidate, ModelCall, ModelResult, StreamChunk
from sovrouter.protocols import ModelAdapter


class InFlightBoard:
    """Calls in flight per deployment (slot and deployment id)."""

    def __init__(self) -> None:
        self._counts: dict[Candidate, int] = {}

    def count(self, target: Candidate) -> int:
        return self._counts.get(target, 0)

    def snapshot(self) -> dict[Candidate, int]:
        """The deployments with calls in flight now, and how many."""
        return dict(self._counts)

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
            async for chunk in self.inner.stream(call):
                yield chunk
        finally:
            self.board.leave(self.target)
