"""The workload README's baselines, recomputed from the files (a sanity check of the report's definitions).

``always-X``: every request on slot X, on its cheapest deployment (ignoring policy), or on its cheapest compliant
deployment falling back down ``frontier > hosted-mini > sovereign-large > local-small`` (under policy). ``oracle``:
per request the cheapest slot among those with the best score (under policy: among compliant slots, each on its
cheapest compliant deployment). Computed over any list of request ids: the README's figures are per request
record (each request once); the report also shows them per stream event, the replay's denominator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sovrouter.catalog import Deployment
from sovrouter.report.data import EvalData
from sovrouter.report.reference import FALLBACK_ORDER, cheapest_deployment, fallback_route

ALWAYS_ORDER: tuple[str, ...] = ("local-small", "sovereign-large", "hosted-mini", "frontier")


@dataclass
class BaselineRow:
    name: str
    quality: float
    per_domain: dict[str, float]
    cost: float
    cost_vs_frontier: float = 0.0
    on_frontier_share: float = 0.0
    rerouted_share: float | None = None
    n: int = 0
    extra: dict[str, float] = field(default_factory=dict)


def _route(data: EvalData, rid: str, slot: str, under_policy: bool) -> tuple[str, Deployment]:
    if under_policy:
        return fallback_route(data.catalog, slot, data.facts(rid))
    dep = cheapest_deployment(data.catalog, slot, None)
    assert dep is not None
    return slot, dep


def _oracle(data: EvalData, rid: str, under_policy: bool) -> tuple[str, Deployment]:
    best: tuple[float, float, int] | None = None
    choice: tuple[str, Deployment] | None = None
    facts = data.facts(rid) if under_policy else None
    for rank, slot in enumerate(data.slots):
        dep = cheapest_deployment(data.catalog, slot, facts)
        if dep is None:
            continue
        key = (-data.score(rid, slot), data.cost(rid, slot, dep.id), rank)
        if best is None or key < best:
            best, choice = key, (slot, dep)
    assert choice is not None
    return choice


def baselines(data: EvalData, request_ids: Sequence[str], under_policy: bool) -> list[BaselineRow]:
    """Rows for always-X (X in :data:`ALWAYS_ORDER` present in the catalog) and the oracle."""
    slots = [s for s in ALWAYS_ORDER if s in data.slots]
    names = [f"always-{s}" for s in slots] + ["oracle"]
    n = len(request_ids)
    rows: list[BaselineRow] = []
    for name, slot in [*zip(names, slots, strict=False), ("oracle", None)]:
        total_q = 0.0
        cost = 0.0
        on_frontier = 0
        rerouted = 0
        dom_q: dict[str, list[float]] = {}
        for rid in request_ids:
            if slot is None:
                chosen, dep = _oracle(data, rid, under_policy)
            else:
                chosen, dep = _route(data, rid, slot, under_policy)
                rerouted += chosen != slot
            q = data.score(rid, chosen)
            total_q += q
            dom_q.setdefault(data.domain(rid), []).append(q)
            cost += data.cost(rid, chosen, dep.id)
            on_frontier += dep.on_frontier_accelerator
        rows.append(BaselineRow(
            name=name,
            quality=total_q / n if n else 0.0,
            per_domain={d: sum(v) / len(v) for d, v in sorted(dom_q.items())},
            cost=cost,
            on_frontier_share=on_frontier / n if n else 0.0,
            rerouted_share=(rerouted / n if n else 0.0) if slot is not None and under_policy else None,
            n=n,
        ))
    frontier = next((r for r in rows if r.name == f"always-{FALLBACK_ORDER[0]}"), None)
    for r in rows:
        r.cost_vs_frontier = r.cost / frontier.cost if frontier is not None and frontier.cost > 0 else 0.0
    return rows
