"""Shadow sampling: a deterministic fraction of served requests is also answered by the reference route
(frontier-first among the request's allowed set), through the same adapter chain and policy guard, with
``purpose="shadow"``; a judge scores both answers and the pair is stored, so quality against the reference is
tracked live. The shadow answer is never shown and no second request record is written."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sovrouter.catalog import Catalog
from sovrouter.contracts import CallAttempt, Candidate, ModelCall, NormalizedRequest, RequestRecord
from sovrouter.errors import UpstreamError
from sovrouter.evalloop.failures import classify_failure, wants_json
from sovrouter.evalloop.scorers import Judge
from sovrouter.evalloop.signals import QualitySignal, SignalStore
from sovrouter.pipeline import priced
from sovrouter.protocols import ModelAdapter
from sovrouter.reliability import PolicyGuard
from sovrouter.telemetry.metrics import RequestMetrics

REFERENCE_ORDER = ("frontier", "hosted-mini", "sovereign-large", "local-small")


def sampled(request_id: str, fraction: float) -> bool:
    """Deterministic: the same request id is always in or always out (hash of the id, not a random draw)."""
    if fraction <= 0:
        return False
    h = int.from_bytes(hashlib.sha256(request_id.encode("utf-8")).digest()[:8], "big")
    return (h % 1_000_000) < fraction * 1_000_000


def reference_candidate(record: RequestRecord, order: Sequence[str] = REFERENCE_ORDER,
                        catalog: Catalog | None = None) -> Candidate | None:
    """The reference route of a request: the first slot of ``order`` the policy allowed; within the slot the
    cheapest deployment (by the catalog's price multiplier, else the policy's order)."""
    allowed = [v.candidate for v in record.policy if v.allowed]
    for slot in order:
        cands = [c for c in allowed if c.slot == slot]
        if cands:
            if catalog is not None:
                cands.sort(key=lambda c: catalog.deployment(c.slot, c.deployment).price_multiplier)
            return cands[0]
    return None


@dataclass
class ShadowSampler:
    adapters: Mapping[Candidate, ModelAdapter]
    judge: Judge
    store: SignalStore
    fraction: float = 0.05
    order: tuple[str, ...] = REFERENCE_ORDER
    catalog: Catalog | None = None
    metrics: RequestMetrics | None = None

    async def after(self, request: NormalizedRequest, record: RequestRecord, answer: str) -> QualitySignal | None:
        """Call after the pipeline has answered. Returns the stored signal, or ``None`` when not sampled, not
        servable (refused, cache hit) or the reference call failed."""
        if record.status != "ok" or record.final is None or record.cache.kind in ("exact", "semantic"):
            return None
        if not sampled(record.request_id, self.fraction):
            return None
        ref = reference_candidate(record, self.order, self.catalog)
        if ref is None:
            return None
        cost = 0.0
        if ref == record.final:
            reference_answer = answer  # the router already chose the reference: no second call needed
        else:
            adapter = self.adapters.get(ref)
            if adapter is None:
                return None
            call = ModelCall(request=request, allowed=[v.candidate for v in record.policy if v.allowed],
                             purpose="shadow")
            try:
                result = await PolicyGuard(adapter).generate(call)
            except UpstreamError as exc:
                if self.metrics is not None:
                    self.metrics.shadow(ref, exc.code, record.tenant, self._tries(request, call))
                return None
            reference_answer = result.text
            if self.catalog is not None:
                cost = self.catalog.cost_usd(ref.slot, ref.deployment, result.input_tokens, result.output_tokens)
            if self.metrics is not None:
                self.metrics.shadow(ref, "ok", record.tenant, self._tries(request, call))
        score = await self.judge.judge(request, answer, reference_answer)
        ref_score = await self.judge.judge(request, reference_answer, reference_answer)
        signal = QualitySignal(
            request_id=record.request_id, source="shadow", score=score, reference_score=ref_score,
            failure_mode=classify_failure(record, answer, score, expect_json=wants_json(request.user_text)),
            slot=record.final.slot, deployment=record.final.deployment, reference_slot=ref.slot, cost_usd=cost,
        )
        self.store.add(signal)
        return signal

    def _tries(self, request: NormalizedRequest, call: ModelCall) -> list[CallAttempt]:
        """The shadow call's tries as the adapter chain logged them (a retry is a try of its own), priced as a
        request's calls are (a timed-out try had the prompt)."""
        if self.catalog is None:
            return list(call.attempts)
        return [priced(self.catalog, request, a) for a in call.attempts]
