"""Fit :class:`~sovrouter.speculative.answer_shape.AnswerShapeModel` on a workload's prompts and recorded answers.

Every recorded answer (any model) is one row: the prompt's features, the answer's observed copy fraction and
its token count (``estimate_tokens``, the workload's own rule). Out-of-fold predictions (folds by request, so
the answers of one prompt never straddle a fold) measure the models honestly; the shipped model is then fitted
on everything. Deterministic (fixed seeds, no early stopping).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sovrouter.cache.verifier import TreeEnsemble
from sovrouter.catalog import estimate_tokens
from sovrouter.contracts import NormalizedRequest
from sovrouter.speculative.answer_shape import FEATURE_NAMES, AnswerShapeModel, prompt_features
from sovrouter.speculative.predictor import CopyPredictor, observed_copy_fraction

TREE_SETTINGS: dict[str, Any] = {"max_iter": 200, "max_depth": 4, "min_samples_leaf": 50, "learning_rate": 0.05,
                                 "early_stopping": False, "random_state": 0}


@dataclass(frozen=True)
class Rows:
    request_ids: list[str]
    x: NDArray[np.float64]
    copy: NDArray[np.float64]
    log_tokens: NDArray[np.float64]


def build_rows(requests: Mapping[str, NormalizedRequest], answers: Mapping[tuple[str, str], str]) -> Rows:
    """One row per recorded answer, in a stable order (request id, then model)."""
    cues = CopyPredictor()
    feats: dict[str, list[float]] = {}
    ids, xs, copy, toks = [], [], [], []
    for (rid, _model), text in sorted(answers.items()):
        req = requests.get(rid)
        if req is None:
            continue
        if rid not in feats:
            feats[rid] = prompt_features(req, cues.predict(req))
        ids.append(rid)
        xs.append(feats[rid])
        copy.append(observed_copy_fraction(req.prompt_text, text))
        toks.append(np.log1p(estimate_tokens(text)))
    x = np.asarray(xs, dtype=np.float64).reshape(len(xs), len(FEATURE_NAMES))
    return Rows(ids, x, np.asarray(copy), np.asarray(toks))


def _fit(x: NDArray[np.float64], y: NDArray[np.float64], quantile: float | None) -> TreeEnsemble:
    from sklearn.ensemble import HistGradientBoostingRegressor  # training only

    loss: dict[str, Any] = {"loss": "squared_error"} if quantile is None else {"loss": "quantile",
                                                                              "quantile": quantile}
    model = HistGradientBoostingRegressor(**TREE_SETTINGS, **loss).fit(x, y)
    return TreeEnsemble.from_sklearn(model)


def fit(rows: Rows, meta: dict[str, Any] | None = None) -> AnswerShapeModel:
    return AnswerShapeModel(copy=_fit(rows.x, rows.copy, None), tokens_p50=_fit(rows.x, rows.log_tokens, 0.5),
                            tokens_p90=_fit(rows.x, rows.log_tokens, 0.9), meta=dict(meta or {}))


def fold_of(request_id: str, folds: int) -> int:
    return int(hashlib.blake2b(f"answer-shape:{request_id}".encode(), digest_size=8).hexdigest(), 16) % folds


def out_of_fold(rows: Rows, folds: int = 5, groups: Sequence[str] | None = None) -> dict[str, NDArray[np.float64]]:
    """Each row predicted by the model fitted on the other folds: copy fraction, p50 and p90 tokens. Folds by a
    hash of the request id, or one fold per value of ``groups`` (one label per row: an unseen prompt family)."""
    if groups is None:
        fold = np.asarray([fold_of(r, folds) for r in rows.request_ids])
    else:
        names = sorted(set(groups))
        fold = np.asarray([names.index(g) for g in groups])
    out = {k: np.zeros(len(rows.request_ids)) for k in ("copy", "tokens_p50", "tokens_p90")}
    for k in np.unique(fold):
        train, test = fold != k, fold == k
        part = Rows([r for r, t in zip(rows.request_ids, train, strict=True) if t], rows.x[train], rows.copy[train],
                    rows.log_tokens[train])
        out["copy"][test], out["tokens_p50"][test], out["tokens_p90"][test] = fit(part).predict_matrix(rows.x[test])
    return out


def report(rows: Rows, oof: Mapping[str, Sequence[float] | NDArray[np.float64]],
           threshold: float = 0.35) -> dict[str, Any]:
    """Out-of-fold quality: rank correlation of copy fractions, the flag's precision/recall at ``threshold``,
    and how often the answer's length lands at or under the predicted p50 / p90."""
    obs, pred = rows.copy, np.asarray(oof["copy"])
    tokens = np.expm1(rows.log_tokens)
    heavy, flag = obs >= threshold, pred >= threshold
    return {
        "answers": len(obs),
        "spearman_copy": round(_spearman(pred, obs), 3),
        "flagged": int(flag.sum()), "copy_heavy": int(heavy.sum()),
        "precision_of_flag": round(float((heavy & flag).sum() / max(1, flag.sum())), 3),
        "recall_of_flag": round(float((heavy & flag).sum() / max(1, heavy.sum())), 3),
        "tokens_at_or_under_p50": round(float(np.mean(tokens <= np.asarray(oof["tokens_p50"]))), 3),
        "tokens_at_or_under_p90": round(float(np.mean(tokens <= np.asarray(oof["tokens_p90"]))), 3),
        "spearman_tokens_p50": round(_spearman(np.asarray(oof["tokens_p50"]), tokens), 3),
    }


def _spearman(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    ra = np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(float)
    rb = np.argsort(np.argsort(b, kind="stable"), kind="stable").astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])
