"""A tool-and-agent-like Mooncake trace, generated: a stand-in for FAST'25's ``toolagent_trace.jsonl``.

The Mooncake snapshot stored here has the conversation and synthetic traces but not the tool-and-agent one
(docs/prefix-affinity.md), which is the likeliest shape of a held-out Mooncake trace. Its published statistics
are known, though: 23,608 requests in about an hour, mean input 8,596 and mean output 182 tokens (FAST'25
paper), 183,300 distinct 512-token blocks, a prefix-block hit bound of 55.3% that an LRU pool of a quarter of
the distinct blocks already reaches to 99.7% (a public LRU sweep over the released file), and about three
quarters of its blocks used once. This script generates a trace with those figures from a simple agent model,
so the router can be checked in that regime (short reuse distances, long shared tool prompts, mostly one-shot
new content). It is a model, not the trace: figures measured on it say how the router behaves in that
regime, not what it scores on the real file.

Model. Agent apps (Zipf popularity) each have a tool/system prompt. Sessions arrive as a Poisson process;
a session belongs to one app, adds its own instructions, and makes a geometric number of calls, a few seconds
apart (lognormal gaps). Each call sends app prompt + session instructions + (with probability ``--carry``) the
previous call's new content + fresh content (lognormal): the fresh part is new blocks, most never seen again.

    python bench/prefix_agentlike.py --out /tmp/agentlike.jsonl [--seed 0] [--calls 5] [--gap 6]
    python bench/prefix_agentlike.py --evaluate      # model variants x policies -> bench/results/prefix_agentlike.json
    python bench/prefix_affinity.py --synthetic /tmp/agentlike.jsonl --label agentlike --skip-dev \
        --out /tmp/prefix_affinity_agentlike.json     # every policy and setting, halves, time-scaled
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
from pathlib import Path

import numpy as np

from sovrouter.reuse.prefix import AffinitySettings
from sovrouter.reuse.prefix_policies import OursPolicy, make_policy, run_online, trace_settings
from sovrouter.reuse.prefix_sim import (
    LRUBlocks,
    SimConfig,
    TraceRequest,
    cached_tokens,
    summarize,
    unbounded_hit_rate,
)

BLOCK = 512


def generate(requests: int = 23_608, duration_s: float = 3_540.0, apps: int = 300, zipf: float = 1.1,
             app_prompt: float = 1_900.0, session_prompt: float = 3_000.0, fresh: float = 3_300.0,
             calls: float = 5.0, gap_s: float = 6.0, carry: float = 0.15, output: float = 182.0,
             seed: int = 0) -> list[TraceRequest]:
    """Sizes are lognormal means (sigma 0.6) in tokens; ``calls`` the mean calls per session (geometric)."""
    rng = np.random.default_rng(seed)
    next_id = 0

    def fresh_ids(n: int) -> list[int]:
        nonlocal next_id
        out = list(range(next_id, next_id + n))
        next_id += n
        return out

    def lognormal(mean: float) -> int:
        return max(1, int(rng.lognormal(np.log(mean) - 0.18, 0.6)))

    weights = 1.0 / np.arange(1, apps + 1) ** zipf
    weights /= weights.sum()
    app_tokens = [lognormal(app_prompt) for _ in range(apps)]
    app_blocks = [fresh_ids(t // BLOCK) for t in app_tokens]  # whole blocks are shared by every session
    sessions = int(requests / calls * 1.02)
    starts = np.sort(rng.uniform(0.0, duration_s, sessions))
    out: list[tuple[float, int, int, tuple[int, ...]]] = []
    for start in starts:
        app = int(rng.choice(apps, p=weights))
        # the session's own prefix starts inside the app prompt's last (partial) block, so it is new from there
        head = list(app_blocks[app])
        head_tokens = app_tokens[app] + lognormal(session_prompt)
        head += fresh_ids(-(-head_tokens // BLOCK) - len(head))
        t, previous = float(start), (0, list[int]())
        for _ in range(int(rng.geometric(1.0 / calls))):
            carried_tokens, carried = previous if rng.random() < carry else (0, [])
            new_tokens = lognormal(fresh)
            total = head_tokens + carried_tokens + new_tokens
            ids = head + carried
            ids = ids + fresh_ids(-(-total // BLOCK) - len(ids))
            out.append((t, total, lognormal(output), tuple(ids)))
            previous = (carried_tokens + new_tokens, ids[len(head):])
            t += float(rng.lognormal(np.log(gap_s), 0.8))
    out.sort(key=lambda r: r[0])
    out = out[:requests]
    return [TraceRequest(timestamp_ms=float(int(ts * 1000) // 3000 * 3000), input_length=n, output_length=o,
                         hash_ids=ids) for ts, n, o, ids in out]  # timestamps at ~3 s resolution, as released


def stats(trace: list[TraceRequest]) -> dict[str, float]:
    refs = sum(len(r.hash_ids) for r in trace)
    uses: dict[int, int] = {}
    for r in trace:
        for h in r.hash_ids:
            uses[h] = uses.get(h, 0) + 1
    distinct = len(uses)
    bound = unbounded_hit_rate(trace, BLOCK)
    lru = LRUBlocks(distinct // 4)
    hit = 0
    for r in trace:
        hit += cached_tokens(lru.leading_run(r.hash_ids), r.input_length, BLOCK)
        lru.touch(r.hash_ids)
    return {"requests": len(trace), "span_s": (trace[-1].timestamp_ms - trace[0].timestamp_ms) / 1000,
            "mean_input": float(np.mean([r.input_length for r in trace])),
            "mean_output": float(np.mean([r.output_length for r in trace])),
            "distinct_blocks": distinct, "block_refs": refs, "block_hit_bound": 1 - distinct / refs,
            "token_hit_bound": bound, "used_once": sum(v == 1 for v in uses.values()) / distinct,
            "lru_quarter_of_bound": hit / sum(r.input_length for r in trace) / bound}


VARIANTS: dict[str, dict[str, float]] = {  # model settings around the calibrated one
    "calibrated (seed 0)": {}, "seed 1": {"seed": 1}, "seed 2": {"seed": 2},
    "3 calls per session": {"calls": 3.0}, "8 calls per session": {"calls": 8.0},
    "3 s between calls": {"gap_s": 3.0}, "15 s between calls": {"gap_s": 15.0},
    "arrivals x1.25 (same requests in 0.8 h)": {"duration_s": 2_832.0},
}
SETTINGS: dict[str, dict[str, float]] = {"default": {}, "tail=0": {"tail": 0.0},
                                         "compute_price=5": {"compute_price": 5.0}}


def evaluate(n: int = 8) -> dict[str, dict[str, object]]:
    """SGLang-style and ours (default and two settings) on each model variant, 8 replicas, the issue's model."""
    cfg = SimConfig()
    out: dict[str, dict[str, object]] = {}
    for name, kw in VARIANTS.items():
        trace = generate(**{k: (int(v) if k == "seed" else v) for k, v in kw.items()})  # type: ignore[arg-type]
        run = run_online(trace, n, make_policy("sglang", n, cfg), cfg)
        sg = summarize(trace, run.served, run.busy_s, cfg.block_tokens)
        row: dict[str, object] = {"trace": stats(trace), "sglang": sg.as_dict()}
        cells = [f"sglang {100 * sg.hit_fraction_of_bound:.1f}% {sg.mean_ttft_s:.3f}/{sg.p99_ttft_s:.2f}"]
        for label, change in SETTINGS.items():
            settings: AffinitySettings = dataclasses.replace(trace_settings(cfg), **change)  # type: ignore[arg-type]
            run = run_online(trace, n, OursPolicy(n, cfg, settings), cfg)
            r = summarize(trace, run.served, run.busy_s, cfg.block_tokens)
            d = r.as_dict()
            d["mean_ttft_change_vs_sglang"] = round(r.mean_ttft_s / sg.mean_ttft_s - 1, 4)
            d["p99_ttft_change_vs_sglang"] = round(r.p99_ttft_s / sg.p99_ttft_s - 1, 4)
            row[label] = d
            cells.append(f"{label} {100 * r.hit_fraction_of_bound:.1f}% {100 * d['mean_ttft_change_vs_sglang']:+.1f}%/"
                         f"{100 * d['p99_ttft_change_vs_sglang']:+.1f}% skew {r.skew:.2f}")
        out[name] = row
        print(f"{name:40s} " + " | ".join(cells), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--evaluate", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--requests", type=int, default=23_608)
    ap.add_argument("--calls", type=float, default=5.0)
    ap.add_argument("--gap", type=float, default=6.0)
    args = ap.parse_args()
    if args.evaluate:
        result = {"variants": VARIANTS, "settings": SETTINGS, "replicas": 8, "results": evaluate()}
        path = Path(__file__).parent / "results" / "prefix_agentlike.json"
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"-> {path}")
        return
    if args.out is None:
        ap.error("--out or --evaluate is required")
    trace = generate(requests=args.requests, calls=args.calls, gap_s=args.gap, seed=args.seed)
    opener = gzip.open if args.out.suffix == ".gz" else open
    with opener(args.out, "wt") as fh:
        for r in trace:
            fh.write(json.dumps({"timestamp": int(r.timestamp_ms), "input_length": r.input_length,
                                 "output_length": r.output_length, "hash_ids": list(r.hash_ids)}) + "\n")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in stats(trace).items()}))


if __name__ == "__main__":
    main()
