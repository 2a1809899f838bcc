"""Two gateway instances sharing one affinity model through real Redis, in front of two real replicas, with the
events late: does the instance band stop them sending new work to the same replica?

Two llama.cpp C++ servers (``llama-server``, SmolLM2-135M, one thread and one slot each, prompt caching on).
Two gateway-side replica choosers as ``sovrouter serve`` wires them (``gateway.wiring.configured_chooser``:
prefix affinity inside replica ejection, over ``OpenAIHTTPAdapter``), each with its own ``RedisAffinityBus`` on
one real ``redis-server`` (instance ids ``gw-a`` and ``gw-b``). Events reach Redis either directly (loopback,
about a millisecond) or through a TCP proxy that holds every byte ``--delay-ms`` in each direction (a far or slow
Redis: an event then reaches the other instance about twice that late).

Workload per arm: ``--waves`` waves; in each, two new conversations (a ~400-word document and a question) arrive
``--gap-ms`` apart, the first at instance A, the second at instance B, then each conversation's two follow-up
turns (carrying the history) arrive at the *other* instance than its previous turn, the two conversations' turns
side by side; 4 output tokens, temperature 0. Five arms on the same servers: events direct or late, with
``instance_band_s`` 0 (every instance takes the best replica of the shared model: the behaviour before the band)
or the default 0.1 s; and events late with the band and the event lag counted (``max_lag_s`` 1: another instance's
call predicted done less than its event delay ago counts as done; off by default). Fresh documents per arm, arm
order rotating between rounds. Reported per arm: mean latency of first turns and of follow-ups, the share of waves
whose two new conversations went to the same replica, and wall time; medians over the rounds.

``llama-server`` is not a dependency of the project: ``bash scripts/build-llama-server.sh`` builds it from the
llama.cpp sources vendored in llama-cpp-python's sdist and prints its path. ``redis-server``: apt.

    python bench/prefix_multi_gateway_real.py --llama-server "$(bash scripts/build-llama-server.sh)" [--rounds 3]
        # -> bench/results/prefix_multi_gateway_real.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

from prefix_engine_load_real import Counting, words
from prefix_gateway_real import LlamaServer

from sovrouter.adapters.openai_http import OpenAIHTTPAdapter, new_client
from sovrouter.adapters.replicas import ReplicaChooser
from sovrouter.clock import WallClock
from sovrouter.config import ReplicaAffinity, Upstream
from sovrouter.contracts import Candidate, ModelCall, NormalizedRequest
from sovrouter.gateway.wiring import configured_chooser
from sovrouter.intake import normalize_chat
from sovrouter.local_model import find_smollm2_gguf
from sovrouter.reuse.affinity_events import RedisAffinityBus
from sovrouter.testing_redis import redis_server

OUT = Path(__file__).parent / "results" / "prefix_multi_gateway_real.json"
CAND = Candidate(slot="local-small", deployment="replicas")
DOC_WORDS, TURNS = 400, 3
PREFILL_TOKENS_PER_S, DECODE_TOKENS_PER_S = 140.0, 45.0


class DelayProxy:
    """A TCP proxy on loopback that delivers every chunk ``delay_s`` after it arrived, in order, both ways."""

    def __init__(self, target_port: int, delay_s: float) -> None:
        self.target_port, self.delay_s = target_port, delay_s
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                writer.write(data)
                await writer.drain()
            writer.close()

        sender = asyncio.create_task(deliver())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((time.monotonic() + self.delay_s, data))
        except ConnectionError:
            pass
        queue.put_nowait((0.0, b""))
        with contextlib.suppress(ConnectionError):
            await sender

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Placing(Counting):
    """Counting, where each request id was sent, and (a diagnostic) how many replicas were within the instance
    band of the best estimated cost when it was chosen."""

    def __init__(self, inner: ReplicaChooser) -> None:
        super().__init__(inner)
        self.where: dict[str, str] = {}
        self.band: dict[str, int] = {}

    def choose(self, request: NormalizedRequest, replicas: list[str]) -> int:
        prefix = self.inner.inner  # type: ignore[attr-defined]  # Counting -> HealthAwareChooser -> prefix chooser
        blocks, tokens, shape = prefix._blocks(request)
        router = prefix._router
        ests = router.estimate(blocks, tokens, prefix._clock.now_ms() / 1000.0, replicas, shape)
        best = min(e.cost for e in ests)
        self.band[request.request_id] = sum(e.cost <= best + router.settings.instance_band_s for e in ests)
        return super().choose(request, replicas)

    def observe_start(self, request: NormalizedRequest, replicas: list[str], index: int) -> None:
        self.where[request.request_id] = replicas[index]
        super().observe_start(request, replicas, index)


async def send_turn(adapter: OpenAIHTTPAdapter, history: list[dict[str, str]], rid: str, t: int,
                    delay_s: float) -> float:
    """One turn of a conversation after ``delay_s``; its latency. The answer and the next question join
    ``history``."""
    await asyncio.sleep(delay_s)
    req = normalize_chat({"messages": history, "max_tokens": 4, "temperature": 0}, tenant="bench", request_id=rid)
    sent = time.perf_counter()
    result = await adapter.generate(ModelCall(request=req, allowed=[CAND]))
    history += [{"role": "assistant", "content": result.text or "ok"},
                {"role": "user", "content": f"And what about point {t}?"}]
    return time.perf_counter() - sent


async def run_arm(redis_url: str, urls: list[str], band_s: float, waves: int, gap_s: float,
                  seed: int, prefix: str, lag: bool = False) -> dict[str, Any]:
    # The replicas' speeds as an operator configures them (docs/gateway.md): SmolLM2-135M on one thread here
    # prefills ~140 and decodes ~45 tokens/s. Left at the defaults (10,000 / 1,000, a GPU's), the chooser would
    # value a 400-word cached document at ~0.05 s until it has learned the rate (20 completions), and would move
    # follow-up turns off their cached replica whenever two of them queue.
    affinity = ReplicaAffinity(prefill_tokens_per_s=PREFILL_TOKENS_PER_S, decode_tokens_per_s=DECODE_TOKENS_PER_S,
                               instance_band_s=band_s)
    upstream = Upstream(base_urls=urls, affinity=affinity)
    buses = [RedisAffinityBus.from_url(redis_url, prefix=prefix, instance=name, block_ms=50)
             for name in ("gw-a", "gw-b")]
    choosers = [Placing(configured_chooser(upstream, WallClock(), events=bus, stream=CAND.key)) for bus in buses]
    if lag:  # count the event lag (an option, off by default)
        for c in choosers:
            c.inner.inner.max_lag_s = 1.0  # type: ignore[attr-defined]  # Counting -> HealthAware -> prefix
    rng = random.Random(seed)
    first: list[float] = []
    follow: list[float] = []
    try:
        for bus in buses:
            await bus.start()
        async with new_client() as client:
            adapters = [OpenAIHTTPAdapter(CAND, urls, client=client, chooser=c, model="local-small")
                        for c in choosers]
            # Let each instance hear from the other once (a short call each), as a running gateway would have.
            for k, adapter in enumerate(adapters):
                hello = normalize_chat({"messages": [{"role": "user", "content": f"hello {seed} {k}"}],
                                        "max_tokens": 1}, tenant="bench", request_id=f"{prefix}-hello-{k}")
                await adapter.generate(ModelCall(request=hello, allowed=[CAND]))
            await asyncio.sleep(1.0)
            start = time.perf_counter()
            for w in range(waves):
                history = {c: [{"role": "user", "content": f"Document {seed}-{w}-{c}: {words(rng, DOC_WORDS)}\n"
                                                           "What is this document about?"}] for c in range(2)}

                out = await asyncio.gather(send_turn(adapters[0], history[0], f"{prefix}-{w}-0-0", 0, 0.0),
                                           send_turn(adapters[1], history[1], f"{prefix}-{w}-1-0", 0, gap_s))
                first += out
                for t in range(1, TURNS):
                    # turn t of conversation c arrives at the other instance than turn t - 1
                    out = await asyncio.gather(*(send_turn(adapters[(c + t) % 2], history[c], f"{prefix}-{w}-{c}-{t}",
                                                           t, 0.0) for c in range(2)))
                    follow += out
            wall = time.perf_counter() - start
        where = {rid: url for c in choosers for rid, url in c.where.items()}
        moved = sum(where[f"{prefix}-{w}-{c}-{t}"] != where[f"{prefix}-{w}-{c}-{t - 1}"]
                    for w in range(waves) for c in range(2) for t in range(1, TURNS))
        shared = sum(where[f"{prefix}-{w}-0-{t}"] == where[f"{prefix}-{w}-1-{t}"]
                     for w in range(waves) for t in range(1, TURNS))
        # For each wave: did its pair share a replica, and how many replicas were in the band at B's choice?
        pairs = [(where[f"{prefix}-{w}-0-0"] == where[f"{prefix}-{w}-1-0"], choosers[1].band[f"{prefix}-{w}-1-0"])
                 for w in range(waves)]
    finally:
        for bus in buses:
            await bus.aclose()
    ranks = [getattr(c.inner.inner, "rank", None) for c in choosers]  # Counting -> HealthAware -> prefix
    return {"first_turn_mean_s": statistics.mean(first), "follow_up_mean_s": statistics.mean(follow),
            "waves_on_one_replica": sum(same for same, _ in pairs) / waves, "wall_s": wall, "ranks": ranks,
            "follow_ups_moved": moved / (waves * 2 * (TURNS - 1)),
            "follow_up_pairs_on_one_replica": shared / (waves * (TURNS - 1)),
            "pairs_shared_and_band_at_b": pairs}


async def main_async(binary: str, rounds: int, waves: int, delay_s: float, gap_s: float) -> dict[str, Any]:
    model = find_smollm2_gguf()
    servers = [LlamaServer(binary, model, 8391 + i, Path(f"/tmp/llama-server-{i}.log")) for i in range(2)]
    arms = [(events, band, False) for events in ("direct", "late") for band in (0.0, 0.1)] + [("late", 0.1, True)]
    rows: list[dict[str, Any]] = []
    with redis_server() as redis:
        proxy = DelayProxy(redis.port, delay_s)
        await proxy.start()
        for s in servers:
            s.start()
        try:
            urls = [s.base_url for s in servers]
            n = 0
            for rnd in range(rounds):
                order = arms[rnd % len(arms):] + arms[:rnd % len(arms)]
                for events, band, lag in order:
                    n += 1
                    url = redis.url if events == "direct" else f"redis://127.0.0.1:{proxy.port}/0"
                    r = await run_arm(url, urls, band, waves, gap_s, seed=n, prefix=f"mg{n}", lag=lag)
                    arm = f"events {events}, band {band:g} s" + (", event lag counted" if lag else "")
                    rows.append({"round": rnd, "arm": arm, **{k: (round(v, 3) if isinstance(v, float) else v)
                                                             for k, v in r.items()}})
                    print(f"round {rnd} {arm:46s} first turns {r['first_turn_mean_s']:.2f} s, follow-ups "
                          f"{r['follow_up_mean_s']:.2f} s, new pairs on one replica {r['waves_on_one_replica']:.0%}, "
                          f"follow-ups moved {r['follow_ups_moved']:.0%}, follow-up pairs on one replica "
                          f"{r['follow_up_pairs_on_one_replica']:.0%}, wall {r['wall_s']:.1f} s, ranks {r['ranks']}, "
                          f"(pair shared, band size at B) {r['pairs_shared_and_band_at_b']}",
                          flush=True)
        finally:
            for s in servers:
                s.stop()
            await proxy.aclose()
    keys = ("first_turn_mean_s", "follow_up_mean_s", "waves_on_one_replica", "follow_ups_moved",
            "follow_up_pairs_on_one_replica", "wall_s")
    summary = {arm: {k: round(statistics.median(r[k] for r in rows if r["arm"] == arm), 3) for k in keys}
               for arm in dict.fromkeys(r["arm"] for r in rows)}
    return {"machine": f"{platform.machine()}, {platform.system()}", "rounds": rounds, "waves": waves,
            "proxy_delay_each_way_s": delay_s, "gap_between_new_conversations_s": gap_s,
            "document_words": DOC_WORDS, "turns": TURNS, "runs": rows, "median_over_rounds": summary}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-server", required=True, help="path of a llama.cpp llama-server binary")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--waves", type=int, default=4)
    ap.add_argument("--delay-ms", type=float, default=100.0, help="the proxy's delay each way for late events")
    ap.add_argument("--gap-ms", type=float, default=50.0, help="between the two new conversations of a wave")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    result = asyncio.run(main_async(args.llama_server, args.rounds, args.waves, args.delay_ms / 1000,
                                    args.gap_ms / 1000))
    for arm, s in result["median_over_rounds"].items():
        print(f"median {arm:46s} " + ", ".join(f"{k} {v}" for k, v in s.items()))
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
