"""Decision time of the learned router: classify + decide + every review a request needs, per request.

Measures the router's own time (prompt featurisation, language detection, prompt models, answer reading,
verifiers) on dev requests, with each review fed the recorded answers of the slots the plan would call. The
pipeline records the same span (plus detection and policy) as ``decision_ms``.

    python bench/router_decision_time.py [--workload /work/shared/data/workload] [--n 1500]

Writes bench/results/router_decision_time.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from sovrouter.catalog import Catalog, Tenants
from sovrouter.contracts import Detection, ModelResult
from sovrouter.intake import normalize_chat
from sovrouter.routing.dataset import load_workload
from sovrouter.routing.learned import LearnedClassifier, LearnedRouter
from sovrouter.routing.model import SLOT_ORDER, Bundle


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", default="/work/shared/data/workload")
    ap.add_argument("--n", type=int, default=1500)
    args = ap.parse_args()
    wl = Path(args.workload)
    catalog, tenants = Catalog.load(wl / "models.json"), Tenants.load(wl / "tenants.json")
    w = load_workload(wl, catalog)
    t0 = time.perf_counter()
    bundle = Bundle.load()
    load_s = time.perf_counter() - t0
    clf, router = LearnedClassifier(bundle), LearnedRouter(bundle, catalog, tenants)
    step = max(1, len(w) // args.n)
    rows = list(range(0, len(w), step))[: args.n]
    totals, classify_ms, reviews = [], [], []
    for i in rows[:50]:  # warm-up
        req = normalize_chat({"messages": [{"role": "user", "content": w.texts[i]}]}, tenant=w.tenants[i],
                             request_id=w.ids[i])
        router.decide(req, clf.classify(req, Detection()), w.allowed[i])
    for i in rows:
        req = normalize_chat({"messages": [{"role": "user", "content": w.texts[i]}]}, tenant=w.tenants[i],
                             request_id=w.ids[i], data_class=w.data_classes[i])  # type: ignore[arg-type]
        det = Detection(pii_types=["PERSON"] if w.has_pii[i] else [])
        t = time.perf_counter()
        sig = clf.classify(req, det)
        t_c = time.perf_counter()
        dec = router.decide(req, sig, w.allowed[i])
        results: list[ModelResult] = []
        n_rev = 0
        pos = 0
        while pos < len(dec.plan):
            c = dec.plan[pos]
            results.append(ModelResult(candidate=c, text=w.responses[i][SLOT_ORDER.index(c.slot)]))
            if not dec.evidence.get("review"):
                break
            nxt = router.review(req, sig, dec, results)
            n_rev += 1
            if nxt is None or nxt not in dec.plan or dec.plan.index(nxt) <= pos:
                break
            pos = dec.plan.index(nxt)
        end = time.perf_counter()
        totals.append((end - t) * 1000)
        classify_ms.append((t_c - t) * 1000)
        reviews.append(n_rev)
    totals.sort()
    res = {
        "requests": len(rows),
        "p50_ms": round(statistics.median(totals), 3),
        "p90_ms": round(totals[int(0.9 * (len(totals) - 1))], 3),
        "p99_ms": round(totals[int(0.99 * (len(totals) - 1))], 3),
        "mean_ms": round(statistics.fmean(totals), 3),
        "classify_p50_ms": round(statistics.median(classify_ms), 3),
        "mean_reviews": round(statistics.fmean(reviews), 3),
        "artifact_load_s": round(load_s, 2),
        "target_p50_ms": 10.0,
        "note": "one process, single-threaded Python, on the shared 2-core dev box (under load from other jobs)",
    }
    print(json.dumps(res, indent=1))
    out = Path(__file__).resolve().parent / "results" / "router_decision_time.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
