"""Calibration and discrimination measures: expected calibration error, reliability bins, AUC."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import roc_auc_score


@dataclass(frozen=True)
class ReliabilityBin:
    lower: float
    upper: float
    count: int
    mean_predicted: float
    mean_observed: float


def reliability(pred: ArrayLike, target: ArrayLike, n_bins: int = 10) -> list[ReliabilityBin]:
    """Equal-width bins over [0, 1]; the last bin includes 1.0. Empty bins are left out."""
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError("pred and target must have the same shape")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=False), 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        m = which == b
        if m.any():
            out.append(ReliabilityBin(float(edges[b]), float(edges[b + 1]), int(m.sum()), float(p[m].mean()),
                                      float(t[m].mean())))
    return out


def ece(pred: ArrayLike, target: ArrayLike, n_bins: int = 10) -> float:
    """Expected calibration error: sum over bins of (bin share) * |mean predicted - mean observed|."""
    bins = reliability(pred, target, n_bins)
    n = sum(b.count for b in bins)
    if n == 0:
        return 0.0
    return float(sum(b.count / n * abs(b.mean_predicted - b.mean_observed) for b in bins))


def auc(pred: ArrayLike, target: ArrayLike) -> float | None:
    """ROC AUC against ``target >= 0.5``; ``None`` when only one class is present."""
    t: NDArray[np.bool_] = np.asarray(target, dtype=np.float64) >= 0.5
    if t.all() or not t.any():
        return None
    return float(roc_auc_score(t, np.asarray(pred, dtype=np.float64)))
