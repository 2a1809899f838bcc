"""The learned artifact bundle: prompt models, answer verifiers and cascade thresholds; load, save, score.

One bundle holds every learned piece the learned router needs. ``sovrouter train`` writes it (``router.joblib``,
``thresholds.json``, ``model_card.md``, ``metrics.json``); the router loads it once at start-up.

Scores are expected answer quality in [0, 1] (= P(correct) for 0/1-graded answers; judge scores are used as soft
targets), computed at three moments:

- prior (prompt only): one model per slot, plus the domain and output-kind classifiers;
- stage 1 (after the first cheap answer ``L``): P(L good), P(top good | L);
- stage 2 (after two cheap answers ``L``, ``S``): P(S good), P(top good | L, S).

"top" is the strongest slot the request's allowed set has (frontier > hosted-mini > sovereign-large).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from sovrouter.errors import ConfigError
from sovrouter.routing.answers import AnswerView, pair_features, read_answer
from sovrouter.routing.features import cheap_features, make_vectorizer, prompt_matrix

SLOT_ORDER: tuple[str, ...] = ("local-small", "sovereign-large", "hosted-mini", "frontier")
"""Cheapest to strongest; the reference order (frontier-first under policy) is its reverse."""
TOP_SLOTS: tuple[str, ...] = ("sovereign-large", "hosted-mini", "frontier")
OUTPUT_KINDS: tuple[str, ...] = ("free_text", "choice", "number", "code")
ARTIFACT_FILE = "router.joblib"
THRESHOLDS_FILE = "thresholds.json"


class TierThresholds(BaseModel):
    """Escalate when the predicted quality gain of the next step exceeds the threshold (see docs/routing.md)."""

    direct: float = Field(description="prior gain of top over the best cheap slot above which top is called first")
    stage1: float = Field(description="P(top good | L) - P(L good) above which L is not accepted")
    stage2: float = Field(description="P(top good | L, S) - P(S good) above which top is called")
    skip: float = Field(default=2.0, description="stage-1 gain above which top is called at once (no S step)")
    skip_share: float = Field(default=0.0, ge=0, description="the skip test applies only where the "
                              "sovereign-large step's estimated cost is at least this share of top's: a step "
                              "that cheap is always worth trying (0: the skip test applies everywhere)")
    pick_agreeing: bool = Field(default=False, description="after top, serve the cheap answer when both cheap "
                                "answers agree against top")
    stage3: float | None = Field(default=None, description="voter step: when stage 2 escalates and top is "
                                 "frontier, hosted-mini answers first; P(top good | L, S, M) - P(M good) above "
                                 "which top is called (None: no voter step)")
    pick: float | None = Field(default=None, description="after top answered on the voter path: serve a cheap "
                               "answer instead when its P(good | all four answers) exceeds top's by this margin "
                               "(None: always serve top)")
    direct_domains: tuple[str, ...] = Field(default=(), description="domains (as the classifier names them) "
                                            "whose requests go to top at once, as in the direct mode, except "
                                            "executable questions: where the cascade does not pay its quality "
                                            "back (chosen with the other thresholds; docs/routing.md)")


class Thresholds(BaseModel):
    standard: TierThresholds
    high_value_factor: float = Field(default=0.5, gt=0, le=1,
                                     description="high-value tenants weigh quality 1/factor times more: "
                                     "their gain thresholds are multiplied by this factor")
    margin: float = Field(default=0.0, description="quality margin over the reference required on training folds")
    cost_unit_usd: float = Field(default=0.0, ge=0, description="stage gain thresholds are per this much "
                                 "estimated cost of the top call (0: thresholds are plain quality gains)")
    chosen_on: str = ""

    def cost_scale(self, top_cost_usd: float) -> float:
        """Multiplier of the stage thresholds for a top call estimated to cost ``top_cost_usd``."""
        return top_cost_usd / self.cost_unit_usd if self.cost_unit_usd > 0 else 1.0

    def for_value(self, value: str) -> TierThresholds:
        if value != "high":
            return self.standard
        f = self.high_value_factor
        s = self.standard
        # every gain threshold moves away from accepting the cheaper path, on either side of zero (until
        # 2026-11-28 only stage1 did: a negative stage2, stage3, direct or skip, which a retrain may choose, was
        # halved towards zero and so accepted the cheap answer more readily for high-value tenants)
        return TierThresholds(direct=stricter(s.direct, f), stage1=stricter(s.stage1, f),
                              stage2=stricter(s.stage2, f), skip=stricter(s.skip, f), skip_share=s.skip_share,
                              pick_agreeing=s.pick_agreeing,
                              stage3=None if s.stage3 is None else stricter(s.stage3, f),
                              pick=None if s.pick is None else s.pick / f, direct_domains=s.direct_domains)


def stricter(threshold: float, factor: float) -> float:
    """A gain threshold for a tenant who weighs quality ``1/factor`` times more: moved away from accepting, on
    either side of zero (``t * f`` for t >= 0, ``t / f`` below: halving a negative threshold, as until
    2026-11-27, moved it towards zero and accepted the cheap answer *more* often for high-value tenants)."""
    return threshold * factor if threshold >= 0 else threshold / factor


@dataclass
class LinearModel:
    """A fitted linear classifier reduced to its coefficients (float32): what ships instead of the estimator.

    ``predict_proba`` follows scikit-learn's one-vs-rest logistic convention (binary: sigmoid; more classes:
    per-class sigmoids normalised to sum to one)."""

    coef: NDArray[np.float32]  # (k, d); k == 1 for a binary model
    intercept: NDArray[np.float32]  # (k,)
    classes_: NDArray[Any]

    @classmethod
    def from_estimator(cls, est: Any) -> LinearModel:
        return cls(coef=np.asarray(est.coef_, dtype=np.float32), intercept=np.asarray(est.intercept_,
                   dtype=np.float32), classes_=np.asarray(est.classes_))

    @cached_property
    def _weights(self) -> NDArray[np.float64]:
        """``coef.T`` as the sparse product reads it: C order and float64. Given ``coef.T`` itself (a transposed
        float32 view), scipy copied and converted the whole (d, k) matrix on every call: 0.3 ms per request for the
        5-class domain model, where the product itself takes 3 us (the same floats for the float64 rows the
        vectoriser makes; a float32 row is now multiplied in float64; 2026-11-28)."""
        return np.ascontiguousarray(self.coef.T, dtype=np.float64)

    def __getstate__(self) -> dict[str, Any]:  # the artifact holds the coefficients once, never this copy
        return {k: v for k, v in self.__dict__.items() if k != "_weights"}

    def predict_proba(self, x: Any) -> NDArray[np.float64]:
        scores = np.asarray(x @ self._weights, dtype=np.float64) + self.intercept
        sig = 1.0 / (1.0 + np.exp(-np.clip(scores, -50, 50)))
        if self.coef.shape[0] == 1:
            return np.column_stack([1.0 - sig[:, 0], sig[:, 0]])
        out: NDArray[np.float64] = sig / np.maximum(sig.sum(axis=1, keepdims=True), 1e-12)
        return out


@dataclass
class PromptScores:
    """What the classifier computes once per request and the router reuses (no recomputation in review)."""

    dense: list[float]
    domain_probs: list[float]
    kind_probs: list[float]
    priors: dict[str, float]

    def vector(self) -> list[float]:
        return [*self.dense, *self.domain_probs, *self.kind_probs, *(self.priors[s] for s in SLOT_ORDER)]


def top_onehot(top: str) -> list[float]:
    return [1.0 if top == t else 0.0 for t in TOP_SLOTS]


def stage1_vector(prompt: Sequence[float], first: AnswerView, top: str) -> list[float]:
    return [*prompt, *first.features, *top_onehot(top)]


def stage2_vector(prompt: Sequence[float], first: AnswerView, second: AnswerView, top: str) -> list[float]:
    return [*prompt, *first.features, *second.features, *pair_features(first, second), *top_onehot(top)]


def stage3_vector(prompt: Sequence[float], first: AnswerView, second: AnswerView, third: AnswerView) -> list[float]:
    """After the voter (hosted-mini) answered: three answers and their pairwise agreement (top is frontier)."""
    return [*prompt, *first.features, *second.features, *third.features, *pair_features(first, second),
            *pair_features(second, third), *pair_features(first, third)]


def stage4_vector(prompt: Sequence[float], views: Sequence[AnswerView]) -> list[float]:
    """After top answered on the voter path: the four answers (L, S, M, top) and every pair's agreement."""
    row = [*prompt]
    for v in views:
        row += v.features
    for a in range(len(views)):
        for b in range(a + 1, len(views)):
            row += pair_features(views[a], views[b])
    return row


@dataclass
class RouterModels:
    """The fitted estimators (scikit-learn objects) and the metadata needed to use them."""

    domains: tuple[str, ...]
    domain_model: Any
    kind_model: Any
    prior_models: dict[str, Any]
    stage1_first: Any
    stage1_top: Any
    stage2_second: Any
    stage2_top: Any
    version: str = "1.2"  # the docs/taxonomy.md version the models were trained against
    meta: dict[str, Any] = field(default_factory=dict)
    stage3_mid: Any = None  # P(hosted-mini good | L, S, M answers); None in bundles without the voter step
    stage3_top: Any = None  # P(frontier good | L, S, M answers)
    stage4: dict[str, Any] = field(default_factory=dict)  # slot -> P(slot good | L, S, M, frontier answers)

    def score_prompts(self, texts: list[str], dense: NDArray[np.float64]) -> list[PromptScores]:
        x = prompt_matrix(make_vectorizer(), texts, dense)
        dom = self.domain_model.predict_proba(x)
        kind_raw = self.kind_model.predict_proba(x)
        kinds = np.zeros((len(texts), len(OUTPUT_KINDS)))
        for j, k in enumerate(self.kind_model.classes_):
            kinds[:, OUTPUT_KINDS.index(str(k))] = kind_raw[:, j]
        priors = {s: self.prior_models[s].predict_proba(x)[:, 1] for s in SLOT_ORDER}
        return [
            PromptScores(dense=[float(v) for v in dense[i]], domain_probs=[float(v) for v in dom[i]],
                         kind_probs=[float(v) for v in kinds[i]],
                         priors={s: float(priors[s][i]) for s in SLOT_ORDER})
            for i in range(len(texts))
        ]


def proba(model: Any, rows: Sequence[Sequence[float]]) -> NDArray[np.float64]:
    out: NDArray[np.float64] = model.predict_proba(np.asarray(rows, dtype=np.float64))[:, 1]
    return out


class Bundle:
    """Models plus thresholds, as shipped."""

    def __init__(self, models: RouterModels, thresholds: Thresholds) -> None:
        self.models = models
        self.thresholds = thresholds

    @classmethod
    def load(cls, directory: str | Path | None = None) -> Bundle:
        """Load from ``directory``, or the artifacts shipped in the package when it is ``None``."""
        base = Path(directory) if directory is not None else Path(str(resources.files("sovrouter"))) / "data" / "router"
        try:
            models = joblib.load(base / ARTIFACT_FILE)
            thresholds = Thresholds.model_validate_json((base / THRESHOLDS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load learned-router artifacts from {base}: {exc}") from exc
        if not isinstance(models, RouterModels):
            raise ConfigError(f"{base / ARTIFACT_FILE} does not hold router models")
        try:
            _probe(models)
        except ValueError as exc:
            raise ConfigError(f"{base / ARTIFACT_FILE} was trained on other features than this version computes "
                              f"(a router from an older `sovrouter train`?); retrain it with this version "
                              f"({exc})") from None
        unknown = sorted(set(thresholds.standard.direct_domains) - set(models.domains))
        if unknown:  # a domain the classifier never names would silently never go direct
            raise ConfigError(f"{base / THRESHOLDS_FILE}: direct_domains {unknown} are not domains of the router "
                              f"models {sorted(models.domains)}")
        return cls(models, thresholds)

    def save(self, directory: str | Path) -> None:
        base = Path(directory)
        base.mkdir(parents=True, exist_ok=True)
        joblib.dump(self.models, base / ARTIFACT_FILE, compress=3)
        (base / THRESHOLDS_FILE).write_text(self.thresholds.model_dump_json(indent=2) + "\n", encoding="utf-8")


def _probe(models: RouterModels) -> None:
    """Score one prompt and its answers with every model of ``models``: a ValueError when a model reads another
    number of features than this version's code computes. Until 2026-11-28 a router written by an older
    ``sovrouter train`` (before v2.2 the prompt had 14 cheap features, now 13) loaded without a word and then
    failed every request's classification (found in review); only the widths can be checked, so a router must
    still be retrained when the features change meaning."""
    text = "Which is larger, 2 or 3?"
    prompt = models.score_prompts([text], np.asarray([cheap_features(text, None)], dtype=np.float64))[0].vector()
    view = read_answer("3")
    top = TOP_SLOTS[-1]
    checks: list[tuple[Any, list[float]]] = [
        (models.stage1_first, stage1_vector(prompt, view, top)), (models.stage1_top, stage1_vector(prompt, view, top)),
        (models.stage2_second, stage2_vector(prompt, view, view, top)),
        (models.stage2_top, stage2_vector(prompt, view, view, top)),
        (models.stage3_mid, stage3_vector(prompt, view, view, view)),
        (models.stage3_top, stage3_vector(prompt, view, view, view)),
        # (a bundle pickled before the voter step has no ``stage4`` of its own: none to check)
        *((m, stage4_vector(prompt, [view] * 4)) for m in getattr(models, "stage4", {}).values()),
    ]
    for model, row in checks:
        if model is not None:
            proba(model, [row])
