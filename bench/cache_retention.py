"""What retention costs and saves: expiry purges and entry bounds of the exact (SQLite) and semantic caches.

    python bench/cache_retention.py [--stores 30000] [--rounds 3]

A stream of distinct Quora questions (dev cache pairs) arrives one every 100 ms of simulated time, each stored
after a lookup (a miss: the texts are distinct), for ``--stores`` requests (50 minutes at 30,000), with a
TTL of 30 minutes.
Three settings per cache, the first being the behaviour before retention existed (rows kept forever):

- ``keep-all``: no bound, no purge (the baseline);
- ``default``: the shipped settings (purge every 60 s; bounds 500,000 exact rows / 100,000 semantic entries,
  which this stream never reaches: expiry alone decides, so ~18,000 entries are held at the end);
- ``bound-10k``: purge every 60 s and at most 10,000 entries;
- ``default+persist`` (semantic cache): the default, entries also written through to SQLite
  (``cache.semantic_persist``, on in the gateway).

Per setting: entries held at the end, the time of one lookup + store (median, p99, max, in ms: the purge and the
eviction batches land in the max), and memory: the semantic cache's traced Python allocations at the end (one
extra, untimed run under ``tracemalloc``) and the SQLite file's size. The semantic cache uses 384-dimension
hashing vectors (the size of MiniLM's, without the model's cost, which does not depend on retention) and the
cosine-only verifier (floor 0.95, so few candidates reach the features). Medians over rounds; written to
``bench/results/cache_retention.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import platform
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from sovrouter.cache.eligibility import text_ineligible_reason
from sovrouter.cache.exact import ExactCache
from sovrouter.cache.semantic import SemanticCache
from sovrouter.cache.semantic_store import SQLiteEntryStore
from sovrouter.cache.verifier import PairVerifier
from sovrouter.clock import SimClock
from sovrouter.contracts import Candidate, ContentPart, Detection, Message, ModelResult, NormalizedRequest
from sovrouter.embed import HashingEmbedder
from sovrouter.protocols import ResponseCache

OUT = Path(__file__).parent / "results" / "cache_retention.json"
PAIRS = Path("/work/shared/data/cache/qqp_dev.jsonl.gz")
A = Candidate(slot="frontier", deployment="us")
NONE = Detection()
GAP_MS = 100.0
TTL_S = 1800.0
SETTINGS: dict[str, dict[str, Any]] = {
    "keep-all": {"max_entries": None, "purge_every_s": 1e12},
    "default": {"purge_every_s": 60.0},  # bounds filled in per cache below
    "bound-10k": {"max_entries": 10_000, "purge_every_s": 60.0},
    "default+persist": {"purge_every_s": 60.0, "persist": True},  # semantic only: written through to SQLite
}
DEFAULT_BOUND = {"exact": 500_000, "semantic": 100_000}


def questions(n: int) -> list[str]:
    seen: dict[str, None] = {}
    with gzip.open(PAIRS, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            for text in (row["q1"], row["q2"]):
                if text_ineligible_reason(text) is None:
                    seen.setdefault(" ".join(text.split()), None)
            if len(seen) >= n:
                break
    return list(seen)[:n]


def request(i: int, text: str) -> NormalizedRequest:
    return NormalizedRequest(request_id=f"r{i}", tenant="acme",
                             messages=(Message(role="user", parts=(ContentPart(modality="text", text=text),)),))


def make(kind: str, setting: str, clock: SimClock, path: Path) -> ResponseCache:
    kw = dict(SETTINGS[setting])
    kw.setdefault("max_entries", DEFAULT_BOUND[kind])
    persist = kw.pop("persist", False)
    if kind == "exact":
        return ExactCache(clock, path, ttl_s=TTL_S, **kw)
    store = SQLiteEntryStore(path.with_name("semantic.sqlite"), "hashing", 384) if persist else None
    return SemanticCache(clock, HashingEmbedder(384), PairVerifier.cosine_only(0.95, cos_floor=0.95), ttl_s=TTL_S,
                         store=store, **kw)


async def run(kind: str, setting: str, texts: list[str], trace_memory: bool) -> dict[str, Any]:
    clock = SimClock()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cache.sqlite"
        if trace_memory:
            tracemalloc.start()
        cache = make(kind, setting, clock, path)
        times: list[float] = []
        for i, text in enumerate(texts):
            clock.set(i * GAP_MS)
            req = request(i, text)
            t0 = time.perf_counter()
            await cache.lookup(req, NONE, [A])
            await cache.store(req, NONE, ModelResult(candidate=A, text=f"an answer of about this length, {i}"))
            await cache.release(req)
            times.append((time.perf_counter() - t0) * 1000)
        held = cache.entry_count()  # type: ignore[attr-defined]
        out: dict[str, Any] = {"held": held}
        if trace_memory:
            out["traced_mb"] = tracemalloc.get_traced_memory()[0] / 2**20
            tracemalloc.stop()
        else:
            times.sort()
            out |= {"median_ms": statistics.median(times), "p99_ms": times[int(0.99 * (len(times) - 1))],
                    "max_ms": times[-1], "total_s": sum(times) / 1000}
        if isinstance(cache, ExactCache):
            cache.close()
        files = list(Path(tmp).iterdir())
        if files:
            out["file_mb"] = sum(p.stat().st_size for p in files) / 2**20
        return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stores", type=int, default=30_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", nargs="+", help="rows to (re)run, e.g. semantic/default+persist; the others are kept "
                                              "from the results file")
    args = ap.parse_args()
    texts = questions(args.stores)
    results: dict[str, Any] = {"stores": len(texts), "gap_ms": GAP_MS, "ttl_s": TTL_S, "rounds": args.rounds,
                               "machine": f"{platform.machine()}, {platform.python_version()}", "caches": {}}
    if args.only and OUT.is_file():
        results["caches"] = json.loads(OUT.read_text(encoding="utf-8"))["caches"]
    for kind in ("exact", "semantic"):
        for setting in SETTINGS:
            if (kind == "exact" and "persist" in SETTINGS[setting]) or (args.only and f"{kind}/{setting}" not in
                                                                         args.only):
                continue
            rounds = [asyncio.run(run(kind, setting, texts, False)) for _ in range(args.rounds)]
            row = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
            if kind == "semantic":
                row["traced_mb"] = asyncio.run(run(kind, setting, texts, True))["traced_mb"]
            results["caches"][f"{kind}/{setting}"] = row
            print(f"{kind:9s} {setting:10s} " + "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                                      for k, v in row.items()), flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
