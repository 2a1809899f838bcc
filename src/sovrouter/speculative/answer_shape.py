"""Predict the shape of a request's answer from its prompt: how much of it copies the prompt, and how long it is.

Both feed the latency estimate of a deployment (:mod:`sovrouter.routing.deployments`): the copy fraction sets
the speculative-decoding speed-up (:mod:`sovrouter.speculative.latency`), the length the decode time. The
hand-written :class:`~sovrouter.speculative.predictor.CopyPredictor` reads instruction cues ("refactor",
"extract", ...); on the dev workload's real prompts and recorded answers it ranks copy-heavy answers *worse*
than chance (``bench/deployment_latency.py``), because what answers copy there is templates, option lists and
restated questions, not edit instructions. So :class:`AnswerShapeModel` learns both from recorded traffic:

- ``copy``: gradient-boosted trees regressing the answer's observed copy fraction
  (:func:`~sovrouter.speculative.predictor.observed_copy_fraction`, computable from any log of prompts and
  answers, so a label a deployment has);
- ``tokens_p50`` / ``tokens_p90``: trees with quantile loss on log(1 + answer tokens).

Inputs are generic prompt statistics (:func:`prompt_features`: sizes, structure, code/JSON/option markers,
repetition, the cue predictor's kind and fraction); no text of any benchmark. Trees are stored as plain arrays
(:class:`~sovrouter.cache.verifier.TreeEnsemble`), loaded without pickle. ``sovrouter train-answer-shape``
rebuilds the artifact (:mod:`sovrouter.speculative.answer_shape_train`).
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from sovrouter.cache.verifier import TreeEnsemble, TreeStack
from sovrouter.catalog import estimate_tokens
from sovrouter.contracts import NormalizedRequest
from sovrouter.errors import ConfigError
from sovrouter.speculative.predictor import CopyPrediction, CopyPredictor, code_chars, payload_text

MAX_LOG_TOKENS = 14.0  # predictions are capped at e^14 (~1.2M) tokens
DEFAULT_ARTIFACT = Path(__file__).resolve().parents[1] / "data" / "answer_shape" / "answer_shape.json"
KINDS = ("edit", "extract", "rewrite", "summarize", "open")
FEATURE_NAMES = (
    "log_prompt_tokens", "log_last_user_tokens", "log_system_tokens", "log_payload_tokens", "code_share",
    "log_lines", "log_parts", "option_lines", "json_markers", "question_marks", "digit_share", "non_ascii_share",
    "repeated_3gram_share", "reasoning_cue", "brevity_cue", "messages", *(f"kind_{k}" for k in KINDS),
    "cue_copy_fraction",
)
_OPTION = re.compile(r"^\s*(?:\(?[A-Ja-j][).:]|[-*•]\s)", re.MULTILINE)
_JSON = re.compile(r"[{}\[\]]|\"\w+\"\s*:")
_REASON = re.compile(r"\b(?:step[- ]by[- ]step|reason|explain|show your work|think|derive|justify|why)\b", re.I)
_BRIEF = re.compile(r"\b(?:only the|just the|single (?:word|letter|number)|one word|briefly|short answer|"
                    r"answer with|respond with|output only|no explanation)\b", re.I)
_WORDS = re.compile(r"\w+")


def _log(n: float) -> float:
    return math.log1p(max(0.0, n))


def prompt_features(request: NormalizedRequest, cue: CopyPrediction | None = None) -> list[float]:
    """Generic statistics of the prompt (see ``FEATURE_NAMES``); cheap (well under a millisecond for most)."""
    text = request.prompt_text
    users = [m.text for m in request.messages if m.role == "user"]
    last = users[-1] if users else text
    system = "\n".join(m.text for m in request.messages if m.role in ("system", "developer"))
    cue = cue or CopyPredictor().predict(request)
    chars = max(1, len(text))
    code = code_chars(text)
    words = _WORDS.findall(text.lower())
    grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    repeated = 0.0
    if len(grams) >= 8:
        counts: dict[tuple[str, ...], int] = {}
        for g in grams:
            counts[g] = counts.get(g, 0) + 1
        repeated = sum(c for c in counts.values() if c > 1) / len(grams)
    return [
        _log(estimate_tokens(text)), _log(estimate_tokens(last)), _log(estimate_tokens(system)),
        _log(estimate_tokens(payload_text(text))), code / chars,
        _log(text.count("\n") + 1), _log(len([p for p in re.split(r"\n\s*\n", text) if p.strip()])),
        float(len(_OPTION.findall(text))), _log(len(_JSON.findall(text))), float(text.count("?")),
        sum(ch.isdigit() for ch in text) / chars, sum(ord(ch) > 127 for ch in text) / chars,
        repeated, float(bool(_REASON.search(last))), float(bool(_BRIEF.search(last))), float(len(request.messages)),
        *(float(cue.kind == k) for k in KINDS), cue.copy_fraction,
    ]


@dataclass(frozen=True)
class AnswerShape:
    copy_fraction: float
    tokens_p50: int
    tokens_p90: int
    kind: str


class AnswerShapeEstimator(Protocol):
    """Expected copy fraction and output length (p50, p90) of a request's answer."""

    def shape(self, request: NormalizedRequest) -> AnswerShape: ...


class RecentShapes:
    """The shapes of the latest ``size`` requests, so one request's shape is computed once (a decision asks
    for it more than once, and an observation after the answer needs it again). Keyed by request id and
    prompt (ids alone can repeat: client-set ids, tests). Thread-safe."""

    def __init__(self, size: int = 1024) -> None:
        self.size = max(1, size)
        self._items: OrderedDict[tuple[str, int], AnswerShape] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, request: NormalizedRequest, compute: Callable[[NormalizedRequest], AnswerShape]) -> AnswerShape:
        key = (request.request_id, hash(request.prompt_text))
        with self._lock:
            hit = self._items.get(key)
        if hit is not None:
            return hit
        shape = compute(request)
        with self._lock:
            self._items[key] = shape
            if len(self._items) > self.size:
                self._items.popitem(last=False)
        return shape


@dataclass
class AnswerShapeModel:
    """Learned copy fraction and output length (p50, p90) of a request's answer (module docstring)."""

    copy: TreeEnsemble
    tokens_p50: TreeEnsemble
    tokens_p90: TreeEnsemble
    threshold: float = 0.35
    meta: dict[str, Any] = field(default_factory=dict)
    cues: CopyPredictor = field(default_factory=CopyPredictor)

    @cached_property
    def _trees(self) -> TreeStack:  # the three models walked in one pass (one request: ~30 us instead of ~90)
        return TreeStack([self.copy, self.tokens_p50, self.tokens_p90])

    def _matrix(self, requests: list[NormalizedRequest]) -> tuple[NDArray[np.float64], list[CopyPrediction]]:
        cues = [self.cues.predict(r) for r in requests]
        x = np.asarray([prompt_features(r, c) for r, c in zip(requests, cues, strict=True)], dtype=np.float64)
        return x.reshape(len(requests), len(FEATURE_NAMES)), cues

    def shapes(self, requests: list[NormalizedRequest]) -> list[AnswerShape]:
        if not requests:
            return []
        x, cues = self._matrix(requests)
        copy, p50, p90 = self.predict_matrix(x)
        return [AnswerShape(round(float(c), 4), max(1, round(float(a))), max(1, round(float(b))), cue.kind)
                for c, a, b, cue in zip(copy, p50, p90, cues, strict=True)]

    def predict_matrix(self, x: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64],
                                                             NDArray[np.float64]]:
        """Copy fraction (0-1), p50 and p90 answer tokens (p90 >= p50) for rows of ``prompt_features``."""
        raw_copy, raw_p50, raw_p90 = self._trees.raw(x)
        copy = np.clip(raw_copy, 0.0, 1.0)
        p50 = np.expm1(np.clip(raw_p50, 0.0, MAX_LOG_TOKENS))
        p90 = np.maximum(p50, np.expm1(np.clip(raw_p90, 0.0, MAX_LOG_TOKENS)))
        return copy, p50, p90

    def shape(self, request: NormalizedRequest) -> AnswerShape:
        return self.shapes([request])[0]

    def predict(self, request: NormalizedRequest) -> CopyPrediction:
        """The :class:`CopyPredictor` interface, with the learned copy fraction (kind: the cue predictor's)."""
        s = self.shape(request)
        payload = estimate_tokens(payload_text(request.prompt_text))
        return CopyPrediction(kind=s.kind, copy_fraction=s.copy_fraction, payload_tokens=payload,
                              speculate=s.copy_fraction >= self.threshold)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "answer-shape", "features": list(FEATURE_NAMES), "threshold": self.threshold,
                "copy": self.copy.to_dict(), "tokens_p50": self.tokens_p50.to_dict(),
                "tokens_p90": self.tokens_p90.to_dict(), "meta": self.meta}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AnswerShapeModel:
        if raw.get("kind") != "answer-shape" or list(raw.get("features", [])) != list(FEATURE_NAMES):
            raise ConfigError("answer-shape artifact does not match this version's features")
        n = len(FEATURE_NAMES)
        return cls(copy=TreeEnsemble.from_dict(raw["copy"], n), tokens_p50=TreeEnsemble.from_dict(raw["tokens_p50"], n),
                   tokens_p90=TreeEnsemble.from_dict(raw["tokens_p90"], n), threshold=float(raw["threshold"]),
                   meta=dict(raw.get("meta", {})))

    def save(self, path: str | Path) -> None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), separators=(",", ":")) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path = DEFAULT_ARTIFACT) -> AnswerShapeModel:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load answer-shape artifact {Path(path).name}: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError("answer-shape artifact is not a JSON object")
        try:
            return cls.from_dict(raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid answer-shape artifact: {exc}") from exc
