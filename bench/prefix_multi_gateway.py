"""Several gateway instances in front of the same replicas: each with its own affinity model, or sharing it.

    python bench/prefix_multi_gateway.py              # ~6 min -> bench/results/prefix_multi_gateway.json
    python bench/prefix_multi_gateway.py --seed 1 --out bench/results/prefix_multi_gateway_seed1.json

The issue's scoring model, 8 replicas. Requests reach k gateway instances at random (a load balancer without
stickiness, seeded); each instance runs our router. *Own model*: an instance learns only from the calls it sends
(as before `affinity_events`). *Shared*: every instance also applies the others' starts and completions
(`reuse/affinity_events.py`), ``delay`` seconds after they happen (the time an event takes through Redis; the
gateway test measures milliseconds on loopback). Traces: dev conversation, FAST'25 synthetic, and the real
tool-and-agent slice tiled to ~1 h (seed 1; bench/prefix_toolagent_slice.py).

The released traces stamp arrivals at ~3 s resolution, so ~10-20 requests share each timestamp; taken literally,
any event delay leaves the instances blind to each other for a whole burst. Real arrivals spread over those
3 s, so by default every request is moved to a uniformly random time within its 3 s step (seeded; the same
trace for every arm, the SGLang-style baseline included). ``--no-spread`` keeps the stamps.

The "shared" arms count the event lag (each router is told the delay, as ``PrefixAffinityChooser(max_lag_s=...)``
measures it); the "shared, event lag ignored" arms are the gateway's default (the option is off: no gain shown,
docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import json
import random
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from prefix_toolagent_slice import SLICE, tiled

from sovrouter.reuse.prefix_policies import OursPolicy, make_policy, run_online
from sovrouter.reuse.prefix_sim import ReplicaServer, SimConfig, TraceRequest, arrival_order, load_trace, summarize

HERE = Path(__file__).parent
DEV = Path("/work/shared/data/prefix/mooncake_conversation.jsonl.gz")
SYNTHETIC = HERE / "data" / "mooncake_synthetic.jsonl.gz"
OUT = HERE / "results" / "prefix_multi_gateway.json"


def spread(trace: list[TraceRequest], step_ms: float = 3000.0, seed: int = 0) -> list[TraceRequest]:
    rng = random.Random(seed)
    return [dataclasses.replace(r, timestamp_ms=r.timestamp_ms + rng.uniform(0.0, step_ms)) for r in trace]


def run_gateways(trace: list[TraceRequest], n: int, k: int, shared: bool, delay_s: float,
                 cfg: SimConfig, seed: int = 0, band_s: float | None = None, lag: bool = True) -> dict[str, Any]:
    """``band_s``: the routers' ``instance_band_s`` (None: the default). With a shared model instance g has rank
    g, as the gateway's choosers rank themselves by instance id once they have heard from each other. ``lag``:
    tell the routers how late the other instances' events arrive (``delay``), as the gateway's choosers measure it
    from each start event; off, another instance's call predicted done but not heard done counts as overdue."""
    rng = random.Random(seed)
    routers = [OursPolicy(n, cfg).router for _ in range(k)]
    if band_s is not None:
        for router in routers:
            router.settings = dataclasses.replace(router.settings, instance_band_s=band_s)
    names = list(range(n))
    servers = [ReplicaServer(cfg) for _ in range(n)]
    finishes: list[tuple[float, int, int, int]] = []  # (finish, request, replica, instance)
    remote: list[tuple[float, int, int, str, tuple[Any, ...]]] = []  # (visible at, seq, instance, kind, args)
    seq = 0
    served = []

    def broadcast(origin: int, at: float, kind: str, args: tuple[Any, ...]) -> None:
        nonlocal seq
        if not shared:
            return
        for g in range(k):
            if g != origin:
                seq += 1
                heapq.heappush(remote, (at + delay_s, seq, g, kind, args))

    def advance(now: float) -> None:
        while True:
            nxt_f = finishes[0][0] if finishes else float("inf")
            nxt_r = remote[0][0] if remote else float("inf")
            if min(nxt_f, nxt_r) > now:
                return
            if nxt_f <= nxt_r:
                fin, j, _, g = heapq.heappop(finishes)
                routers[g].complete(j, fin)
                broadcast(g, fin, "done", (j, fin))
            else:
                _, _, g, kind, args = heapq.heappop(remote)
                key: Hashable = ("remote", args[0])
                if kind == "start":
                    routers[g].assign(key, args[1], args[2], args[3], args[4], delay_s if lag else 0.0)
                else:
                    routers[g].complete(key, args[1])

    for i in arrival_order(trace):
        req = trace[i]
        now = req.t_s
        advance(now)
        g = rng.randrange(k)
        r = routers[g].choose(req.hash_ids, req.input_length, now, names, g if shared else 0)
        s = servers[r].serve(req)
        routers[g].assign(i, req.hash_ids, req.input_length, now, r)
        broadcast(g, now, "start", (i, req.hash_ids, req.input_length, now, r))
        heapq.heappush(finishes, (s.finish_s, i, r, g))
        served.append(s)
    return summarize(trace, served, [s.busy_s for s in servers], cfg.block_tokens).as_dict()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--replicas", type=int, default=8)
    ap.add_argument("--instances", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--delays", type=float, nargs="+", default=[0.001, 0.01, 0.1, 0.5])
    ap.add_argument("--seed", type=int, default=0, help="arrival spread and dealing of requests to instances")
    ap.add_argument("--no-spread", action="store_true", help="keep the traces' 3 s arrival stamps")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    cfg, n = SimConfig(), args.replicas
    traces = {"dev conversation": load_trace(DEV), "synthetic": load_trace(SYNTHETIC),
              "real tool-and-agent, tiled (seed 1)": tiled(load_trace(SLICE), 26, 1)}
    result: dict[str, Any] = {"replicas": n, "spread": not args.no_spread, "seed": args.seed, "traces": {}}
    for name, trace in traces.items():
        if not args.no_spread:
            trace = spread(trace, seed=args.seed)
        run = run_online(trace, n, make_policy("sglang", n, cfg), cfg)
        sg = summarize(trace, run.served, run.busy_s, cfg.block_tokens).as_dict()
        rows: dict[str, Any] = {"sglang (one instance)": sg}
        print(f"{name}: SGLang-style {100 * sg['hit_fraction_of_bound']:.1f}% / {sg['mean_ttft_s']:.3f} / "
              f"{sg['p99_ttft_s']:.2f} / {sg['skew']:.2f}", flush=True)
        for k in args.instances:
            arms: list[tuple[str, bool, float, float | None, bool]] = [("own model", False, 0.0, None, True)]
            if k > 1:
                for d in args.delays:
                    arms += [("shared, no instance band", True, d, 0.0, True),
                             ("shared, event lag ignored", True, d, None, False), ("shared", True, d, None, True)]
            for label, shared, delay, band, lag in arms:
                d = run_gateways(trace, n, k, shared, delay, cfg, seed=args.seed, band_s=band, lag=lag)
                d["mean_ttft_change_vs_sglang"] = round(d["mean_ttft_s"] / sg["mean_ttft_s"] - 1, 4)
                d["p99_ttft_change_vs_sglang"] = round(d["p99_ttft_s"] / sg["p99_ttft_s"] - 1, 4)
                tag = f"{k} instances, {label}" + (f", events {delay * 1000:.0f} ms late" if shared else "")
                rows[tag] = d
                print(f"   {tag:62s} hit {100 * d['hit_fraction_of_bound']:.1f}%  mean "
                      f"{100 * d['mean_ttft_change_vs_sglang']:+.1f}%  p99 {100 * d['p99_ttft_change_vs_sglang']:+.1f}%"
                      f"  skew {d['skew']:.3f}", flush=True)
        result["traces"][name] = rows
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
