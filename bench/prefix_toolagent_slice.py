"""Prefix affinity on real tool-and-agent traffic: a 1,000-request slice of Mooncake's arXiv trace, and ~1 h traces
tiled from it.

    python bench/prefix_toolagent_slice.py          # ~1 min -> bench/results/prefix_toolagent_slice.json

The slice (bench/data/mooncake_arxiv_slice.jsonl.gz, provenance in bench/data/README.md) is 150 s of the real
trace: bursts of ~20 requests every ~3 s, 40% of them one tool prompt (12 shared blocks, answers of a few
tokens), 15% another (5 blocks, ~20 tokens), the rest long prompts after one shared first block with answers of
hundreds of tokens. A 150 s window is too short for skew (a few 3 s prefills decide the busiest replica), so the
slice is also tiled into ~1 h traces: 26 copies back to back, every block id relabelled per copy except the ids
that lead many requests (the shared prompts), each copy dropping 10% of the requests and shuffling each burst
(seeded), so that copies differ. Tiling keeps the real mix of request kinds, sizes and bursts; it repeats one
150 s window's content, so it is a model of the full trace, not the trace.

Policies: SGLang-style (current launcher defaults), ours with its defaults, ours with one mean decode time for
every request (``decode_by_template=False``, the default before 2026-11-26), 8 replicas, the issue's scoring
model. Acceptance per trace: hit >= 97% of the unbounded bound, mean TTFT <= -10% and p99 <= -6% against
SGLang-style, skew <= 1.10.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from sovrouter.reuse.prefix_policies import OursPolicy, make_policy, run_online, trace_settings
from sovrouter.reuse.prefix_sim import SimConfig, TraceRequest, load_trace, summarize

HERE = Path(__file__).parent
SLICE = HERE / "data" / "mooncake_arxiv_slice.jsonl.gz"
OUT = HERE / "results" / "prefix_toolagent_slice.json"


def tiled(rows: list[TraceRequest], copies: int, seed: int, drop: float = 0.1) -> list[TraceRequest]:
    rng = random.Random(seed)
    lead: Counter[tuple[int, int]] = Counter((k, h) for r in rows for k, h in enumerate(r.hash_ids[:16]))
    shared = {h for (_, h), c in lead.items() if c >= 20}
    bursts: dict[float, list[TraceRequest]] = defaultdict(list)
    for r in rows:
        bursts[r.timestamp_ms].append(r)
    t0 = rows[0].timestamp_ms
    period = rows[-1].timestamp_ms - t0 + 3000.0
    offset = 1 + max(h for r in rows for h in r.hash_ids)
    out: list[TraceRequest] = []
    for c in range(copies):
        for ts in sorted(bursts):
            group = [r for r in bursts[ts] if rng.random() >= drop]
            rng.shuffle(group)
            for r in group:
                ids = tuple(h if h in shared else h + (c + 1) * offset for h in r.hash_ids)
                out.append(dataclasses.replace(r, timestamp_ms=ts - t0 + c * period, hash_ids=ids))
    return out


def evaluate(trace: list[TraceRequest], n: int) -> dict[str, Any]:
    cfg = SimConfig()
    arms: dict[str, Any] = {
        "sglang": make_policy("sglang", n, cfg),
        "ours": OursPolicy(n, cfg),
        "ours, one mean decode (before)": OursPolicy(n, cfg, dataclasses.replace(trace_settings(cfg),
                                                                                 decode_by_template=False)),
    }
    out: dict[str, Any] = {}
    for name, policy in arms.items():
        run = run_online(trace, n, policy, cfg)
        out[name] = summarize(trace, run.served, run.busy_s, cfg.block_tokens).as_dict()
    base = out["sglang"]
    for name, d in out.items():
        if name == "sglang":
            continue
        d["mean_ttft_change_vs_sglang"] = round(d["mean_ttft_s"] / base["mean_ttft_s"] - 1, 4)
        d["p99_ttft_change_vs_sglang"] = round(d["p99_ttft_s"] / base["p99_ttft_s"] - 1, 4)
        d["passes"] = {"hit": d["hit_fraction_of_bound"] >= 0.97, "mean": d["mean_ttft_change_vs_sglang"] <= -0.10,
                       "p99": d["p99_ttft_change_vs_sglang"] <= -0.06, "skew": d["skew"] <= 1.10}
    return out


def kinds(trace: list[TraceRequest]) -> dict[str, Any]:
    first = Counter(r.hash_ids[0] if r.hash_ids else None for r in trace)
    top = first.most_common(3)
    by: dict[Any, list[int]] = defaultdict(list)
    for r in trace:
        by[r.hash_ids[0] if r.hash_ids else None].append(r.output_length)
    return {f"first block {k}": {"share": round(c / len(trace), 3),
                                 "mean_output": round(sum(by[k]) / len(by[k]), 1)} for k, c in top}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--replicas", type=int, default=8)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--copies", type=int, default=26)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    rows = load_trace(SLICE)
    result: dict[str, Any] = {"slice": {"requests": len(rows), "kinds": kinds(rows)}, "replicas": args.replicas}
    traces = {"slice (150 s)": rows}
    traces.update({f"tiled, seed {s} ({args.copies} copies)": tiled(rows, args.copies, s) for s in args.seeds})
    result["traces"] = {}
    for name, trace in traces.items():
        res = evaluate(trace, args.replicas)
        result["traces"][name] = {"requests": len(trace), **res}
        sg = res["sglang"]
        line = [f"{name:28s}", f"sglang {100 * sg['hit_fraction_of_bound']:.1f}% "
                f"{sg['mean_ttft_s']:.3f}/{sg['p99_ttft_s']:.2f} skew {sg['skew']:.2f}"]
        for arm in ("ours", "ours, one mean decode (before)"):
            d = res[arm]
            line.append(f"{arm}: {100 * d['hit_fraction_of_bound']:.1f}% {100 * d['mean_ttft_change_vs_sglang']:+.1f}%/"
                        f"{100 * d['p99_ttft_change_vs_sglang']:+.1f}% skew {d['skew']:.3f}")
        print(" | ".join(line), flush=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    with gzip.open(SLICE, "rt") as fh:  # fail early and clearly if the data file is missing
        fh.readline()
    main()
