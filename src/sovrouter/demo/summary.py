"""The demo's table: one row per request sent, then the totals.

- cost: what the gateway's record says the request cost (catalog prices x the tokens each call reported;
  ``0`` for a cache hit), against **always-frontier**: every request sent to ``frontier`` on its cheapest
  deployment at the frontier slot's recorded tokens, no cache, no policy.
- off frontier accelerators: share of answered requests served from the cache or by a deployment whose
  ``compute`` is not ``frontier-accelerator``.
- latency: wall time the client waited (the whole stream for streaming requests). The playback upstream runs
  the catalog's latency profile scaled down (``--latency-scale``), so these are demo figures, not a benchmark.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from sovrouter.catalog import Catalog

POLICY_REFUSALS = frozenset({"no_allowed_deployment"})


@dataclass(frozen=True)
class DemoRow:
    seq: int
    request_id: str
    tenant: str
    data_class: str
    asked: str  # the model the client asked for ("auto" or a slot)
    stream: bool
    route: str | None  # "slot/deployment" that served it (for a cache hit: the one that produced the entry)
    cache: str  # miss / exact / semantic / bypass
    latency_ms: float
    cost_usd: float
    frontier_cost_usd: float
    output_chars: int = 0
    error: str | None = None  # error code when the gateway refused or failed

    @property
    def ok(self) -> bool:
        return self.error is None and self.route is not None

    @property
    def refused(self) -> bool:
        """Refused by the tenant's policy (403): a correct outcome, not a failure."""
        return self.error in POLICY_REFUSALS


@dataclass(frozen=True)
class DemoTotals:
    requests: int
    answered: int
    refused: int
    errors: int
    cache_hits: int
    local_model_calls: int
    cost_usd: float
    frontier_cost_usd: float
    off_frontier_share: float
    p50_ms: float
    p95_ms: float

    @property
    def cost_ratio(self) -> float:
        return self.cost_usd / self.frontier_cost_usd if self.frontier_cost_usd > 0 else 0.0


def frontier_cost(catalog: Catalog, input_tokens: int, output_tokens: int, slot: str = "frontier") -> float:
    """Cost of one request on ``slot`` at its cheapest deployment."""
    dep = min(catalog.slot(slot).deployments, key=lambda d: d.price_multiplier)
    return catalog.cost_usd(slot, dep.id, input_tokens, output_tokens)


def on_frontier_accelerator(catalog: Catalog, route: str) -> bool:
    slot, _, dep = route.partition("/")
    return catalog.deployment(slot, dep).on_frontier_accelerator


def totals(rows: Sequence[DemoRow], catalog: Catalog, local_route: str = "local-small/edge") -> DemoTotals:
    answered = [r for r in rows if r.ok]
    hits = [r for r in answered if r.cache not in ("miss", "bypass")]
    off = [r for r in answered
           if r in hits or (r.route is not None and not on_frontier_accelerator(catalog, r.route))]
    lat = sorted(r.latency_ms for r in answered)
    p95 = statistics.quantiles(lat, n=20, method="inclusive")[18] if len(lat) >= 2 else (lat[0] if lat else 0.0)
    return DemoTotals(
        requests=len(rows),
        answered=len(answered),
        refused=sum(r.refused for r in rows),
        errors=sum(not r.ok and not r.refused for r in rows),
        cache_hits=len(hits),
        local_model_calls=sum(1 for r in answered if r.route == local_route and r not in hits),
        cost_usd=sum(r.cost_usd for r in rows),
        frontier_cost_usd=sum(r.frontier_cost_usd for r in rows),
        off_frontier_share=len(off) / len(answered) if answered else 0.0,
        p50_ms=statistics.median(lat) if lat else 0.0,
        p95_ms=p95,
    )


_COLUMNS = ("#", "tenant", "class", "asked", "mode", "route", "cache", "ms", "cost $")


def _route_cell(r: DemoRow) -> str:
    if r.ok and r.route:
        return r.route
    return "REFUSED by policy" if r.refused else f"ERROR {r.error}"


def format_table(rows: Sequence[DemoRow]) -> str:
    body = [
        (str(r.seq), r.tenant, r.data_class, r.asked, "stream" if r.stream else "json",
         _route_cell(r), r.cache, f"{r.latency_ms:.0f}", f"{r.cost_usd:.6f}")
        for r in rows
    ]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(_COLUMNS)]
    right = {0, 7, 8}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths,
                                                                                               strict=True)))

    out = [line(_COLUMNS), line(["-" * w for w in widths])]
    out.extend(line(b) for b in body)
    return "\n".join(out)


def format_totals(t: DemoTotals) -> str:
    return "\n".join([
        f"requests             {t.requests} sent, {t.answered} answered, {t.refused} refused by policy, "
        f"{t.errors} errors, "
        f"{t.cache_hits} cache hits, {t.local_model_calls} answered by the local model",
        f"cost                 ${t.cost_usd:.6f} vs always-frontier ${t.frontier_cost_usd:.6f} "
        f"({100 * t.cost_ratio:.1f}%)",
        f"off frontier accel.  {100 * t.off_frontier_share:.1f}% of answered requests",
        f"latency (client)     p50 {t.p50_ms:.0f} ms, p95 {t.p95_ms:.0f} ms",
    ])
