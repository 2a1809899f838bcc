"""Which deployment of a chosen slot serves a request: the cheapest, or the cheapest that is fast enough.

A router decides *which model* (slot) answers; the same model often runs on several deployments (regions,
on-premises pools, GPU deployments with or without speculative decoding). Both routers hand that second choice
to a :class:`~sovrouter.protocols.DeploymentChooser`, which only ever orders the options it is given (the
allowed deployments of one slot, computed by the policy), so sovereignty is untouched.

- :class:`CheapestDeployment`: price multiplier, then deployment id (the routers' behaviour before latency was
  known to them).
- :class:`LatencyAwareDeployment`: expected latency per request and deployment, from the catalog's TTFT and
  decode rate times the deployment's speculative-decoding speed-up at the answer's expected copy fraction
  (:func:`sovrouter.speculative.latency.expected_latency_ms`). Without a latency budget: cheapest first, and
  among equally priced deployments the faster one (a draft-model or prompt-lookup deployment for a copy-heavy
  answer, the plain one when speculation would slow it down). With the tenant's ``latency_budget_ms``: the
  cheapest deployment expected to meet it, else the fastest. Answer quality does not change (same model);
  cost rises only to meet a budget the tenant set. Given an :class:`~sovrouter.adapters.inflight.InFlightBoard`
  (the gateway's), the estimate knows how many calls each deployment is serving, so a speculative deployment
  loaded past its declared ``max_batch`` is estimated at its plain speed.

The answer's shape comes from an :class:`AnswerShapeEstimator`: the learned
:class:`~sovrouter.speculative.answer_shape.AnswerShapeModel` in the gateway (copy fraction, p50 and p90 output
tokens, learned from recorded traffic), or :class:`CueAnswerShape` (instruction cues and a fixed length). The
p50 length orders deployments, the p90 length decides whether a budget is met; ``max_tokens`` caps both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sovrouter.adapters.inflight import InFlightBoard
from sovrouter.catalog import Catalog, Deployment, Tenants
from sovrouter.contracts import Candidate, NormalizedRequest, Signals
from sovrouter.speculative.answer_shape import AnswerShape, AnswerShapeEstimator, RecentShapes
from sovrouter.speculative.latency import expected_latency_ms
from sovrouter.speculative.predictor import CopyPredictor

DEFAULT_OUTPUT_TOKENS = 256  # CueAnswerShape's length when nothing better is known
RECENT_SHAPES = 256


def _multiplier(catalog: Catalog, c: Candidate) -> float:
    try:
        return catalog.deployment(c.slot, c.deployment).price_multiplier
    except KeyError:
        return float("inf")  # not in the catalog: never preferred


class CheapestDeployment:
    """Price multiplier, then deployment id: deterministic, no latency knowledge."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def order(self, request: NormalizedRequest, signals: Signals, options: Sequence[Candidate]) -> list[Candidate]:
        return sorted(options, key=lambda c: (_multiplier(self.catalog, c), c.deployment, c.slot))

    def describe(self, request: NormalizedRequest, signals: Signals, plan: Sequence[Candidate]) -> dict[str, Any]:
        return {}


class CueAnswerShape:
    """Answer shape without a learned model: the cue predictor's copy fraction and a fixed output length."""

    def __init__(self, predictor: CopyPredictor | None = None, output_tokens: int = DEFAULT_OUTPUT_TOKENS) -> None:
        self.predictor = predictor or CopyPredictor()
        self.output_tokens = max(1, output_tokens)

    def shape(self, request: NormalizedRequest) -> AnswerShape:
        p = self.predictor.predict(request)
        return AnswerShape(p.copy_fraction, self.output_tokens, self.output_tokens, p.kind)


class LatencyAwareDeployment:
    """Cheapest deployment expected to meet the tenant's latency budget (else the fastest); without a budget,
    the cheapest and, at equal price, the fastest. See the module docstring."""

    def __init__(self, catalog: Catalog, tenants: Tenants | None = None,
                 shapes: AnswerShapeEstimator | None = None, load: InFlightBoard | None = None) -> None:
        self.catalog = catalog
        self.tenants = tenants
        self.shapes: AnswerShapeEstimator = shapes or CueAnswerShape()
        self.load = load
        self._recent = RecentShapes(RECENT_SHAPES)  # decide() asks twice (order, describe)

    def shape(self, request: NormalizedRequest) -> AnswerShape:
        return self._recent.get(request, self.shapes.shape)

    def budget_ms(self, tenant: str) -> float | None:
        if self.tenants is None:
            return None
        try:
            return self.tenants.get(tenant).latency_budget_ms
        except KeyError:
            return None

    @staticmethod
    def _capped(tokens: int, request: NormalizedRequest) -> int:
        cap = request.parameters.max_tokens
        return min(cap, tokens) if cap is not None else tokens

    def _deployment(self, c: Candidate) -> Deployment | None:
        try:
            return self.catalog.deployment(c.slot, c.deployment)
        except KeyError:
            return None

    def _in_flight(self, c: Candidate) -> int:
        return self.load.count(c) if self.load is not None else 0

    def _latency(self, c: Candidate, tokens: int, copy: float) -> float:
        dep = self._deployment(c)
        return float("inf") if dep is None else expected_latency_ms(dep, tokens, copy, self._in_flight(c))

    def order(self, request: NormalizedRequest, signals: Signals, options: Sequence[Candidate]) -> list[Candidate]:
        shape = self.shape(request)
        typical, long = self._capped(shape.tokens_p50, request), self._capped(shape.tokens_p90, request)
        budget = self.budget_ms(request.tenant)
        latency = {c: self._latency(c, typical, shape.copy_fraction) for c in options}
        worst = {c: self._latency(c, long, shape.copy_fraction) for c in options}
        out: list[Candidate] = []
        for slot in dict.fromkeys(c.slot for c in options):
            group = [c for c in options if c.slot == slot]
            fits = {c: budget is None or worst[c] <= budget for c in group}
            if budget is not None and not any(fits.values()):  # nothing meets it: the fastest first
                out += sorted(group, key=lambda c: (worst[c], _multiplier(self.catalog, c), c.deployment))
            else:
                out += sorted(group, key=lambda c: (not fits[c], _multiplier(self.catalog, c), latency[c],
                                                    c.deployment))
        return out

    def describe(self, request: NormalizedRequest, signals: Signals, plan: Sequence[Candidate]) -> dict[str, Any]:
        """Route evidence: the inputs of the estimate and the expected latency of each plan entry."""
        shape = self.shape(request)
        typical, long = self._capped(shape.tokens_p50, request), self._capped(shape.tokens_p90, request)
        busy = {c.key: n for c in plan if (n := self._in_flight(c))}
        return {
            **({"in_flight": busy} if busy else {}),  # only under load: replay records stay as they were
            "copy_fraction": shape.copy_fraction,
            "task_kind": shape.kind,
            "output_tokens": typical,
            "output_tokens_p90": long,
            "budget_ms": self.budget_ms(request.tenant),
            "expected_ms": {c.key: round(self._latency(c, typical, shape.copy_fraction), 1) for c in plan},
        }
