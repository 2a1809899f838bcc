"""The learned router under prompt-format shifts, out of fold: what a held-out file with other layouts would cost.

The review of 2026-11-28 measured format shifts in-sample (shifted copies of dev replayed against artifacts
trained on dev). Here every shifted request is scored by models that never saw its item, with thresholds chosen
on the other folds' unshifted rows (as ``sovrouter train``'s CV): only the prompt text of the held-out fold is
rewritten; its answers and scores stay with it, so this measures the router alone.

The shifts are generic rewrites a held-out file could plausibly contain; none of them is used by any training
augmentation (``routing.augment`` draws from other wrappers), so a gain here is generalisation, not recall:

- ``first_line_last``: the prompt's first line moved to its end (a context line after the task, not before);
- ``template``: ``"Question:\\n{p}\\n\\nAnswer:"``;
- ``preamble``: a polite request before the prompt;
- ``suffix``: an instruction after it;
- ``context``: a new context line before it, phrased unlike dev's.

    python bench/router_shift.py [--workload DIR] [--out bench/results/router_shift.json]

Prints pooled figures per shift (quality diff against the frontier-first reference, worst domain, cost in report
terms, share off frontier, the domain classifier's accuracy, decisions changed against the unshifted fold).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupKFold

from sovrouter.catalog import Catalog, Tenants
from sovrouter.routing.answers import raw_answer
from sovrouter.routing.dataset import Workload
from sovrouter.routing.evaluation import (
    DOMAIN_FLOOR,
    FOLDS,
    HIGH_FACTOR,
    MARGIN,
    MIN_OFF_FRONTIER,
    cost_unit,
    prepare,
    subset_probs,
)
from sovrouter.routing.execute import find_question, matches, run_question
from sovrouter.routing.features import canonical, cheap_features, make_vectorizer, prompt_matrix
from sovrouter.routing.learned import detect_language
from sovrouter.routing.simulate import (
    Outcome,
    direct_domain_options,
    metrics,
    run_policy,
    select_thresholds,
)
from sovrouter.routing.training import Featurized, StageProbs, fit_models, stage_probs

ROOT = Path(__file__).resolve().parents[1]


def _first_line_last(p: str) -> str:
    lines = p.split("\n")
    return "\n".join([*lines[1:], "", lines[0]]) if len(lines) > 1 else p


SHIFTS: dict[str, Callable[[str], str]] = {
    "none": lambda p: p,
    "first_line_last": _first_line_last,
    "template": lambda p: f"Question:\n{p}\n\nAnswer:",
    "preamble": lambda p: f"Hello! I would really appreciate your help with the following.\n\n{p}",
    "suffix": lambda p: f"{p}\n\nPlease double-check your work before you reply.",
    "context": lambda p: f"Internal reference: case 4471-B, logged by the support desk on behalf of a customer.\n\n{p}",
}


def shifted(feat: Featurized, w: Workload, texts: list[str]) -> Featurized:
    """``feat`` with the prompt side recomputed for ``texts`` (answers, their views and code checks unchanged)."""
    dense = np.asarray([cheap_features(t, detect_language(canonical(t))) for t in texts], dtype=np.float64)
    x = prompt_matrix(make_vectorizer(), texts, dense)
    executable = feat.executable.copy()
    exec_match = feat.exec_match.copy()
    for i, t in enumerate(texts):
        same = find_question(t) == find_question(w.texts[i])
        if same:
            continue
        value = run_question(t)
        executable[i] = value is not None
        exec_match[i] = [matches(raw_answer(r), value) for r in w.responses[i]]
    return dataclasses.replace(feat, x=x, dense=dense, executable=executable, exec_match=exec_match)


def run(workload: str, out_path: Path) -> dict[str, object]:
    t0 = time.perf_counter()
    wl = Path(workload)
    catalog, tenants = Catalog.load(wl / "models.json"), Tenants.load(wl / "tenants.json")
    w, feat, ev = prepare(workload, catalog, tenants)
    feats = {name: (feat if name == "none" else shifted(feat, w, [fn(t) for t in w.texts]))
             for name, fn in SHIFTS.items()}
    print(f"featurised {len(SHIFTS)} variants in {time.perf_counter() - t0:.0f}s", flush=True)
    rows = np.arange(len(w))
    fold_of = np.zeros(len(w), dtype=int)
    probs: dict[str, list[tuple[np.ndarray, StageProbs]]] = {name: [] for name in SHIFTS}
    for k, (tr, te) in enumerate(GroupKFold(n_splits=FOLDS).split(rows, groups=w.groups)):
        models = fit_models(feat, w, rows[tr])
        for name, f in feats.items():
            probs[name].append((te, stage_probs(models, f, w, rows[te], ev.top[te])))
        fold_of[te] = k
        print(f"fold {k} in {time.perf_counter() - t0:.0f}s", flush=True)
    pooled = {name: _pool(parts, len(w)) for name, parts in probs.items()}
    base = pooled["none"]
    unit = cost_unit(ev)
    served: dict[str, np.ndarray] = {}
    results: dict[str, object] = {}
    for name, sp in pooled.items():
        ev_s = dataclasses.replace(ev, executable=feats[name].executable, exec_match=feats[name].exec_match)
        s = np.zeros(len(w), dtype=int)
        called = np.zeros_like(ev.accel)
        for k in range(FOLDS):
            tr, te = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
            th, _ = select_thresholds(ev.subset(tr), subset_probs(base, tr), margin=MARGIN,
                                      domain_floor=DOMAIN_FLOOR, high_factor=HIGH_FACTOR, cost_unit=unit,
                                      min_off_frontier=MIN_OFF_FRONTIER,
                                      domain_options=direct_domain_options(base.domains))
            out = run_policy(ev_s.subset(te), subset_probs(sp, te), th, HIGH_FACTOR, unit)
            s[te], called[te] = out.served, out.called
        served[name] = s
        m = metrics(ev_s, Outcome(served=s, called=called)).as_dict()
        dom_acc = float(np.mean(sp.predicted_domain() == np.asarray(w.domains)))
        chat = np.asarray(w.domains) == "chat_hard"
        results[name] = {
            "diff_points": round(float(m["diff"]) * 100, 2),
            "ci_low_points": round(float(m["diff_ci_low"]) * 100, 2),
            "domain_diff_points": {d: round(float(v) * 100, 2) for d, v in dict(m["domain_diff"]).items()},
            "cost_report": round(float(m["cost_ratio_vs_uncached_reference"]) * 100, 1),
            "off_frontier_report": round(float(m["off_frontier_cache_hits_off"]) * 100, 1),
            "domain_accuracy": round(dom_acc, 4),
            "chat_hard_read_as_chat_hard": round(float(np.mean(sp.predicted_domain()[chat] == "chat_hard")), 4),
            "served_changed_vs_unshifted": int(np.sum(s != served["none"])) if name != "none" else 0,
        }
        r = results[name]
        assert isinstance(r, dict)
        print(f"{name:16s} diff {r['diff_points']:+.2f} (CI low {r['ci_low_points']:+.2f}) worst "
              f"{min(r['domain_diff_points'].values()):+.2f} cost {r['cost_report']:.1f}% off "
              f"{r['off_frontier_report']:.1f}% dom-acc {r['domain_accuracy']:.3f} chat_hard "
              f"{r['chat_hard_read_as_chat_hard']:.3f} changed {r['served_changed_vs_unshifted']}", flush=True)
    report = {"workload": workload, "folds": FOLDS, "shifts": results, "seconds": round(time.perf_counter() - t0)}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return report


def _pool(parts: list[tuple[np.ndarray, StageProbs]], n: int) -> StageProbs:
    nd = parts[0][1].domain_probs.shape[1]
    out = StageProbs(prior=np.zeros((n, 4)), p1_first=np.zeros(n), p1_top=np.zeros(n), p2_second=np.zeros(n),
                     p2_top=np.zeros(n), domain_probs=np.zeros((n, nd)), p3_mid=np.zeros(n), p3_top=np.zeros(n),
                     p4=np.zeros((n, 4)), domains=parts[0][1].domains)
    for te, sp in parts:
        for field in ("prior", "p1_first", "p1_top", "p2_second", "p2_top", "domain_probs", "p3_mid", "p3_top",
                      "p4"):
            getattr(out, field)[te] = getattr(sp, field)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workload", default=str(ROOT.parent / "shared" / "data" / "workload"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "router_shift.json")
    args = ap.parse_args()
    run(args.workload, args.out)


if __name__ == "__main__":
    main()
