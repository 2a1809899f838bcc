"""Personal-data stress set: own templates (en/de/fr) + Faker values inside real benchmark task texts.

    python bench/pii_stress.py [--n 2000] [--seed 0] [--show-errors A]

Tasks are the dev requests that carry no injected line (no personal data, no hard negative), so every text is a
real benchmark prompt; the context lines come from :mod:`sovrouter.testing_pii` (templates written from scratch,
split A = development, B = held back). Each split gets ``--n`` items: ~60% positives (one line with personal
data placed before, after or inside the task), ~25% hard negatives (an innocent line, same positions) and ~15%
plain tasks. Prints and writes ``bench/results/pii_stress.json``: request-level recall / precision per split,
per type, per language, per position, false-positive rates of hard negatives and plain tasks, the precision
those rates imply at the workload's mix (15% positive, 3% hard negative, 82% plain), and detection time.
``--show-errors`` prints the misclassified lines of one split (use A while tuning; B stays unread).
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

from sovrouter.detect.detector import PII_TYPES, PiiDetector
from sovrouter.testing_pii import StressItem, generate

ROOT = Path(__file__).resolve().parents[1]


def _tasks(data: Path) -> list[str]:
    labels = {}
    with gzip.open(data / "labels.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            lab = json.loads(line)
            labels[lab["id"]] = lab
    out = []
    with gzip.open(data / "requests.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            req = json.loads(line)
            lab = labels.get(req["id"], {})
            if lab.get("pii_types") or lab.get("hard_negative"):
                continue
            content = req["messages"][0].get("content")
            if isinstance(content, str) and content.strip():
                out.append(content)
    return out


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def _score(items: list[StressItem], preds: list[set[str]]) -> dict[str, Any]:
    c: Counter[str] = Counter()
    per_type = {t: Counter[str]() for t in PII_TYPES}
    per_lang: dict[str, Counter[str]] = {}
    per_pos: dict[str, Counter[str]] = {}
    for it, pred in zip(items, preds, strict=True):
        truth = set(it.types)
        key = ("tp" if pred else "fn") if truth else ("fp" if pred else "tn")
        c[key] += 1
        c[f"{it.kind}_n"] += 1
        c[f"{it.kind}_flagged"] += bool(pred)
        if it.kind != "plain":
            per_lang.setdefault(it.lang, Counter())[key] += 1
            per_pos.setdefault(it.position, Counter())[key] += 1
        for t in PII_TYPES:
            per_type[t]["tp"] += t in truth and t in pred
            per_type[t]["fn"] += t in truth and t not in pred
            per_type[t]["fp"] += t not in truth and t in pred
    recall = c["tp"] / max(1, c["tp"] + c["fn"])
    fpr_hn = c["hard_negative_flagged"] / max(1, c["hard_negative_n"])
    fpr_plain = c["plain_flagged"] / max(1, c["plain_n"])
    mix_tp = 0.15 * recall
    mix_fp = 0.03 * fpr_hn + 0.82 * fpr_plain

    def rp(x: Counter[str]) -> dict[str, Any]:
        return {"recall": _ratio(x["tp"], x["tp"] + x["fn"]), "precision": _ratio(x["tp"], x["tp"] + x["fp"]),
                **{k: x[k] for k in ("tp", "fp", "fn", "tn") if x[k]}}
    return {
        "items": len(items),
        "request_level": rp(c),
        "hard_negatives": {"n": c["hard_negative_n"], "flagged": c["hard_negative_flagged"],
                           "rate": _ratio(c["hard_negative_flagged"], c["hard_negative_n"])},
        "plain_tasks": {"n": c["plain_n"], "flagged": c["plain_flagged"],
                        "rate": _ratio(c["plain_flagged"], c["plain_n"])},
        "precision_at_workload_mix": round(mix_tp / (mix_tp + mix_fp), 4) if mix_tp + mix_fp else None,
        "per_type": {t: rp(x) for t, x in per_type.items()},
        "per_language": {k: rp(x) for k, x in sorted(per_lang.items())},
        "per_position": {k: rp(x) for k, x in sorted(per_pos.items())},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default="/work/shared/data/workload/dev")
    ap.add_argument("--n", type=int, default=2000, help="items per split")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--splits", default="A,B")
    ap.add_argument("--show-errors", default="", help="print the misclassified lines of this split (A)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "pii_stress.json"))
    args = ap.parse_args(argv)

    tasks = _tasks(Path(args.data))
    t0 = time.perf_counter()
    detector = PiiDetector(timeout_ms=600_000.0)
    detector.load_models()
    load_s = time.perf_counter() - t0
    result: dict[str, Any] = {"data": args.data, "tasks": len(tasks), "seed": args.seed, "model_load_s":
                              round(load_s, 2), "splits": {}}
    times: list[float] = []
    for split in args.splits.split(","):
        items = generate(tasks, args.n, seed=args.seed, split=split)
        preds: list[set[str]] = []
        for it in items:
            t1 = time.perf_counter()
            det = detector.detect_text(it.text)
            times.append((time.perf_counter() - t1) * 1000.0)
            pred = set(det.pii_types)
            preds.append(pred)
            if split == args.show_errors and (bool(pred) != bool(it.types) or pred != set(it.types)):
                print(f"[{it.template} {it.position}] truth={list(it.types)} pred={sorted(pred)} :: "
                      f"{(it.line or it.text[:200])!r}", file=sys.stderr)
        result["splits"][split] = _score(items, preds)
    times.sort()
    result["detection_ms"] = {"p50": round(statistics.median(times), 3),
                              "p99": round(times[int(0.99 * (len(times) - 1))], 3),
                              "mean": round(statistics.fmean(times), 3), "max": round(times[-1], 3)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    for split, r in result["splits"].items():
        rl = r["request_level"]
        print(f"split {split}: recall {rl['recall']} precision {rl['precision']} "
              f"(hard-neg flagged {r['hard_negatives']['rate']}, plain flagged {r['plain_tasks']['rate']}, "
              f"precision at workload mix {r['precision_at_workload_mix']})")
        print("  per type:", {t: v["recall"] for t, v in r["per_type"].items()})
        print("  per type precision:", {t: v["precision"] for t, v in r["per_type"].items()})
        print("  per language:", {k: (v["recall"], v["precision"]) for k, v in r["per_language"].items()})
        print("  per position:", {k: (v["recall"], v["precision"]) for k, v in r["per_position"].items()})
    print("detection ms:", result["detection_ms"], "load s:", result["model_load_s"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
