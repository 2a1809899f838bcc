"""Batching (issue 5, item 3): the batch path against one-by-one serving.

Part 1 - cost (dev workload, recorded answers, no model): the first ``--cost-requests`` requests of the dev
stream as one batch, through the same pipeline (policy ``--policy``) with the normal router (baseline,
one-by-one) and with ``DeferrableRouter`` in each scope (slot / plan / allowed). Cost per request comes from
catalog prices on the recorded token counts; the offline scores of the served answers (evaluation only, never
read by the system) show what each scope costs in quality; every served candidate is checked against the
request's allowed set.

Part 2 - throughput on real SmolLM2-135M-Instruct (CPU, llama.cpp, 1 thread per engine): short dev prompts
sent to the local model (``model: local-small``) as
  - one-by-one: the gateway's local path, pipeline -> HTTP adapter -> ``llama_cpp.server``, one request at a time;
  - batch/server: the batch runner with ``--concurrency`` lines in flight to that same server;
  - batch/coalesced: the batch runner -> ``CoalescingLlamaAdapter`` (continuous batching, ``--slots`` slots),
    at concurrency 4 and ``--slots``.
Arms run in rotating order in each of ``--rounds`` rounds; reported: medians over rounds of req/s and
output tokens/s and of output tokens per CPU-second (engine + this process: robust to a box shared with other
jobs, where wall-clock rates swing 2x between rounds), p50/p99 of per-request latency (pooled),
cost per request. Writes bench/results/batching.json.

    python bench/batching.py [--rounds 3] [--requests 8] [--max-tokens 48]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from sovrouter.adapters.openai_http import OpenAIHTTPAdapter
from sovrouter.batch.coalesce import CoalescingLlamaAdapter
from sovrouter.batch.fileio import ParsedLine
from sovrouter.batch.runner import BatchRunner, BatchSummary, deferrable
from sovrouter.build import assemble
from sovrouter.clock import SimClock, WallClock
from sovrouter.config import CacheSettings, Settings
from sovrouter.contracts import Candidate
from sovrouter.local_model import LlamaCppServer, find_smollm2_gguf
from sovrouter.pipeline import Pipeline
from sovrouter.protocols import ModelAdapter
from sovrouter.replay.harness import replay_adapters
from sovrouter.testing import MemorySink
from sovrouter.workload import load_replay_inputs, load_scores

ROOT = Path(__file__).resolve().parents[1]
WORKLOAD = Path("/work/shared/data/workload")
OUT = ROOT / "bench" / "results" / "batching.json"
LOCAL = Candidate(slot="local-small", deployment="edge")


def _cpu_s(pid: int | None) -> float:
    """CPU seconds used so far by this process plus the server process ``pid`` (robust to a shared box)."""
    total = time.process_time()
    if pid is not None:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


# ---------------------------------------------------------------------------------------------- part 1: cost
async def cost_part(n: int, policy: str) -> dict[str, Any]:
    inputs = load_replay_inputs(WORKLOAD)
    scores = load_scores(inputs.paths)
    settings = Settings(catalog=inputs.paths.catalog, tenants=inputs.paths.tenants, policy=policy,  # type: ignore[arg-type]
                        cache=CacheSettings(exact_enabled=False))
    events = inputs.stream[:n]
    out: dict[str, Any] = {}
    for arm in ("normal", "slot", "plan", "allowed"):
        sink = MemorySink()
        base = assemble(settings, inputs.catalog, inputs.tenants, replay_adapters(inputs), SimClock(), sink)
        pipeline = base if arm == "normal" else deferrable(base, scope=arm)  # type: ignore[arg-type]
        by_tenant: dict[tuple[str, str], list[ParsedLine]] = {}
        for e in events:
            w = inputs.requests[e.request_id]
            by_tenant.setdefault((w.tenant, w.data_class), []).append(
                ParsedLine(line_no=e.seq, custom_id=w.id, body=w.chat_body()))
        for (tenant, data_class), lines in by_tenant.items():
            runner = BatchRunner(pipeline, tenant=tenant, data_class=data_class,  # type: ignore[arg-type]
                                 concurrency=1 if arm == "normal" else 16, batch_id=f"{arm}-{tenant}-{data_class}")
            await runner.run(lines)
        ok = [r for r in sink.records if r.status == "ok" and r.final is not None]
        violations = sum(1 for r in ok if not any(v.allowed and v.candidate == r.final for v in r.policy))
        quality = [scores[(r.external_id, r.final.slot)] for r in ok
                   if r.final is not None and (r.external_id, r.final.slot) in scores]
        routes: dict[str, int] = {}
        for r in ok:
            assert r.final is not None
            routes[r.final.key] = routes.get(r.final.key, 0) + 1
        out[arm] = {"requests": len(sink.records), "ok": len(ok), "refused": sum(r.status == "refused"
                                                                               for r in sink.records),
                    "cost_per_request_usd": sum(r.cost_usd for r in ok) / max(1, len(ok)),
                    "mean_score": statistics.fmean(quality) if quality else None,
                    "allowed_set_violations": violations, "routes": dict(sorted(routes.items()))}
        print(f"cost/{arm:8s} ${out[arm]['cost_per_request_usd']:.6f}/req  score {out[arm]['mean_score']:.3f}  "
              f"violations {violations}  ok {len(ok)}", flush=True)
    normal = out["normal"]["cost_per_request_usd"]
    for arm in ("slot", "plan", "allowed"):
        out[arm]["cost_vs_normal"] = out[arm]["cost_per_request_usd"] / normal if normal else None
    return out


# ---------------------------------------------------------------------------------------------- part 2: throughput
def _short_prompts(n: int, max_tokens: int) -> list[ParsedLine]:
    inputs = load_replay_inputs(WORKLOAD)
    lines: list[ParsedLine] = []
    for e in inputs.stream:
        w = inputs.requests[e.request_id]
        body = w.chat_body()
        text = " ".join(str(m.get("content")) for m in body["messages"])
        if w.data_class != "public" or not 80 <= len(text) <= 700:
            continue
        body.update({"model": "local-small", "max_tokens": max_tokens, "temperature": 0})
        lines.append(ParsedLine(line_no=len(lines) + 1, custom_id=w.id, body=body))
        if len(lines) == n:
            break
    return lines


def _local_pipeline(adapter: ModelAdapter) -> Pipeline:
    inputs_paths = load_replay_inputs(WORKLOAD).paths
    from sovrouter.catalog import Catalog, Tenants

    settings = Settings(catalog=inputs_paths.catalog, tenants=inputs_paths.tenants,
                        cache=CacheSettings(exact_enabled=False))
    settings.reliability.timeout_s = 600.0
    settings.reliability.first_token_timeout_s = 600.0
    return assemble(settings, Catalog.load(inputs_paths.catalog), Tenants.load(inputs_paths.tenants),
                    {LOCAL: adapter}, WallClock(), MemorySink())


async def throughput_part(args: argparse.Namespace) -> dict[str, Any]:
    lines = _short_prompts(args.requests, args.max_tokens)
    tenant = "research-open"
    model = find_smollm2_gguf()
    results: dict[str, list[BatchSummary]] = {}
    cpu: dict[str, list[float]] = {}
    with LlamaCppServer(model, alias="local-small", n_threads=1) as server:
        async with httpx.AsyncClient(timeout=httpx.Timeout(None, connect=5.0)) as client:
            http = OpenAIHTTPAdapter(LOCAL, [server.base_url], model="local-small", client=client)
            coalescer = CoalescingLlamaAdapter(LOCAL, model, slots=args.slots, n_threads=1)
            try:
                normal_http = _local_pipeline(http)
                batch_http = deferrable(_local_pipeline(http))
                batch_coal = deferrable(_local_pipeline(coalescer))
                arms: dict[str, tuple[Pipeline, int]] = {
                    "one-by-one/server": (normal_http, 1),
                    f"batch/server c={args.concurrency}": (batch_http, args.concurrency),
                    "batch/coalesced c=4": (batch_coal, 4),
                    f"batch/coalesced c={args.slots}": (batch_coal, args.slots),
                }
                names = list(arms)
                # warm-up (model pages, first-call costs), not measured
                for name in names:
                    p, c = arms[name]
                    await BatchRunner(p, tenant=tenant, concurrency=c).run(lines[:2])
                for rnd in range(args.rounds):
                    order = names[rnd % len(names):] + names[: rnd % len(names)]
                    for name in order:
                        p, c = arms[name]
                        cpu0 = _cpu_s(server.pid)
                        _, s = await BatchRunner(p, tenant=tenant, concurrency=c, batch_id=f"r{rnd}").run(lines)
                        cpu.setdefault(name, []).append(_cpu_s(server.pid) - cpu0)
                        results.setdefault(name, []).append(s)
                        print(f"round {rnd} {name:22s} {s.lines / s.wall_s:.2f} req/s "
                              f"{s.output_tokens / s.wall_s:.1f} tok/s  "
                              f"{s.output_tokens / cpu[name][-1]:.1f} tok/CPU-s  ok {s.ok}/{s.lines}", flush=True)
            finally:
                coalescer.close()
    out: dict[str, Any] = {}
    for name, runs in results.items():
        lat = [x for s in runs for x in s.latencies_ms]
        out[name] = {
            "req_per_s_median": statistics.median(s.lines / s.wall_s for s in runs),
            "tokens_per_s_median": statistics.median(s.output_tokens / s.wall_s for s in runs),
            "tokens_per_cpu_s_median": statistics.median(s.output_tokens / c for s, c in zip(runs, cpu[name],
                                                                                          strict=True)),
            "p50_latency_ms": _pct(lat, 0.5), "p99_latency_ms": _pct(lat, 0.99),
            "cost_per_request_usd": statistics.median(s.cost_usd / max(1, s.ok) for s in runs),
            "ok": sum(s.ok for s in runs), "requests": sum(s.lines for s in runs),
            "per_round_tokens_per_s": [s.output_tokens / s.wall_s for s in runs],
        }
    base = out["one-by-one/server"]["tokens_per_s_median"]
    base_cpu = out["one-by-one/server"]["tokens_per_cpu_s_median"]
    for v in out.values():
        v["throughput_vs_one_by_one"] = v["tokens_per_s_median"] / base if base else None
        v["cpu_efficiency_vs_one_by_one"] = v["tokens_per_cpu_s_median"] / base_cpu if base_cpu else None
    return out


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    cost = await cost_part(args.cost_requests, args.policy) if args.cost_requests > 0 else None
    started = time.perf_counter()
    throughput = await throughput_part(args) if args.rounds > 0 else None
    return {
        "bench": "batching",
        "command": f"python bench/batching.py --rounds {args.rounds} --requests {args.requests} --max-tokens "
                   f"{args.max_tokens} --concurrency {args.concurrency} --slots {args.slots} "
                   f"--cost-requests {args.cost_requests} --policy {args.policy}",
        "machine": f"{platform.machine()} CPU, 2 cores shared with other jobs; 1 llama.cpp thread per engine",
        "cost": cost,
        "throughput": throughput,
        "throughput_wall_s": time.perf_counter() - started,
        "anchor": "OpenAI Batch API: 50% price discount for 24 h turnaround; continuous batching (Orca, vLLM) "
                  "raises GPU serving throughput several-fold; on CPU, llama.cpp's own server with --parallel "
                  "slots shares each decode step across sequences",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--slots", type=int, default=8)
    ap.add_argument("--cost-requests", type=int, default=3000)
    ap.add_argument("--policy", default="cedar", choices=("availability", "cedar"))
    args = ap.parse_args()
    result = asyncio.run(_main(args))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items()}, indent=1))


if __name__ == "__main__":
    main()
