from __future__ import annotations

from collections.abc import Sequence

import pytest

from sovrouter.batch.router import DeferrableRouter
from sovrouter.catalog import Catalog, Tenants
from sovrouter.contracts import Candidate, ModelResult, NormalizedRequest, RouteDecision, Signals
from sovrouter.intake import normalize_chat
from sovrouter.routing.baseline import BaselineRouter


def _req(tenant: str = "acme-us") -> NormalizedRequest:
    return normalize_chat({"messages": [{"role": "user", "content": "summarise the meeting notes"}],
                           "max_tokens": 100}, tenant=tenant, request_id="r")


def _all(catalog: Catalog) -> list[Candidate]:
    return [Candidate(slot=s.id, deployment=d.id) for s, d in catalog.pairs()]


class RogueRouter:
    """A broken inner router that ignores the allowed set and lists every deployment, most expensive first."""

    name = "rogue"

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def decide(self, request: NormalizedRequest, signals: Signals, allowed: Sequence[Candidate]) -> RouteDecision:
        return RouteDecision(plan=list(reversed(_all(self.catalog))), router=self.name)

    def review(self, request: NormalizedRequest, signals: Signals, decision: RouteDecision,
               results: Sequence[ModelResult]) -> Candidate | None:
        return None


@pytest.mark.parametrize("scope", ["slot", "plan", "allowed"])
def test_never_leaves_the_allowed_set(catalog: Catalog, tenants: Tenants, scope: str) -> None:
    everything = _all(catalog)
    allowed = [c for c in everything if c.slot != "local-small" and c.deployment != "us-east"]
    for inner in (BaselineRouter(catalog, tenants), RogueRouter(catalog)):
        router = DeferrableRouter(inner, catalog, scope=scope)  # type: ignore[arg-type]
        plan = router.decide(_req(), Signals(), allowed).plan
        assert plan and set(plan) <= set(allowed)
        assert len(plan) == len(set(plan))


def test_plan_scope_puts_the_cheapest_allowed_first(catalog: Catalog, tenants: Tenants) -> None:
    allowed = [c for c in _all(catalog) if c.slot != "local-small"]
    router = DeferrableRouter(BaselineRouter(catalog, tenants), catalog, scope="plan")
    plan = router.decide(_req(), Signals(), allowed).plan
    costs = [router.expected_cost(_req(), c) for c in plan]
    assert costs == sorted(costs)
    assert plan[0].slot == "hosted-mini"  # cheaper than sovereign-large (the baseline's first choice)


def test_slot_scope_keeps_the_model_and_takes_its_cheapest_deployment(catalog: Catalog, tenants: Tenants) -> None:
    class PreferEuZone(RogueRouter):
        name = "eu-zone-first"

        def decide(self, request: NormalizedRequest, signals: Signals,
                   allowed: Sequence[Candidate]) -> RouteDecision:
            return RouteDecision(plan=[Candidate(slot="hosted-mini", deployment="eu-zone"),
                                       Candidate(slot="frontier", deployment="us")], router=self.name)

    allowed = _all(catalog)
    decision = DeferrableRouter(PreferEuZone(catalog), catalog, scope="slot").decide(_req(), Signals(), allowed)
    eu = catalog.deployment("hosted-mini", "eu-zone").price_multiplier
    us = catalog.deployment("hosted-mini", "us").price_multiplier
    assert us < eu
    assert decision.plan[0] == Candidate(slot="hosted-mini", deployment="us")
    assert [c.slot for c in decision.plan] == ["hosted-mini", "hosted-mini", "frontier"]
    assert decision.evidence["deferrable"] is True and decision.router == "deferrable(eu-zone-first)"


def test_allowed_scope_can_pick_a_slot_the_inner_router_left_out(catalog: Catalog, tenants: Tenants) -> None:
    class FrontierOnly(RogueRouter):
        def decide(self, request: NormalizedRequest, signals: Signals,
                   allowed: Sequence[Candidate]) -> RouteDecision:
            return RouteDecision(plan=[Candidate(slot="frontier", deployment="us")], router=self.name)

    allowed = _all(catalog)
    req = _req()
    assert DeferrableRouter(FrontierOnly(catalog), catalog, scope="plan").decide(req, Signals(), allowed).plan == [
        Candidate(slot="frontier", deployment="us")]
    plan = DeferrableRouter(FrontierOnly(catalog), catalog, scope="allowed").decide(req, Signals(), allowed).plan
    assert plan[0].slot == "local-small" and len(plan) == len(allowed)
