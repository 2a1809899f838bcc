"""Several gateway instances with the semantic cache: each its own index, or entries shared between them.

    python bench/semantic_share.py [--instances 2 4] [--vectors /tmp/semcache-vectors]

Dev half 1 (``training.split``: ~28k pairs, a little denser than the ~24.5k-pair held-out file), the shipped
verifier (fitted on all of dev, so FHR and recall here are in-sample: the point is the comparison between arms,
not the level). A load
balancer without stickiness: every distinct q1 is stored through a random instance (seeded), then every q2 is
looked up at a random instance. Arms: one instance; k instances each with its own index; k instances sharing
entries (``SharedSemanticCache`` over an in-process feed, the same code path as Redis minus the transport).
Also the transport itself: the time from ``store`` on one instance to the entry being searchable on another
through a real ``redis-server`` on loopback (median and p99 over 200 entries).

MiniLM and e5 vectors come from the store ``bench/semantic_cache.py`` keeps (missing texts are embedded and
added). Writes bench/results/semantic_share.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sovrouter.cache.calibrate import Pair, is_right, positive_keys
from sovrouter.cache.semantic import SemanticCache
from sovrouter.cache.semantic_share import MemoryEntryFeed, RedisEntryFeed, SharedSemanticCache
from sovrouter.cache.split import SharedScope
from sovrouter.cache.training import ALT_EMBEDDER, VectorStore, load_labelled, split
from sovrouter.cache.verifier import PairVerifier
from sovrouter.clock import SimClock, WallClock
from sovrouter.contracts import Candidate, ContentPart, Detection, Message, ModelResult, NormalizedRequest
from sovrouter.embed import E5Embedder, Embedder, MiniLMEmbedder, Vectors
from sovrouter.protocols import ResponseCache
from sovrouter.testing_redis import redis_server

OUT = Path(__file__).parent / "results" / "semantic_share.json"
PAIRS = Path("/work/shared/data/cache/qqp_dev.jsonl.gz")
CAND = Candidate(slot="eval", deployment="eval")
NONE = Detection()
SCOPE = SharedScope.of(["eval"])


class Stored:
    """An ``Embedder`` over a ``VectorStore`` (the model loads only for a text the store lacks)."""

    def __init__(self, load: Callable[[], Embedder], folder: str, name: str | None = None) -> None:
        self._model: Embedder | None = None
        self._load = load
        kw = {"embedder": name} if name else {}
        self.store = VectorStore(self._base, folder, **kw)
        self.dim = 384

    def _base(self, texts: Sequence[str]) -> Vectors:
        if self._model is None:
            self._model = self._load()
        return self._model.embed(texts)

    def embed(self, texts: Sequence[str]) -> Vectors:
        return self.store.embed(texts)


def request(i: int, text: str) -> NormalizedRequest:
    return NormalizedRequest(request_id=f"r{i}", tenant="eval",
                             messages=(Message(role="user", parts=(ContentPart(modality="text", text=text),)),))


def caches(k: int, shared: bool, main: Embedder, alt: Embedder, verifier: PairVerifier) -> list[ResponseCache]:
    hub = MemoryEntryFeed()
    out: list[ResponseCache] = []
    for g in range(k):
        local = SemanticCache(SimClock(), main, verifier, ttl_s=1e9, alt_embedder=alt, max_entries=None)
        out.append(SharedSemanticCache(local, hub.view(str(g)), SCOPE) if shared else local)
    return out


async def arm(pairs: Sequence[Pair], k: int, shared: bool, main: Embedder, alt: Embedder,
              verifier: PairVerifier) -> dict[str, Any]:
    rng = random.Random(0)
    group = caches(k, shared, main, alt, verifier)
    q1s = list(dict.fromkeys(p.q1 for p in pairs))
    t0 = time.perf_counter()
    for i, q1 in enumerate(q1s):
        req = request(i, q1)
        cache = group[rng.randrange(k)]
        await cache.store(req, NONE, ModelResult(candidate=CAND, text=q1))
        await cache.release(req)
    positives = positive_keys(pairs)
    hits = right = nonverbatim_right = 0
    for j, pair in enumerate(pairs):
        req = request(len(q1s) + j, pair.q2)
        cache = group[rng.randrange(k)]
        _, result = await cache.lookup(req, NONE, [CAND])
        if result is None:
            await cache.release(req)
            continue
        hits += 1
        if is_right(pair.q2, result.text, positives):
            right += 1
            nonverbatim_right += " ".join(pair.q2.split()) != " ".join(result.text.split())
    nonverbatim_dups = sum(1 for p in pairs if p.duplicate and " ".join(p.q1.split()) != " ".join(p.q2.split()))
    return {"instances": k, "shared": shared, "hits": hits, "wrong": hits - right,
            "fhr": (hits - right) / hits if hits else 0.0,
            "nonverbatim_recall": nonverbatim_right / nonverbatim_dups, "seconds": time.perf_counter() - t0}


async def transport(n: int = 200) -> dict[str, float]:
    """Store on one instance, time until the entry is held by another, through a real Redis on loopback."""
    main = HashingLike()
    with redis_server() as srv:
        group = []
        for _ in range(2):
            local = SemanticCache(WallClock(), main, PairVerifier.cosine_only(0.9), ttl_s=3600)
            group.append(SharedSemanticCache(local, RedisEntryFeed.from_url(srv.url, prefix="bench"), SCOPE))
        warm = request(-1, "warm up the reader")
        await group[1].lookup(warm, NONE, [CAND])
        await group[1].release(warm)
        times = []
        for i in range(n):
            req = request(i, f"Question number {i} about topic {i * 7919 % 997}?")
            before = group[1].local.entry_count()
            t0 = time.perf_counter()
            await group[0].store(req, NONE, ModelResult(candidate=CAND, text="answer"))
            while group[1].local.entry_count() == before:
                await asyncio.sleep(0.0002)
            times.append((time.perf_counter() - t0) * 1000)
        for cache in group:
            await cache.aclose()
    times.sort()
    return {"entries": n, "median_ms": statistics.median(times), "p99_ms": times[int(0.99 * (n - 1))]}


class HashingLike:
    """384-dimension vectors without a model (the transport does not depend on them)."""

    dim = 384

    def embed(self, texts: Sequence[str]) -> Vectors:
        from sovrouter.embed import HashingEmbedder

        return HashingEmbedder(384).embed(texts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--vectors", default="/tmp/semcache-vectors")
    args = ap.parse_args()
    labelled = load_labelled(PAIRS)
    half = split(labelled)[1]
    verifier = PairVerifier.load()
    main_emb = Stored(lambda: MiniLMEmbedder(threads=2, batch_size=128), args.vectors)
    alt = Stored(E5Embedder, args.vectors, ALT_EMBEDDER)
    rows = []
    for k, shared in [(1, False)] + [(k, s) for k in args.instances for s in (False, True)]:
        row = asyncio.run(arm(half, k, shared, main_emb, alt, verifier))
        rows.append(row)
        print(f"{k} instance(s), {'shared' if shared else 'own index'}: {row['hits']} hits, {row['wrong']} wrong "
              f"(FHR {100 * row['fhr']:.2f}%), non-verbatim recall {100 * row['nonverbatim_recall']:.2f}% "
              f"({row['seconds']:.0f} s)", flush=True)
    feed = asyncio.run(transport())
    print(f"through Redis on loopback: entry searchable on the other instance after {feed['median_ms']:.2f} ms "
          f"(median), {feed['p99_ms']:.2f} ms (p99)")
    OUT.write_text(json.dumps({"pairs": len(half), "machine": f"{platform.machine()}, {platform.python_version()}",
                               "arms": rows, "redis_transport": feed}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
