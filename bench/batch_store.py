"""The batch store: one instance on SQLite vs several instances sharing PostgreSQL (`batches.store`).

    python bench/batch_store.py [--rounds 3] [--batches 8] [--lines 40] [--delay-ms 50]

Needs Debian's PostgreSQL (a throwaway cluster is started here on a free loopback port). Written to
bench/results/batch_store.json:

1. **Throughput.** ``--batches`` batches of ``--lines`` lines created on one instance, upstreams a fake model
   answering in ``--delay-ms`` (4 lines in flight per instance, as the default ``concurrency``); wall time until
   all are completed, for one instance on SQLite (the single-instance default, the baseline), one on PostgreSQL,
   and 2 and 4 instances sharing PostgreSQL (the others take queued batches). Also checks that every line was
   answered exactly once.
2. **Takeover.** One of two instances is killed mid-batch (no clean shutdown): seconds until the other has
   finished the batch, and how many lines were sent upstream twice.
3. **Store operations** (median of single calls): storing one answered line, reading a batch (a poll).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sovrouter.batch.objects import CreateBatch
from sovrouter.batch.service import BatchService
from sovrouter.batch.store import BatchStore, store_url
from sovrouter.build import assemble
from sovrouter.catalog import Catalog, Tenants
from sovrouter.clock import WallClock
from sovrouter.config import CacheSettings, Settings
from sovrouter.contracts import Candidate
from sovrouter.pipeline import Pipeline
from sovrouter.testing import FakeAdapter, MemorySink
from sovrouter.testing_postgres import PostgresServer, postgres_server

OUT = Path(__file__).parent / "results" / "batch_store.json"
DEMO = Path(__file__).resolve().parents[1] / "src" / "sovrouter" / "data" / "demo"
CHAT = {"endpoint": "/v1/chat/completions", "completion_window": "24h"}


def pipeline(delay_s: float) -> tuple[Pipeline, list[FakeAdapter]]:
    catalog, tenants = Catalog.load(DEMO / "models.json"), Tenants.load(DEMO / "tenants.json")
    adapters = {Candidate(slot=s.id, deployment=d.id): FakeAdapter(Candidate(slot=s.id, deployment=d.id),
                                                                     text="answer", delay_s=delay_s)
                for s, d in catalog.pairs()}
    settings = Settings(catalog="x", tenants="y", detector="none", router="baseline",  # type: ignore[arg-type]
                        cache=CacheSettings(exact_enabled=False))
    return assemble(settings, catalog, tenants, adapters, WallClock(), MemorySink()), list(adapters.values())


def batch_file(n: int, tag: str) -> bytes:
    return "".join(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                               "body": {"messages": [{"role": "user", "content": f"{tag} question {i}"}]}}) + "\n"
                   for i in range(n)).encode()


def url_for(kind: str, pg: PostgresServer, folder: Path) -> Any:
    return store_url(None, folder) if kind == "sqlite" else store_url(pg.new_database(), folder)


async def throughput(kind: str, k: int, pg: PostgresServer, batches: int, lines: int, delay_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        url = url_for(kind, pg, Path(folder))
        made = [(BatchService(BatchStore(url), p, concurrency=4, poll_s=0.2), a)
                for p, a in (pipeline(delay_s) for _ in range(k))]
        for service, _ in made:
            await service.start()
        first = made[0][0]
        f = first.upload("acme-us", "in.jsonl", "batch", batch_file(lines, "q"))
        t0 = time.perf_counter()
        ids = [first.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT)).id for _ in range(batches)]
        while any(first.get("acme-us", b).status != "completed" for b in ids):
            await asyncio.sleep(0.02)
        wall = time.perf_counter() - t0
        calls = [sum(x.calls for x in adapters) for _, adapters in made]
        done = sum(first.get("acme-us", b).request_counts.completed for b in ids)
        for service, _ in made:
            await service.aclose()
    return {"store": kind, "instances": k, "wall_s": wall, "lines_per_s": batches * lines / wall,
            "calls_per_instance": calls, "lines_completed": done, "each_line_once": sum(calls) == batches * lines}


async def takeover(pg: PostgresServer, lines: int, delay_s: float, lease_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        url = url_for("postgresql", pg, Path(folder))
        (pa, aa), (pb, ab) = pipeline(delay_s), pipeline(delay_s)
        a = BatchService(BatchStore(url), pa, concurrency=4, lease_s=lease_s, poll_s=0.2)
        b = BatchService(BatchStore(url), pb, concurrency=4, lease_s=lease_s, poll_s=0.2)
        await a.start()
        f = a.upload("acme-us", "in.jsonl", "batch", batch_file(lines, "t"))
        batch_id = a.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT)).id
        while len(a.store.results(batch_id)) < lines // 3:
            await asyncio.sleep(0.01)
        await b.start()
        a._closing = True  # killed: tasks stop, nothing is finished or handed back
        tasks = [t for t in (a._worker, *a._running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        killed = time.perf_counter()
        while b.get("acme-us", batch_id).status != "completed":
            await asyncio.sleep(0.02)
        calls = sum(x.calls for x in aa) + sum(x.calls for x in ab)
        out = b.get("acme-us", batch_id)
        await b.aclose()
        a.store.close()
    return {"lease_s": lease_s, "lines": lines, "finished_after_kill_s": time.perf_counter() - killed,
            "completed": out.request_counts.completed, "sent_twice": calls - lines}


def store_ops(kind: str, pg: PostgresServer, n: int = 300) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        store = BatchStore(url_for(kind, pg, Path(folder)))
        store.add_batch("acme-us", "b1", "in_progress", {"id": "b1", "status": "in_progress"}, 0.0)
        store.claim("b1", "bench", now=0.0, lease_s=1e9)
        line = json.dumps({"id": "x", "response": {"status_code": 200, "body": {"text": "answer " * 40}}})
        add, get = [], []
        for i in range(n):
            t0 = time.perf_counter()
            store.add_result("b1", f"b1_req_{i}", line, "bench")
            t1 = time.perf_counter()
            store.batch("acme-us", "b1")
            get.append(time.perf_counter() - t1)
            add.append(t1 - t0)
        store.close()
    return {"store": kind, "add_result_ms": statistics.median(add) * 1e3, "poll_ms": statistics.median(get) * 1e3}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--lines", type=int, default=40)
    ap.add_argument("--delay-ms", type=float, default=50.0)
    args = ap.parse_args()
    delay = args.delay_ms / 1000
    arms = [("sqlite", 1), ("postgresql", 1), ("postgresql", 2), ("postgresql", 4)]
    with postgres_server() as pg:
        runs: dict[str, list[dict[str, Any]]] = {f"{kind} x{k}": [] for kind, k in arms}
        for r in range(args.rounds):
            for kind, k in arms:  # interleaved, so drift in the machine's load hits every arm alike
                res = await throughput(kind, k, pg, args.batches, args.lines, delay)
                runs[f"{kind} x{k}"].append(res)
                print(f"round {r} {kind} x{k}: {res['wall_s']:.2f} s, {res['lines_per_s']:.0f} lines/s, "
                      f"calls {res['calls_per_instance']}, each line once: {res['each_line_once']}", flush=True)
        summary = {name: {"median_wall_s": statistics.median(x["wall_s"] for x in rs),
                          "median_lines_per_s": statistics.median(x["lines_per_s"] for x in rs),
                          "each_line_once_in_every_round": all(x["each_line_once"] for x in rs)}
                   for name, rs in runs.items()}
        base = summary["sqlite x1"]["median_lines_per_s"]
        for name, s in summary.items():
            s["vs_sqlite_x1"] = s["median_lines_per_s"] / base
            print(f"{name}: median {s['median_wall_s']:.2f} s, {s['median_lines_per_s']:.0f} lines/s "
                  f"({s['vs_sqlite_x1']:.2f}x one SQLite instance)")
        takeovers = [await takeover(pg, 60, delay, lease_s=3.0) for _ in range(args.rounds)]
        for t in takeovers:
            print(f"takeover: finished {t['finished_after_kill_s']:.2f} s after the kill (lease 3 s), "
                  f"{t['completed']}/{t['lines']} completed, {t['sent_twice']} lines sent twice")
        ops = [store_ops("sqlite", pg), store_ops("postgresql", pg)]
        for o in ops:
            print(f"{o['store']}: store a line {o['add_result_ms']:.2f} ms, poll {o['poll_ms']:.2f} ms (median)")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({
        "machine": f"{platform.node()} {platform.machine()} {platform.python_version()}",
        "args": vars(args), "throughput_runs": runs, "throughput": summary, "takeover": takeovers,
        "store_ops": ops}, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    asyncio.run(main())
