"""The pair verifier: a model over pair features with a calibrated acceptance threshold.

The shipped artifact (``sovrouter/data/semantic_cache/verifier.json``) holds the model (gradient-boosted trees
exported as plain arrays; a logistic model is the other supported kind, used by the cosine-only test double),
the embedding cosine floor below which a cached entry is not even considered, and the threshold chosen on
calibration pairs so that the false-hit rate stays under the target (see ``docs/semantic-cache.md``). It is
plain JSON: no pickle is ever loaded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from sovrouter.cache.textfeat import ALT_FEATURE_NAMES, FEATURE_NAMES
from sovrouter.errors import ConfigError

Matrix = NDArray[np.float64]

# Hinge knots of the basis expansion (the logistic model is linear in these).
_KNOTS: dict[str, tuple[float, ...]] = {
    "cos": (0.80, 0.85, 0.90, 0.94, 0.97),
    "jaccard_content": (0.5, 0.7, 0.85),
    "char_ratio": (0.7, 0.85, 0.93),
    "unmatched_max": (1.0, 2.0, 3.0),
}


def feature_names(alt: bool) -> tuple[str, ...]:
    """The verifier's input columns: the pair features, then the second embedding model's when it has one."""
    return FEATURE_NAMES + ALT_FEATURE_NAMES if alt else FEATURE_NAMES


def expand(features: Matrix) -> Matrix:
    """Basis expansion: raw features (any second-model columns after the pair features), hinges
    ``max(0, x - knot)`` and a few interactions."""
    cols = [features]
    idx = {n: i for i, n in enumerate(FEATURE_NAMES)}
    for name, knots in _KNOTS.items():
        x = features[:, idx[name]]
        cols.extend(np.maximum(0.0, x - k)[:, None] for k in knots)
    cos, jac, uma = features[:, idx["cos"]], features[:, idx["jaccard_content"]], features[:, idx["unmatched_max"]]
    cols.append((cos * jac)[:, None])
    cols.append((cos * np.minimum(uma, 4.0))[:, None])
    return np.hstack(cols)


class ScoreModel(Protocol):
    """Maps pair features (rows in :data:`FEATURE_NAMES` order) to duplicate probabilities."""

    def probability(self, features: Matrix) -> NDArray[np.float64]: ...

    def to_dict(self) -> dict[str, Any]: ...


def _sigmoid(logits: NDArray[np.float64]) -> NDArray[np.float64]:
    out: NDArray[np.float64] = 1.0 / (1.0 + np.exp(-np.clip(logits, -40.0, 40.0)))
    return out


@dataclass(frozen=True)
class LogisticModel:
    """Logistic model over :func:`expand`-ed, standardised features."""

    mean: list[float]
    scale: list[float]
    weights: list[float]
    bias: float

    def probability(self, features: Matrix) -> NDArray[np.float64]:
        if features.shape[0] == 0:
            return np.zeros(0)
        z = (expand(features) - np.asarray(self.mean)) / np.asarray(self.scale)
        return _sigmoid(z @ np.asarray(self.weights) + self.bias)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "logistic", "mean": self.mean, "scale": self.scale, "weights": self.weights,
                "bias": self.bias}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], n_features: int = len(FEATURE_NAMES)) -> LogisticModel:
        m = cls([float(x) for x in raw["mean"]], [float(x) for x in raw["scale"]],
                [float(x) for x in raw["weights"]], float(raw["bias"]))
        if not (len(m.mean) == len(m.scale) == len(m.weights) == expand(np.zeros((1, n_features))).shape[1]):
            raise ConfigError("invalid pair verifier artifact: inconsistent sizes")
        return m


_TREE_FIELDS = ("feature", "threshold", "left", "right", "value", "leaf", "missing_left")


@dataclass(frozen=True)
class TreeEnsemble:
    """Gradient-boosted trees as plain arrays (exported from scikit-learn's HistGradientBoostingClassifier, so
    serving needs numpy only and no pickle is loaded). All trees' nodes are stored flat; ``roots`` are the
    first node of each tree. A node goes left when ``x[feature] <= threshold`` (NaN: ``missing_left``)."""

    baseline: float
    roots: NDArray[np.int64]
    feature: NDArray[np.int64]
    threshold: NDArray[np.float64]
    left: NDArray[np.int64]
    right: NDArray[np.int64]
    value: NDArray[np.float64]
    leaf: NDArray[np.bool_]
    missing_left: NDArray[np.bool_]
    depth: int
    n_features: int

    @cached_property
    def _stack(self) -> TreeStack:
        return TreeStack([self])

    def raw(self, features: Matrix) -> NDArray[np.float64]:
        return self._stack.raw(features)[0]

    def probability(self, features: Matrix) -> NDArray[np.float64]:
        if features.shape[0] == 0:
            return np.zeros(0)
        if features.shape[1] != self.n_features:
            raise ConfigError(f"pair features have {features.shape[1]} columns, expected {self.n_features}")
        return _sigmoid(self.raw(np.asarray(features, dtype=np.float64)))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "trees", "baseline": self.baseline, "roots": self.roots.tolist(), "depth": self.depth,
                "nodes": {f: getattr(self, f).tolist() for f in _TREE_FIELDS}}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], n_features: int) -> TreeEnsemble:
        nodes = raw["nodes"]
        sizes = {len(nodes[f]) for f in _TREE_FIELDS}
        if len(sizes) != 1:
            raise ConfigError("invalid pair verifier artifact: tree arrays of different lengths")
        m = cls(baseline=float(raw["baseline"]), roots=np.asarray(raw["roots"], dtype=np.int64),
                feature=np.asarray(nodes["feature"], dtype=np.int64),
                threshold=np.asarray(nodes["threshold"], dtype=np.float64),
                left=np.asarray(nodes["left"], dtype=np.int64), right=np.asarray(nodes["right"], dtype=np.int64),
                value=np.asarray(nodes["value"], dtype=np.float64), leaf=np.asarray(nodes["leaf"], dtype=np.bool_),
                missing_left=np.asarray(nodes["missing_left"], dtype=np.bool_), depth=int(raw["depth"]),
                n_features=n_features)
        size = sizes.pop()
        inner = ~m.leaf
        if any(np.any(a < 0) or np.any(a >= bound) for a, bound in (
                (m.roots, size), (m.left[inner], size), (m.right[inner], size), (m.feature[inner], n_features))):
            raise ConfigError("invalid pair verifier artifact: tree indices out of range")
        if _tree_depth(m) > m.depth:  # a walk of ``depth`` steps would stop at an inner node (value 0)
            raise ConfigError("invalid pair verifier artifact: trees deeper than the stated depth")
        return m

    @classmethod
    def from_sklearn(cls, clf: Any) -> TreeEnsemble:
        """Export a fitted binary ``HistGradientBoostingClassifier`` (numeric features only)."""
        cols: dict[str, list[Any]] = {f: [] for f in _TREE_FIELDS}
        roots: list[int] = []
        depth = 0
        for per_class in clf._predictors:  # the fitted trees (scikit-learn has no public accessor)
            nodes = per_class[0].nodes
            base = len(cols["feature"])
            roots.append(base)
            leaf = nodes["is_leaf"].astype(bool)
            cols["feature"].extend(np.where(leaf, 0, nodes["feature_idx"]).tolist())
            cols["threshold"].extend(nodes["num_threshold"].astype(float).tolist())
            cols["left"].extend(np.where(leaf, 0, nodes["left"] + base).tolist())
            cols["right"].extend(np.where(leaf, 0, nodes["right"] + base).tolist())
            cols["value"].extend(np.where(leaf, nodes["value"], 0.0).astype(float).tolist())
            cols["leaf"].extend(leaf.tolist())
            cols["missing_left"].extend(nodes["missing_go_to_left"].astype(bool).tolist())
            depth = max(depth, int(nodes["depth"].max()))
        raw = {"baseline": float(np.ravel(clf._baseline_prediction)[0]),
               "roots": roots, "depth": depth, "nodes": cols}
        return cls.from_dict(raw, int(clf.n_features_in_))


def _tree_depth(trees: TreeEnsemble) -> int:
    """The number of steps from the roots to the deepest leaf (the indices already checked in range); a cycle,
    which never reaches a leaf, counts as deeper than any tree can be."""
    frontier, depth = trees.roots, 0
    while frontier.size:
        frontier = frontier[~trees.leaf[frontier]]
        if not frontier.size:
            break
        depth += 1
        if depth > trees.leaf.shape[0]:
            break
        frontier = np.unique(np.concatenate([trees.left[frontier], trees.right[frontier]]))  # shared nodes once
    return depth


class TreeStack:
    """One or more :class:`TreeEnsemble` over the same feature columns, walked together: one set of numpy calls
    per tree level for all their trees (the answer-shape model's three outputs cost one pass per request, not
    three). Leaves loop to themselves, so a walk needs no leaf test. Each ensemble's scores are the same floats
    as a walk of that ensemble alone (its own trees' leaf values summed in the same order; tested)."""

    def __init__(self, ensembles: Sequence[TreeEnsemble]) -> None:
        if not ensembles:
            raise ValueError("TreeStack needs at least one ensemble")
        offsets = np.cumsum([0] + [e.feature.shape[0] for e in ensembles])[:-1]

        def cat(name: str) -> NDArray[Any]:
            return np.concatenate([getattr(e, name) for e in ensembles])

        leaf = cat("leaf")
        here = np.arange(leaf.shape[0])
        self._left = np.where(leaf, here, np.concatenate([e.left + o for e, o in zip(ensembles, offsets, strict=True)]))
        self._right = np.where(leaf, here, np.concatenate([e.right + o for e, o in zip(ensembles, offsets,
                                                                                       strict=True)]))
        self._feature = np.where(leaf, 0, cat("feature"))
        self._threshold = np.where(leaf, 0.0, cat("threshold"))
        self._missing_left = cat("missing_left")
        self._value = cat("value")
        self._roots = np.concatenate([e.roots + o for e, o in zip(ensembles, offsets, strict=True)])
        self._depth = max(e.depth for e in ensembles)
        ends = np.cumsum([e.roots.shape[0] for e in ensembles])
        self._spans = [(int(a), int(b)) for a, b in zip(np.concatenate([[0], ends[:-1]]), ends, strict=True)]
        self._baselines = [e.baseline for e in ensembles]

    def _step(self, x: NDArray[np.float64], node: NDArray[np.int64]) -> NDArray[np.int64]:
        go_left = (x <= self._threshold[node]) | (np.isnan(x) & self._missing_left[node])
        out: NDArray[np.int64] = np.where(go_left, self._left[node], self._right[node])
        return out

    def raw(self, features: Matrix) -> list[NDArray[np.float64]]:
        """Each ensemble's raw score (log-odds or value) for each row of ``features``."""
        if features.shape[0] == 1:  # the serving path's one request: plain vectors, no row index
            row, node = features[0], self._roots
            for _ in range(self._depth):
                node = self._step(row[self._feature[node]], node)
            leaves = self._value[node]
            return [np.asarray([base + leaves[a:b].sum()]) for base, (a, b) in zip(self._baselines, self._spans,
                                                                                     strict=True)]
        nodes = np.broadcast_to(self._roots, (features.shape[0], self._roots.shape[0])).copy()
        rows = np.arange(features.shape[0])[:, None]
        for _ in range(self._depth):
            nodes = self._step(features[rows, self._feature[nodes]], nodes)
        values = self._value[nodes]
        return [base + np.ascontiguousarray(values[:, a:b]).sum(axis=1)
                for base, (a, b) in zip(self._baselines, self._spans, strict=True)]


@dataclass
class PairVerifier:
    model: ScoreModel
    threshold: float
    cos_floor: float
    top_k: int = 10
    embedder: str = "all-MiniLM-L6-v2"
    meta: dict[str, Any] = field(default_factory=dict)
    alt_embedder: str | None = None  # a second embedding model whose cosine the model reads (ALT_FEATURE_NAMES)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return feature_names(self.alt_embedder is not None)

    def probability(self, features: Matrix) -> NDArray[np.float64]:
        return self.model.probability(np.asarray(features, dtype=np.float64))

    @classmethod
    def cosine_only(cls, cos_threshold: float, cos_floor: float = 0.5, top_k: int = 10) -> PairVerifier:
        """A bare cosine threshold in verifier form (a test double and the static baseline)."""
        width = expand(np.zeros((1, len(FEATURE_NAMES)))).shape[1]
        weights = [0.0] * width
        weights[FEATURE_NAMES.index("cos")] = 200.0
        model = LogisticModel(mean=[0.0] * width, scale=[1.0] * width, weights=weights, bias=-200.0 * cos_threshold)
        return cls(model=model, threshold=0.5, cos_floor=cos_floor, top_k=top_k, embedder="any")

    # ------------------------------------------------------------------ persistence
    def to_json(self) -> str:
        body = {
            "feature_names": list(self.feature_names), "model": self.model.to_dict(), "threshold": self.threshold,
            "cos_floor": self.cos_floor, "top_k": self.top_k, "embedder": self.embedder, "meta": self.meta,
            "alt_embedder": self.alt_embedder,
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> PairVerifier:
        try:
            raw = json.loads(text)
            alt = raw.get("alt_embedder")
            names = feature_names(alt is not None)
            if tuple(raw["feature_names"]) != names:
                raise ConfigError("pair verifier artifact was built for other features; rebuild it")
            spec = raw["model"]
            kind = spec["kind"]
            model: ScoreModel
            if kind == "trees":
                model = TreeEnsemble.from_dict(spec, len(names))
            elif kind == "logistic":
                model = LogisticModel.from_dict(spec, len(names))
            else:
                raise ConfigError(f"invalid pair verifier artifact: unknown model kind {kind!r}")
            return cls(model=model, threshold=float(raw["threshold"]), cos_floor=float(raw["cos_floor"]),
                       top_k=int(raw["top_k"]), embedder=str(raw["embedder"]), meta=dict(raw.get("meta", {})),
                       alt_embedder=None if alt is None else str(alt))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid pair verifier artifact: {exc}") from exc

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
