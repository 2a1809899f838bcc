"""Execute a route decision: first try, fallbacks on failure, cascade steps when the router's review asks.

``plan`` is ordered. A failed call falls back to the next entry of the plan; a successful answer goes to the
router's review, which accepts it (``None``), names a later plan entry to escalate to, or names the candidate
of an answer it already has to serve that one instead (e.g. when cheap answers agree after an escalation).
Every call goes through the adapter chain the registry built for that deployment, whose outermost layer (added
here) is the policy guard.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass

from sovrouter.contracts import CallAttempt, Candidate, ModelCall, ModelResult, RouteDecision, StreamChunk
from sovrouter.errors import AllCandidatesFailedError, UpstreamError, UpstreamNotConfiguredError
from sovrouter.protocols import ModelAdapter, closing_stream
from sovrouter.reliability import FallbackAdapter, PolicyGuard

Review = Callable[[Sequence[ModelResult]], Candidate | None]


@dataclass
class Executor:
    """``adapters`` maps each candidate to its (already wrapped) adapter; the guard is added here."""

    adapters: Mapping[Candidate, ModelAdapter]

    def _chain(self, plan: Sequence[Candidate]) -> FallbackAdapter:
        return FallbackAdapter([PolicyGuard(self._adapter(c)) for c in plan])

    def _adapter(self, candidate: Candidate) -> ModelAdapter:
        try:
            return self.adapters[candidate]
        except KeyError:
            return _Unwired(candidate)

    def wired(self, candidate: Candidate) -> bool:
        """Whether ``candidate`` has an adapter (an upstream, or replay's recorded answers)."""
        return candidate in self.adapters

    async def run(self, call: ModelCall, decision: RouteDecision, review: Review) -> ModelResult:
        plan = decision.plan
        results: list[ModelResult] = []
        start = 0
        while start < len(plan):
            try:
                result = await self._chain(plan[start:]).generate(call)
            except UpstreamError:
                if results:  # an escalation failed everywhere: keep the answer we have (not to be cached)
                    call.degraded = True
                    return results[-1]
                raise
            results.append(result)
            if not decision.evidence.get("review", False):  # the router does not review this decision (as in
                return result  # stream below); until 2026-11-28 a worker-thread hop per call (~60 us) asked anyway
            # off the event loop: a review may run verifiers and sandboxed code checks (tens of ms)
            nxt = await asyncio.to_thread(review, results)
            if nxt is None or nxt not in plan:
                return result
            for earlier in results:  # the router picked an answer it already has (e.g. by agreement)
                if earlier.candidate == nxt:
                    return earlier
            nxt_index = plan.index(nxt)
            if nxt_index <= plan.index(result.candidate):
                return result
            start = nxt_index
            call.purpose = "cascade"
        raise AllCandidatesFailedError("empty route plan")

    async def stream(self, call: ModelCall, decision: RouteDecision, review: Review) -> AsyncIterator[StreamChunk]:
        if decision.evidence.get("review", False):
            # The router wants to check the answer before it is shown: buffer, then emit it whole.
            result = await self.run(call, decision, review)
            yield StreamChunk(candidate=result.candidate, delta=result.text)
            yield StreamChunk(candidate=result.candidate, final=result)
            return
        async with closing_stream(self._chain(decision.plan).stream(call)) as chunks:  # a reader's stop reaches
            async for chunk in chunks:  # the upstream call at once (protocols.closing_stream)
                yield chunk


class _Unwired:
    """A catalog deployment with no adapter configured: fails like a down upstream (so fallback applies), and
    leaves its attempt in the call log (until 2026-11-28 it left none, so a record showed a fallback with no
    failed first try)."""

    def __init__(self, candidate: Candidate) -> None:
        self._target = candidate

    @property
    def target(self) -> Candidate:
        return self._target

    def _fail(self, call: ModelCall) -> UpstreamNotConfiguredError:
        error = UpstreamNotConfiguredError(f"no upstream configured for {self._target.key}")
        call.attempts.append(CallAttempt(candidate=self._target, outcome="error", error=error.code,
                                         purpose=call.purpose))
        return error

    async def generate(self, call: ModelCall) -> ModelResult:
        raise self._fail(call)

    async def stream(self, call: ModelCall) -> AsyncIterator[StreamChunk]:
        raise self._fail(call)
        yield  # pragma: no cover
