"""Baseline router: a documented static preference, no learning.

Standard-value tenants: the cheapest allowed off-frontier deployment of the best open slot first
(``sovereign-large``), then the frontier slot as fallback; high-value tenants: frontier first. Within a slot the
deployment its :class:`~sovrouter.protocols.DeploymentChooser` puts first (by default the cheapest by price
multiplier) comes first. It never escalates on review. It exists so the request
path has a router from day one; the learned router replaces it through the same Protocol.
"""

from __future__ import annotations

from collections.abc import Sequence

from sovrouter.catalog import Catalog, Tenants
from sovrouter.contracts import Candidate, ModelResult, NormalizedRequest, RouteDecision, Signals
from sovrouter.protocols import DeploymentChooser
from sovrouter.routing.deployments import CheapestDeployment

STANDARD_ORDER = ("sovereign-large", "frontier", "hosted-mini", "local-small")
HIGH_VALUE_ORDER = ("frontier", "sovereign-large", "hosted-mini", "local-small")


class BaselineRouter:
    name = "baseline"

    def __init__(self, catalog: Catalog, tenants: Tenants | None = None,
                 deployments: DeploymentChooser | None = None) -> None:
        self.catalog = catalog
        self.tenants = tenants
        self.deployments = deployments or CheapestDeployment(catalog)

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
        position = {c: i for i, c in enumerate(self.deployments.order(request, signals, allowed))}

        def rank(c: Candidate) -> tuple[int, int]:
            slot_rank = order.index(c.slot) if c.slot in order else len(order)
            return (slot_rank, position[c])

        plan = sorted(allowed, key=rank)
        evidence: dict[str, object] = {"order": list(order), "review": False}
        deployment = self.deployments.describe(request, signals, plan)
        if deployment:
            evidence["deployment"] = deployment
        return RouteDecision(plan=plan, router=self.name, evidence=evidence)

    def review(self, request: NormalizedRequest, signals: Signals, decision: RouteDecision,
               results: Sequence[ModelResult]) -> Candidate | None:
        return None
