"""Prefix affinity when the replicas also serve someone else: does the engines' own count of requests help?

    python bench/prefix_engine_load.py      # ~3 min -> bench/results/prefix_engine_load.json
    python bench/prefix_engine_load.py --traces dev synthetic --scenarios pinned spread moving --polls 0.25 \
        --foreign-input 8192 --foreign-output 512 --out bench/results/prefix_engine_load_large_foreign.json

The issue's scoring model, 8 replicas, one gateway instance routing a trace. Another client (a batch job, another
team's service) sends its own requests straight to some of the replicas, which the gateway never sees: they queue
in the same FIFO servers and their blocks take room in the same LRU caches. Each of its requests has a fresh
prompt of ``--foreign-input`` tokens (no reuse) and ``--foreign-output`` output tokens, Poisson arrivals sized so
that each replica it targets carries ``rho`` of one server's capacity from it. Scenarios:

- ``pinned``: a fixed pair of replicas (0 and 1), rho 0.4 each (a client configured with two of the URLs);
- ``spread``: every replica, rho 0.15 each (a background client that balances by itself);
- ``moving``: one replica at a time, rho 0.6, moving to the next every 300 s (a hot spot that wanders).

Arms: SGLang-style and least-loaded (they count their own requests in flight, blind to the others, as sgl-router
is), ours blind, ours fed each replica's held requests (running + waiting, what vLLM/SGLang/llama.cpp publish on
``/metrics``) every 1 s, 0.25 s (the default poll) or 0.05 s, through ``PrefixAffinityRouter.report_held``, the
method the gateway's ``EngineLoadPoller`` drives. A report is the state at its poll time (scrape time taken as
zero). Figures are for the gateway's requests (hit of the unbounded bound, mean and p99 TTFT) and for the other
client's (mean and p99 TTFT); skew is over all work. Arrivals are spread within each trace's 3 s stamps as in
bench/prefix_multi_gateway.py. Each figure is the median over ``--seeds`` draws of the other client's arrivals
(each draw's figures are in the JSON).
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from prefix_multi_gateway import DEV, SYNTHETIC, spread
from prefix_toolagent_slice import SLICE, tiled

from sovrouter.reuse.prefix_policies import OursPolicy, TracePolicy, make_policy
from sovrouter.reuse.prefix_sim import (
    ReplicaServer,
    Served,
    SimConfig,
    TraceRequest,
    arrival_order,
    load_trace,
    summarize,
)

OUT = Path(__file__).parent / "results" / "prefix_engine_load.json"
FOREIGN_ID = 1 << 62  # the other client's block ids: never equal to a trace's

Targets = Callable[[float], list[int]]  # time -> the replicas the other client sends to


def foreign_requests(t0: float, t1: float, targets: Targets, rho: float, input_tokens: int, output_tokens: int,
                     cfg: SimConfig, seed: int) -> list[tuple[float, int, TraceRequest]]:
    """(time, replica, request): per targeted replica a Poisson stream carrying ``rho`` of its capacity."""
    rng = random.Random(seed)
    service = input_tokens / cfg.prefill_rate + output_tokens / cfg.decode_rate
    blocks = -(-input_tokens // cfg.block_tokens)
    out: list[tuple[float, int, TraceRequest]] = []
    t, k = t0, 0
    while True:
        live = targets(t)
        t += rng.expovariate(rho * len(live) / service)  # the client's total rate over its live targets
        if t >= t1:
            return out
        live = targets(t)
        r = live[k % len(live)]
        k += 1
        ids = tuple(FOREIGN_ID + k * blocks + j for j in range(blocks))
        out.append((t, r, TraceRequest(t * 1000.0, input_tokens, output_tokens, ids)))


def run(trace: list[TraceRequest], n: int, policy: TracePolicy, foreign: list[tuple[float, int, TraceRequest]],
        poll_s: float | None, cfg: SimConfig) -> dict[str, Any]:
    servers = [ReplicaServer(cfg) for _ in range(n)]
    held: list[deque[float]] = [deque() for _ in range(n)]  # finish times of what each replica holds (FIFO)
    pending: list[tuple[float, int, int]] = []  # our requests: (finish, index, replica)
    ours: list[Served] = []
    theirs: list[Served] = []
    router = policy.router if isinstance(policy, OursPolicy) and poll_s is not None else None
    order = arrival_order(trace)
    # events: (time, kind, payload); kind 0 = poll, 1 = foreign arrival, 2 = our arrival
    events: list[tuple[float, int, int]] = [(trace[i].t_s, 2, i) for i in order]
    events += [(t, 1, j) for j, (t, _, _) in enumerate(foreign)]
    if router is not None and poll_s is not None:
        start, end = trace[order[0]].t_s, trace[order[-1]].t_s
        events += [(start + k * poll_s, 0, k) for k in range(int((end - start) / poll_s) + 1)]
    heapq.heapify(events)
    while events:
        now, kind, x = heapq.heappop(events)
        while pending and pending[0][0] <= now:
            fin, j, r = heapq.heappop(pending)
            policy.completed(j, r, fin)
        if kind == 0:
            assert router is not None
            for r in range(n):
                while held[r] and held[r][0] <= now:
                    held[r].popleft()
                router.report_held(r, len(held[r]))
        elif kind == 1:
            _, r, req = foreign[x]
            s = servers[r].serve(req)
            held[r].append(s.finish_s)
            theirs.append(s)
        else:
            req = trace[x]
            r = policy.choose(req, now)
            s = servers[r].serve(req)
            policy.assigned(x, req, r, now)
            heapq.heappush(pending, (s.finish_s, x, r))
            held[r].append(s.finish_s)
            ours.append(s)
    d = summarize(trace, ours, [s.busy_s for s in servers], cfg.block_tokens).as_dict()
    d.pop("busy_s", None)
    ttft = np.asarray([s.ttft_s for s in theirs]) if theirs else np.zeros(1)
    d["foreign_requests"] = len(theirs)
    d["foreign_mean_ttft_s"] = round(float(ttft.mean()), 4)
    d["foreign_p99_ttft_s"] = round(float(np.percentile(ttft, 99)), 4)
    return d


def scenarios(n: int) -> dict[str, tuple[Targets, float]]:
    return {
        "none": (lambda t: [0], 0.0),
        "pinned": (lambda t: [0, 1], 0.4),
        "spread": (lambda t: list(range(n)), 0.15),
        "moving": (lambda t: [int(t // 300) % n], 0.6),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--replicas", type=int, default=8)
    ap.add_argument("--polls", type=float, nargs="+", default=[1.0, 0.25, 0.05])
    ap.add_argument("--foreign-input", type=int, default=2048)
    ap.add_argument("--foreign-output", type=int, default=256)
    ap.add_argument("--scenarios", nargs="+", default=["none", "pinned", "spread", "moving"])
    ap.add_argument("--traces", nargs="+", default=["dev", "synthetic", "tool"])
    ap.add_argument("--seeds", type=int, default=3, help="draws of the other client's arrivals (medians reported)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    cfg, n = SimConfig(), args.replicas
    loaders = {"dev": lambda: load_trace(DEV), "synthetic": lambda: load_trace(SYNTHETIC),
               "tool": lambda: tiled(load_trace(SLICE), 26, 1)}
    result: dict[str, Any] = {"replicas": n, "foreign_input": args.foreign_input,
                              "foreign_output": args.foreign_output, "traces": {}}
    for tname in args.traces:
        trace = spread(loaders[tname]())
        t0, t1 = min(r.t_s for r in trace), max(r.t_s for r in trace)
        rows: dict[str, Any] = {}
        for sname in args.scenarios:
            targets, rho = scenarios(n)[sname]
            draws = [[] if rho == 0 else foreign_requests(t0, t1, targets, rho, args.foreign_input,
                                                          args.foreign_output, cfg, seed=7 + k)
                     for k in range(args.seeds if rho > 0 else 1)]
            arms: list[tuple[str, Callable[[], TracePolicy], float | None]] = [
                ("sglang", lambda: make_policy("sglang", n, cfg), None),
                ("least-loaded", lambda: make_policy("least-loaded", n, cfg), None),
                ("ours, blind", lambda: OursPolicy(n, cfg), None),
            ] + [(f"ours, engine reports every {p:g} s", lambda: OursPolicy(n, cfg), p)
                 for p in args.polls]
            out: dict[str, Any] = {"rho": rho, "foreign_requests": [len(f) for f in draws], "arms": {}}
            for label, make, poll in arms:
                per_draw = [run(trace, n, make(), foreign, poll, cfg) for foreign in draws]
                d = {key: float(np.median([x[key] for x in per_draw])) for key, v in per_draw[0].items()
                     if isinstance(v, (int, float))}
                d["draws"] = per_draw
                out["arms"][label] = d
            sg, blind = out["arms"]["sglang"], out["arms"]["ours, blind"]
            for label, d in out["arms"].items():
                d["mean_ttft_change_vs_sglang"] = round(d["mean_ttft_s"] / sg["mean_ttft_s"] - 1, 4)
                d["p99_ttft_change_vs_sglang"] = round(d["p99_ttft_s"] / sg["p99_ttft_s"] - 1, 4)
                d["mean_ttft_change_vs_blind"] = round(d["mean_ttft_s"] / blind["mean_ttft_s"] - 1, 4)
                if rho > 0:
                    d["foreign_mean_ttft_change_vs_blind"] = round(
                        d["foreign_mean_ttft_s"] / blind["foreign_mean_ttft_s"] - 1, 4)
                print(f"{tname:9s} {sname:7s} {label:34s} hit {100 * d['hit_fraction_of_bound']:5.1f}%  "
                      f"mean {d['mean_ttft_s']:6.3f} ({100 * d['mean_ttft_change_vs_sglang']:+6.1f}%)  "
                      f"p99 {d['p99_ttft_s']:6.2f} ({100 * d['p99_ttft_change_vs_sglang']:+6.1f}%)  "
                      f"skew {d['skew']:.2f}  other client mean {d['foreign_mean_ttft_s']:.3f} "
                      f"p99 {d['foreign_p99_ttft_s']:.2f}", flush=True)
            rows[sname] = out
        result["traces"][tname] = rows
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
