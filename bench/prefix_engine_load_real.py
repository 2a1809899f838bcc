"""Prefix affinity with another client on the same real replicas: blind, or reading the engines' own count.

Two llama.cpp servers (the C++ ``llama-server``, SmolLM2-135M, one thread and one slot each, ``--metrics`` on, so
a request beyond the slot waits and shows as ``llamacpp:requests_deferred``). Another client keeps
``--foreign`` requests in flight on replica 0 all the time (fresh ~200-word prompts, 16 output tokens), straight
to the server: the gateway never sees them. The gateway side is the shipped chooser
(``gateway.wiring.configured_chooser``: prefix affinity inside replica ejection) over ``OpenAIHTTPAdapter``, in
two arms on the same servers:

- *blind*: the upstream without ``engine_load`` (the chooser models only its own calls);
- *engine reports*: ``engine_load`` on, ``EngineLoadPoller`` scraping both servers' ``/metrics`` every 0.25 s into
  ``EngineReports``, as ``sovrouter serve`` wires it.

Workload per arm: 8 conversations of 4 turns (a ~400-word document, then short follow-ups carrying the history),
4 output tokens, temperature 0, sent one at a time in a seeded interleaving; fresh documents per arm, arm order
alternating between rounds. Reported per arm: mean latency of first turns and of follow-ups, wall time, the
share of the gateway's calls sent to the busy replica, and the other client's completed requests and mean
latency over the arm; medians over the rounds.

``llama-server`` is not a dependency of the project: ``bash scripts/build-llama-server.sh`` builds it from the
llama.cpp sources vendored in llama-cpp-python's sdist and prints its path.

    python bench/prefix_engine_load_real.py --llama-server "$(bash scripts/build-llama-server.sh)" [--rounds 3]
        # -> bench/results/prefix_engine_load_real.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
from prefix_gateway_real import TURNS, LlamaServer, converse

from sovrouter.adapters.engine_load import EngineLoadPoller, EngineProbe, EngineReports, metrics_url
from sovrouter.adapters.openai_http import OpenAIHTTPAdapter, new_client
from sovrouter.adapters.replicas import ReplicaChooser
from sovrouter.clock import WallClock
from sovrouter.config import EngineLoad, Upstream
from sovrouter.contracts import Candidate, NormalizedRequest
from sovrouter.gateway.wiring import configured_chooser
from sovrouter.local_model import find_smollm2_gguf

OUT = Path(__file__).parent / "results" / "prefix_engine_load_real.json"
WORDS = ["river", "stone", "light", "paper", "window", "garden", "music", "letter", "silver", "morning", "harbor",
         "engine", "forest", "market", "bridge", "valley", "copper", "winter", "signal", "orchard"]
CONVERSATIONS, DOC_WORDS, FOREIGN_WORDS = 8, 400, 200
CAND = Candidate(slot="local-small", deployment="replicas")


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


class Counting:
    """A ReplicaChooser wrapper counting the calls sent to each replica."""

    def __init__(self, inner: ReplicaChooser) -> None:
        self.inner = inner
        self.sent: dict[str, int] = {}

    def choose(self, request: NormalizedRequest, replicas: list[str]) -> int:
        return self.inner.choose(request, replicas)

    def observe_start(self, request: NormalizedRequest, replicas: list[str], index: int) -> None:
        self.sent[replicas[index]] = self.sent.get(replicas[index], 0) + 1
        self.inner.observe_start(request, replicas, index)

    def observe_done(self, request: NormalizedRequest, replicas: list[str], index: int, ok: bool,
                     latency_ms: float, *, rejected: bool = False, abandoned: bool = False) -> None:
        self.inner.observe_done(request, replicas, index, ok, latency_ms, rejected=rejected, abandoned=abandoned)


async def foreign_client(url: str, concurrency: int, stop: asyncio.Event, seed: int) -> list[float]:
    """Keep ``concurrency`` requests in flight on ``url`` until ``stop``; latencies of those completed."""
    latencies: list[float] = []
    rng = random.Random(seed)

    async def worker(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            body = {"model": "local-small", "max_tokens": 16, "temperature": 0,
                    "messages": [{"role": "user", "content": f"Note {rng.random()}: {words(rng, FOREIGN_WORDS)}"}]}
            t = time.perf_counter()
            try:
                r = await client.post(url + "/chat/completions", json=body, timeout=120)
            except httpx.HTTPError:
                continue
            if r.status_code == 200 and not stop.is_set():
                latencies.append(time.perf_counter() - t)

    async with httpx.AsyncClient() as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return latencies


async def run_arm(arm: str, urls: list[str], foreign: int, order_seed: int, doc_seed: int) -> dict[str, Any]:
    reports = EngineReports()
    upstream = Upstream(base_urls=urls, engine_load=EngineLoad() if arm == "engine reports" else None)
    chooser = Counting(configured_chooser(upstream, WallClock(), engine=reports, stream=CAND.key))
    stop = asyncio.Event()
    other = asyncio.create_task(foreign_client(urls[0], foreign, stop, seed=doc_seed))
    async with new_client() as client:
        poller = None
        if upstream.engine_load is not None:
            probe = EngineProbe(tuple(metrics_url(u) for u in urls), replicas=tuple(urls))
            poller = EngineLoadPoller(None, {CAND: probe}, client, reports=reports)
            await poller.start()
        await asyncio.sleep(2.0)  # the other client's queue builds up
        adapter = OpenAIHTTPAdapter(CAND, urls, client=client, chooser=chooser, model="local-small")
        rng = random.Random(1000 * doc_seed)
        docs = {c: words(rng, DOC_WORDS) for c in range(CONVERSATIONS)}
        start = time.perf_counter()
        first, follow = await converse(adapter, docs, order_seed, str(doc_seed))
        wall = time.perf_counter() - start
        stop.set()
        scrapes = failed = 0
        if poller is not None:
            await poller.aclose()
            scrapes, failed = poller.stats["scrapes"], poller.stats["failed"]
    others = await other
    calls = sum(chooser.sent.values())
    return {"first_turn_mean_s": statistics.mean(first), "follow_up_mean_s": statistics.mean(follow),
            "all_calls_mean_s": statistics.mean(first + follow), "wall_s": wall,
            "share_on_busy_replica": chooser.sent.get(urls[0], 0) / calls,
            "other_client_completed": float(len(others)),
            "other_client_mean_s": statistics.mean(others) if others else 0.0,
            "scrapes": float(scrapes), "scrapes_failed": float(failed)}


async def main_async(binary: str, rounds: int, foreign: int) -> dict[str, Any]:
    model = find_smollm2_gguf()
    servers = [LlamaServer(binary, model, 8391 + i, Path(f"/tmp/llama-server-{i}.log")) for i in range(2)]
    for s in servers:
        s.start()
    rows: list[dict[str, Any]] = []
    arms = ["blind", "engine reports"]
    try:
        urls = [s.base_url for s in servers]
        for rnd in range(rounds):
            order = arms if rnd % 2 == 0 else arms[::-1]
            for a, arm in enumerate(order):
                r = await run_arm(arm, urls, foreign, order_seed=rnd, doc_seed=2 * rnd + a + 1)
                rows.append({"round": rnd, "arm": arm, **{k: round(v, 3) for k, v in r.items()}})
                print(f"round {rnd} {arm:15s} " + ", ".join(f"{k} {v:.3f}" for k, v in r.items()), flush=True)
    finally:
        for s in servers:
            s.stop()
    keys = [k for k in rows[0] if k not in ("round", "arm")]
    summary = {arm: {k: round(statistics.median(r[k] for r in rows if r["arm"] == arm), 3) for k in keys}
               for arm in arms}
    return {"machine": f"{platform.machine()}, {platform.system()}", "rounds": rounds, "foreign_in_flight": foreign,
            "conversations": CONVERSATIONS, "turns": TURNS, "document_words": DOC_WORDS, "runs": rows,
            "median_over_rounds": summary}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-server", required=True, help="path of a llama.cpp llama-server binary")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--foreign", type=int, default=3, help="requests the other client keeps in flight on replica 0")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    result = asyncio.run(main_async(args.llama_server, args.rounds, args.foreign))
    for arm, s in result["median_over_rounds"].items():
        print(f"median {arm:15s} " + ", ".join(f"{k} {v}" for k, v in s.items()))
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
