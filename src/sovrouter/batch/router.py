"""Batch-mode routing: the same router, its plan re-ordered by expected cost once latency does not matter.

:class:`DeferrableRouter` wraps any :class:`~sovrouter.protocols.Router` with the same Protocol. It never adds
a candidate outside the allowed set the pipeline passed (which the policy computed), so policy and sovereignty
are untouched. ``scope`` says how far cost may override the inner router's order:

- ``"slot"`` (default): keep the inner router's model (slot) order, and within each slot put its cheapest
  allowed deployment first: the same model on cheaper capacity (an off-peak/batch pool, a cheaper region the
  policy allows), so answer quality is what the inner router chose.
- ``"plan"``: sort the inner plan by expected cost: the cheapest candidate the inner router listed at all.
- ``"allowed"``: sort the whole allowed set by cost (cheapest allowed capacity, whatever the model).

Expected cost = catalog prices x (estimated prompt tokens, ``max_tokens`` or a default output length). Ties
keep the inner order. Review is delegated to the inner router (a cascade to a later plan entry still works;
re-ordering may put an escalation target before the first try, in which case the executor does not go back).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from sovrouter.catalog import Catalog, estimate_tokens
from sovrouter.contracts import Candidate, ModelResult, NormalizedRequest, RouteDecision, Signals
from sovrouter.protocols import Router

DEFAULT_OUTPUT_TOKENS = 256


class DeferrableRouter:
    def __init__(self, inner: Router, catalog: Catalog, *, scope: Literal["slot", "plan", "allowed"] = "slot",
                 default_output_tokens: int = DEFAULT_OUTPUT_TOKENS) -> None:
        self.inner = inner
        self.catalog = catalog
        self.scope = scope
        self.default_output_tokens = default_output_tokens
        self.name = f"deferrable({inner.name})"

    def expected_cost(self, request: NormalizedRequest, candidate: Candidate) -> float:
        out_tokens = request.parameters.max_tokens or self.default_output_tokens
        return self.catalog.cost_usd(candidate.slot, candidate.deployment, estimate_tokens(request.prompt_text),
                                     out_tokens)

    def decide(self, request: NormalizedRequest, signals: Signals, allowed: Sequence[Candidate]) -> RouteDecision:
        inner = self.inner.decide(request, signals, allowed)
        allowed_set = set(allowed)
        plan = [c for c in inner.plan if c in allowed_set]
        if self.scope == "allowed":
            plan += [c for c in allowed if c not in plan]
        position = {c: i for i, c in enumerate(plan)}
        slot_rank: dict[str, int] = {}
        for c in plan:
            slot_rank.setdefault(c.slot, len(slot_rank))
        if self.scope == "slot":
            plan += [c for c in allowed if c not in position and c.slot in slot_rank]
            position = {c: i for i, c in enumerate(plan)}
        by_slot = self.scope == "slot"
        ordered = sorted(plan, key=lambda c: (slot_rank[c.slot] if by_slot else 0, self.expected_cost(request, c),
                                              position[c]))
        evidence = dict(inner.evidence)
        evidence.update({"deferrable": True, "inner_router": self.inner.name,
                         "inner_plan": [c.key for c in inner.plan], "batch_scope": self.scope})
        return RouteDecision(plan=ordered, router=self.name, evidence=evidence)

    def review(self, request: NormalizedRequest, signals: Signals, decision: RouteDecision,
               results: Sequence[ModelResult]) -> Candidate | None:
        return self.inner.review(request, signals, decision, results)
