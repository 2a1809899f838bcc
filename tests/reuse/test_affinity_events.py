"""Sharing the prefix-affinity model between gateway instances: events, the in-memory bus, the Redis bus (real
redis-server), and two choosers that route one conversation's turns to the same replica whichever instance they
arrive at."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools

import pytest
import redis.asyncio as aioredis

from sovrouter.clock import SimClock
from sovrouter.intake import normalize_chat
from sovrouter.reuse.affinity_events import AffinityEvent, MemoryAffinityBus, RedisAffinityBus
from sovrouter.reuse.prefix import AffinitySettings
from sovrouter.reuse.prefix_chooser import PrefixAffinityChooser
from sovrouter.testing_redis import RedisServer, SwallowingStreamClient
from sovrouter.testing_upstream import closed_port_url

REPLICAS = ["http://r0", "http://r1", "http://r2"]
DOC = " ".join(f"w{i}" for i in range(2000))
_prefixes = itertools.count()


def turn(n: int, rid: str):  # type: ignore[no-untyped-def]
    messages = [{"role": "user", "content": DOC}]
    for k in range(1, n):
        messages += [{"role": "assistant", "content": f"answer {k}"}, {"role": "user", "content": f"more {k}?"}]
    return normalize_chat({"messages": messages}, tenant="acme-us", request_id=rid)


def send(chooser: PrefixAffinityChooser, request, index: int, clock: SimClock, seconds: float) -> None:  # type: ignore[no-untyped-def]
    chooser.observe_start(request, REPLICAS, index)
    clock.set(clock.now_ms() + seconds * 1000)
    chooser.observe_done(request, REPLICAS, index, ok=True, latency_ms=seconds * 1000)


def test_events_round_trip_through_json() -> None:
    e = AffinityEvent("start", "gw-a", 7, "http://r1", 12.5, (1, 2, 2**64 + 3), 900, sizes=(85, 85, 12),
                      answer=(1, 2))
    assert AffinityEvent.from_json(e.to_json()) == e
    older = '{"kind": "start", "origin": "x", "call": 1, "replica": "r", "t": 0, "blocks": [5], "tokens": 9}'
    assert AffinityEvent.from_json(older).sizes == () and AffinityEvent.from_json(older).answer is None
    with pytest.raises(ValueError):
        AffinityEvent.from_json('{"kind": "evict", "origin": "x", "call": 1, "replica": "r", "t": 0}')
    with pytest.raises(ValueError):
        AffinityEvent.from_json(older[:-1] + ', "answer": [3, 1]}')


def test_an_instance_models_the_others_blocks_by_their_sizes_and_without_them() -> None:
    hub = MemoryAffinityBus()
    clock = SimClock(1000.0)
    a = PrefixAffinityChooser(clock, events=hub.view("gw-a"), stream="dep")
    b = PrefixAffinityChooser(clock, events=hub.view("gw-b"), stream="dep")
    request = turn(1, "t1")
    a.observe_start(request, REPLICAS, 2)
    blocks, tokens, shape = b._blocks(request)
    assert b._router.estimate(blocks, tokens, 1.0, REPLICAS, shape)[2].hit_tokens == tokens
    c = PrefixAffinityChooser(clock, stream="dep")  # an event from an older instance: no sizes
    c.apply(AffinityEvent("start", "gw-old", 1, REPLICAS[2], 1.0, tuple(blocks), tokens))
    assert c._router.estimate(blocks, tokens, 1.0, REPLICAS, shape)[2].hit_tokens == tokens


def test_a_follow_up_at_another_instance_goes_where_the_conversation_is() -> None:
    hub = MemoryAffinityBus()
    clock = SimClock(1000.0)
    a = PrefixAffinityChooser(clock, events=hub.view("gw-a"), stream="dep")
    b = PrefixAffinityChooser(clock, events=hub.view("gw-b"), stream="dep")
    alone = PrefixAffinityChooser(clock)  # an instance that shares nothing
    send(a, turn(1, "t1"), 2, clock, 0.5)  # turn 1 went through gateway a to replica 2
    assert b.choose(turn(2, "t2"), REPLICAS) == 2
    assert alone.choose(turn(2, "t2"), REPLICAS) == 0  # without the events it has no idea
    send(b, turn(2, "t2"), 2, clock, 0.5)  # and a sees b's turn too
    assert a.choose(turn(3, "t3"), REPLICAS) == 2
    assert a._router._where == {} and b._router._where == {}  # every call, local or remote, completed


def new_conversation(rid: str):  # type: ignore[no-untyped-def]
    content = " ".join(f"{rid}-{i}" for i in range(2000))
    return normalize_chat({"messages": [{"role": "user", "content": content}]}, tenant="acme-us", request_id=rid)


@pytest.mark.parametrize("band_s", [0.1, 0.0])
def test_instances_sharing_a_model_rank_themselves_and_do_not_herd_onto_one_replica(band_s: float) -> None:
    hub = MemoryAffinityBus()
    clock = SimClock(1000.0)
    settings = dataclasses.replace(AffinitySettings(), instance_band_s=band_s)
    a = PrefixAffinityChooser(clock, settings, events=hub.view("gw-a"), stream="dep", peer_ttl_s=60.0)
    b = PrefixAffinityChooser(clock, settings, events=hub.view("gw-b"), stream="dep", peer_ttl_s=60.0)
    assert a.rank == 0 and b.rank == 0  # heard from nobody yet: each chooses as a lone gateway
    send(a, new_conversation("c1"), 0, clock, 0.5)
    send(b, new_conversation("c2"), 1, clock, 0.5)
    assert (a.rank, b.rank) == (0, 1)  # the order of their ids, the same on both
    # Two new conversations arrive at once, one at each instance, before either hears of the other's send.
    first, second = a.choose(new_conversation("c3"), REPLICAS), b.choose(new_conversation("c4"), REPLICAS)
    if band_s > 0:
        assert first != second
    else:
        assert first == second  # without the band both pick the same idle replica: herding
    clock.set(clock.now_ms() + 61_000)
    assert b.rank == 0  # a has been quiet for longer than peer_ttl_s: b is alone again


def test_the_delay_of_a_start_event_is_how_late_its_completion_is_expected() -> None:
    clock = SimClock(1_000_000.0)  # 1,000 s
    b = PrefixAffinityChooser(clock, stream="dep", max_lag_s=1.0)
    doc = tuple(range(40))
    b.apply(AffinityEvent("start", "gw-a", 1, REPLICAS[0], 999.8, doc, 100))  # heard 0.2 s after it was sent
    b.apply(AffinityEvent("start", "gw-a", 2, REPLICAS[1], 100.0, doc, 100))  # read back from long ago
    b.apply(AffinityEvent("start", "gw-a", 3, REPLICAS[2], 1000.5, doc, 100))  # stamped by a clock ahead of ours
    lags = [b._router._replicas[r].queue[0].lag_s for r in REPLICAS]
    assert lags == [pytest.approx(0.2), 1.0, 0.0]
    off = PrefixAffinityChooser(clock, stream="dep")  # the default: event lag not counted
    off.apply(AffinityEvent("start", "gw-a", 1, REPLICAS[0], 999.8, doc, 100))
    assert off._router._replicas[REPLICAS[0]].queue[0].lag_s == 0.0


def test_a_failed_remote_call_is_forgotten_where_it_failed() -> None:
    hub = MemoryAffinityBus()
    clock = SimClock(1000.0)
    a = PrefixAffinityChooser(clock, events=hub.view("gw-a"), stream="dep")
    b = PrefixAffinityChooser(clock, events=hub.view("gw-b"), stream="dep")
    request, follow_up = turn(1, "t1"), turn(2, "t2")

    def cached_on_r1() -> int:
        blocks, tokens, shape = b._blocks(follow_up)
        return b._router.estimate(blocks, tokens, clock.now_ms() / 1000, REPLICAS, shape)[1].hit_tokens

    a.observe_start(request, REPLICAS, 1)
    assert cached_on_r1() > 0  # b learned that r1 is prefilling the conversation
    a.observe_done(request, REPLICAS, 1, ok=False, latency_ms=1.0)
    assert cached_on_r1() == 0  # the call failed there: b no longer counts on it


async def test_redis_bus_broadcasts_to_the_other_instances_only(redis_srv: RedisServer) -> None:
    prefix = f"ae{next(_prefixes)}"
    bus_a = RedisAffinityBus.from_url(redis_srv.url, prefix=prefix, instance="gw-a", block_ms=50)
    bus_b = RedisAffinityBus.from_url(redis_srv.url, prefix=prefix, instance="gw-b", block_ms=50)
    clock = SimClock(1000.0)
    try:
        a = PrefixAffinityChooser(clock, events=bus_a, stream="sovereign-large/eu-sov")
        b = PrefixAffinityChooser(clock, events=bus_b, stream="sovereign-large/eu-sov")
        await asyncio.sleep(0.2)  # both readers have joined
        send(a, turn(1, "t1"), 2, clock, 0.5)
        for _ in range(100):
            if bus_b.stats["applied"] >= 2:
                break
            await asyncio.sleep(0.02)
        assert bus_b.stats["applied"] == 2 and bus_a.stats["applied"] == 0  # its own events are not re-applied
        assert b.choose(turn(2, "t2"), REPLICAS) == 2
        # garbage on the stream is counted and skipped; the reader goes on
        raw = aioredis.Redis.from_url(redis_srv.url)
        try:
            await raw.xadd(f"{prefix}:affinity:sovereign-large/eu-sov", {"e": b"not json"})
        finally:
            await raw.aclose()
        send(b, turn(2, "t2"), 2, clock, 0.5)
        for _ in range(100):
            if bus_a.stats["applied"] >= 2:
                break
            await asyncio.sleep(0.02)
        assert bus_a.stats["applied"] == 2 and bus_a.stats["errors"] == 1
        assert (a.rank, b.rank) == (0, 1)  # each has heard from the other through Redis
    finally:
        await bus_a.aclose()
        await bus_b.aclose()


async def test_redis_down_leaves_each_instance_with_its_own_model() -> None:
    bus = RedisAffinityBus.from_url(closed_port_url().replace("http://", "redis://"), instance="gw-a",
                                    op_timeout_s=0.2, retry_s=0.05)
    clock = SimClock(1000.0)
    try:
        a = PrefixAffinityChooser(clock, events=bus, stream="dep")
        send(a, turn(1, "t1"), 2, clock, 0.5)  # publishing never raises nor waits
        assert a.choose(turn(2, "t2"), REPLICAS) == 2  # the local model works as before
        for _ in range(100):
            if bus.stats["errors"] >= 3:
                break
            await asyncio.sleep(0.02)
        assert bus.stats["errors"] >= 3 and bus.stats["published"] == 0
    finally:
        await bus.aclose()


async def test_closing_ends_a_reader_whose_read_swallows_the_cancellation() -> None:
    bus = RedisAffinityBus(SwallowingStreamClient(), block_ms=50)  # type: ignore[arg-type]
    bus.subscribe("d", lambda event: None)
    await asyncio.sleep(0.01)
    closing = asyncio.create_task(bus.aclose())
    done, _ = await asyncio.wait({closing}, timeout=5)
    assert closing in done, "aclose did not return"
