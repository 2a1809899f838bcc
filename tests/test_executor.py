"""The executor: plan order, and when the router's review is asked."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from sovrouter.contracts import Candidate, ModelCall, ModelResult, RouteDecision
from sovrouter.executor import Executor
from sovrouter.intake import normalize_chat
from sovrouter.testing import FakeAdapter

CHEAP = Candidate(slot="local-small", deployment="edge")
TOP = Candidate(slot="frontier", deployment="us")


class _Escalator:
    """A review that always wants the next plan entry, and counts how often it is asked."""

    def __init__(self, plan: Sequence[Candidate]) -> None:
        self.plan = list(plan)
        self.calls = 0

    def __call__(self, results: Sequence[ModelResult]) -> Candidate | None:
        self.calls += 1
        done = {r.candidate for r in results}
        return next((c for c in self.plan if c not in done), None)


async def _serve(executor: Executor, decision: RouteDecision, review: _Escalator, stream: bool) -> ModelResult:
    call = ModelCall(request=normalize_chat({"messages": [{"role": "user", "content": "hi"}]}, tenant="t",
                                            request_id="r"), allowed=[CHEAP, TOP])
    if not stream:
        return await executor.run(call, decision, review)
    final = None
    async for chunk in executor.stream(call, decision, review):
        final = chunk.final or final
    assert final is not None
    return final


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("evidence", [{}, {"review": False}])
async def test_a_decision_without_review_serves_its_first_answer_streamed_or_not(
        evidence: dict[str, object], stream: bool) -> None:
    adapters = {c: FakeAdapter(c, text=c.slot) for c in (CHEAP, TOP)}
    review = _Escalator([CHEAP, TOP])
    result = await _serve(Executor(adapters=dict(adapters)), RouteDecision(plan=[CHEAP, TOP], router="t",
                                                                           evidence=evidence), review, stream)
    # until 2026-11-28 a JSON request asked the review anyway (and escalated here) where a streamed one did not
    assert result.candidate == CHEAP and review.calls == 0 and adapters[TOP].calls == 0


@pytest.mark.parametrize("stream", [False, True])
async def test_a_decision_with_review_is_reviewed_and_escalates(stream: bool) -> None:
    adapters = {c: FakeAdapter(c, text=c.slot) for c in (CHEAP, TOP)}
    review = _Escalator([CHEAP, TOP])
    decision = RouteDecision(plan=[CHEAP, TOP], router="t", evidence={"review": True})
    result = await _serve(Executor(adapters=dict(adapters)), decision, review, stream)
    assert result.candidate == TOP and review.calls == 2 and adapters[TOP].calls == 1
