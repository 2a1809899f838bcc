"""What token hit rate is achievable at all with n replicas x 4,096 blocks (issue 5, item 2: ">= 97% of bound").

For each trace (the dev conversation trace, its halves, and the FAST'25 synthetic trace in bench/data/):

- ``belady``: one pooled cache of n x capacity blocks with clairvoyant (Belady) eviction; an upper bound on
  what any router can get from n replicas (``sovrouter.reuse.prefix_bound``), in arrival order and in the
  real start order of our router's run;
- ``pooled_lru``: one pooled LRU of the same (and larger) size: what LRU retention keeps with perfect
  placement and no duplicates;
- ``lru_oracle_bypass``: the pooled LRU that never caches a block with no future use (a clairvoyant
  admission filter): is the loss due to capacity or to not knowing which blocks come back?
- ``oracle_segregation``: our router, told by an oracle which requests start a conversation that never comes
  back, sends those to k "scratch" replicas so that they pollute only those: the most that reuse *prediction*
  could buy a router over LRU replicas, and what it does to TTFT and skew.

``ours`` and ``oracle_segregation`` use our router's default settings; the ``*_tail0`` entries the same with
the long-wait penalty off (``tail=0``, the earlier default), which keeps more hit rate.

    python bench/prefix_bound.py [--trace FILE] [--synthetic FILE --label NAME]  # -> results/prefix_bound.json
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sovrouter.reuse.prefix import AffinitySettings
from sovrouter.reuse.prefix_bound import belady_pooled
from sovrouter.reuse.prefix_policies import OursPolicy, run_online, trace_settings
from sovrouter.reuse.prefix_sim import (
    LRUBlocks,
    SimConfig,
    TraceRequest,
    cached_tokens,
    load_trace,
    summarize,
    unbounded_hit_rate,
)

ROOT = Path(__file__).resolve().parents[1]
DEV = Path("/work/shared/data/prefix/mooncake_conversation.jsonl.gz")
SYNTHETIC = ROOT / "bench" / "data" / "mooncake_synthetic.jsonl.gz"


def pooled_lru(trace: Sequence[TraceRequest], capacity: int, oracle_bypass: bool = False) -> float:
    """Token hit rate of one LRU of ``capacity`` blocks; with ``oracle_bypass`` blocks never used again are
    not cached (clairvoyant admission)."""
    left = collections.Counter(b for r in trace for b in r.hash_ids)
    cache = LRUBlocks(capacity)
    hit = total = 0
    for r in trace:
        hit += cached_tokens(cache.leading_run(r.hash_ids), r.input_length)
        total += r.input_length
        if oracle_bypass:
            for b in r.hash_ids:
                left[b] -= 1
            cache.touch([b for b in r.hash_ids if left[b] > 0])
            cache.discard([b for b in r.hash_ids if left[b] <= 0])
        else:
            cache.touch(r.hash_ids)
    return hit / total if total else 0.0


class OracleSegregation(OursPolicy):
    """Ours, plus an oracle: a request whose cached prefix is the same on every replica (placement costs it
    nothing) and whose new blocks are never used again goes to replicas 0..k-1; other such requests go to
    k..n-1; requests with a replica-specific prefix choose among all. Offline only (it reads the future)."""

    def __init__(self, n: int, cfg: SimConfig, trace: Sequence[TraceRequest], k: int,
                 settings: AffinitySettings | None = None) -> None:
        super().__init__(n, cfg, settings)
        self.n, self.k = n, k
        left = collections.Counter(b for r in trace for b in r.hash_ids)
        seen: set[int] = set()
        self.dead: list[bool] = []
        for r in trace:
            new = [b for b in r.hash_ids if b not in seen]
            for b in r.hash_ids:
                left[b] -= 1
            self.dead.append(bool(new) and all(left[b] <= 0 for b in new))
            seen.update(r.hash_ids)
        self._i = 0

    def choose(self, req: TraceRequest, now_s: float) -> int:
        runs = [self.router._model(r).cache.leading_run(req.hash_ids) for r in range(self.n)]
        if min(runs) == max(runs):
            sub = list(range(self.k)) if self.dead[self._i] else list(range(self.k, self.n))
        else:
            sub = list(range(self.n))
        self._i += 1
        return sub[self.router.choose(req.hash_ids, req.input_length, now_s, sub)]


def analyse(trace: list[TraceRequest], n: int, cfg: SimConfig, segregation: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    bound = unbounded_hit_rate(trace, cfg.block_tokens)
    out: dict[str, Any] = {"requests": len(trace), "unbounded_token_hit_rate": round(bound, 5)}
    pool = n * cfg.capacity
    out["belady"] = {str(c): belady_pooled(trace, c).as_dict() for c in (cfg.capacity, 2 * cfg.capacity, pool)}
    run = run_online(trace, n, OursPolicy(n, cfg), cfg)
    starts = sorted(range(len(trace)), key=lambda i: (run.served[i].start_s, i))
    out["belady_in_ours_start_order"] = belady_pooled(trace, pool, order=starts).as_dict()
    ours = summarize(trace, run.served, run.busy_s, cfg.block_tokens)
    out["ours"] = ours.as_dict()
    r0 = run_online(trace, n, OursPolicy(n, cfg, trace_settings(cfg, 0.0)), cfg)
    out["ours_tail0"] = summarize(trace, r0.served, r0.busy_s, cfg.block_tokens).as_dict()
    out["pooled_lru_fraction_of_bound"] = {
        str(c): round(pooled_lru(trace, c) / bound, 5) for c in (pool, pool * 3 // 2, 2 * pool)}
    out["lru_oracle_bypass_fraction_of_bound"] = {
        str(c): round(pooled_lru(trace, c, oracle_bypass=True) / bound, 5) for c in (pool // 2, pool)}
    if segregation:
        for key, tail in (("oracle_segregation", None), ("oracle_segregation_tail0", 0.0)):
            seg: dict[str, Any] = {}
            for k in (2, 3, 4):
                pol = OracleSegregation(n, cfg, trace, k, trace_settings(cfg, tail))
                r = run_online(trace, n, pol, cfg)
                seg[f"k={k}"] = summarize(trace, r.served, r.busy_s, cfg.block_tokens).as_dict()
            out[key] = seg
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trace", type=Path, default=DEV)
    ap.add_argument("--synthetic", type=Path, default=SYNTHETIC)
    ap.add_argument("--label", default="synthetic", help="name of the second trace in the output")
    ap.add_argument("--replicas", type=int, default=8)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "prefix_bound.json")
    args = ap.parse_args()
    cfg = SimConfig()
    dev = load_trace(args.trace)
    half = len(dev) // 2
    traces: dict[str, tuple[list[TraceRequest], bool]] = {
        "dev": (dev, True), "dev first half": (dev[:half], False), "dev second half": (dev[half:], False)}
    if args.synthetic.is_file():
        traces[args.label] = (load_trace(args.synthetic), True)
    results: dict[str, Any] = {}
    for name, (tr, seg) in traces.items():
        r = analyse(tr, args.replicas, cfg, seg)
        results[name] = r
        pool = str(args.replicas * cfg.capacity)
        b = r["belady"][pool]
        print(f"{name}: unbounded {r['unbounded_token_hit_rate']:.4f}; Belady pooled {pool} blocks: prefix "
              f"{b['belady_prefix_fraction_of_bound']:.4f} of bound, strict {b['strict_token_bound']:.4f} "
              f"({b['strict_token_bound_fraction_of_bound']:.4f}); Belady 1x/2x capacity: "
              f"{r['belady'][str(cfg.capacity)]['belady_prefix_fraction_of_bound']:.4f}/"
              f"{r['belady'][str(2 * cfg.capacity)]['belady_prefix_fraction_of_bound']:.4f}; "
              f"in ours' start order {r['belady_in_ours_start_order']['belady_prefix_fraction_of_bound']:.4f}; "
              f"ours {r['ours']['hit_fraction_of_bound']:.4f} (tail=0: {r['ours_tail0']['hit_fraction_of_bound']:.4f})",
              flush=True)
        print(f"  pooled LRU (fraction of bound) {r['pooled_lru_fraction_of_bound']}; "
              f"LRU + oracle bypass {r['lru_oracle_bypass_fraction_of_bound']}", flush=True)
        for k, v in [(f"{k}", v) for k, v in r.get("oracle_segregation", {}).items()] + [
                (f"{k}, tail=0", v) for k, v in r.get("oracle_segregation_tail0", {}).items()]:
            print(f"  oracle segregation {k}: hit {v['hit_fraction_of_bound']:.4f} of bound, mean TTFT "
                  f"{v['mean_ttft_s']:.3f}, p99 {v['p99_ttft_s']:.2f}, skew {v['skew']:.3f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"replicas": args.replicas, "capacity_blocks": cfg.capacity, "traces": {
        "dev": args.trace.name, "synthetic": args.synthetic.name}, "results": results}
    args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
