"""The pair verifier: a small logistic model over pair features, with a calibrated acceptance threshold.

The shipped artifact (``sovrouter/data/semantic_cache/verifier.json``) holds the feature standardisation, the
weights, the embedding cosine floor below which a cached entry is not even considered, and the threshold chosen
on held-out calibration pairs so that the false-hit rate's upper confidence bound stays under the target (see
``docs/semantic-cache.md``). It is plain JSON: no pickle is ever loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sovrouter.cache.textfeat import FEATURE_NAMES
from sovrouter.errors import ConfigError

Matrix = NDArray[np.float64]

# Hinge knots of the basis expansion (the logistic model is linear in these).
_KNOTS: dict[str, tuple[float, ...]] = {
    "cos": (0.80, 0.85, 0.90, 0.94, 0.97),
    "jaccard_content": (0.5, 0.7, 0.85),
    "char_ratio": (0.7, 0.85, 0.93),
    "unmatched_max": (1.0, 2.0, 3.0),
}


def expand(features: Matrix) -> Matrix:
    """Basis expansion: raw features, hinges ``max(0, x - knot)`` and a few interactions."""
    cols = [features]
    idx = {n: i for i, n in enumerate(FEATURE_NAMES)}
    for name, knots in _KNOTS.items():
        x = features[:, idx[name]]
        cols.extend(np.maximum(0.0, x - k)[:, None] for k in knots)
    cos, jac, uma = features[:, idx["cos"]], features[:, idx["jaccard_content"]], features[:, idx["unmatched_max"]]
    cols.append((cos * jac)[:, None])
    cols.append((cos * np.minimum(uma, 4.0))[:, None])
    return np.hstack(cols)


@dataclass
class PairVerifier:
    mean: list[float]
    scale: list[float]
    weights: list[float]
    bias: float
    threshold: float
    cos_floor: float
    top_k: int = 10
    embedder: str = "all-MiniLM-L6-v2"
    meta: dict[str, Any] = field(default_factory=dict)

    def probability(self, features: Matrix) -> NDArray[np.float64]:
        if features.shape[0] == 0:
            return np.zeros(0)
        z = (expand(features) - np.asarray(self.mean)) / np.asarray(self.scale)
        logits = z @ np.asarray(self.weights) + self.bias
        out: NDArray[np.float64] = 1.0 / (1.0 + np.exp(-np.clip(logits, -40.0, 40.0)))
        return out

    @classmethod
    def cosine_only(cls, cos_threshold: float, cos_floor: float = 0.5, top_k: int = 10) -> PairVerifier:
        """A bare cosine threshold in verifier form (a test double and the static baseline)."""
        width = expand(np.zeros((1, len(FEATURE_NAMES)))).shape[1]
        weights = [0.0] * width
        weights[FEATURE_NAMES.index("cos")] = 200.0
        return cls(mean=[0.0] * width, scale=[1.0] * width, weights=weights, bias=-200.0 * cos_threshold,
                   threshold=0.5, cos_floor=cos_floor, top_k=top_k, embedder="any")

    # ------------------------------------------------------------------ persistence
    def to_json(self) -> str:
        body = {
            "feature_names": list(FEATURE_NAMES), "mean": self.mean, "scale": self.scale, "weights": self.weights,
            "bias": self.bias, "threshold": self.threshold, "cos_floor": self.cos_floor, "top_k": self.top_k,
            "embedder": self.embedder, "meta": self.meta,
        }
        return json.dumps(body, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PairVerifier:
        try:
            raw = json.loads(text)
            if tuple(raw["feature_names"]) != FEATURE_NAMES:
                raise ConfigError("pair verifier artifact was built for other features; rebuild it")
            v = cls(mean=[float(x) for x in raw["mean"]], scale=[float(x) for x in raw["scale"]],
                    weights=[float(x) for x in raw["weights"]], bias=float(raw["bias"]),
                    threshold=float(raw["threshold"]), cos_floor=float(raw["cos_floor"]),
                    top_k=int(raw["top_k"]), embedder=str(raw["embedder"]), meta=dict(raw.get("meta", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid pair verifier artifact: {exc}") from exc
        if not (len(v.mean) == len(v.scale) == len(v.weights)):
            raise ConfigError("invalid pair verifier artifact: inconsistent sizes")
        return v

    @classmethod
    def load(cls, path: str | Path | None = None) -> PairVerifier:
        """Load ``path``, or the artifact shipped in the package."""
        if path is not None:
            try:
                return cls.from_json(Path(path).read_text(encoding="utf-8"))
            except OSError as exc:
                raise ConfigError(f"cannot read pair verifier artifact {path}: {exc}") from exc
        res = resources.files("sovrouter").joinpath("data/semantic_cache/verifier.json")
        if not res.is_file():
            raise ConfigError("the shipped pair verifier is missing; run `sovrouter train-cache`")
        return cls.from_json(res.read_text(encoding="utf-8"))


def fit_logistic(x: Matrix, y: NDArray[np.float64], l2: float = 1.0, iters: int = 50) -> tuple[Matrix, float]:
    """L2-regularised logistic regression by Newton's method (deterministic). Returns (weights, bias)."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[-1] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -40.0, 40.0)))
        grad = xb.T @ (p - y) + reg * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(reg) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.max(np.abs(step))) < 1e-8:
            break
    return w[:-1], float(w[-1])


def standardise(x: Matrix) -> tuple[Matrix, Matrix]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    return mean, scale
