"""Cost-quality curves on dev, cross-validated: learned cascade vs MF-style, kNN, fixed mixes, oracle.

Every method sees only out-of-fold predictions (5 group folds by source item), the exact cache is on (a repeat
costs nothing and serves the same answer) and the README policy applies (ground-truth personal data). Cost is
relative to the frontier-first compliant reference, quality is the mean score per stream event.

- learned cascade: the Pareto front of the threshold grid (with each direct-domain option) over out-of-fold
  verifier scores; the operating point is the cross-validated one (thresholds chosen on four folds, measured on
  the fifth, pooled);
- MF-style (RouteLLM): low-rank prompt embedding (TF-IDF hashing + SVD, 64 d) -> predicted quality of each
  slot (bilinear: prompt factor x slot factor, fitted by ridge per slot); route to the cheap off-frontier slot
  (sovereign-large) unless the predicted gain of top exceeds a threshold;
- kNN: the mean score of the 20 nearest dev prompts (cosine, same embedding) per slot, same routing rule;
- fixed mix: a share p of requests to sovereign-large, the rest to top (expected value of a random mix);
- oracle: per request the cheapest allowed slot with the best score (one call).

    python bench/router_curves.py [--workload /work/shared/data/workload]

Writes bench/results/router_curves.json, docs/router_curves.png and docs/router_reliability.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold

from sovrouter.catalog import Catalog, Tenants
from sovrouter.routing.calibration import reliability
from sovrouter.routing.evaluation import (
    FOLDS,
    HIGH_FACTOR,
    calibration_report,
    cost_unit,
    cross_validate,
    prepare,
)
from sovrouter.routing.simulate import (
    CURVE_GRIDS,
    EvalSet,
    Outcome,
    curve,
    direct_domain_options,
    metrics,
    pareto,
    reference,
)
from sovrouter.routing.training import oof_stage_probs

ROOT = Path(__file__).resolve().parents[1]
S = 1


def two_way(ev: EvalSet, gain: np.ndarray, tau: float) -> Outcome:
    """Route to sovereign-large (when allowed and cheaper than top) unless predicted gain of top > tau."""
    n = len(ev.top)
    cheap_ok = ~np.isnan(ev.cost[:, S]) & (ev.top > S)
    served = np.where(cheap_ok & (gain <= tau), S, ev.top)
    called = np.zeros((n, 4), dtype=bool)
    called[np.arange(n), served] = True
    return Outcome(served=served, called=called)


def sweep(ev: EvalSet, gain: np.ndarray) -> list[tuple[float, float, float]]:
    pts = []
    for tau in [*np.quantile(gain, np.linspace(0, 1, 41)).tolist(), -9.0, 9.0]:
        m = metrics(ev, two_way(ev, gain, tau))
        pts.append((m.cost_ratio, m.quality, m.off_frontier))
    return pareto(pts)


def oof_gain(emb: np.ndarray, ev: EvalSet, groups: list[str], kind: str) -> np.ndarray:
    n = len(ev.top)
    top_score = ev.scores[np.arange(n), np.where(ev.top > S, ev.top, 3)]
    pred = np.zeros(n)
    for tr, te in GroupKFold(n_splits=FOLDS).split(emb, groups=groups):
        if kind == "mf":
            top_m = Ridge(alpha=1.0).fit(emb[tr], top_score[tr])
            sov_m = Ridge(alpha=1.0).fit(emb[tr], ev.scores[tr, S])
            pred[te] = top_m.predict(emb[te]) - sov_m.predict(emb[te])
        else:
            sims = emb[te] @ emb[tr].T
            nn = np.argsort(-sims, axis=1)[:, :20]
            pred[te] = (top_score[tr][nn] - ev.scores[tr, S][nn]).mean(axis=1)
    return pred


def area(front: list[tuple[float, float, float]], lo: float = 0.0) -> float:
    """Mean quality of the best point reachable at each cost ratio in [lo, 1] (the staircase under the Pareto
    front; below the cheapest point the cheapest point's quality), i.e. the normalised area under the curve."""
    grid = np.linspace(lo, 1.0, 401)
    pts = sorted((c, q) for c, q, _ in front)
    vals = []
    for g in grid:
        ok = [q for c, q in pts if c <= g]
        vals.append(max(ok) if ok else pts[0][1])
    return float(np.mean(vals))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", default="/work/shared/data/workload")
    args = ap.parse_args()
    t0 = time.perf_counter()
    wl = Path(args.workload)
    catalog, tenants = Catalog.load(wl / "models.json"), Tenants.load(wl / "tenants.json")
    w, feat, ev = prepare(wl, catalog, tenants)
    sp, fold_of = oof_stage_probs(feat, w, ev.top, folds=FOLDS)
    cv = cross_validate(ev, sp, fold_of)
    learned_front = curve(ev, sp, HIGH_FACTOR, cost_unit(ev), grids=CURVE_GRIDS,
                          domain_options=direct_domain_options(sp.domains))  # as selection searches (v2.3)
    hashed = feat.x[:, : feat.x.shape[1] - feat.dense.shape[1]]
    emb = TruncatedSVD(n_components=64, random_state=0).fit_transform(hashed)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True) + 1e-9
    mf_front = sweep(ev, oof_gain(emb, ev, w.groups, "mf"))
    knn_front = sweep(ev, oof_gain(emb, ev, w.groups, "knn"))
    ref = metrics(ev, reference(ev))
    sov_only = metrics(ev, two_way(ev, np.zeros(len(ev.top)), 1.0))
    mix = [(p * sov_only.cost_ratio + (1 - p) * 1.0, p * sov_only.quality + (1 - p) * ref.quality,
            p * sov_only.off_frontier + (1 - p) * ref.off_frontier) for p in np.linspace(0, 1, 11)]
    n = len(ev.top)
    best = np.zeros(n, dtype=int)
    for i in range(n):
        ok = [j for j in range(4) if not np.isnan(ev.cost[i, j])]
        top_q = max(ev.scores[i, j] for j in ok)
        best[i] = min((j for j in ok if ev.scores[i, j] == top_q), key=lambda j: ev.cost[i, j])
    called = np.zeros((n, 4), dtype=bool)
    called[np.arange(n), best] = True
    oracle = metrics(ev, Outcome(served=best, called=called))
    op = cv.pooled
    fronts = {"learned cascade": learned_front, "MF-style (RouteLLM)": mf_front, "kNN": knn_front,
              "fixed mix (sovereign-large / top)": mix}

    def at_parity(front: list[tuple[float, float, float]]) -> dict[str, float] | None:
        ok = [p for p in front if p[1] >= ref.quality]
        if not ok:
            return None
        c, q, off = min(ok)
        return {"cost_ratio": round(c, 4), "quality": round(q, 4), "off_frontier": round(off, 4)}

    table = {name: {"auc": round(area(f), 4), "auc_cost_0.5_1": round(area(f, 0.5), 4),
                    "at_reference_quality": at_parity(f)} for name, f in fronts.items()}
    result = {
        "reference": ref.as_dict(), "oracle": oracle.as_dict(), "methods": table,
        "learned_operating_point_cv": op.as_dict(), "cv_folds": cv.per_fold,
        "calibration": calibration_report(ev, sp), "seconds": round(time.perf_counter() - t0, 1),
    }
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "router_curves.json").write_text(json.dumps(result, indent=1) + "\n")
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, f in fronts.items():
        ax.plot([p[0] for p in f], [p[1] for p in f], marker=".", label=f"{name} (AUC {area(f):.3f})")
    ax.scatter([1.0], [ref.quality], marker="s", color="k", label="frontier-first reference")
    ax.scatter([oracle.cost_ratio], [oracle.quality], marker="*", s=120, color="gold", label="oracle")
    ax.scatter([op.cost_ratio], [op.quality], marker="o", s=90, facecolors="none", edgecolors="red",
               label=f"shipped point, CV ({op.off_frontier * 100:.0f}% off frontier)")
    ax.set_xlabel("cost / frontier-first reference cost")
    ax.set_ylabel("mean quality per event")
    ax.set_title("dev, 5-fold group CV, exact cache on, policy on")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "router_curves.png", dpi=110)
    fig, ax = plt.subplots(figsize=(6, 5))
    top_scores = ev.scores[np.arange(n), np.where(ev.top > 1, ev.top, 3)]
    for name, p, t in (("prior[frontier]", sp.prior[:, 3], ev.scores[:, 3]),
                       ("P(local-small good | answer)", sp.p1_first, ev.scores[:, 0]),
                       ("P(sovereign-large good | answers)", sp.p2_second, ev.scores[:, 1]),
                       ("P(top good | answers)", sp.p2_top, top_scores)):
        bins = reliability(p, t, 10)
        ax.plot([b.mean_predicted for b in bins], [b.mean_observed for b in bins], marker="o", label=name)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("observed mean score")
    ax.set_title("reliability, out-of-fold (dev)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "router_reliability.png", dpi=110)
    print(json.dumps({"reference": result["reference"], "oracle": result["oracle"], "methods": table,
                      "learned_operating_point_cv": result["learned_operating_point_cv"],
                      "seconds": result["seconds"]}, indent=1))


if __name__ == "__main__":
    main()
