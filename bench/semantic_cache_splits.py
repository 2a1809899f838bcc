"""How reliable is the semantic cache's calibration? Repeated random halvings of the dev Quora pairs.

    python bench/semantic_cache_splits.py [--salts 4] [--pairs FILE] [--vectors DIR]

``bench/semantic_cache.py`` measures one split of dev into halves, both ways: two draws of "fit on one file,
measure on another". This repeats that for other splits (``training.split`` with other salts, so other pairs
land together and each half is indexed on its own again), and for each draw reports what every
calibration target gives on the measured half (the shipped ``training.ALPHA`` among them): the realised
false-hit rate and non-verbatim recall, strictly scored, from the measured half's collected candidates (the
index's own choice of candidate). It answers: how far below its target does the realised FHR land, how much
does it scatter, and how often would each target meet both acceptance points (FHR <= 2%, recall >= 5%)?

Nothing here changes what ships. MiniLM and e5 vectors are kept under ``--vectors`` (default
/tmp/semcache-vectors), the collected lookups under ``--groups`` (default /tmp/semcache-groups; named by a
fingerprint of the collecting code's syntax tree, so a change to it or a patch such as ``bench/patches/*.patch``
collects afresh; a docstring or a comment does not). Writes bench/results/semantic_cache_splits.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from semantic_cache import (
    collector,
    data_args,
    halvings,
    nonverbatim_dups,
    sweep_and_oracle,
    target_stats,
    without_alt,
)

from sovrouter.cache.training import ALPHA, fit, load_labelled

OUT = Path(__file__).parent / "results" / "semantic_cache_splits.json"
TARGETS = (0.015, 0.0175, 0.019, 0.02, 0.021, 0.0225)


def summarise(draws: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {"oracle": {
        "recall_median": statistics.median(d["oracle_at_2pct"]["recall_nonverbatim"] for d in draws),
        "recall_median_without_alt": statistics.median(d["without_alt"]["oracle_at_2pct"]["recall_nonverbatim"]
                                                       for d in draws),
        "share_alt_better": sum(d["oracle_at_2pct"]["recall_nonverbatim"]
                                > d["without_alt"]["oracle_at_2pct"]["recall_nonverbatim"]
                                for d in draws) / len(draws)}}
    for t in TARGETS:
        rows = [d["targets"][str(t)] for d in draws]
        fhr = [r["false_hit_rate"] for r in rows]
        rec = [r["recall_nonverbatim"] for r in rows]
        plain = [d["without_alt"]["targets"][str(t)]["recall_nonverbatim"] for d in draws]
        out[str(t)] = {"draws": len(rows), **target_stats(fhr, rec), "fhr_mean_minus_target": statistics.fmean(fhr) - t,
                       "recall_median_without_alt": statistics.median(plain)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    data_args(ap, salts=True)
    args = ap.parse_args()
    pairs = load_labelled(args.pairs)
    col = collector(args.vectors)
    draws: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for salt, halves, groups in halvings(pairs, col, args.groups, args.salts):
        for a, b in ((0, 1), (1, 0)):
            verifier, report = fit([groups[a]], sweep=TARGETS)
            nv = nonverbatim_dups(halves[b])
            curve = sweep_and_oracle(groups[b], verifier, report["sweep"], nv)
            plain_verifier, plain_report = fit([without_alt(groups[a])], sweep=TARGETS)
            plain = sweep_and_oracle(without_alt(groups[b]), plain_verifier, plain_report["sweep"], nv)
            draws.append({"salt": salt, "fit_half": a, "pairs": [len(halves[a]), len(halves[b])],
                          "targets": curve["calibration_targets"], "oracle_at_2pct": curve["oracle_at_2pct"],
                          "without_alt": {"targets": plain["calibration_targets"],
                                          "oracle_at_2pct": plain["oracle_at_2pct"]}})
            row = "  ".join(f"{100 * float(t):.2f}%: {100 * r['false_hit_rate']:.2f}/"
                            f"{100 * r['recall_nonverbatim']:.2f}" for t, r in curve["calibration_targets"].items())
            print(f"{salt} {a}->{b}  target: FHR/recall  {row}  oracle recall "
                  f"{100 * curve['oracle_at_2pct']['recall_nonverbatim']:.2f} (without the second model "
                  f"{100 * plain['oracle_at_2pct']['recall_nonverbatim']:.2f})", flush=True)
        print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
        t0 = time.perf_counter()
    summary = summarise(draws)
    o = summary["oracle"]
    print(f"oracle (threshold chosen on the measured half) recall median {100 * o['recall_median']:.2f}%, "
          f"without the second model {100 * o['recall_median_without_alt']:.2f}%; the second model higher in "
          f"{100 * o['share_alt_better']:.0f}% of draws")
    for t, s in ((k, v) for k, v in summary.items() if k != "oracle"):
        print(f"target {100 * float(t):.2f}%{' (shipped)' if float(t) == ALPHA else ''}: FHR median "
              f"{100 * s['fhr_median']:.2f}% (max {100 * s['fhr_max']:.2f}%), recall median "
              f"{100 * s['recall_median']:.2f}% (min {100 * s['recall_min']:.2f}%); FHR<=2% in "
              f"{100 * s['share_fhr_le_2pct']:.0f}%, recall>=5% in {100 * s['share_recall_ge_5pct']:.0f}%, both in "
              f"{100 * s['share_both']:.0f}% of {s['draws']:.0f} draws; recall median without the second model "
              f"{100 * s['recall_median_without_alt']:.2f}%")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"pairs_file": str(args.pairs), "shipped_alpha": ALPHA, "targets": TARGETS,
                               "draws": draws, "summary": summary}, indent=1) + "\n")
    print(f"-> {OUT}")


if __name__ == "__main__":
    main()
