"""Tenants share an instance's batch work: one tenant's large batch no longer holds every other tenant's batches
back until it ends (found in review, 2026-11-28: they waited, then expired)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from batch_helpers import CHAT, batch_file, make_pipeline

from sovrouter.batch.gate import FairGate
from sovrouter.batch.objects import CreateBatch
from sovrouter.batch.service import BatchService
from sovrouter.catalog import Catalog, Tenants


async def test_the_gate_serves_waiting_keys_in_turn() -> None:
    gate = FairGate(1)
    order: list[str] = []
    queued = asyncio.Event()

    async def line(key: str, i: int) -> None:
        async with gate.slot(key):
            order.append(f"{key}{i}")
            if i == 0 and key == "a":
                await queued.wait()

    first = asyncio.create_task(line("a", 0))
    await asyncio.sleep(0)  # a0 holds the one slot; then a queues four lines before b queues its two
    tasks = [asyncio.create_task(line("a", i)) for i in range(1, 5)]
    tasks += [asyncio.create_task(line("b", i)) for i in range(2)]
    for _ in range(3):
        await asyncio.sleep(0)
    queued.set()
    await asyncio.gather(first, *tasks)
    assert order == ["a0", "a1", "b0", "a2", "b1", "a3", "a4"]
    assert gate.held == 0


async def test_a_cancelled_waiter_never_holds_a_slot() -> None:
    gate = FairGate(1)
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.slot("a"):
            await release.wait()

    held = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(gate.slot("b").__aenter__())
    await asyncio.sleep(0)
    waiter.cancel()
    release.set()
    await held
    assert gate.held == 0
    async with gate.slot("c"):
        assert gate.held == 1


async def test_a_small_batch_of_another_tenant_finishes_while_a_large_one_runs(
        tmp_path: Path, catalog: Catalog, tenants: Tenants) -> None:
    pipeline, _ = make_pipeline(catalog, tenants, delay_s=0.02)
    service = BatchService(tmp_path, pipeline, concurrency=2)
    await service.start()
    big_file = service.upload("acme-us", "big.jsonl", "batch", batch_file(200))
    big = service.create("acme-us", CreateBatch(input_file_id=big_file.id, **CHAT))
    for _ in range(500):  # the large batch has started
        if service.get("acme-us", big.id).request_counts.completed >= 4:
            break
        await asyncio.sleep(0.01)
    small_file = service.upload("eurobank", "small.jsonl", "batch", batch_file(3))
    small = service.create("eurobank", CreateBatch(input_file_id=small_file.id, **CHAT))
    for _ in range(1000):
        if service.get("eurobank", small.id).status == "completed":
            break
        await asyncio.sleep(0.01)
    assert service.get("eurobank", small.id).status == "completed"
    assert service.get("acme-us", big.id).status == "in_progress"  # the large one goes on meanwhile
    assert service.get("acme-us", big.id).request_counts.completed < 200
    await service.aclose()


async def test_a_tenants_batches_still_run_one_at_a_time_oldest_first(
        tmp_path: Path, catalog: Catalog, tenants: Tenants) -> None:
    pipeline, adapters = make_pipeline(catalog, tenants, delay_s=0.01)
    calls: list[tuple[str, str]] = []  # ("start" | "end", request id) of every upstream call, in order
    for adapter in adapters:
        async def generate(call, inner=adapter.generate):  # type: ignore[no-untyped-def]
            calls.append(("start", call.request.request_id))
            try:
                return await inner(call)
            finally:
                calls.append(("end", call.request.request_id))
        adapter.generate = generate  # type: ignore[method-assign]
    service = BatchService(tmp_path, pipeline, concurrency=2)
    first_file = service.upload("acme-us", "a.jsonl", "batch", batch_file(20))
    second_file = service.upload("acme-us", "b.jsonl", "batch", batch_file(2))
    first = service.create("acme-us", CreateBatch(input_file_id=first_file.id, **CHAT))
    second = service.create("acme-us", CreateBatch(input_file_id=second_file.id, **CHAT))
    await service.start()
    for _ in range(1000):
        if service.get("acme-us", second.id).status == "completed":
            break
        await asyncio.sleep(0.01)
    assert service.get("acme-us", first.id).status == "completed"
    assert service.get("acme-us", second.id).status == "completed"
    # (in_progress_at is stamped by create(), not when the worker starts a batch: it cannot show the order)
    last_of_first = max(i for i, (_, rid) in enumerate(calls) if first.id in rid)
    first_of_second = min(i for i, (_, rid) in enumerate(calls) if second.id in rid)
    assert last_of_first < first_of_second  # the second's first call starts after the first's last call ended
    await service.aclose()
