"""Several instances over one real PostgreSQL batch store: any instance answers for any file or batch, each
line runs once, a cancel on any instance ends the batch, a dead instance's batch is taken over and resumed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from batch_helpers import CHAT, batch_file, make_pipeline

from sovrouter.batch.objects import CreateBatch
from sovrouter.batch.service import BatchService
from sovrouter.batch.store import BatchStore, store_url
from sovrouter.catalog import Catalog, Tenants
from sovrouter.errors import NotFoundError
from sovrouter.testing import FakeAdapter
from sovrouter.testing_postgres import PostgresServer

Factory = Callable[..., tuple[BatchService, list[FakeAdapter]]]


@pytest.fixture
async def instances(pg_srv: PostgresServer, tmp_path: Path, catalog: Catalog,
                    tenants: Tenants) -> AsyncIterator[Factory]:
    """Make started instances over one fresh database, each with its own fake upstreams (calls counted per
    instance); all are closed at the end."""
    url = store_url(pg_srv.new_database(), tmp_path)
    made: list[BatchService] = []

    def make(delay_s: float = 0.02, **kwargs: float) -> tuple[BatchService, list[FakeAdapter]]:
        pipeline, adapters = make_pipeline(catalog, tenants, delay_s=delay_s)
        service = BatchService(BatchStore(url), pipeline, concurrency=2, poll_s=0.1, **kwargs)  # type: ignore[arg-type]
        made.append(service)
        return service, adapters

    yield make
    for service in made:
        if not service._closing:
            await service.aclose()


async def _start(*services: BatchService) -> None:
    for s in services:
        await s.start()


async def _until(service: BatchService, batch_id: str, states: tuple[str, ...], timeout_s: float = 20.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if service.get("acme-us", batch_id).status in states:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"batch did not reach {states}: {service.get('acme-us', batch_id).status}")


def _calls(adapters: list[FakeAdapter]) -> int:
    return sum(a.calls for a in adapters)


def _custom_ids(service: BatchService, file_id: str | None) -> list[str]:
    assert file_id is not None
    return [json.loads(x)["custom_id"] for x in service.content("acme-us", file_id).decode().splitlines()]


async def test_an_upload_on_one_instance_is_a_batch_on_another_and_runs_once(instances: Factory) -> None:
    (a, calls_a), (b, calls_b) = instances(), instances()
    await _start(a, b)
    f = a.upload("acme-us", "in.jsonl", "batch", batch_file(12))
    assert b.file("acme-us", f.id) == f and b.content("acme-us", f.id) == batch_file(12)
    batch = b.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT))
    await _until(a, batch.id, ("completed",))
    done = a.get("acme-us", batch.id)
    assert (done.request_counts.total, done.request_counts.completed) == (12, 12)
    assert _custom_ids(a, done.output_file_id) == [f"r{i}" for i in range(12)]
    assert _calls(calls_a) + _calls(calls_b) == 12  # each line answered by exactly one instance, once
    assert [x.id for x in a.list_batches("acme-us")[0]] == [batch.id] == [x.id for x in b.list_batches("acme-us")[0]]
    for call in (lambda: a.get("eurobank", batch.id), lambda: b.file("eurobank", f.id),
                 lambda: b.cancel("eurobank", batch.id)):
        with pytest.raises(NotFoundError):  # tenancy holds on every instance
            call()


async def test_instances_share_the_queue(instances: Factory) -> None:
    (a, calls_a), (b, calls_b) = instances(), instances()
    await _start(a, b)
    f = a.upload("acme-us", "in.jsonl", "batch", batch_file(30))
    ids = [a.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT)).id for _ in range(4)]
    for batch_id in ids:
        await _until(b, batch_id, ("completed",))
    assert _calls(calls_a) + _calls(calls_b) == 120
    assert _calls(calls_a) > 0 and _calls(calls_b) > 0  # B took batches A had queued but not started


async def test_a_cancel_on_another_instance_stops_the_owner(instances: Factory) -> None:
    (a, calls_a), (b, _) = instances(delay_s=0.05, lease_s=0.6), instances(lease_s=0.6)
    await a.start()  # only A runs batches
    f = a.upload("acme-us", "in.jsonl", "batch", batch_file(60))
    batch = a.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT))
    while _calls(calls_a) < 6:
        await asyncio.sleep(0.01)
    assert b.cancel("acme-us", batch.id).status == "cancelling"  # A holds it: A ends it at its next renewal
    await _until(b, batch.id, ("cancelled",), timeout_s=5)
    done = b.get("acme-us", batch.id)
    assert 0 < done.request_counts.completed < 60 and _calls(calls_a) < 60
    assert len(_custom_ids(b, done.output_file_id)) == done.request_counts.completed


async def test_a_queued_batch_cancelled_anywhere_ends_at_once(instances: Factory) -> None:
    (a, _), (b, _) = instances(), instances()  # neither started: the batch stays queued
    f = a.upload("acme-us", "in.jsonl", "batch", batch_file(3))
    batch = a.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT))
    done = b.cancel("acme-us", batch.id)
    assert done.status == "cancelled" and done.request_counts.completed == 0
    assert a.cancel("acme-us", batch.id).status == "cancelled"  # a second cancel changes nothing


async def test_a_dead_instances_batch_is_taken_over_and_resumed(instances: Factory) -> None:
    (a, _), (b, calls_b) = instances(delay_s=0.03, lease_s=1.0), instances(delay_s=0.03, lease_s=1.0)
    await a.start()
    f = a.upload("acme-us", "in.jsonl", "batch", batch_file(40))
    batch = a.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT))
    while len(a.store.results(batch.id)) < 5:
        await asyncio.sleep(0.01)
    # A dies: its tasks stop, nothing is finished or handed back, its lease stays until it lapses
    a._closing = True
    tasks = [t for t in (a._worker, *a._running.values()) if t is not None]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    answered = len(b.store.results(batch.id))
    assert b.store.owner(batch.id) == a.instance
    await b.start()
    await _until(b, batch.id, ("completed",))
    done = b.get("acme-us", batch.id)
    assert (done.request_counts.completed, done.request_counts.failed) == (40, 0)
    assert _custom_ids(b, done.output_file_id) == [f"r{i}" for i in range(40)]  # every line once, in order
    assert _calls(calls_b) <= 40 - answered + 2  # B answered only what A had not (plus what A had in flight)
    a.store.close()


async def test_an_instance_that_lost_its_lease_stops_without_closing_the_batch(instances: Factory) -> None:
    (a, calls_a), _ = instances(delay_s=0.03), instances()
    await a.start()
    f = a.upload("acme-us", "in.jsonl", "batch", batch_file(200))
    batch = a.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT))
    while len(a.store.results(batch.id)) < 3:
        await asyncio.sleep(0.01)
    # A stalled long enough for its lease to lapse and another instance ("gw-x") to take the batch
    a.store.release(batch.id, a.instance)
    assert a.store.claim(batch.id, "gw-x", now=a.now(), lease_s=300)
    for _ in range(200):
        if not a._running:
            break
        await asyncio.sleep(0.01)
    assert not a._running  # A noticed at its next stored line and stopped
    stopped_at, kept = _calls(calls_a), len(a.store.results(batch.id))
    await asyncio.sleep(0.3)
    assert _calls(calls_a) == stopped_at and len(a.store.results(batch.id)) == kept < 200  # nothing more sent
    assert a.get("acme-us", batch.id).status == "in_progress" and a.store.owner(batch.id) == "gw-x"  # not closed


@pytest.mark.slow
@pytest.mark.parametrize("seed", [7, 11, 23])
async def test_kills_restarts_and_cancels_never_lose_or_repeat_a_line(instances: Factory, seed: int) -> None:
    """Three instances, six batches, instances killed and restarted and batches cancelled at random (seeded):
    every batch ends closed, every line of a completed batch is in its output once and in order, a cancelled
    batch's files agree with its counts, and no answered-line row is left behind."""
    import random

    rng = random.Random(seed)
    live = [instances(delay_s=0.01, lease_s=1.0)[0] for _ in range(3)]
    await _start(*live)
    f = live[0].upload("acme-us", "in.jsonl", "batch", batch_file(25))
    ids = [live[i % 3].create("acme-us", CreateBatch(input_file_id=f.id, **CHAT)).id for i in range(6)]
    cancelled: set[str] = set()
    kills = 0
    for _ in range(12):
        await asyncio.sleep(rng.uniform(0.1, 0.4))
        move = rng.random()
        victim = rng.randrange(len(live))
        if move < 0.5 and len(live) > 1:  # kill one (no shutdown) and start a fresh one in its place
            dead = live.pop(victim)
            dead._closing = True
            tasks = [t for t in (dead._worker, *dead._running.values()) if t is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            dead.store.close()
            kills += 1
            fresh = instances(delay_s=0.01, lease_s=1.0)[0]
            await fresh.start()
            live.append(fresh)
        elif move < 0.7:
            target = rng.choice(ids)
            live[victim].cancel("acme-us", target)
            cancelled.add(target)
    for batch_id in ids:
        await _until(live[0], batch_id, ("completed", "cancelled"), timeout_s=60)
    for batch_id in ids:
        done = live[0].get("acme-us", batch_id)
        counts = done.request_counts
        assert live[0].store.results(batch_id) == []  # nothing left behind
        if done.status == "completed":
            assert (counts.completed, counts.failed) == (25, 0)
            assert _custom_ids(live[0], done.output_file_id) == [f"r{i}" for i in range(25)]
        else:
            assert batch_id in cancelled
            kept = _custom_ids(live[0], done.output_file_id) if done.output_file_id else []
            assert len(kept) == len(set(kept)) == counts.completed and counts.failed == 0
    assert kills > 0


async def test_an_instance_that_does_not_know_a_new_key_leaves_its_batch_to_one_that_does(
        instances: Factory) -> None:
    """A key added to the file reaches instances one by one (a mounted Secret syncs per pod): the instance that
    has not read it yet must not fail the batch for good as revoked; the one that knows the key runs it."""
    new, old = "a" * 64, "b" * 64
    stale, stale_calls = instances(keys=lambda: {old}, key_grace_s=60)  # type: ignore[arg-type]
    fresh, fresh_calls = instances(keys=lambda: {old, new})  # type: ignore[arg-type]
    await _start(stale)
    f = stale.upload("acme-us", "in.jsonl", "batch", batch_file(4))
    batch = stale.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT), key_sha256=new)
    await asyncio.sleep(0.3)  # the stale instance took it and left it
    assert stale.get("acme-us", batch.id).status == "in_progress" and _calls(stale_calls) == 0
    await _start(fresh)
    await _until(fresh, batch.id, ("completed", "failed"))
    assert fresh.get("acme-us", batch.id).status == "completed"
    assert _calls(fresh_calls) == 4 and _calls(stale_calls) == 0
