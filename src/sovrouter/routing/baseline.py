"""Baseline router: a documented static preference, no learning.

Standard-value tenants: the cheapest allowed off-frontier deployment of the best open slot first
(``sovereign-large``), then the frontier slot as fallback; high-value tenants: frontier first. Within a slot the
cheapest deployment (by price multiplier) comes first. It never escalates on review. It exists so the request
path has a router from day one; the learned router replaces it through the same Protocol.
"""

from __future__ import annotations

from collections.abc import Sequence

from sovrouter.catalog import Catalog, Tenants
from sovrouter.contracts import Candidate, ModelResult, NormalizedRequest, RouteDecision, Signals

STANDARD_ORDER = ("sovereign-large", "frontier", "hosted-mini", "local-small")
HIGH_VALUE_ORDER = ("frontier", "sovereign-large", "hosted-mini", "local-small")


class BaselineRouter:
    name = "baseline"

    def __init__(self, catalog: Catalog, tenants: Tenants | None = None) -> None:
        self.catalog = catalog
        self.tenants = tenants

    def _order(self, tenant: str) -> tuple[str, ...]:
        if self.tenants is not None:
            try:
                if self.tenants.get(tenant).value == "high":
                    return HIGH_VALUE_ORDER
            except KeyError:
                pass
        return STANDARD_ORDER

    def decide(self, request: NormalizedRequest, signals: Signals, allowed: Sequence[Candidate]) -> RouteDecision:
        order = self._order(request.tenant)

        def rank(c: Candidate) -> tuple[int, float, str]:
            slot_rank = order.index(c.slot) if c.slot in order else len(order)
            mult = self.catalog.deployment(c.slot, c.deployment).price_multiplier
            return (slot_rank, mult, c.key)

        plan = sorted(allowed, key=rank)
        return RouteDecision(plan=plan, router=self.name, evidence={"order": list(order), "review": False})

    def review(self, request: NormalizedRequest, signals: Signals, decision: RouteDecision,
               results: Sequence[ModelResult]) -> Candidate | None:
        return None
