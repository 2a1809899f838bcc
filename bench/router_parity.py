"""Does the offline cascade simulator choose what the live router chose?

Threshold selection and every CV figure come from ``routing.simulate.run_policy`` (vectorised); what serves
requests is ``LearnedRouter`` inside the pipeline. This script scores every dev request with the *shipped*
models (``stage_probs``), runs ``run_policy`` with the shipped thresholds, and compares its calls and served slot
with a replay's decisions file (the first, non-cache event of each request).

    python bench/router_parity.py --decisions out/dev_shipped.jsonl

Differences are expected only where the two see different inputs: the replay's allowed set comes from the
detector's personal-data verdict, the simulator's from the ground-truth labels; a few token estimates differ.
Writes bench/results/router_parity.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from sovrouter.catalog import Catalog, Tenants
from sovrouter.replay.decisions import iter_decisions
from sovrouter.routing.evaluation import HIGH_FACTOR, prepare
from sovrouter.routing.model import SLOT_ORDER, Bundle
from sovrouter.routing.simulate import run_policy
from sovrouter.routing.training import stage_probs

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", default="/work/shared/data/workload")
    ap.add_argument("--decisions", default=str(ROOT / "out" / "dev_shipped.jsonl"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "router_parity.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    wdir = Path(args.workload)
    catalog, tenants = Catalog.load(wdir / "models.json"), Tenants.load(wdir / "tenants.json")
    w, feat, ev = prepare(wdir, catalog, tenants)
    bundle = Bundle.load()
    sp = stage_probs(bundle.models, feat, w, np.arange(len(w)), ev.top)
    out = run_policy(ev, sp, bundle.thresholds.standard, HIGH_FACTOR)

    first: dict[str, tuple[frozenset[str], str | None]] = {}
    for d in iter_decisions(args.decisions):
        if d.cache is None and d.workload_id not in first:
            first[d.workload_id] = (frozenset(c.model for c in d.calls), d.final.model if d.final else None)
    same_served = same_calls = compared = 0
    by_source: dict[str, list[int]] = {}
    for i, rid in enumerate(w.ids):
        if rid not in first:
            continue
        calls, final = first[rid]
        sim_calls = frozenset(SLOT_ORDER[j] for j in range(4) if out.called[i, j])
        served_ok = final == SLOT_ORDER[int(out.served[i])]
        calls_ok = calls == sim_calls
        compared += 1
        same_served += served_ok
        same_calls += calls_ok
        src = w.groups[i].split(":")[0]
        by_source.setdefault(src, [0, 0, 0])
        by_source[src][0] += 1
        by_source[src][1] += served_ok
        by_source[src][2] += calls_ok
    result = {
        "requests_compared": compared,
        "same_served_slot": round(same_served / compared, 4),
        "same_calls": round(same_calls / compared, 4),
        "by_source": {k: {"n": v[0], "same_served": round(v[1] / v[0], 4), "same_calls": round(v[2] / v[0], 4)}
                      for k, v in sorted(by_source.items())},
        "thresholds": bundle.thresholds.standard.model_dump(),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
