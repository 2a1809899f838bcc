"""Prefix affinity against real replicas: two llama.cpp servers (SmolLM2-135M) with prompt caching, multi-turn
conversations, the shipped replica choosers side by side (issue 5, item 2).

The trace benches score the router under the issue's model; this one checks that the chooser the gateway wires
by default (``gateway.wiring.configured_chooser``: prefix affinity inside replica ejection) pays off against a
real engine. Each replica is a ``llama_cpp.server`` with its RAM prompt cache on (``--cache True``, 256 MB of KV
state: a new prompt resumes from the longest cached prefix, as vLLM's automatic prefix caching or llama.cpp's
slot cache do); one thread each, so the two replicas use the box's two cores.

Workload per run: 8 conversations, each opening with its own ~600-word document and a question, 4 turns each
(later turns carry the history and a short new question), 4 output tokens, temperature 0; the 32 calls are
sent one at a time in a seeded random interleaving (a turn only after its conversation's previous one). The
same servers serve both arms, so each run uses fresh documents (nothing cached from another run), and the arm
order alternates between rounds. With ``--llama-server PATH`` the replicas are llama.cpp's C++ server instead
(one slot each; prompt caching on by default: the slot's last prompt, plus a host-memory cache of earlier
prompt states, ``--cache-ram`` 8 GiB by default). Reported per arm: mean latency of first turns (cold for both) and of
follow-up turns, and the run's wall time; medians over the rounds.

    python bench/prefix_gateway_real.py [--rounds 3]      # ~2.5 min per round -> bench/results/prefix_gateway_real.json
    python bench/prefix_gateway_real.py --llama-server PATH --out bench/results/prefix_gateway_real_llama_server.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from sovrouter.adapters.openai_http import OpenAIHTTPAdapter, new_client
from sovrouter.adapters.replicas import ReplicaChooser
from sovrouter.clock import WallClock
from sovrouter.config import Upstream
from sovrouter.contracts import Candidate, ModelCall
from sovrouter.gateway.wiring import configured_chooser
from sovrouter.intake import normalize_chat
from sovrouter.local_model import LlamaCppServer, find_smollm2_gguf

OUT = Path(__file__).parent / "results" / "prefix_gateway_real.json"
WORDS = ["river", "stone", "light", "paper", "window", "garden", "music", "letter", "silver", "morning", "harbor",
         "engine", "forest", "market", "bridge", "valley", "copper", "winter", "signal", "orchard"]
CONVERSATIONS, TURNS, DOC_WORDS = 8, 4, 600
# llama-cpp-python counts only the KV state against --cache_size, not the logits it keeps with each saved state
# (~200 MB for a 1,000-token prompt with SmolLM2's 49k vocabulary), so the 2 GB default grows past 12 GB here.
CACHE_BYTES = 256 << 20


class LlamaServer:
    """llama.cpp's C++ ``llama-server`` (``scripts/build-llama-server.sh``): one thread, one slot, ``--metrics``."""

    def __init__(self, binary: str, model: Path, port: int, log: Path) -> None:
        self.port = port
        self.cmd = [binary, "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-t", "1", "-tb", "1",
                    "-np", "1", "-c", "4096", "--metrics", "-a", "local-small"]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        with self.log.open("wb") as fh:
            self.proc = subprocess.Popen(self.cmd, stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited; see {self.log}")
            time.sleep(0.5)
        raise RuntimeError(f"llama-server did not become healthy; see {self.log}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def document(seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(DOC_WORDS))


async def converse(adapter: OpenAIHTTPAdapter, docs: dict[int, str], order_seed: int,
                   id_prefix: str) -> tuple[list[float], list[float]]:
    """The conversations' turns through ``adapter``, one call at a time in a seeded interleaving (a turn only after
    its conversation's previous one); latencies of first turns and of follow-ups."""
    cand = adapter.target
    history = {c: [{"role": "user", "content": f"Document {c}: {doc}\nWhat is this document about?"}]
               for c, doc in docs.items()}
    order = [c for c in docs for _ in range(TURNS)]
    random.Random(order_seed).shuffle(order)
    first: list[float] = []
    follow: list[float] = []
    for k, c in enumerate(order):
        request = normalize_chat({"messages": history[c], "max_tokens": 4, "temperature": 0},
                                 tenant="bench", request_id=f"{id_prefix}-{k}")
        t = time.perf_counter()
        result = await adapter.generate(ModelCall(request=request, allowed=[cand]))
        (first if len(history[c]) == 1 else follow).append(time.perf_counter() - t)
        history[c] += [{"role": "assistant", "content": result.text or "ok"},
                       {"role": "user", "content": f"And what about point {k}?"}]
    return first, follow


async def run(chooser: ReplicaChooser, urls: list[str], order_seed: int, doc_seed: int) -> dict[str, Any]:
    cand = Candidate(slot="local-small", deployment="replicas")
    async with new_client() as client:
        adapter = OpenAIHTTPAdapter(cand, urls, client=client, chooser=chooser, model="local-small")
        docs = {c: document(1000 * doc_seed + c) for c in range(CONVERSATIONS)}
        start = time.perf_counter()
        first, follow = await converse(adapter, docs, order_seed, str(doc_seed))
        return {"first_turn_mean_s": statistics.mean(first), "follow_up_mean_s": statistics.mean(follow),
                "follow_up_median_s": statistics.median(follow), "wall_s": time.perf_counter() - start}


async def main_async(rounds: int, llama_server: str | None = None) -> dict[str, Any]:
    path = find_smollm2_gguf()
    servers: list[LlamaCppServer] | list[LlamaServer] = (
        [LlamaServer(llama_server, path, 8391 + i, Path(f"/tmp/llama-server-{i}.log")) for i in range(2)]
        if llama_server else
        [LlamaCppServer(path, alias="local-small", n_threads=1, n_ctx=4096,
                        extra_args=["--cache", "True", "--cache_size", str(CACHE_BYTES), "--verbose", "False"])
         for _ in range(2)])
    for s in servers:
        s.start()
    rows: list[dict[str, Any]] = []
    try:
        urls = [s.base_url for s in servers]
        for rnd in range(rounds):
            arms = ["prefix-affinity", "least-outstanding"]
            if rnd % 2:
                arms.reverse()
            for a, arm in enumerate(arms):
                upstream = Upstream(base_urls=urls, replica_choice=arm)
                chooser = configured_chooser(upstream, WallClock())
                r = await run(chooser, urls, order_seed=rnd, doc_seed=2 * rnd + a + 1)
                rows.append({"round": rnd, "arm": arm, **{k: round(v, 3) for k, v in r.items()}})
                print(f"round {rnd} {arm:18s} first turns {r['first_turn_mean_s']:.2f} s, follow-ups mean "
                      f"{r['follow_up_mean_s']:.2f} s (median {r['follow_up_median_s']:.2f} s), "
                      f"wall {r['wall_s']:.1f} s", flush=True)
    finally:
        for s in servers:
            s.stop()
    summary = {arm: {k: round(statistics.median(r[k] for r in rows if r["arm"] == arm), 3)
                     for k in ("first_turn_mean_s", "follow_up_mean_s", "follow_up_median_s", "wall_s")}
               for arm in ("prefix-affinity", "least-outstanding")}
    return {"machine": f"{platform.machine()}, {platform.system()}", "rounds": rounds,
            "server": "llama-server (C++)" if llama_server else "llama_cpp.server (Python)",
            "conversations": CONVERSATIONS, "turns": TURNS, "document_words": DOC_WORDS, "runs": rows,
            "median_over_rounds": summary}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--llama-server", help="replicas are llama.cpp's C++ llama-server at this path "
                    "(scripts/build-llama-server.sh) instead of llama_cpp.server")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    result = asyncio.run(main_async(args.rounds, args.llama_server))
    for arm, s in result["median_over_rounds"].items():
        print(f"median {arm:18s} " + ", ".join(f"{k} {v}" for k, v in s.items()))
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
