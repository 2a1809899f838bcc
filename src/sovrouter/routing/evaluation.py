"""Cross-validated evaluation of the learned router on a workload, and the full training run.

Honest CV: every request's scores come from models that never saw its item (group folds); for each outer fold
the thresholds are chosen on the other folds' rows only and measured on the held-out fold. The shipped
thresholds are chosen the same way on all rows, and the shipped models are refit on all rows.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sovrouter.catalog import Catalog, Tenants
from sovrouter.contracts import Candidate
from sovrouter.routing.calibration import auc, ece
from sovrouter.routing.dataset import Workload, load_workload
from sovrouter.routing.model import SLOT_ORDER, Bundle, Thresholds
from sovrouter.routing.simulate import (
    EvalSet,
    Metrics,
    Outcome,
    direct_domain_options,
    metrics,
    run_policy,
    select_thresholds,
)
from sovrouter.routing.training import (
    Featurized,
    StageProbs,
    featurize,
    fit_models,
    oof_stage_probs,
    top_index,
)

MARGIN = 0.002  # training folds must beat the reference's mean quality by 0.2 points (v2.3; 0.1 until then) ...
DOMAIN_FLOOR = -0.0075  # ... with no domain more than 0.75 points below it (the floor is 2)
HIGH_FACTOR = 0.5  # high-value tenants weigh quality twice: half the gain thresholds
MIN_OFF_FRONTIER = 0.53  # training folds must keep this share of events off frontier accelerators (floor 0.50)
FOLDS = 5


def build_evalset(w: Workload, feat: Featurized, catalog: Catalog, tenants: Tenants) -> EvalSet:
    cost, accel = w.cost_matrix(catalog)
    latency = np.zeros_like(cost)
    for i, allowed in enumerate(w.allowed):
        for j, slot in enumerate(SLOT_ORDER):
            deps = [catalog.deployment(c.slot, c.deployment) for c in allowed if c.slot == slot]
            if deps:
                dep = min(deps, key=lambda d: (d.price_multiplier, d.id))
                latency[i, j] = dep.latency.total_ms(int(w.output_tokens[i, j]))
    tops = np.asarray([top_index({c.slot for c in a}) for a in w.allowed], dtype=int)
    top_est = np.zeros((len(w), 2))
    share = np.zeros(len(w))
    for i, allowed in enumerate(w.allowed):
        cheapest = _cheapest_deployments(catalog, allowed)
        top_slot = SLOT_ORDER[tops[i]]
        for k in (0, 1):
            top_est[i, k] = catalog.cost_usd(top_slot, cheapest[top_slot], int(w.input_tokens[i]),
                                             int(w.output_tokens[i, k]))
        if "sovereign-large" in cheapest:  # the same estimate the router makes after local-small answered
            share[i] = catalog.cost_usd("sovereign-large", cheapest["sovereign-large"], int(w.input_tokens[i]),
                                        int(w.output_tokens[i, 0])) / max(top_est[i, 0], 1e-12)
    values = {t.id: t.value for t in tenants.tenants}
    pick = []
    for i in range(len(w)):
        a, b, t = feat.views[i][0], feat.views[i][1], feat.views[i][tops[i]]
        pick.append(a.answer is not None and a.answer == b.answer and t.answer is not None and t.answer != a.answer)
    return EvalSet(scores=w.scores, cost=cost, accel=accel, latency=latency, events=w.events, top=tops,
                   high=np.asarray([values.get(t, "standard") == "high" for t in w.tenants]),
                   domains=np.asarray(w.domains), pick_case=np.asarray(pick), executable=feat.executable,
                   exec_match=feat.exec_match, top_cost_est=top_est, step_share=share)


def _cheapest_deployments(catalog: Catalog, allowed: Sequence[Candidate]) -> dict[str, str]:
    """Per slot, the allowed deployment with the lowest price multiplier (the one the router would use)."""
    best: dict[str, tuple[float, str]] = {}
    for c in allowed:
        dep = catalog.deployment(c.slot, c.deployment)
        if c.slot not in best or (dep.price_multiplier, dep.id) < best[c.slot]:
            best[c.slot] = (dep.price_multiplier, dep.id)
    return {slot: v[1] for slot, v in best.items()}


COST_SCALED = False  # cost-scaled stage thresholds: CV 84% cost but 26% off frontier (docs/routing.md); off


def cost_unit(ev: EvalSet) -> float:
    """The unit of cost-scaled thresholds: the median estimated cost of a top call (USD); 0 when not scaled."""
    return float(np.median(ev.top_cost_est[:, 0])) if COST_SCALED else 0.0


def subset_probs(sp: StageProbs, rows: np.ndarray) -> StageProbs:
    return StageProbs(prior=sp.prior[rows], p1_first=sp.p1_first[rows], p1_top=sp.p1_top[rows],
                      p2_second=sp.p2_second[rows], p2_top=sp.p2_top[rows], domain_probs=sp.domain_probs[rows],
                      p3_mid=sp.p3_mid[rows], p3_top=sp.p3_top[rows], p4=sp.p4[rows], domains=sp.domains)


@dataclass
class CVResult:
    per_fold: list[dict[str, Any]]
    pooled: Metrics
    served: np.ndarray


def cross_validate(ev: EvalSet, sp: StageProbs, fold_of: np.ndarray) -> CVResult:
    """Thresholds chosen on the other folds, applied to each held-out fold; pooled over folds."""
    served = np.zeros(len(ev.top), dtype=int)
    called = np.zeros_like(ev.accel)
    per_fold = []
    unit = cost_unit(ev)
    for k in sorted(set(fold_of.tolist())):
        tr, te = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
        th, m_tr = select_thresholds(ev.subset(tr), subset_probs(sp, tr), margin=MARGIN, domain_floor=DOMAIN_FLOOR,
                                     high_factor=HIGH_FACTOR, cost_unit=unit,
                                     min_off_frontier=MIN_OFF_FRONTIER,
                                     domain_options=direct_domain_options(sp.domains))
        out = run_policy(ev.subset(te), subset_probs(sp, te), th, HIGH_FACTOR, unit)
        served[te], called[te] = out.served, out.called
        per_fold.append({"fold": k, "thresholds": th.model_dump(), "train": m_tr.as_dict(),
                         "held_out": metrics(ev.subset(te), out).as_dict()})

    return CVResult(per_fold=per_fold, pooled=metrics(ev, Outcome(served=served, called=called)), served=served)


def calibration_report(ev: EvalSet, sp: StageProbs) -> dict[str, Any]:
    """ECE and AUC of the out-of-fold scores, overall and per domain."""
    n = len(ev.top)
    rows = np.arange(n)
    targets = {
        **{f"prior[{s}]": (sp.prior[:, j], ev.scores[:, j]) for j, s in enumerate(SLOT_ORDER)},
        "verifier: P(local-small good | its answer)": (sp.p1_first, ev.scores[:, 0]),
        "verifier: P(sovereign-large good | both cheap answers)": (sp.p2_second, ev.scores[:, 1]),
        "P(top good | both cheap answers)": (sp.p2_top, ev.scores[rows, np.where(ev.top > 1, ev.top, 3)]),
        "voter: P(hosted-mini good | three answers)": (sp.p3_mid, ev.scores[:, 2]),
        "P(frontier good | three answers)": (sp.p3_top, ev.scores[:, 3]),
        "picker: P(frontier good | four answers)": (sp.p4[:, 3], ev.scores[:, 3]),
        "picker: P(hosted-mini good | four answers)": (sp.p4[:, 2], ev.scores[:, 2]),
    }
    out: dict[str, Any] = {}
    for name, (p, t) in targets.items():
        entry: dict[str, Any] = {"all": {"ece": round(ece(p, t), 4), "auc": _r(auc(p, t)), "n": n}}
        for dom in sorted(set(ev.domains.tolist())):
            m = ev.domains == dom
            entry[dom] = {"ece": round(ece(p[m], t[m]), 4), "auc": _r(auc(p[m], t[m])), "n": int(m.sum())}
        out[name] = entry
    return out


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def prepare(workload: str | Path, catalog: Catalog, tenants: Tenants) -> tuple[Workload, Featurized, EvalSet]:
    """A workload read, featurised and turned into outcome accounting: what training and the benches start from."""
    w = load_workload(workload, catalog)
    feat = featurize(w)
    return w, feat, build_evalset(w, feat, catalog, tenants)


def train_all(workload: str | Path, out_dir: str | Path, catalog: Catalog, tenants: Tenants,
              log: Any = print) -> dict[str, Any]:
    """The whole ``sovrouter train`` run: CV figures, shipped thresholds, models refit on all of dev."""
    t0 = time.perf_counter()
    w, feat, ev = prepare(workload, catalog, tenants)
    log(f"loaded {len(w)} requests, featurised in {time.perf_counter() - t0:.0f}s")
    sp, fold_of = oof_stage_probs(feat, w, ev.top, folds=FOLDS)
    log(f"out-of-fold scores in {time.perf_counter() - t0:.0f}s")
    cv = cross_validate(ev, sp, fold_of)
    unit = cost_unit(ev)
    shipped, m_all = select_thresholds(ev, sp, margin=MARGIN, domain_floor=DOMAIN_FLOOR, high_factor=HIGH_FACTOR,
                                       cost_unit=unit, min_off_frontier=MIN_OFF_FRONTIER,
                                       domain_options=direct_domain_options(sp.domains))
    models = fit_models(feat, w, np.arange(len(w)))
    models.meta = {"trained_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"), "requests": len(w)}
    thresholds = Thresholds(standard=shipped, high_value_factor=HIGH_FACTOR, margin=MARGIN, cost_unit_usd=unit,
                            chosen_on=f"out-of-fold scores of all {len(w)} dev requests ({FOLDS} group folds)")
    report = {
        "workload": str(workload), "requests": len(w), "events": int(w.events.sum()),
        "cv_pooled": cv.pooled.as_dict(), "cv_folds": cv.per_fold,
        "shipped_thresholds": shipped.model_dump(), "shipped_in_sample_oof": m_all.as_dict(),
        "calibration": calibration_report(ev, sp), "seconds": round(time.perf_counter() - t0, 1),
    }
    _publish(out_dir, Bundle(models, thresholds), report, model_card(report, models.meta))
    return report


def _publish(out_dir: str | Path, bundle: Bundle, report: dict[str, Any], card: str) -> None:
    """The four artifacts are written beside ``out_dir`` first and moved in only once all are whole: written one
    after another in place, a failure between them left a new model next to old thresholds (found in review)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        bundle.save(staging)
        (staging / "metrics.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        (staging / "model_card.md").write_text(card, encoding="utf-8")
        for item in sorted(staging.iterdir()):
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def model_card(report: dict[str, Any], meta: dict[str, Any]) -> str:
    cv = report["cv_pooled"]
    cal = report["calibration"]
    lines = [
        "# Learned router: model card", "",
        f"Trained {meta.get('trained_at')} by `sovrouter train` on the dev split of {report['workload']} "
        f"({report['requests']} requests, {report['events']} stream events). Deterministic (fixed seeds, group "
        "folds by source item).", "",
        "Models: hashed 1-2-gram logistic regressions over a head+tail window of the prompt (domain, output kind, "
        "per-slot prior quality); gradient-boosted verifiers over prompt scores + answer features (stage 1: "
        "local-small's answer; stage 2: local-small and sovereign-large answers and their agreement; stage 3: "
        "plus the hosted-mini voter's answer; stage 4 (picker): all four answers).", "",
        "Cross-validated (5 group folds, thresholds chosen on training folds, exact cache on, README policy with "
        "ground-truth personal data):", "",
        f"- quality {cv['quality']:.4f} vs reference {cv['reference_quality']:.4f}: diff {cv['diff']*100:+.2f} "
        f"points (95% CI {cv['diff_ci_low']*100:+.2f} .. {cv['diff_ci_high']*100:+.2f})",
        "- per domain diff (points): " + ", ".join(f"{k} {v*100:+.2f}" for k, v in cv["domain_diff"].items()),
        f"- cost {cv['cost_ratio_vs_uncached_reference']*100:.1f}% of the reference and "
        f"{cv['off_frontier_cache_hits_off']*100:.1f}% of events served without a frontier-accelerator call "
        "(`sovrouter report` terms: the reference pays every event, a cache hit makes no call); with the exact "
        f"cache on for both: cost {cv['cost_ratio']*100:.1f}%, {cv['off_frontier']*100:.1f}% off frontier", "",
        f"Shipped thresholds: `{json.dumps(report['shipped_thresholds'])}` (high-value tenants: stricter, "
        f"x{HIGH_FACTOR} a positive threshold and /{HIGH_FACTOR} a negative one).", "",
        "Calibration (out-of-fold, all domains): " + ", ".join(
            f"{k}: ECE {v['all']['ece']}, AUC {v['all']['auc']}" for k, v in cal.items()), "",
        "Limits: trained on six public benchmarks' answer sets; new task types fall back on the prompt priors and "
        "generic answer checks. See docs/routing.md.", "",
    ]
    return "\n".join(lines)

