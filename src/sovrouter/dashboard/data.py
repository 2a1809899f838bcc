"""The figures the dashboard shows, computed from the records and the quality signals (no prompt text, no
personal data: records carry neither)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sovrouter.catalog import Catalog
from sovrouter.contracts import RequestRecord
from sovrouter.evalloop.observations import Observation, observations
from sovrouter.evalloop.shadow import reference_candidate
from sovrouter.evalloop.signals import QualitySignal, Regeneration
from sovrouter.evalloop.stats import Interval, PairedGap, paired_gap, quality_interval
from sovrouter.evalloop.weakness import Slice, WeaknessSettings, analyse


@dataclass
class RouteRow:
    route: str
    requests: int
    share: float
    cost_usd: float
    cost_per_request: float
    latency_mean_ms: float
    latency_p95_ms: float
    ttft_mean_ms: float | None
    regenerations: int
    regeneration_rate: float


@dataclass
class DomainRow:
    domain: str
    quality: Interval
    reference: float | None


@dataclass
class DashboardData:
    requests: int = 0
    served: int = 0
    refused: int = 0
    errors: int = 0
    kpi: dict[str, Any] = field(default_factory=dict)
    quality: Interval | None = None
    gap: PairedGap | None = None
    routes: list[RouteRow] = field(default_factory=list)
    domains: list[DomainRow] = field(default_factory=list)
    weaknesses: list[Slice] = field(default_factory=list)
    recent: list[dict[str, Any]] = field(default_factory=list)
    signal_sources: dict[str, int] = field(default_factory=dict)


def _rate(a: int, b: int) -> float:
    return a / b if b else 0.0


def _evidence(ev: dict[str, Any]) -> str:
    """Scalar evidence only (numbers rounded, long values cut): no vectors, never text from the request."""
    parts = []
    for k, v in ev.items():
        if isinstance(v, int | str):  # bool is an int
            s = str(v)
        elif isinstance(v, float):
            s = f"{v:.3g}"
        else:
            continue
        parts.append(f"{k}={s[:40]}")
    return ", ".join(parts[:8])


def _recent(records: Sequence[RequestRecord], n: int) -> list[dict[str, Any]]:
    out = []
    for r in records[-n:][::-1]:
        sig = r.signals
        out.append({
            "request_id": r.request_id, "tenant": r.tenant, "status": r.status,
            "route": r.final.key if r.final is not None else (r.error_code or "-"),
            "cache": r.cache.kind, "calls": len(r.calls), "cost_usd": r.cost_usd, "latency_ms": r.latency_ms,
            "router": r.decision.router if r.decision is not None else "-",
            "domain": (sig.domain or "-") if sig is not None else "-",
            "output_kind": (sig.output_kind or "-") if sig is not None else "-",
            "evidence": _evidence(r.decision.evidence) if r.decision is not None else "",
            "flags": " ".join(f for f, on in (("fallback", r.fallback_used), ("escalated", r.escalated)) if on),
        })
    return out


def _reference_cost(r: RequestRecord, catalog: Catalog) -> float | None:
    try:
        ref = reference_candidate(r, catalog=catalog)
    except KeyError:  # the record's allowed set names a deployment this catalog no longer has
        return None
    if ref is None:
        return None
    tin = max((c.input_tokens for c in r.calls), default=0)
    tout = next((c.output_tokens for c in reversed(r.calls) if c.outcome == "ok"), 0)
    return catalog.cost_usd(ref.slot, ref.deployment, tin, tout)


def _routes(records: Sequence[RequestRecord], regens: Sequence[Regeneration]) -> list[RouteRow]:
    """Per route: the requests its upstream answered. Cache hits have rows of their own (``cache: exact``...):
    filed under the route that produced the cached answer, at ~0 ms and no cost, they made a slow deployment look
    fast as the hit rate rose (until 2026-11-28)."""
    by_route: dict[str, list[RequestRecord]] = defaultdict(list)
    for r in records:
        if r.final is not None:
            hit = r.cache.kind in ("exact", "semantic")
            by_route[f"cache: {r.cache.kind}" if hit else r.final.key].append(r)
    regen_by = Counter(f"{g.slot}/{g.deployment}" for g in regens if g.slot)
    served = sum(len(v) for v in by_route.values())
    rows = []
    for key, rs in sorted(by_route.items(), key=lambda kv: -len(kv[1])):
        lat = np.asarray([r.latency_ms for r in rs])
        ttfts = [c.ttft_ms for r in rs for c in r.calls if c.outcome == "ok" and c.ttft_ms is not None]
        cost = float(sum(r.cost_usd for r in rs))
        rows.append(RouteRow(key, len(rs), _rate(len(rs), served), cost, cost / len(rs), float(lat.mean()),
                             float(np.quantile(lat, 0.95)), float(np.mean(ttfts)) if ttfts else None,
                             regen_by[key], _rate(regen_by[key], len(rs))))
    return rows


def _domains(obs: Sequence[Observation]) -> list[DomainRow]:
    by: dict[str, list[Observation]] = defaultdict(list)
    for o in obs:
        by[o.domain].append(o)
    rows = []
    for d, os_ in sorted(by.items()):
        refs = [o.reference_score for o in os_ if o.reference_score is not None]
        rows.append(DomainRow(d, quality_interval([o.score for o in os_]), float(np.mean(refs)) if refs else None))
    return rows


def build(records: Iterable[RequestRecord], signals: Iterable[QualitySignal], regens: Sequence[Regeneration],
          catalog: Catalog | None = None, recent: int = 20, weakness_min_n: int = 20) -> DashboardData:
    recs = list(records)
    sigs = list(signals)
    obs = observations(recs, sigs)
    served = [r for r in recs if r.status == "ok"]
    d = DashboardData(requests=len(recs), served=len(served), refused=sum(r.status == "refused" for r in recs),
                      errors=sum(r.status == "error" for r in recs))
    cache = Counter(r.cache.kind for r in served)
    total_cost = float(sum(r.cost_usd for r in recs))
    d.kpi = {
        "cost_usd": total_cost,
        "cost_per_request": _rate_f(total_cost, len(served)),
        "exact_cache_rate": _rate(cache["exact"], len(served)),
        "semantic_cache_rate": _rate(cache["semantic"], len(served)),
        "fallback_rate": _rate(sum(r.fallback_used for r in served), len(served)),
        "escalation_rate": _rate(sum(r.escalated for r in served), len(served)),
        "regeneration_rate": _rate(len(regens), len(recs)),
        "refusal_rate": _rate(d.refused, len(recs)),
    }
    if catalog is not None and served:
        # records outlive catalog changes (a deployment renamed or retired, another instance's catalog): those
        # naming a deployment this catalog lacks are left out of these shares, not a 500 for the whole page
        frontier = {(s.id, dep.id): dep.on_frontier_accelerator for s, dep in catalog.pairs()}
        known = [r for r in served if r.final is not None and (r.final.slot, r.final.deployment) in frontier]
        off = sum(1 for r in known if r.final is not None and not frontier[(r.final.slot, r.final.deployment)])
        if known:
            d.kpi["off_frontier_share"] = off / len(known)
        refs = [(r.cost_usd, _reference_cost(r, catalog)) for r in served if r.cache.kind not in ("exact", "semantic")]
        ref_total = sum(rc for _, rc in refs if rc is not None)
        if ref_total > 0:
            d.kpi["cost_vs_reference_est"] = sum(c for c, rc in refs if rc is not None) / ref_total
    if obs:
        d.quality = quality_interval([o.score for o in obs])
        paired = [o for o in obs if o.reference_score is not None]
        if paired:
            d.gap = paired_gap([o.score for o in paired], [float(o.reference_score or 0.0) for o in paired])
            d.kpi["quality_pairs"] = len(paired)
            d.kpi["quality_ratio"] = _rate_f(sum(o.score for o in paired),
                                             sum(float(o.reference_score or 0.0) for o in paired))
    d.routes = _routes(recs, regens)
    d.domains = _domains(obs)
    d.weaknesses = analyse(obs, WeaknessSettings(min_n=weakness_min_n)).slices[:12] if obs else []
    d.recent = _recent(recs, recent)
    d.signal_sources = dict(Counter(s.source for s in sigs))
    return d


def _rate_f(a: float, b: float) -> float:
    return a / b if b else 0.0
