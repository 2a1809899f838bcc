"""Several gateway instances: a cache per instance vs the exact cache shared in Redis (`cache.shared`).

    python bench/shared_cache.py [--workload /work/shared/data/workload] [--instances 1 2 4] [--rounds 5]

Needs Debian's ``redis-server`` (started here on a free loopback port). Three parts, written to
bench/results/shared_cache.json:

1. **Dev workload.** The arrival stream replayed through k pipelines (the shipped settings: Cedar policy, PII
   detector, learned router, recorded answers), events dealt round robin as a load balancer would, with
   (a) each instance's own SQLite cache and (b) the shared Redis cache for the tenants whose written policy lets
   requests without personal data be processed anywhere (every tenant but ministry-airgap; personal data and
   classes above ``internal`` stay local by the scope rule). Upstream calls, exact hits and cost (catalog
   prices), against one instance.
2. **Burst.** 8 identical requests at once on each of k instances (a popular question), upstream 200 ms: calls.
3. **Lookup latency** (median of rounds): SQLite (in memory, as each instance's own) vs Redis on loopback, hit
   and miss, one lookup at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from sovrouter.build import assemble
from sovrouter.cache.exact import ExactCache
from sovrouter.cache.redis_exact import RedisExactCache
from sovrouter.catalog import Catalog, Tenants
from sovrouter.clock import SimClock, WallClock
from sovrouter.config import Settings, SharedCacheSettings
from sovrouter.contracts import Candidate, ContentPart, Detection, Message, ModelResult, NormalizedRequest
from sovrouter.intake import normalize_chat
from sovrouter.replay.harness import replay_adapters, replay_settings
from sovrouter.testing import FakeAdapter, MemorySink
from sovrouter.testing_redis import redis_server
from sovrouter.workload import ReplayInputs, load_replay_inputs

OUT = Path(__file__).parent / "results" / "shared_cache.json"
DEMO = Path(__file__).resolve().parents[1] / "src" / "sovrouter" / "data" / "demo"
SHAREABLE = ["acme-us", "eurobank", "clinic-ca", "research-open"]  # not ministry-airgap (on premises only)


async def workload_run(inputs: ReplayInputs, settings: Settings, k: int) -> dict[str, Any]:
    clock = SimClock()
    sink = MemorySink()
    pipes = [assemble(settings, inputs.catalog, inputs.tenants, replay_adapters(inputs), clock, sink)
             for _ in range(k)]
    t0 = time.perf_counter()
    for i, event in enumerate(inputs.stream):
        wreq = inputs.requests[event.request_id]
        clock.set(event.t_ms)
        request = normalize_chat(wreq.chat_body(), tenant=wreq.tenant, request_id=f"{wreq.id}#{event.seq}",
                                 data_class=wreq.data_class, arrived_ms=event.t_ms, external_id=wreq.id,
                                 recorded=True)
        await pipes[i % k].handle(request)
    for p in pipes:
        shared = getattr(p.cache, "shared", None)
        if isinstance(shared, RedisExactCache):
            await shared.aclose()
    recs = sink.records
    return {"instances": k, "events": len(recs), "wall_s": round(time.perf_counter() - t0, 1),
            "upstream_calls": sum(len(r.calls) for r in recs),
            "exact_hits": sum(r.cache.kind == "exact" for r in recs),
            "cost_usd": round(sum(r.cost_usd for r in recs), 4),
            "errors_or_refusals": sum(r.status != "ok" for r in recs)}


async def burst_run(url: str | None, k: int, prefix: str) -> int:
    catalog, tenants = Catalog.load(DEMO / "models.json"), Tenants.load(DEMO / "tenants.json")
    shared = None if url is None else SharedCacheSettings(url=url, tenants=["acme-us"], key_prefix=prefix)
    settings = Settings(catalog=DEMO / "models.json", tenants=DEMO / "tenants.json", router="baseline",
                        detector="none", policy="availability", cache={"shared": shared})  # type: ignore[arg-type]
    fakes = []
    for _ in range(k):
        f = {Candidate(slot=s.id, deployment=d.id): FakeAdapter(Candidate(slot=s.id, deployment=d.id), delay_s=0.2)
             for s, d in catalog.pairs()}
        fakes.append(f)
    pipes = [assemble(settings, catalog, tenants, f, WallClock(), MemorySink()) for f in fakes]
    await asyncio.gather(*[pipes[i % k].handle(normalize_chat(
        {"messages": [{"role": "user", "content": "the popular question"}]}, tenant="acme-us",
        request_id=f"b{i}")) for i in range(8 * k)])
    for p in pipes:
        s = getattr(p.cache, "shared", None)
        if isinstance(s, RedisExactCache):
            await s.aclose()
    return sum(a.calls for f in fakes for a in f.values())


def _req(i: int) -> NormalizedRequest:
    return NormalizedRequest(request_id=f"l{i}", tenant="acme-us", messages=(
        Message(role="user", parts=(ContentPart(modality="text", text=f"question number {i}?"),)),))


async def latency_run(url: str, n: int, prefix: str) -> dict[str, float]:
    a = Candidate(slot="frontier", deployment="us")
    result = ModelResult(candidate=a, text="an answer of a few dozen words " * 8, output_tokens=60)
    none = Detection()
    out: dict[str, float] = {}
    caches: list[tuple[str, Any]] = [("sqlite", ExactCache(SimClock())),
                                     ("redis", RedisExactCache.from_url(SimClock(), url, prefix=prefix))]
    for name, cache in caches:
        miss, hit = [], []
        for i in range(n):
            r = _req(i)
            t = time.perf_counter()
            await cache.lookup(r, none, [a])
            miss.append(time.perf_counter() - t)
            await cache.store(r, none, result)
            await cache.release(r)
        for i in range(n):
            r = _req(i).model_copy(update={"request_id": f"h{i}"})
            t = time.perf_counter()
            await cache.lookup(r, none, [a])
            hit.append(time.perf_counter() - t)
        out[f"{name}_miss_ms"] = statistics.median(miss) * 1000  # miss: lookup + taking the lead
        out[f"{name}_hit_ms"] = statistics.median(hit) * 1000
        if isinstance(cache, RedisExactCache):
            await cache.aclose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workload", default="/work/shared/data/workload")
    ap.add_argument("--instances", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    result: dict[str, Any] = {"machine": f"{platform.machine()}, {platform.python_version()}",
                              "command": "python bench/shared_cache.py"}
    inputs = load_replay_inputs(args.workload)
    base = replay_settings(inputs)
    with redis_server() as srv:
        shared = base.model_copy(update={"cache": base.cache.model_copy(update={"shared": SharedCacheSettings(
            url=srv.url, tenants=SHAREABLE, key_prefix="bench-wl")})})
        rows = []
        for k in args.instances:
            for mode, settings in (("own cache per instance", base), ("shared (Redis)", shared)):
                if k == 1 and mode != "own cache per instance":
                    continue
                if mode.startswith("shared"):  # a fresh shared store per run
                    shared = shared.model_copy(update={"cache": shared.cache.model_copy(update={
                        "shared": shared.cache.shared.model_copy(update={"key_prefix": f"bench-wl{k}"})})})
                    settings = shared
                row = {"mode": mode, **asyncio.run(workload_run(inputs, settings, k))}
                print(json.dumps(row), flush=True)
                rows.append(row)
        result["workload"] = rows
        burst = []
        for k in args.instances:
            row = {"instances": k, "requests": 8 * k, "calls_own": asyncio.run(burst_run(None, k, "")),
                   "calls_shared": asyncio.run(burst_run(srv.url, k, f"bench-burst{k}"))}
            print(json.dumps(row), flush=True)
            burst.append(row)
        result["burst"] = burst
        rounds = [asyncio.run(latency_run(srv.url, 2000, f"bench-lat{r}")) for r in range(args.rounds)]
        result["latency_ms"] = {key: round(statistics.median(r[key] for r in rounds), 4) for key in rounds[0]}
        result["latency_rounds"] = rounds
        print(json.dumps(result["latency_ms"]), flush=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
