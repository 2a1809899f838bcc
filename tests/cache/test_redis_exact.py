"""RedisExactCache against a real redis-server: shared entries, allowed-set and TTL checks, single-flight across
instances (leader stores, leader fails, leader dies), one poller per process, and fail-open when Redis is gone."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from sovrouter.cache.redis_exact import RedisExactCache
from sovrouter.clock import SimClock
from sovrouter.contracts import Candidate, ContentPart, Detection, Message, ModelResult, NormalizedRequest
from sovrouter.testing import counts_read_race
from sovrouter.testing_redis import RedisServer
from sovrouter.testing_upstream import closed_port_url

A = Candidate(slot="frontier", deployment="us")
B = Candidate(slot="sovereign-large", deployment="eu-sov")
NONE = Detection()
_prefixes = itertools.count()

Factory = Callable[..., RedisExactCache]


def req(text: str, rid: str, tenant: str = "acme") -> NormalizedRequest:
    return NormalizedRequest(request_id=rid, tenant=tenant,
                             messages=(Message(role="user", parts=(ContentPart(modality="text", text=text),)),))


async def produce(cache: RedisExactCache, text: str, rid: str, answer: str) -> None:
    """``cache``'s instance leads ``text``, stores ``answer`` produced on A, and releases the lead."""
    lead = req(text, rid)
    await cache.lookup(lead, NONE, [A])
    await cache.store(lead, NONE, ModelResult(candidate=A, text=answer))
    await cache.release(lead)


@pytest.fixture
async def make(redis_srv: RedisServer) -> AsyncIterator[Factory]:
    """``make(**kwargs)`` -> a new instance (its own client, as another gateway process would have) on a key
    prefix of this test's own."""
    prefix = f"t{next(_prefixes)}"
    made: list[RedisExactCache] = []

    def factory(clock: SimClock | None = None, **kwargs: object) -> RedisExactCache:
        kw: dict[str, object] = {"prefix": prefix, "poll_s": (0.005, 0.02), **kwargs}
        cache = RedisExactCache.from_url(clock or SimClock(), redis_srv.url, **kw)  # type: ignore[arg-type]
        made.append(cache)
        return cache

    yield factory
    for cache in made:
        await cache.aclose()


async def test_an_answer_stored_by_one_instance_is_served_by_another(make: Factory) -> None:
    one, two = make(), make()
    lead = req("What is the capital of France?", "r1")
    outcome, result = await one.lookup(lead, NONE, [A])
    assert outcome.kind == "miss" and result is None
    await one.store(lead, NONE, ModelResult(candidate=A, text="Paris", output_tokens=1))
    await one.release(lead)

    outcome, result = await two.lookup(req("What is the capital of France?", "r2"), NONE, [A, B])
    assert outcome.kind == "exact" and outcome.source_request_id == "r1" and outcome.source_candidate == A
    assert result is not None and result.text == "Paris" and result.output_tokens == 1


async def test_other_tenant_other_text_and_disallowed_producer_miss(make: Factory) -> None:
    one, two = make(), make()
    await produce(one, "hello", "r1", "hi")
    assert (await two.lookup(req("hello", "r2", tenant="other"), NONE, [A]))[1] is None
    await two.release(req("hello", "r2", tenant="other"))
    assert (await two.lookup(req("hello!", "r3"), NONE, [A]))[1] is None
    await two.release(req("hello!", "r3"))
    # produced on A; a request that may only use B never gets it (and leads its own call instead)
    outcome, result = await two.lookup(req("hello", "r4"), NONE, [B])
    assert result is None and outcome.kind == "miss" and two.stats["leads"] == 3


async def test_entries_expire_by_the_injected_clock(make: Factory) -> None:
    clock = SimClock()
    one = make(clock, ttl_s=10.0)
    await produce(one, "q", "r1", "a")
    clock.set(9_000)
    assert (await one.lookup(req("q", "r2"), NONE, [A]))[1] is not None
    clock.set(10_001)
    outcome, result = await one.lookup(req("q", "r3"), NONE, [A])
    assert result is None and outcome.kind == "miss"


async def test_single_flight_across_instances_leader_stores(make: Factory) -> None:
    one, two = make(), make()
    lead = req("popular", "r1")
    assert (await one.lookup(lead, NONE, [A]))[0].kind == "miss"
    waiters = [asyncio.create_task(two.lookup(req("popular", f"w{i}"), NONE, [A])) for i in range(5)]
    await asyncio.sleep(0.1)
    assert not any(w.done() for w in waiters)  # they wait for the leader instead of calling upstream
    await one.store(lead, NONE, ModelResult(candidate=A, text="answer"))
    await one.release(lead)
    outs = await asyncio.wait_for(asyncio.gather(*waiters), 5)
    assert [o.kind for o, _ in outs] == ["exact"] * 5
    assert two.stats["waits"] == 1  # one poller for the process, the other four waited on it locally
    assert two.stats["leads"] == 0


async def test_a_failed_leaders_waiters_all_go_upstream_at_once(make: Factory) -> None:
    """The lead went to one waiter after another: k identical requests during an outage took k times one
    request's worst case, one after another. Now every waiter, here and on the other instance, goes at once."""
    one, two = make(), make()
    lead = req("flaky", "r1")
    await one.lookup(lead, NONE, [A])
    here = [asyncio.create_task(one.lookup(req("flaky", f"h{i}"), NONE, [A])) for i in range(3)]
    there = [asyncio.create_task(two.lookup(req("flaky", f"t{i}"), NONE, [A])) for i in range(3)]
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in here + there)
    await one.release(lead)  # the upstream call failed: nothing stored
    outs = await asyncio.wait_for(asyncio.gather(*here, *there), 5)
    assert all(o.kind == "miss" and r is None for o, r in outs)
    assert one.stats["leads"] == 1 and two.stats["leads"] == 0 and two.stats["leader_gave_up"] == 3
    for r in [*(f"h{i}" for i in range(3)), *(f"t{i}" for i in range(3))]:
        await (one if r.startswith("h") else two).release(req("flaky", r))  # not leaders: nothing to release
    assert not one._flights and not two._flights and not one._leading and not two._leading


async def test_a_dead_leaders_lock_lapses(make: Factory) -> None:
    one, two = make(lock_ttl_s=0.2), make(lock_ttl_s=0.2)
    await one.lookup(req("orphan", "r1"), NONE, [A])  # this leader never stores nor releases (process died)
    outcome, result = await asyncio.wait_for(two.lookup(req("orphan", "r2"), NONE, [A]), 5)
    assert outcome.kind == "miss" and result is None and two.stats["leader_gave_up"] == 1


async def test_waiting_is_bounded(make: Factory) -> None:
    one, two = make(), make(wait_s=0.1)
    await one.lookup(req("slow", "r1"), NONE, [A])
    outcome, _ = await asyncio.wait_for(two.lookup(req("slow", "r2"), NONE, [A]), 5)
    assert outcome.kind == "miss" and two.stats["wait_expired"] == 1 and two.stats["leads"] == 0
    await two.store(req("slow", "r2"), NONE, ModelResult(candidate=A, text="mine"))  # it may still store
    await two.release(req("slow", "r2"))


async def test_an_unreadable_entry_is_a_miss_never_served(make: Factory, redis_srv: RedisServer) -> None:
    one = make()
    await produce(one, "q", "r1", "a")
    raw = aioredis.Redis.from_url(redis_srv.url)
    try:
        keys = [k async for k in raw.scan_iter(match=f"{one.prefix}:e:*")]
        assert len(keys) == 1
        await raw.set(keys[0], b'{"expires_ms": 1e30, "source_request_id": "x", "result": {"text": 5}}')
    finally:
        await raw.aclose()
    outcome, result = await one.lookup(req("q", "r2"), NONE, [A])
    assert result is None and outcome.kind == "miss" and one.stats["errors"] == 1


async def test_redis_unreachable_fails_open_quickly() -> None:
    url = closed_port_url().replace("http://", "redis://")
    cache = RedisExactCache.from_url(SimClock(), url, op_timeout_s=0.2)
    try:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        lead = req("q", "r1")
        outcome, result = await cache.lookup(lead, NONE, [A])
        await cache.store(lead, NONE, ModelResult(candidate=A, text="a"))
        await cache.release(lead)
        assert outcome.kind == "miss" and result is None
        assert cache.stats["errors"] == 2 and loop.time() - t0 < 2.0
    finally:
        await cache.aclose()


async def test_redis_stopping_mid_flight_fails_open(redis_srv: RedisServer) -> None:
    from sovrouter.testing_redis import redis_server

    with redis_server() as own:
        one = RedisExactCache.from_url(SimClock(), own.url, op_timeout_s=0.2, poll_s=(0.005, 0.02))
        two = RedisExactCache.from_url(SimClock(), own.url, op_timeout_s=0.2, poll_s=(0.005, 0.02))
        try:
            await one.lookup(req("q", "r1"), NONE, [A])
            waiter = asyncio.create_task(two.lookup(req("q", "r2"), NONE, [A]))
            await asyncio.sleep(0.05)
            own.process.kill()
            own.process.wait()
            outcome, result = await asyncio.wait_for(waiter, 5)  # the poller gives up: a miss, no error
            assert outcome.kind == "miss" and result is None and two.stats["errors"] >= 1
            await one.store(req("q", "r1"), NONE, ModelResult(candidate=A, text="a"))
            await one.release(req("q", "r1"))
            assert not one._flights and not two._flights
        finally:
            await one.aclose()
            await two.aclose()


async def test_an_entry_this_request_may_not_use_does_not_end_the_wait(make: Factory) -> None:
    """The key holds an answer produced on A; requests allowed only B wait for B's leader once, not in a loop."""
    one, two = make(), make()
    await produce(one, "q", "r1", "from A")
    lead = req("q", "r2")
    assert (await one.lookup(lead, NONE, [B]))[1] is None  # A's answer is not for it: it leads a call to B
    waiter = asyncio.create_task(two.lookup(req("q", "r3"), NONE, [B]))
    await asyncio.sleep(0.2)
    assert not waiter.done() and two.stats["waits"] == 1
    await one.store(lead, NONE, ModelResult(candidate=B, text="from B"))
    await one.release(lead)
    outcome, result = await asyncio.wait_for(waiter, 5)
    assert outcome.kind == "exact" and result is not None and result.text == "from B"


async def test_an_empty_answer_is_never_stored(make: Factory) -> None:
    one, two = make(), make()
    await produce(one, "hello", "r1", "")
    outcome, result = await two.lookup(req("hello", "r2"), NONE, [A])
    assert outcome.kind == "miss" and result is None
    await two.release(req("hello", "r2"))


async def test_an_empty_answer_an_earlier_version_stored_is_a_miss(make: Factory, redis_srv: RedisServer) -> None:
    """Versions before b352843 (2026-11-28) stored empty answers in Redis too, under today's key; the entry is
    written as that version's ``store`` wrote it. It was served to every instance until its TTL."""
    import json

    from sovrouter.cache.exact import cache_key

    one = make()
    raw = aioredis.Redis.from_url(redis_srv.url)
    try:
        key = f"{one.prefix}:e:{cache_key(req('hello', 'old'))}"
        value = json.dumps({"expires_ms": 1e12, "source_request_id": "old",
                            "result": ModelResult(candidate=A, text="").model_dump(mode="json")}, ensure_ascii=False)
        await raw.set(key, value, px=3_600_000)
        outcome, result = await one.lookup(req("hello", "r2"), NONE, [A])
        assert outcome.kind == "miss" and result is None
        assert await raw.exists(key) == 0  # dropped, not left for the other instances
    finally:
        await raw.aclose()
    await one.release(req("hello", "r2"))


async def test_a_dropped_empty_answer_is_counted_on_metrics(make: Factory, redis_srv: RedisServer) -> None:
    """Each empty answer an earlier version stored and this one drops shows on ``/metrics``
    (``shared_exact_dropped_empty_total``), so an operator sees the upgrade's clean-up (found in review)."""
    import json

    from sovrouter.cache.exact import cache_key

    one = make()
    raw = aioredis.Redis.from_url(redis_srv.url)
    try:
        for text in ("hello", "again"):
            value = json.dumps({"expires_ms": 1e12, "source_request_id": "old",
                                "result": ModelResult(candidate=A, text="").model_dump(mode="json")})
            await raw.set(f"{one.prefix}:e:{cache_key(req(text, 'old'))}", value, px=3_600_000)
            await one.lookup(req(text, f"r-{text}"), NONE, [A])
            await one.release(req(text, f"r-{text}"))
    finally:
        await raw.aclose()
    assert one.cache_gauges()["shared_exact_dropped_empty_total"] == 2.0


@pytest.mark.parametrize("how", ["late_reply", "cancelled"])
async def test_a_lock_taken_as_its_lookup_failed_does_not_hold_later_requests(make: Factory, how: str) -> None:
    """The lock's ``SET NX`` may land although its lookup failed (a reply later than ``op_timeout_s``, or the
    request cancelled while asking: a batch cancelled, a shutdown). That request then never leads, so nothing
    released the lock: every identical request, on this instance and the others, waited ``wait_s`` for it (and a
    lock outlives that: ``lock_ttl_s``)."""
    one, two = make(op_timeout_s=0.2, wait_s=2.0), make(wait_s=2.0)
    real_set = one.client.set

    async def set_then_stall(*args: object, **kwargs: object) -> object:
        done = await real_set(*args, **kwargs)  # type: ignore[arg-type]
        await asyncio.sleep(5)  # the reply is late (or the caller is cancelled meanwhile)
        return done

    one.client.set = set_then_stall  # type: ignore[method-assign]
    asking = asyncio.create_task(one.lookup(req("q", "r1"), NONE, [A]))
    if how == "cancelled":
        await asyncio.sleep(0.1)
        asking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asking
    else:
        outcome, _ = await asking
        assert outcome.kind == "miss" and one.stats["errors"] == 1 and one.stats["leads"] == 0
        await one.release(req("q", "r1"))  # its upstream call failed: nothing stored
    one.client.set = real_set  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    for cache, rid in ((one, "r2"), (two, "r3")):
        t0 = loop.time()
        outcome, result = await asyncio.wait_for(cache.lookup(req("q", rid), NONE, [A]), 5)
        assert outcome.kind == "miss" and result is None
        assert loop.time() - t0 < 1.0, "waited for a lock nobody holds"
        await cache.release(req("q", rid))


async def test_metrics_read_the_counts_safely_while_the_loop_adds_to_them() -> None:
    """``/metrics`` runs in a worker thread and iterated ``stats`` while the event loop counted a new kind of
    event into it: ``RuntimeError: dictionary changed size during iteration``, a failed scrape (found in review,
    2026-11-28). Here the loop side counts many new names while another thread reads the gauges."""
    cache = RedisExactCache.from_url(SimClock(), closed_port_url().replace("http://", "redis://"))
    for i in range(2000):  # a long read: each scrape iterates every name
        cache.stats[f"seen_{i}"] += 1

    def scrape() -> None:
        assert all(name.startswith("shared_exact_") for name in cache.cache_gauges())

    try:
        assert counts_read_race(cache.stats, scrape) == []
    finally:
        await cache.aclose()
    assert cache.cache_gauges()["shared_exact_new_0_total"] == 1.0
