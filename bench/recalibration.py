"""Drift detection and recalibration on the dev workload: a deliberately drifted slot is detected and
recalibrated, with calibration error before and after on requests the correction never saw.

Predictor: the learned router's per-slot predicted quality is not available in every checkout, so this bench
trains a stand-in with the same shape (per-slot P(answer good | prompt text): hashed word 1-2-grams +
logistic regression, and a prompt -> domain classifier for grouping) on half of the dev prompts (split A, by
hash of the request id). Split B (the other half, in stream arrival order) plays production: its first half
(B1) is the observation window the correction is fitted on, its second half (B2) the evaluation. Drift: the
slot ``--slot`` loses ``--drop`` of absolute quality in B (a hash-chosen share of its good answers become bad),
as if its backing model had been swapped for a worse one. Every slot's score is observed for each request
(offline scores; in production shadow sampling and feedback give a subset).

    python bench/recalibration.py [--workload /work/shared/data/workload] [--slot hosted-mini] [--drop 0.15]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression

from sovrouter.evalloop.recalibrate import (
    CalibrationSample,
    apply_all,
    detect_drift,
    drifted_slots,
    fit_recalibration,
)
from sovrouter.evalloop.stats import ece
from sovrouter.workload import load_labels, load_requests, load_scores, load_stream, resolve

SLOTS = ("local-small", "sovereign-large", "hosted-mini", "frontier")


def _h(s: str, salt: str = "") -> int:
    return int(hashlib.sha256((salt + s).encode()).hexdigest()[:12], 16)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", default="/work/shared/data/workload")
    ap.add_argument("--slot", default="hosted-mini")
    ap.add_argument("--drop", type=float, default=0.15)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "recalibration.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    paths = resolve(args.workload)
    requests = load_requests(paths)
    scores = load_scores(paths)
    labels = load_labels(paths)  # only to TRAIN the stand-in domain classifier (as the router team does)
    first_seq: dict[str, int] = {}
    for e in load_stream(paths):
        first_seq.setdefault(e.request_id, e.seq)
    ids = sorted(requests, key=lambda r: first_seq.get(r, 10**9))
    text = {r: "\n".join(str(m.content) for m in requests[r].messages) for r in ids}
    train = [r for r in ids if _h(r) % 2 == 0]
    prod = [r for r in ids if _h(r) % 2 == 1]
    vec = HashingVectorizer(n_features=2**18, ngram_range=(1, 2), alternate_sign=False, norm="l2")
    xa, xb = vec.transform([text[r] for r in train]), vec.transform([text[r] for r in prod])
    dom_clf = LogisticRegression(max_iter=2000, C=4.0).fit(xa, [labels[r].domain for r in train])
    dom_b = dom_clf.predict(xb)
    pred: dict[str, np.ndarray] = {}
    for slot in SLOTS:
        y = np.array([scores[(r, slot)] >= 0.5 for r in train], dtype=int)
        pred[slot] = LogisticRegression(max_iter=2000, C=1.0).fit(xa, y).predict_proba(xb)[:, 1]

    def samples(drifted: bool) -> list[CalibrationSample]:
        out = []
        for i, r in enumerate(prod):
            for slot in SLOTS:
                obs = scores[(r, slot)]
                if drifted and slot == args.slot and obs > 0:
                    good = np.mean([scores[(q, slot)] for q in prod])
                    if (_h(r, "drift") % 10_000) / 10_000 < args.drop / good:
                        obs = 0.0
                out.append(CalibrationSample(slot, str(dom_b[i]), float(pred[slot][i]), float(obs)))
        return out

    half = len(prod) // 2 * len(SLOTS)
    result: dict[str, object] = {"slot": args.slot, "drop": args.drop, "train_prompts": len(train),
                                 "prod_prompts": len(prod), "fit_samples": half}
    for method in ("isotonic", "platt"):
        for name, drifted in (("no_drift", False), ("drift", True)):
            s = samples(drifted)
            fit_part, held = s[:half], s[half:]
            status = detect_drift(fit_part)
            alarms = {f"{d.slot}|{d.domain}": {"alarm": d.alarm, "alarm_after": d.alarm_index, "n": d.n,
                                               "ece": round(d.ece, 4), "predicted": round(d.mean_predicted, 4),
                                               "observed": round(d.mean_observed, 4)} for d in status}
            # production flow: recalibrate the slots whose drift check alarmed; the others keep their predictions
            recal = fit_recalibration(fit_part, method, min_n=100, slots=drifted_slots(status))
            after = apply_all(recal, held)
            per_slot = {}
            for slot in SLOTS:
                idx = [i for i, x in enumerate(held) if x.slot == slot]
                p = [held[i].predicted for i in idx]
                o = [held[i].observed for i in idx]
                a = [after[i] for i in idx]
                per_slot[slot] = {"n": len(idx), "ece_before": round(ece(p, o), 4),
                                  "ece_after": round(ece(a, o), 4),
                                  "brier_before": round(float(np.mean((np.array(p) - o) ** 2)), 4),
                                  "brier_after": round(float(np.mean((np.array(a) - o) ** 2)), 4)}
            result[f"{method}/{name}"] = {
                "drift_check_on_fit_window": alarms, "held_out": per_slot, "maps": sorted(recal.groups),
                "ece_before_all": round(ece([x.predicted for x in held], [x.observed for x in held]), 4),
                "ece_after_all": round(ece(after, [x.observed for x in held]), 4)}
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for name in ("isotonic/no_drift", "isotonic/drift", "platt/no_drift", "platt/drift"):
        r = result[name]
        assert isinstance(r, dict)
        print(f"== {name} (drifted slot {args.slot}, drop {args.drop if name.endswith('/drift') else 0})")
        for slot, h in r["held_out"].items():
            a = r["drift_check_on_fit_window"][f"{slot}|*"]
            alarmed = [k for k, v in r["drift_check_on_fit_window"].items() if v["alarm"] and k.startswith(slot + "|")]
            print(f"  {slot:16s} alarms={alarmed} slot-level after={a['alarm_after']!s:5s} pred {a['predicted']:.3f} "
                  f"obs {a['observed']:.3f} | held-out ECE {h['ece_before']:.4f} -> {h['ece_after']:.4f} "
                  f"(Brier {h['brier_before']:.4f} -> {h['brier_after']:.4f})")
        print(f"  all slots: ECE {r['ece_before_all']:.4f} -> {r['ece_after_all']:.4f}; maps kept: {r['maps']}")
    print(f"wrote {args.out} ({result['wall_s']} s)")


if __name__ == "__main__":
    main()
