"""One observation per request with a quality signal: what the system knew in production (its own
classification in ``record.signals``, the route, the router's predicted quality, the cost) joined with the
observed quality. This is the table the weakness report, the dashboard and recalibration read."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sovrouter.contracts import RequestRecord
from sovrouter.evalloop.signals import QualitySignal, best_signal

UNKNOWN = "unknown"


def predicted_quality(record: RequestRecord, slot: str | None = None, *, raw: bool = False) -> float | None:
    """The router's predicted quality of the served slot, from whatever it exposes: ``evidence
    ["predicted_quality"]`` (a number for the served route, or a mapping by candidate key or slot; the learned
    router's verifiers write it), else a classifier's per-slot prior (``signals.slot_prior``) for routers that
    expose nothing else. The learned router's prior is never used: prompt-only and poorly calibrated (ECE
    0.15-0.28), it made every slot alarm on a replay with no drift (found in review, 2026-11-28)."""
    target = slot or (record.final.slot if record.final is not None else None)
    if target is None:
        return None
    key = f"{target}/{record.final.deployment}" if record.final is not None and slot is None else target
    evidence = record.decision.evidence if record.decision is not None else {}
    ev: Any = (raw and evidence.get("predicted_quality_raw")) or evidence.get("predicted_quality")
    if isinstance(ev, int | float):
        return float(ev)
    if isinstance(ev, Mapping):
        for k in (key, target):
            v = ev.get(k)
            if isinstance(v, int | float):
                return float(v)
    if record.decision is not None and "learned" in (record.decision.router, evidence.get("inner_router")):
        return None  # no verifier read that answer (a direct, single or tools route): no prediction to compare
    prior = getattr(record.signals, "slot_prior", None) if record.signals is not None else None
    if isinstance(prior, Mapping):
        v = prior.get(target)
        if isinstance(v, int | float):
            return float(v)
    return None


@dataclass(frozen=True)
class Observation:
    request_id: str
    tenant: str
    slot: str
    deployment: str
    domain: str
    language: str
    output_kind: str
    score: float
    reference_score: float | None
    reference_slot: str | None
    predicted: float | None
    failure_mode: str | None
    cost_usd: float
    source: str
    predicted_raw: float | None = None  # before the router's recalibration map (what the next map is fitted on)

    def dim(self, name: str) -> str:
        v: str = getattr(self, name)
        return v


def observations(records: Iterable[RequestRecord], signals: Iterable[QualitySignal]) -> list[Observation]:
    by_rid: dict[str, list[QualitySignal]] = defaultdict(list)
    for s in signals:
        by_rid[s.request_id].append(s)
    out: list[Observation] = []
    for rec in records:
        sigs = by_rid.get(rec.request_id)
        if not sigs or rec.final is None or rec.status != "ok":
            continue
        best = best_signal(sigs)
        if best is None or best.score is None:
            continue
        ref = next((s for s in sigs if s.reference_score is not None), None)
        mode = best.failure_mode or next((s.failure_mode for s in sigs if s.failure_mode), None)
        sig = rec.signals
        out.append(Observation(
            request_id=rec.request_id, tenant=rec.tenant, slot=rec.final.slot, deployment=rec.final.deployment,
            domain=(sig.domain if sig and sig.domain else UNKNOWN),
            language=(sig.language if sig and sig.language else UNKNOWN),
            output_kind=(sig.output_kind if sig and sig.output_kind else UNKNOWN),
            score=best.score, reference_score=ref.reference_score if ref else None,
            reference_slot=ref.reference_slot if ref else None, predicted=predicted_quality(rec),
            predicted_raw=predicted_quality(rec, raw=True),
            failure_mode=mode, cost_usd=rec.cost_usd, source=best.source,
        ))
    return out
