"""Does a gateway instance know when a speculative deployment is past its ``max_batch``? Local count vs the engines'.

    python bench/engine_load.py [--seeds 5] [--hours 2] [--out bench/results/engine_load.json]

A discrete-event simulation of k gateway instances behind a load balancer (each request to one at random) sending
to one speculative deployment (``max_batch`` 16). Each instance decides at arrival whether the request decodes
with speculation, through the product's own parts: its :class:`~sovrouter.adapters.inflight.InFlightBoard` and
:func:`~sovrouter.speculative.latency.expected_speedup` (speculate iff the speed-up at the board's count exceeds
1). Arms: the board with the instance's own calls only (before the nineteenth session); with the engines' running
batch reported every T seconds as :class:`~sovrouter.adapters.engine_load.EngineLoadPoller` does (each instance
polling on its own phase; the report is the engine's count at the poll), either taken as it is, the larger of it
and the own count (``MaxBoard``, the first version), or carried forward with the instance's own calls since the
report (the shipped board). The truth for a request is
the engine's running batch when it arrives. Arrivals are Poisson with mean concurrency rho x max_batch; service
times lognormal (mean 4 s, sigma 0.8).

Also timed: reading one scrape (``running_requests``) of a vLLM-sized exposition (~95 KB: 48 gauges and counters
and 12 histograms of 31 buckets, two engines each), the shipped line filter against parsing the whole text,
because the poller parses on the serving loop several times a second per replica; and a whole scrape through
:class:`EngineLoadPoller` (HTTP GET with httpx, read, parse, report) against a Starlette server in another
process serving that text: CPU time in the poller's process per scrape.

Reported per arm: **wrong on** = share of the requests arriving with the batch at or past ``max_batch`` that
still speculated; **wrong off** = share of those arriving below it that did not; medians over seeds.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import math
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from sovrouter.adapters.engine_load import EngineLoadPoller, EngineProbe, running_requests
from sovrouter.adapters.inflight import InFlightBoard
from sovrouter.catalog import Deployment
from sovrouter.contracts import Candidate
from sovrouter.speculative.latency import expected_speedup
from sovrouter.testing_upstream import closed_port_url

TARGET = Candidate(slot="sovereign-large", deployment="spec")
MAX_BATCH = 16
DEPLOYMENT = Deployment.model_validate({
    "id": "spec", "region": "EU", "compute": "gpu", "latency": {"ttft_ms": 300, "tokens_per_s": 60},
    "speculative": {"kind": "prompt-lookup", "expected_speedup": 2.4, "base_speedup": 0.95, "max_batch": MAX_BATCH}})
MEAN_SERVICE_S = 4.0
SIGMA = 0.8


class MaxBoard(InFlightBoard):
    """The first version: the engines' last report as it is, or the own count when higher (no carrying forward)."""

    def count(self, target: Candidate) -> int:
        return max(self.local(target), self.reported().get(target, 0))


def simulate(k: int, rho: float, poll_s: float | None, seed: int, hours: float,
             board: type[InFlightBoard] = InFlightBoard) -> dict[str, float]:
    rng = random.Random(seed)
    rate = rho * MAX_BATCH / MEAN_SERVICE_S
    mu = math.log(MEAN_SERVICE_S) - SIGMA ** 2 / 2
    boards = [board() for _ in range(k)]
    engine = 0
    events: list[tuple[float, int, str, int]] = []  # (time, tiebreak, kind, instance)
    n = 0

    def push(t: float, kind: str, inst: int) -> None:
        nonlocal n
        n += 1
        heapq.heappush(events, (t, n, kind, inst))

    push(rng.expovariate(rate), "arrive", -1)
    if poll_s is not None:
        for i in range(k):
            push(rng.uniform(0, poll_s), "poll", i)
    end = hours * 3600.0
    at_or_past = below = wrong_on = wrong_off = 0
    while events:
        t, _, kind, inst = heapq.heappop(events)
        if t > end:
            break
        if kind == "poll":
            boards[inst].report(TARGET, engine)
            push(t + poll_s, "poll", inst)  # type: ignore[operator]
        elif kind == "done":
            engine -= 1
            boards[inst].leave(TARGET)
        else:
            i = rng.randrange(k)
            speculate = expected_speedup(DEPLOYMENT, 1.0, boards[i].count(TARGET)) > 1.0
            if engine >= MAX_BATCH:
                at_or_past += 1
                wrong_on += speculate
            else:
                below += 1
                wrong_off += not speculate
            engine += 1
            boards[i].enter(TARGET)
            push(t + rng.lognormvariate(mu, SIGMA), "done", i)
            push(t + rng.expovariate(rate), "arrive", -1)
    return {"wrong_on": wrong_on / at_or_past if at_or_past else 0.0,
            "wrong_off": wrong_off / below if below else 0.0,
            "share_at_or_past": at_or_past / (at_or_past + below)}


def exposition() -> str:
    """A vLLM-sized /metrics text with the running gauge near the end."""
    model = 'model_name="meta-llama/Llama-3.1-8B-Instruct"'
    lines = []
    for i in range(48):
        name = f"vllm:metric_{i}"
        lines += [f"# HELP {name} Help text of metric {i}.", f"# TYPE {name} gauge"]
        lines += [f'{name}{{engine="{e}",{model}}} {i * 7.5 + e}' for e in range(2)]
    for h in range(12):
        name = f"vllm:histogram_{h}_seconds"
        lines += [f"# HELP {name} A histogram.", f"# TYPE {name} histogram"]
        for e in range(2):
            lines += [f'{name}_bucket{{engine="{e}",le="{0.001 * 2 ** b}",{model}}} {3.0 * b}' for b in range(30)]
            lines += [f'{name}_bucket{{engine="{e}",le="+Inf",{model}}} 100.0',
                      f'{name}_count{{engine="{e}",{model}}} 100.0', f'{name}_sum{{engine="{e}",{model}}} 12.5']
    lines += ["# HELP vllm:num_requests_running Running.", "# TYPE vllm:num_requests_running gauge",
              f'vllm:num_requests_running{{engine="0",{model}}} 7.0',
              f'vllm:num_requests_running{{engine="1",{model}}} 5.0']
    return "\n".join(lines) + "\n"


def parse_cost(reps: int = 50, rounds: int = 5) -> dict[str, Any]:
    text = exposition()
    assert running_requests(text) == 12

    def whole() -> None:
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert sum(s.value for s in families["vllm:num_requests_running"].samples) == 12

    out: dict[str, Any] = {"bytes": len(text)}
    for label, fn in (("line filter (shipped)", lambda: running_requests(text)), ("whole text", whole)):
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            times.append((time.perf_counter() - t0) / reps * 1000)
        out[label] = {"ms_median": statistics.median(times), "ms_rounds": times}
        print(f"parse one scrape of {len(text) / 1024:.0f} KB, {label}: {statistics.median(times):.2f} ms "
              f"(median of {rounds} rounds of {reps})", flush=True)
    return out


SERVER = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
sys.path.insert(0, {bench!r})
from engine_load import exposition
text = exposition()
async def metrics(request):
    return Response(text, media_type="text/plain; version=0.0.4")
uvicorn.run(Starlette(routes=[Route("/metrics", metrics)]), host="127.0.0.1", port={port}, log_level="warning")
"""


def scrape_cpu(scrapes: int = 200, rounds: int = 5) -> dict[str, Any]:
    port = int(closed_port_url().rsplit(":", 1)[1])
    server = subprocess.Popen([sys.executable, "-c", SERVER.format(bench=str(Path(__file__).parent), port=port)])

    async def run() -> list[float]:
        board = InFlightBoard()
        probe = EngineProbe((f"http://127.0.0.1:{port}/metrics",), timeout_s=2.0)
        async with httpx.AsyncClient() as client:
            poller = EngineLoadPoller(board, {TARGET: probe}, client)
            for _ in range(100):  # until the server is up, then warm
                await poller.poll_once()
                if board.reported() == {TARGET: 12}:
                    break
                await asyncio.sleep(0.1)
            cpu = []
            for _ in range(rounds):
                t0 = time.process_time()
                for _ in range(scrapes):
                    await poller.poll_once()
                cpu.append((time.process_time() - t0) / scrapes * 1000)
            assert board.reported() == {TARGET: 12}
            return cpu

    try:
        cpu = asyncio.run(run())
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"one scrape through EngineLoadPoller: {statistics.median(cpu):.2f} ms CPU in the poller's process "
          f"(median of {rounds} rounds of {scrapes})", flush=True)
    return {"ms_cpu_median": statistics.median(cpu), "ms_cpu_rounds": cpu}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "engine_load.json")
    args = ap.parse_args()
    arms: list[tuple[str, float | None, type[InFlightBoard]]] = [("own calls only", None, InFlightBoard)]
    for poll in (0.05, 0.1, 0.25, 1.0):
        arms += [(f"max(report, own), {poll} s", poll, MaxBoard), (f"carried forward, {poll} s", poll, InFlightBoard)]
    rows: list[dict[str, Any]] = []
    print(f"{'rho':>4} {'k':>2}  {'arm':28s} {'past max_batch':>14} {'wrong on':>9} {'wrong off':>9}")
    for rho in (0.6, 1.0, 1.5):
        for k in (1, 2, 4, 8):
            for label, poll, kind in arms:
                runs = [simulate(k, rho, poll, seed, args.hours, kind) for seed in range(args.seeds)]
                row = {"rho": rho, "instances": k, "arm": label, "poll_s": poll,
                       **{m: statistics.median(r[m] for r in runs) for m in runs[0]}}
                rows.append(row)
                print(f"{rho:4.1f} {k:2d}  {label:28s} {100 * row['share_at_or_past']:13.1f}% "
                      f"{100 * row['wrong_on']:8.1f}% {100 * row['wrong_off']:8.1f}%", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    parse = {**parse_cost(), "scrape": scrape_cpu()}
    args.out.write_text(json.dumps({"max_batch": MAX_BATCH, "mean_service_s": MEAN_SERVICE_S, "sigma": SIGMA,
                                    "seeds": args.seeds, "hours": args.hours, "rows": rows, "parse": parse},
                                   indent=1) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
