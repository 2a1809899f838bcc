"""Automatic scorers: a small Protocol, a format checker (the fallback when no answer verifier is available),
the pluggable judge adapter and its test double."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sovrouter.contracts import NormalizedRequest, RequestRecord
from sovrouter.evalloop.failures import classify_failure, format_ok, wants_json
from sovrouter.evalloop.signals import QualitySignal


class Scorer(Protocol):
    """Scores a served answer (``None``: no opinion on this request)."""

    async def score(self, request: NormalizedRequest, record: RequestRecord, answer: str) -> QualitySignal | None:
        ...


class Judge(Protocol):
    """A judge model (or any grader) behind an adapter: absolute quality 0..1 of ``answer`` to ``request``;
    ``reference`` is the reference route's answer when the caller has one (pairwise judging)."""

    async def judge(self, request: NormalizedRequest, answer: str, reference: str | None = None) -> float: ...


class FormatScorer:
    """Format checks: an answer without the asked-for shape (choice letter, number, code, JSON) scores 0 with
    ``format_error``; a well-formed answer gets no score (format says nothing about correctness)."""

    async def score(self, request: NormalizedRequest, record: RequestRecord, answer: str) -> QualitySignal | None:
        if record.status != "ok" or record.final is None:
            return None
        kind = record.signals.output_kind if record.signals is not None else None
        expect_json = wants_json(request.user_text)
        if format_ok(answer, kind, expect_json):
            return None
        mode = classify_failure(record, answer, None, expect_json=expect_json)
        return QualitySignal(request_id=record.request_id, source="scorer", score=0.0, failure_mode=mode,
                             slot=record.final.slot, deployment=record.final.deployment)


@dataclass
class JudgeScorer:
    judge: Judge

    async def score(self, request: NormalizedRequest, record: RequestRecord, answer: str) -> QualitySignal | None:
        if record.status != "ok" or record.final is None:
            return None
        s = await self.judge.judge(request, answer)
        mode = classify_failure(record, answer, s, expect_json=wants_json(request.user_text))
        return QualitySignal(request_id=record.request_id, source="judge", score=s, failure_mode=mode,
                             slot=record.final.slot, deployment=record.final.deployment)


@dataclass
class FakeJudge:
    """Test double: scores with ``rule(answer, reference)`` (default: 1.0 if the answer equals the reference,
    or 0.5 without a reference); counts its calls."""

    rule: Callable[[str, str | None], float] = field(
        default=lambda a, r: 0.5 if r is None else float(a.strip() == r.strip()))
    calls: int = 0

    async def judge(self, request: NormalizedRequest, answer: str, reference: str | None = None) -> float:
        self.calls += 1
        return min(1.0, max(0.0, self.rule(answer, reference)))


class AgreementJudge:
    """The default shadow judge without a judge model: agreement with the reference route's answer, using the
    learned router's answer reader (final answer extracted per output kind: JSON field, choice, boxed,
    number). Both answers extracted: 1.0 when they match, else 0.0; otherwise token overlap (Jaccard, code and
    free text). The reference scores 1.0 against itself, so the shadow pair measures agreement with it."""

    async def judge(self, request: NormalizedRequest, answer: str, reference: str | None = None) -> float:
        if reference is None:
            return 0.5
        from sovrouter.routing.answers import jaccard, read_answer  # the learned router's verifier

        a, r = read_answer(answer), read_answer(reference)
        if a.answer is not None and r.answer is not None:
            return float(a.answer == r.answer)
        return jaccard(answer, reference)
