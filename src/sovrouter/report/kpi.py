"""KPIs of a replay against the always-frontier-under-policy reference (definitions in ``docs/report.md``).

Per stream event ``e`` of request ``r``:

- quality: the score of ``r`` on the slot whose answer was served (``final.model``); refused = 0. A cache hit
  serves the answer its source event produced on that slot: it scores ``score(r, slot)`` when the source event
  is the same benchmark item (always so for exact hits), 0 when it is a different item (a semantic hit that
  served another prompt's answer);
- cost: the sum over ``calls`` of the catalog cost with the workload's token counts of ``r`` (a cache hit
  without calls costs 0);
- off frontier: no call on a ``frontier-accelerator`` deployment;
- reference: :func:`~sovrouter.report.reference.reference_route` for ``r``, paid on every event (no cache);
- violations: calls, and cache-served deployments, that the README's policy reading forbids for ``r``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sovrouter.replay.decisions import Decision
from sovrouter.report.data import EvalData
from sovrouter.report.reference import allowed, reference_route

BOOTSTRAP_SEED = 20240601
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class EventEval:
    seq: int
    request_id: str
    domain: str
    quality: float
    ref_quality: float
    cost: float
    ref_cost: float
    off_frontier: bool
    cache_hit: bool
    refused: bool
    violations: int
    cross_tenant_cache: bool
    cache_other_item: bool = False
    ref_off_frontier: bool = False  # served an answer produced for another benchmark item (scored 0)


def validate(data: EvalData, decisions: Sequence[Decision]) -> list[str]:
    """Problems that make a decision file invalid for this workload (empty list: valid)."""
    problems: list[str] = []
    by_seq: dict[int, Decision] = {}
    for d in decisions:
        if d.seq in by_seq:
            problems.append(f"seq {d.seq}: more than one decision")
        by_seq[d.seq] = d
    stream_seqs = {e.seq for e in data.stream}
    problems += [f"seq {s}: decision for an event not in the stream" for s in sorted(set(by_seq) - stream_seqs)]
    known = {(s.id, dep.id) for s, dep in data.catalog.pairs()}
    for e in data.stream:
        found = by_seq.get(e.order)
        if found is None:
            problems.append(f"seq {e.seq}: no decision")
            continue
        d = found
        if d.workload_id != e.request_id:
            problems.append(f"seq {e.seq}: request_id does not match the stream")
        for r in [*d.calls, *([d.final] if d.final else [])]:
            if (r.model, r.deployment) not in known:
                problems.append(f"seq {e.seq}: unknown deployment {r.model}/{r.deployment}")
        if d.cache is not None:
            src = by_seq.get(d.cache.source_seq)
            if d.cache.source_seq >= d.seq or src is None or src.final is None:
                problems.append(f"seq {e.seq}: cache source {d.cache.source_seq} is not an earlier served event")
            elif d.final is None or (d.final.model, d.final.deployment) != (src.final.model, src.final.deployment):
                problems.append(f"seq {e.seq}: cache hit's final differs from its source's final")
        elif d.final is not None and d.final not in d.calls:
            problems.append(f"seq {e.seq}: final route was never called")
    return problems


def evaluate_events(data: EvalData, decisions: Sequence[Decision]) -> list[EventEval]:
    """One :class:`EventEval` per decision, in ``seq`` order (decisions must be valid, see :func:`validate`). An
    event whose request the workload lacks (replay gave it an error decision) has nothing to score: left out."""
    by_seq = {d.seq: d for d in decisions}
    out: list[EventEval] = []
    for d in sorted(decisions, key=lambda x: x.seq):
        rid = d.workload_id
        if rid not in data.requests:
            continue
        facts = data.facts(rid)
        ref_slot, ref_dep = reference_route(data.catalog, facts)
        quality = 0.0
        cross_tenant = False
        other_item = False
        violations = sum(not allowed(data.catalog, c.model, c.deployment, facts) for c in d.calls)
        if d.final is not None:
            if d.cache is None:
                quality = data.score(rid, d.final.model)
            else:
                src_rid = by_seq[d.cache.source_seq].workload_id
                other_item = not data.same_item(rid, src_rid)
                quality = 0.0 if other_item else data.score(rid, d.final.model)
                cross_tenant = data.requests[src_rid].tenant != facts.tenant
                violations += not allowed(data.catalog, d.final.model, d.final.deployment, facts)
        off = not any(data.catalog.deployment(c.model, c.deployment).on_frontier_accelerator for c in d.calls)
        out.append(EventEval(
            seq=d.seq,
            request_id=rid,
            domain=data.domain(rid),
            quality=quality,
            ref_quality=data.score(rid, ref_slot),
            cost=sum(data.cost(rid, c.model, c.deployment) for c in d.calls),
            ref_cost=data.cost(rid, ref_slot, ref_dep.id),
            off_frontier=off,
            cache_hit=d.cache is not None,
            refused=d.final is None,
            violations=violations,
            cross_tenant_cache=cross_tenant,
            cache_other_item=other_item,
            ref_off_frontier=not ref_dep.on_frontier_accelerator,
        ))
    return out


def summarize(events: Sequence[EventEval]) -> dict[str, float]:
    n = len(events)
    if n == 0:
        return {"n": 0, "quality": 0.0, "ref_quality": 0.0, "cost": 0.0, "ref_cost": 0.0, "cost_ratio": 0.0,
                "off_frontier_share": 0.0, "ref_off_frontier_share": 0.0, "cache_hit_share": 0.0, "refusals": 0,
                "violations": 0}
    cost = sum(e.cost for e in events)
    ref_cost = sum(e.ref_cost for e in events)
    return {
        "n": n,
        "quality": sum(e.quality for e in events) / n,
        "ref_quality": sum(e.ref_quality for e in events) / n,
        "cost": cost,
        "ref_cost": ref_cost,
        "cost_ratio": cost / ref_cost if ref_cost > 0 else 0.0,
        "off_frontier_share": sum(e.off_frontier for e in events) / n,
        "ref_off_frontier_share": sum(e.ref_off_frontier for e in events) / n,
        "cache_hit_share": sum(e.cache_hit for e in events) / n,
        "refusals": sum(e.refused for e in events),
        "violations": sum(e.violations for e in events),
    }


def paired_diff(events: Sequence[EventEval], seed: int = BOOTSTRAP_SEED,
                resamples: int = BOOTSTRAP_RESAMPLES) -> dict[str, float]:
    """Mean of ``quality - ref_quality`` per event with a 95% percentile-bootstrap interval (fixed seed)."""
    diff = np.array([e.quality - e.ref_quality for e in events], dtype=float)
    if diff.size == 0:
        return {"mean": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for i in range(resamples):  # one draw at a time keeps memory flat on large streams
        means[i] = diff[rng.integers(0, diff.size, diff.size)].mean()
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": float(diff.mean()), "ci_low": float(low), "ci_high": float(high)}


def kpi_report(data: EvalData, decisions: Sequence[Decision]) -> dict[str, Any]:
    """The report JSON (see ``docs/report.md``)."""
    events = evaluate_events(data, decisions)
    overall = summarize(events)
    domains: dict[str, list[EventEval]] = {}
    for e in events:
        domains.setdefault(e.domain, []).append(e)
    per_domain: dict[str, dict[str, Any]] = {}
    for name in sorted(domains):
        row: dict[str, Any] = dict(summarize(domains[name]))
        row["paired_diff"] = paired_diff(domains[name])
        per_domain[name] = row
    return {
        "n_events": overall["n"],
        "quality": overall["quality"],
        "ref_quality": overall["ref_quality"],
        "cost": overall["cost"],
        "ref_cost": overall["ref_cost"],
        "cost_ratio": overall["cost_ratio"],
        "off_frontier_share": overall["off_frontier_share"],
        "ref_off_frontier_share": overall["ref_off_frontier_share"],
        "cache_hit_share": overall["cache_hit_share"],
        "refusals": overall["refusals"],
        "violations": overall["violations"],
        "cross_tenant_cache_hits": sum(e.cross_tenant_cache for e in events),
        "cache_other_item_hits": sum(e.cache_other_item for e in events),
        "paired_diff": paired_diff(events),
        "per_domain": per_domain,
    }
