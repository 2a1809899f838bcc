"""Is a dev half a fair stand-in for the held-out file? Measuring at the held-out file's density.

    python bench/semantic_cache_density.py [--salts 4] [--pairs FILE] [--vectors DIR] [--groups DIR]

The held-out Quora file is the other 30% of the 80,854 pairs (24,468 pairs; the split is by a hash of q1, like
ours), a dev half 35% (~28.2k). Verbatim hits, which count as right in the false-hit rate's denominator, need a
q2 written exactly as some q1 *of the same file*, so they grow with the square of the file's size: the
held-out-sized subsets below have 788-899, the halves 1,093-1,196, for the same share of non-verbatim
duplicates (37.0-37.9% of pairs). So a threshold calibrated on halves, measured on a half, sees a larger
denominator than the held-out file will give it.

For every draw of ``semantic_cache_splits.py`` (the same halvings, fit on one half), this measures on a q1-hash
subset of the other half with as many pairs as the held-out file (6/7 of its q1s: 24.2k pairs), indexed on its
own, and compares the calibration targets as shipped (verbatim hits of the fitting half counted in full) with a
calibration that counts them at the held-out density (each verbatim hit weighted by the squared size ratio of
the held-out file to a fitting group). Writes bench/results/semantic_cache_density.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from semantic_cache import (
    cached,
    collector,
    data_args,
    halvings,
    nonverbatim_dups,
    sweep_and_oracle,
    target_stats,
)

from sovrouter.cache.calibrate import Pair, choose_threshold, part_of
from sovrouter.cache.training import (
    ALPHA,
    DELTA,
    GroupScores,
    fit,
    load_labelled,
    oof_decisions,
)

OUT = Path(__file__).parent / "results" / "semantic_cache_density.json"
TARGETS = (0.015, 0.0175, 0.019, 0.02)
HELD_OUT_PAIRS = 80854 - 56386  # the data README: the full file, less the dev part
SUBSET_PARTS, SUBSET_KEEP = 7, 6  # 6/7 of a half's q1s ~ the held-out file's size


def subset(half: list[Pair], salt: str) -> list[Pair]:
    return [p for p in half if part_of(p.q1, SUBSET_PARTS, f"density-{salt}") < SUBSET_KEEP]


def thresholds(group: GroupScores, weight: float) -> dict[str, float]:
    """Calibration thresholds on the fitting group's out-of-fold decisions, its verbatim hits weighted."""
    decisions, _, _ = oof_decisions([group])
    verbatim = round(weight * group.verbatim_hits)
    return {str(a): choose_threshold(decisions, a, DELTA, verbatim_hits=verbatim)[0] for a in TARGETS}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"oracle_recall_median": statistics.median(r["oracle_at_2pct"]["recall_nonverbatim"]
                                                                     for r in rows)}
    for t in TARGETS:
        fhr = [r["targets"][str(t)]["false_hit_rate"] for r in rows]
        rec = [r["targets"][str(t)]["recall_nonverbatim"] for r in rows]
        out[str(t)] = target_stats(fhr, rec)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    data_args(ap, salts=True)
    args = ap.parse_args()
    pairs = load_labelled(args.pairs)
    col = collector(args.vectors)
    arms: dict[str, list[dict[str, Any]]] = {"half, as shipped": [], "held-out size, as shipped": [],
                                            "held-out size, verbatim at held-out density": []}
    sizes: list[dict[str, float]] = []
    t0 = time.perf_counter()
    for salt, halves, groups in halvings(pairs, col, args.groups, args.salts):
        subs = [subset(h, salt) for h in halves]
        sub_groups = cached(args.groups / f"{salt}-density.pkl",
                            lambda subs=subs: [col(s) for s in subs])
        for a, b in ((0, 1), (1, 0)):
            verifier, report = fit([groups[a]], sweep=TARGETS)
            weight = (HELD_OUT_PAIRS / len(halves[a])) ** 2
            shipped, weighted = report["sweep"], thresholds(groups[a], weight)
            nv_half, nv_sub = nonverbatim_dups(halves[b]), nonverbatim_dups(subs[b])
            measured = {"half, as shipped": sweep_and_oracle(groups[b], verifier, shipped, nv_half),
                        "held-out size, as shipped": sweep_and_oracle(sub_groups[b], verifier, shipped, nv_sub),
                        "held-out size, verbatim at held-out density":
                            sweep_and_oracle(sub_groups[b], verifier, weighted, nv_sub)}
            sizes.append({"half_pairs": len(halves[b]), "half_verbatim": groups[b].verbatim_hits,
                          "half_nonverbatim_dups": nv_half, "subset_pairs": len(subs[b]),
                          "subset_verbatim": sub_groups[b].verbatim_hits, "subset_nonverbatim_dups": nv_sub,
                          "verbatim_weight": weight})
            for name, m in measured.items():
                arms[name].append({"salt": salt, "fit_half": a, "targets": m["calibration_targets"],
                                   "oracle_at_2pct": m["oracle_at_2pct"],
                                   "thresholds": shipped if name != list(measured)[-1] else weighted})
                row = "  ".join(f"{100 * float(t):.2f}%: {100 * r['false_hit_rate']:.2f}/"
                                f"{100 * r['recall_nonverbatim']:.2f}" for t, r in m["calibration_targets"].items())
                print(f"{salt} {a}->{b} {name:45s} {row}  oracle "
                      f"{100 * m['oracle_at_2pct']['recall_nonverbatim']:.2f}", flush=True)
        print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
        t0 = time.perf_counter()
    summary = {name: summarise(rows) for name, rows in arms.items()}
    for name, s in summary.items():
        print(f"{name}: oracle recall median {100 * s['oracle_recall_median']:.2f}%")
        for t in TARGETS:
            r = s[str(t)]
            print(f"  target {100 * t:.2f}%{' (shipped)' if t == ALPHA else ''}: FHR median "
                  f"{100 * r['fhr_median']:.2f}% (max {100 * r['fhr_max']:.2f}%, <= 2% in "
                  f"{100 * r['share_fhr_le_2pct']:.0f}%), recall median {100 * r['recall_median']:.2f}% (min "
                  f"{100 * r['recall_min']:.2f}%, >= 5% in {100 * r['share_recall_ge_5pct']:.0f}%), both in "
                  f"{100 * r['share_both']:.0f}%")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"pairs_file": str(args.pairs), "held_out_pairs": HELD_OUT_PAIRS,
                               "subset": f"{SUBSET_KEEP}/{SUBSET_PARTS} of the measured half's q1s",
                               "sizes": sizes, "arms": arms, "summary": summary}, indent=1) + "\n")
    print(f"-> {OUT}")


if __name__ == "__main__":
    main()
