"""Independent cross-check of `sovrouter report`: recompute the headline KPIs from the raw files without importing
sovrouter, and compare with the report's JSON (issue 6 acceptance: agreement within 0.002).

    python bench/report_crosscheck.py --workload DIR --decisions DECISIONS.jsonl --report-json KPI.json

Definitions (workload README): quality of an event = score of the slot whose answer was served (the final slot; a
cache hit serves the source event's final slot for the same request), refused = 0; cost = sum over calls of
(in*price_in + out*price_out)/1e6*multiplier; reference = frontier-first under the README's policy reading with
ground-truth personal data, each slot on its cheapest compliant deployment, paid on every event; off frontier =
no call on a frontier-accelerator deployment.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path


def _rows(path: Path) -> list[dict]:  # type: ignore[type-arg]
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _find(d: Path, name: str) -> Path:
    for p in (d / name, d / "dev" / name):
        if p.exists():
            return p
    raise FileNotFoundError(name)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", type=Path, required=True)
    ap.add_argument("--decisions", type=Path, required=True)
    ap.add_argument("--report-json", type=Path, required=True)
    ap.add_argument("--tolerance", type=float, default=0.002)
    args = ap.parse_args()
    w = args.workload
    models = json.loads((w / "models.json").read_text())
    reqs = {r["id"]: r for r in _rows(_find(w, "requests.jsonl.gz"))}
    labels = {r["id"]: r for r in _rows(_find(w, "labels.jsonl.gz"))}
    out_tok = {(r["request_id"], r["model"]): (r["input_tokens"], r["output_tokens"])
               for r in _rows(_find(w, "responses.jsonl.gz"))}
    score = {(r["request_id"], r["model"]): r["score"] for r in _rows(_find(w, "scores.jsonl.gz"))}
    slots = {s["id"]: s for s in models["slots"]}
    deps = {(s["id"], d["id"]): d for s in models["slots"] for d in s["deployments"]}

    def cost(rid: str, slot: str, dep: str) -> float:
        i, o = out_tok[(rid, slot)]
        p = slots[slot]["price_usd_per_mtok"]
        return (i * p["input"] + o * p["output"]) / 1e6 * deps[(slot, dep)]["price_multiplier"]

    def allowed(rid: str, slot: str, dep: str) -> bool:
        r, d = reqs[rid], deps[(slot, dep)]
        t = r["tenant"]
        if d["available_to"] != "all" and t not in d["available_to"]:
            return False
        pii = bool(labels[rid]["pii_types"])
        if t == "ministry-airgap":
            return bool(d["on_premises"])
        if t == "eurobank" and (pii or r["data_class"] in ("confidential", "restricted")):
            return d["region"] == "EU" or bool(d["on_premises"])
        if t == "clinic-ca" and pii:
            return bool(d["on_premises"])
        return True

    def reference(rid: str) -> tuple[str, str]:
        for slot in ("frontier", "hosted-mini", "sovereign-large", "local-small"):
            ok = [d for (s, d) in deps if s == slot and allowed(rid, s, d)]
            if ok:
                return slot, min(ok, key=lambda d: deps[(slot, d)]["price_multiplier"])
        raise RuntimeError("no compliant deployment")

    decisions = _rows(args.decisions)
    q = qr = c = cr = 0.0
    off = 0
    for dec in decisions:
        rid = dec["request_id"]
        final = dec["final"]
        q += score[(rid, final["model"])] if final else 0.0
        c += sum(cost(rid, call["model"], call["deployment"]) for call in dec["calls"])
        off += not any(deps[(call["model"], call["deployment"])]["compute"] == "frontier-accelerator"
                       for call in dec["calls"])
        rs, rd = reference(rid)
        qr += score[(rid, rs)]
        cr += cost(rid, rs, rd)
    n = len(decisions)
    mine = {"quality": q / n, "ref_quality": qr / n, "cost_ratio": c / cr, "off_frontier_share": off / n}
    theirs = json.loads(args.report_json.read_text())
    worst = 0.0
    for k, v in mine.items():
        diff = abs(v - float(theirs[k]))
        worst = max(worst, diff)
        print(f"{k:20s} independent {v:.6f}  report {float(theirs[k]):.6f}  |diff| {diff:.6f}")
    ok = worst <= args.tolerance
    print(f"max |diff| {worst:.6f} -> {'AGREE' if ok else 'DISAGREE'} (tolerance {args.tolerance})")
    out = Path("bench/results/report_crosscheck.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"independent": mine, "report": {k: theirs[k] for k in mine}, "max_abs_diff": worst,
                               "n_events": n}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
