"""Prefix/KV-affinity replica choice on Mooncake traces (issue 5, item 2).

Runs round robin, least-loaded, the SGLang-router-style cache-aware policy, ours (default settings) and ours
with the long-wait penalty off (``tail=0``, the earlier default) online over the dev
conversation trace (8 replicas) and generalisation variants (each half of the trace, arrivals time-scaled by
0.8 and 1.2, 4 and 16 replicas), and over the FAST'25 synthetic trace (bench/data/mooncake_synthetic.jsonl.gz,
the only other FAST'25 trace in the stored Mooncake snapshot) and its variants; scores them with the FIFO + LRU
model of ``sovrouter.reuse.prefix_sim``, prints a table with the acceptance criteria per variant and writes
bench/results/prefix_affinity.json. The achievable hit rate is in bench/prefix_bound.py.

    python bench/prefix_affinity.py [--trace FILE] [--synthetic FILE --label NAME [--skip-dev --out FILE]]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sovrouter.reuse.prefix import AffinitySettings
from sovrouter.reuse.prefix_bound import ttft_floor
from sovrouter.reuse.prefix_policies import (
    OursPolicy,
    SGLangCacheAwarePolicy,
    SGLangSettings,
    TracePolicy,
    make_policy,
    run_online,
)
from sovrouter.reuse.prefix_sim import LRUBlocks, SimConfig, TraceRequest, cached_tokens, load_trace, summarize

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TRACE = ROOT.parent / "shared" / "data" / "prefix" / "mooncake_conversation.jsonl.gz"
if not DEFAULT_TRACE.exists():
    DEFAULT_TRACE = Path("/work/shared/data/prefix/mooncake_conversation.jsonl.gz")
SYNTHETIC_TRACE = ROOT / "bench" / "data" / "mooncake_synthetic.jsonl.gz"

ANCHORS = {  # issue 5, dev conversation trace, 8 replicas
    "sglang": {"hit_fraction_of_bound": 0.895, "token_hit_rate": 0.334, "bound_hit_rate": 0.374,
               "mean_ttft_s": 1.46, "p99_ttft_s": 9.26, "skew": 1.05},
    "round-robin": {"hit_fraction_of_bound": 0.27},
    "prefill-vs-queue router": {"mean_ttft_s": 1.15},
}

PolicyMaker = Callable[[int, SimConfig], TracePolicy]


def _ours(**kw: float) -> PolicyMaker:
    return lambda n, cfg: OursPolicy(n, cfg, AffinitySettings(**kw))  # type: ignore[arg-type]


POLICIES: dict[str, PolicyMaker] = {
    "round-robin": lambda n, cfg: make_policy("round-robin", n, cfg),
    "least-loaded": lambda n, cfg: make_policy("least-loaded", n, cfg),
    "sglang": lambda n, cfg: make_policy("sglang", n, cfg),
    "ours": lambda n, cfg: make_policy("ours", n, cfg),
    "ours[tail=0]": _ours(tail=0.0),  # the earlier default (long-wait penalty off), kept for comparison
}
SENSITIVITY: dict[str, PolicyMaker] = {
    "sglang-0.1": lambda n, cfg: make_policy("sglang-0.1", n, cfg),
    "sglang[evict 60 s]": lambda n, cfg: SGLangCacheAwarePolicy(n, SGLangSettings(eviction_interval_s=60.0)),
    "ours[compute_price=0]": _ours(compute_price=0.0),
    "ours[compute_price=2]": _ours(compute_price=2.0),
    "ours[compute_price=5]": _ours(compute_price=5.0),
    "ours[compute_price=20]": _ours(compute_price=20.0),
    "ours[compute_price=50]": _ours(compute_price=50.0),
    "ours[externality=0]": _ours(externality=0.0),
    "ours[pollution=0]": _ours(pollution=0.0),
    "ours[age_aware]": lambda n, cfg: OursPolicy(n, cfg, AffinitySettings(age_aware=True)),
    "ours[compute_price=30]": _ours(compute_price=30.0),
    "ours[tail=0,compute_price=0]": _ours(tail=0.0, compute_price=0.0),
    "ours[price=0,ext=0,poll=0,tail=0]": _ours(compute_price=0.0, externality=0.0, pollution=0.0, tail=0.0),
}


def _scaled(trace: list[TraceRequest], factor: float) -> list[TraceRequest]:
    return [dataclasses.replace(r, timestamp_ms=r.timestamp_ms * factor) for r in trace]


def pooled_lru_hit_rate(trace: list[TraceRequest], capacity: int, block_tokens: int) -> float:
    """One LRU cache of the pool's total capacity seeing every request: what plain LRU caching can keep."""
    cache = LRUBlocks(capacity)
    hit = total = 0
    for r in trace:
        hit += cached_tokens(cache.leading_run(r.hash_ids), r.input_length, block_tokens)
        total += r.input_length
        cache.touch(r.hash_ids)
    return hit / total if total else 0.0


def run_one(trace: list[TraceRequest], n: int, maker: PolicyMaker, cfg: SimConfig) -> dict[str, Any]:
    t0 = time.perf_counter()
    run = run_online(trace, n, maker(n, cfg), cfg)
    wall = time.perf_counter() - t0
    out = summarize(trace, run.served, run.busy_s, cfg.block_tokens).as_dict()
    out["wall_s"] = round(wall, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    ap.add_argument("--synthetic", type=Path, default=SYNTHETIC_TRACE,
                    help="second trace (skipped if absent), e.g. the FAST'25 toolagent trace")
    ap.add_argument("--label", default="synthetic", help="name of the second trace in the output")
    ap.add_argument("--skip-dev", action="store_true", help="only the second trace's variants")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "prefix_affinity.json")
    args = ap.parse_args()
    cfg = SimConfig()
    trace = load_trace(args.trace)
    half = len(trace) // 2
    variants: dict[str, tuple[list[TraceRequest], int]] = {} if args.skip_dev else {
        "dev n=8": (trace, 8),
        "first half n=8": (trace[:half], 8),
        "second half n=8": (trace[half:], 8),
        "time x0.8 n=8": (_scaled(trace, 0.8), 8),
        "time x1.2 n=8": (_scaled(trace, 1.2), 8),
        "dev n=4": (trace, 4),
        "dev n=16": (trace, 16),
    }
    if args.synthetic.is_file():
        syn = load_trace(args.synthetic)
        sh = len(syn) // 2
        lab = args.label
        variants.update({
            f"{lab} n=8": (syn, 8),
            f"{lab} first half n=8": (syn[:sh], 8),
            f"{lab} second half n=8": (syn[sh:], 8),
            f"{lab} time x0.8 n=8": (_scaled(syn, 0.8), 8),
            f"{lab} time x1.2 n=8": (_scaled(syn, 1.2), 8),
        })
    results: dict[str, dict[str, dict[str, Any]]] = {}
    cols = ("token_hit_rate", "hit_fraction_of_bound", "mean_ttft_s", "p50_ttft_s", "p99_ttft_s", "skew", "wall_s")
    print(f"{'variant':26s} {'policy':26s} " + " ".join(f"{c[:12]:>12s}" for c in cols))
    for vname, (tr, n) in variants.items():
        results[vname] = {}
        makers = dict(POLICIES)
        if vname in ("dev n=8", f"{args.label} n=8"):
            makers.update(SENSITIVITY)
        for pname, maker in makers.items():
            r = run_one(tr, n, maker, cfg)
            results[vname][pname] = r
            print(f"{vname:26s} {pname:26s} " + " ".join(f"{r[c]:12.4f}" for c in cols), flush=True)
        pooled = pooled_lru_hit_rate(tr, n * cfg.capacity, cfg.block_tokens)
        bound = results[vname]["ours"]["bound_hit_rate"]
        results[vname]["pooled_lru_reference"] = {
            "token_hit_rate": round(pooled, 5), "hit_fraction_of_bound": round(pooled / bound, 5) if bound else 1.0}
        print(f"{vname:26s} {'(one pooled LRU)':26s} {pooled:12.4f} {pooled / bound if bound else 1.0:12.4f}")
        floor = ttft_floor(tr, cfg)
        results[vname]["ttft_floor"] = {k: round(v, 4) for k, v in floor.items()}
        print(f"{vname:26s} {'(TTFT floor)':26s} mean {floor['mean_ttft_s']:.3f} p99 {floor['p99_ttft_s']:.3f}")
        sg = results[vname]["sglang"]
        for pol, key in (("ours", "ours_vs_sglang"), ("ours[tail=0]", "ours_tail0_vs_sglang")):
            ours = results[vname][pol]
            results[vname][key] = {
                "mean_ttft_reduction": round(1 - ours["mean_ttft_s"] / sg["mean_ttft_s"], 4),
                "p99_ttft_reduction": round(1 - ours["p99_ttft_s"] / sg["p99_ttft_s"], 4),
                "p99_reduction_possible_at_most": round(1 - floor["p99_ttft_s"] / sg["p99_ttft_s"], 4),
                "acceptance": {
                    "hit_ge_97pct_of_bound": ours["hit_fraction_of_bound"] >= 0.97,
                    "mean_ttft_10pct_below_sglang": ours["mean_ttft_s"] <= 0.9 * sg["mean_ttft_s"],
                    "p99_ttft_6pct_below_sglang": ours["p99_ttft_s"] <= 0.94 * sg["p99_ttft_s"],
                    "skew_le_1.10": ours["skew"] <= 1.10,
                },
            }
            print(f"{'':26s} {pol} vs sglang: " + json.dumps(results[vname][key]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"trace": args.trace.name, "synthetic_trace": args.synthetic.name, "requests": len(trace),
               "model": dataclasses.asdict(cfg),
               "anchors_dev_n8": ANCHORS, "results": results}
    args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
