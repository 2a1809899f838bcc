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


@pytest.mark.parametrize("raw", [
    "[1, 2]", "null", '"start"',
    '{"kind": "start", "origin": "x", "call": 1e999, "replica": "r", "t": 0}',
    '{"kind": "start", "origin": "x", "call": 1, "replica": "r", "t": 0, "blocks": [1e999]}',
    '{"kind": "start", "origin": "x", "call": 1, "replica": "r", "t": NaN}',
    '{"kind": "start", "origin": "x", "call": 1, "replica": "r", "t": Infinity}',
    '{"kind": "start", "origin": "x", "call": 1, "replica": "r", "t": 0, "tokens": -5}',
    '{"kind": "start", "origin": "x", "call": 1, "replica": "r", "t": 0, "blocks": [1], "sizes": [-1]}',
    '{"kind": "start", "origin": "x", "call": 1, "replica": "r", "t": 0, "blocks": [1], "answer": [0, 4]}',
])
def test_malformed_events_are_value_errors_never_applied(raw: str) -> None:
    """Each of these escaped as AttributeError / OverflowError (killing the Redis reader) or was applied with a
    non-finite time (an infinite wait, a window never trimmed, NaN costs that failed every choice)."""
    with pytest.raises(ValueError):
        AffinityEvent.from_json(raw)


def test_a_peer_call_whose_completion_is_lost_is_dropped_after_max_call_s() -> None:
    """The other instance crashed (or its done event never reached Redis): its call stayed queued for good, so
    that replica looked busy forever and stopped learning."""
    hub = MemoryAffinityBus()
    clock = SimClock(1000.0)
    a = PrefixAffinityChooser(clock, events=hub.view("gw-a"), stream="dep")
    b = PrefixAffinityChooser(clock, events=hub.view("gw-b"), stream="dep", max_call_s=60.0)
    for k in range(3):
        a.observe_start(turn(1, f"lost{k}"), REPLICAS, 0)  # no observe_done: the instance died
    now = 1.0 + 1.0

    def waits() -> list[float]:
        blocks, tokens, shape = b._blocks(turn(1, "probe"))
        return [e.wait_s for e in b._router.estimate(blocks, tokens, now, REPLICAS, shape)]

    assert waits()[0] > 0.0
    clock.set(1000.0 + 3600_000.0)
    now = clock.now_ms() / 1000.0
    assert waits()[0] > 0.0  # an hour later, still "busy"
    b.choose(turn(1, "next"), REPLICAS)  # the chooser drops calls older than max_call_s
    assert waits()[0] == 0.0 and not b._router._where


def test_a_peer_completion_heard_late_never_moves_a_replica_clock_back() -> None:
    hub = MemoryAffinityBus()
    clock = SimClock(100_000.0)
    a = PrefixAffinityChooser(clock, events=hub.view("gw-a"), stream="dep")
    b = PrefixAffinityChooser(clock, events=hub.view("gw-b"), stream="dep")
    router = b._router
    first, second = turn(1, "p1"), turn(1, "p2")
    b.observe_start(first, REPLICAS, 0)
    a.observe_start(second, REPLICAS, 0)  # queued behind b's call
    clock.set(101_000.0)
    b.observe_done(first, REPLICAS, 0, ok=True, latency_ms=1000.0)
    anchor = router._model(REPLICAS[0]).anchor_s
    observed = router._decode.overall._n  # type: ignore[attr-defined]
    done = AffinityEvent("done", "gw-a", 1, REPLICAS[0], 100.8)  # stamped before b's own completion
    b.apply(done)
    assert router._model(REPLICAS[0]).anchor_s == anchor == 101.0  # was moved back to 100.8
    assert router._decode.overall._n == observed  # type: ignore[attr-defined]  # no 0-second decode learned


def test_a_refused_call_keeps_the_conversation_prefix_a_failed_one_does_not() -> None:
    hub = MemoryAffinityBus()
    clock = SimClock(1000.0)
    a = PrefixAffinityChooser(clock, events=hub.view("gw-a"), stream="dep")
    b = PrefixAffinityChooser(clock, events=hub.view("gw-b"), stream="dep")
    send(a, turn(1, "t1"), 1, clock, 0.5)  # the conversation is cached on r1

    def cached_on_r1(chooser: PrefixAffinityChooser) -> int:
        blocks, tokens, shape = chooser._blocks(turn(3, "probe"))
        return chooser._router.estimate(blocks, tokens, clock.now_ms() / 1000, REPLICAS, shape)[1].hit_tokens

    before = cached_on_r1(a)
    assert before > 0
    refused = turn(3, "t3")  # refused by the engine (HTTP 400): never prefilled, the replica is healthy
    a.observe_start(refused, REPLICAS, 1)
    a.observe_done(refused, REPLICAS, 1, ok=False, latency_ms=5.0, rejected=True)
    assert cached_on_r1(a) == cached_on_r1(b) == before  # only the blocks it would have added are forgotten
    failed = turn(3, "t4")
    a.observe_start(failed, REPLICAS, 1)
    a.observe_done(failed, REPLICAS, 1, ok=False, latency_ms=5.0)  # a failure: the replica may have restarted
    assert cached_on_r1(a) == cached_on_r1(b) == 0


async def test_a_bad_entry_or_a_failing_apply_never_stops_the_reader(redis_srv: RedisServer) -> None:
    prefix = f"ae{next(_prefixes)}"
    bus_a = RedisAffinityBus.from_url(redis_srv.url, prefix=prefix, instance="gw-a", block_ms=50)
    bus_b = RedisAffinityBus.from_url(redis_srv.url, prefix=prefix, instance="gw-b", block_ms=50)
    clock = SimClock(1000.0)
    seen: list[AffinityEvent] = []
    fail = [True]

    def flaky(event: AffinityEvent) -> None:
        if fail:
            fail.pop()
            raise ArithmeticError("a bug in one subscriber")
        seen.append(event)

    try:
        a = PrefixAffinityChooser(clock, events=bus_a, stream="d")
        bus_b.subscribe("d", flaky)
        await bus_b.start()
        await asyncio.sleep(0.2)
        raw = aioredis.Redis.from_url(redis_srv.url)
        try:
            for junk in (b"[1, 2]", b"null", b'{"kind": "start", "origin": "x", "call": 1e999, "replica": "r"}'):
                await raw.xadd(f"{prefix}:affinity:d", {"e": junk})
        finally:
            await raw.aclose()
        send(a, turn(1, "t1"), 2, clock, 0.5)  # start (apply fails once) and done
        send(a, turn(2, "t2"), 2, clock, 0.5)
        for _ in range(200):
            if len(seen) >= 3:
                break
            await asyncio.sleep(0.02)
        assert len(seen) == 3 and bus_b.stats["errors"] == 4  # 3 undecodable + 1 failed apply, all skipped
    finally:
        await bus_a.aclose()
        await bus_b.aclose()


async def test_closing_lets_the_last_events_reach_redis(redis_srv: RedisServer) -> None:
    """The done events of a gateway's last calls were cancelled at shutdown, so the other instances kept those
    calls queued (see the test above for what that cost)."""
    prefix = f"ae{next(_prefixes)}"
    bus = RedisAffinityBus.from_url(redis_srv.url, prefix=prefix, instance="gw-a", block_ms=50)
    chooser = PrefixAffinityChooser(SimClock(1000.0), events=bus, stream="d")
    chooser.observe_start(turn(1, "t1"), REPLICAS, 0)
    chooser.observe_done(turn(1, "t1"), REPLICAS, 0, ok=True, latency_ms=1.0)
    await bus.aclose()  # at once: both publishes still in flight
    raw = aioredis.Redis.from_url(redis_srv.url)
    try:
        assert await raw.xlen(f"{prefix}:affinity:d") == 2
    finally:
        await raw.aclose()
