"""SharedSemanticCache: entries stored by one gateway instance reach the others, only within the shared scope
(tenant, class, personal data), with every check of a local hit; RedisEntryFeed against a real redis-server
(history for late joiners, garbage and a dead Redis fail open)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest
import redis.asyncio as aioredis

from sovrouter.cache.semantic import Entry, SemanticCache, Stored
from sovrouter.cache.semantic_share import MemoryEntryFeed, RedisEntryFeed, SharedEntry, SharedSemanticCache
from sovrouter.cache.split import SharedScope
from sovrouter.cache.verifier import PairVerifier
from sovrouter.clock import SimClock
from sovrouter.contracts import Candidate, ContentPart, Detection, Message, ModelResult, NormalizedRequest
from sovrouter.embed import HashingEmbedder
from sovrouter.testing import counts_read_race
from sovrouter.testing_redis import RedisServer, SwallowingStreamClient
from sovrouter.testing_upstream import closed_port_url

A = Candidate(slot="frontier", deployment="us")
B = Candidate(slot="local-small", deployment="edge")
NONE = Detection()
QUESTION, PARAPHRASE = "How do I learn Python quickly?", "How can I learn Python quickly?"
_ids = itertools.count()


def req(text: str, tenant: str = "acme", data_class: str = "public") -> NormalizedRequest:
    return NormalizedRequest.model_validate({
        "request_id": f"r{next(_ids)}", "tenant": tenant, "data_class": data_class,
        "messages": (Message(role="user", parts=(ContentPart(modality="text", text=text),)),),
    })


def instance(feed: MemoryEntryFeed | RedisEntryFeed, clock: SimClock | None = None,
             tenants: tuple[str, ...] = ("acme",), dim: int = 384) -> SharedSemanticCache:
    local = SemanticCache(clock or SimClock(), HashingEmbedder(dim), PairVerifier.cosine_only(0.7), ttl_s=60)
    return SharedSemanticCache(local, feed, SharedScope.of(tenants))


async def produce(cache: SharedSemanticCache, text: str, tenant: str = "acme", data_class: str = "public",
                  detection: Detection = NONE, cand: Candidate = A) -> NormalizedRequest:
    r = req(text, tenant, data_class)
    await cache.lookup(r, detection, [A, B])
    await cache.store(r, detection, ModelResult(candidate=cand, text=f"answer to {text}"))
    await cache.release(r)
    return r


async def ask(cache: SharedSemanticCache, text: str, tenant: str = "acme",
              allowed: tuple[Candidate, ...] = (A, B)) -> tuple[str, str | None]:
    r = req(text, tenant)
    outcome, result = await cache.lookup(r, NONE, list(allowed))
    if result is None:
        await cache.release(r)
    return outcome.kind, (outcome.source_request_id if result is not None else None)


async def test_an_entry_stored_by_one_instance_is_a_semantic_hit_on_another() -> None:
    hub = MemoryEntryFeed()
    one, two = instance(hub.view("one")), instance(hub.view("two"))
    await ask(two, "Why is the sky blue?")  # two subscribes with its first request, as in the gateway
    source = await produce(one, QUESTION)
    assert await ask(two, PARAPHRASE) == ("semantic", source.request_id)
    assert one.stats["published"] == 1 and two.stats["inserted"] == 1
    assert one.cache_gauges()["semantic_feed_published_total"] == 1  # for /metrics, with the local sizes
    assert two.cache_gauges() == {"semantic_entries": 1, "semantic_partitions": 1, "semantic_purged_total": 0,
                                  "semantic_evicted_total": 0, "semantic_shared_inserted_total": 1}


async def test_only_what_the_scope_admits_is_published() -> None:
    hub = MemoryEntryFeed()
    one, two = instance(hub.view("one")), instance(hub.view("two"))
    await ask(two, "Why is the sky blue?")
    await produce(one, QUESTION, tenant="eurobank")  # tenant not listed
    await produce(one, "What is the tallest mountain on Earth?", data_class="confidential")  # class above internal
    await produce(one, "Who painted the Mona Lisa?", detection=Detection(pii_types=["PERSON"]))  # personal data
    assert one.stats["published"] == 0 and two.local.entry_count() == 0
    assert await ask(one, PARAPHRASE, tenant="eurobank") == ("semantic", local_source(one, QUESTION, "eurobank"))


def local_source(cache: SharedSemanticCache, text: str, tenant: str) -> str:
    """The source request id of the local entry for ``text`` in ``tenant``'s partition (it stays local)."""
    for index in cache.local._indexes.values():
        entry = index.payload(text)
        if entry is not None:
            return entry.source_request_id
    raise AssertionError(f"{text!r} of {tenant} not held")


async def test_the_receiving_instance_applies_its_own_scope_and_the_usual_checks() -> None:
    hub = MemoryEntryFeed()
    clock = SimClock()
    one = instance(hub.view("one"), clock, tenants=("acme", "eurobank"))
    strict = instance(hub.view("strict"), clock, tenants=("acme",))
    await ask(strict, "Why is the sky blue?")
    await produce(one, QUESTION, tenant="eurobank")  # the publisher admits eurobank; the receiver does not
    assert strict.local.entry_count() == 0 and strict.stats["refused"] == 1
    source = await produce(one, QUESTION, tenant="acme", cand=A)
    assert await ask(strict, PARAPHRASE, tenant="eurobank") == ("miss", None)  # tenants never share entries
    assert await ask(strict, PARAPHRASE, allowed=(B,)) == ("miss", None)  # produced where this may not go
    assert await ask(strict, PARAPHRASE) == ("semantic", source.request_id)
    clock.set(61_000)
    assert await ask(strict, PARAPHRASE) == ("miss", None)  # the publisher's expiry holds here too


async def test_expired_or_foreign_shaped_entries_are_refused() -> None:
    hub = MemoryEntryFeed()
    clock = SimClock(100_000)
    two = instance(hub.view("two"), clock)
    await ask(two, "Why is the sky blue?")
    result = ModelResult(candidate=A, text="x")
    for expires_ms, dim in ((99_000.0, 384), (200_000.0, 64)):
        vector = np.ones(dim, dtype=np.float32) / np.sqrt(dim)
        hub.view("one").publish(SharedEntry("one", "acme", "public",
                                            Stored("p", QUESTION, vector, Entry("src", expires_ms, result))))
    assert two.stats["refused"] == 2 and two.local.entry_count() == 0


async def test_an_older_copy_never_replaces_a_newer_entry() -> None:
    hub = MemoryEntryFeed()
    clock = SimClock()
    two = instance(hub.view("two"), clock)
    fresh = await produce(two, QUESTION)
    held = next(iter(two.local._indexes.values()))
    stale = Stored(next(iter(two.local._indexes)), QUESTION, np.asarray(held._vectors[0]),
                   Entry("old", 10.0, ModelResult(candidate=A, text="old answer")))
    hub.view("one").publish(SharedEntry("one", "acme", "public", stale))
    assert held.payload(QUESTION).source_request_id == fresh.request_id  # type: ignore[union-attr]


def test_an_entry_survives_the_wire_format() -> None:
    vector = np.arange(8, dtype=np.float32)
    entry = SharedEntry("o", "acme", "internal", Stored("p" * 64, "Wie geht's? \u2028 ok", vector,
                                                       Entry("src", 1234.5, ModelResult(candidate=B, text="gut"))))
    again = SharedEntry.from_fields({k.encode(): v for k, v in entry.to_fields().items()})
    assert again.origin == "o" and again.tenant == "acme" and again.data_class == "internal"
    assert again.stored.text == entry.stored.text and again.stored.partition == entry.stored.partition
    assert np.array_equal(again.stored.vector, vector) and again.stored.entry == entry.stored.entry
    fields = {k.encode(): v for k, v in entry.to_fields().items()}
    for bad in ({**fields, b"m": b"{"}, {**fields, b"v": np.array([np.nan], dtype="<f4").tobytes()},
                {k: v for k, v in fields.items() if k != b"v"}):
        with pytest.raises((ValueError, KeyError)):
            SharedEntry.from_fields(bad)


# ---------------------------------------------------------------- through a real Redis
Factory = Callable[..., SharedSemanticCache]
_prefixes = itertools.count()


@pytest.fixture
async def make(redis_srv: RedisServer) -> AsyncIterator[Factory]:
    prefix = f"sem{next(_prefixes)}"
    made: list[SharedSemanticCache] = []

    def factory(url: str = redis_srv.url, block_ms: int = 50, **kwargs: object) -> SharedSemanticCache:
        feed = RedisEntryFeed.from_url(url, prefix=prefix, block_ms=block_ms)
        cache = instance(feed, **kwargs)  # type: ignore[arg-type]
        made.append(cache)
        return cache

    yield factory
    for cache in made:
        await cache.aclose()


async def eventually(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_entries_travel_through_redis_and_late_joiners_read_the_history(make: Factory) -> None:
    one, two = make(), make()
    await ask(two, "Why is the sky blue?")
    source = await produce(one, QUESTION)
    await eventually(lambda: two.local.entry_count() == 1)
    assert await ask(two, PARAPHRASE) == ("semantic", source.request_id)
    late = make()  # a new or restarted instance starts with what the others hold
    await ask(late, "Why is the sky blue?")
    await eventually(lambda: late.local.entry_count() == 1)
    assert await ask(late, PARAPHRASE) == ("semantic", source.request_id)
    assert one.local.entry_count() == 1  # its own entry, read back from the stream, is not inserted twice


async def test_garbage_in_the_stream_is_skipped_and_counted(make: Factory, redis_srv: RedisServer) -> None:
    one, two = make(), make()
    await ask(two, "Why is the sky blue?")
    feed = two.feed
    assert isinstance(feed, RedisEntryFeed)
    client = aioredis.Redis.from_url(redis_srv.url)
    await client.xadd(feed.key, {"m": b"not json", "v": b"\x00"})
    await client.aclose()
    source = await produce(one, QUESTION)
    await eventually(lambda: two.local.entry_count() == 1)
    assert feed.stats["errors"] >= 1 and await ask(two, PARAPHRASE) == ("semantic", source.request_id)


async def test_a_dead_redis_leaves_each_instance_its_own_index(make: Factory) -> None:
    down = make(url=closed_port_url().replace("http://", "redis://"))
    source = await produce(down, QUESTION)
    assert await ask(down, PARAPHRASE) == ("semantic", source.request_id)
    feed = down.feed
    assert isinstance(feed, RedisEntryFeed)
    await eventually(lambda: feed.stats["errors"] >= 1)


async def test_closing_ends_the_reader_promptly_after_traffic(make: Factory) -> None:
    one, two = make(block_ms=500), make(block_ms=500)  # the shipped blocking time
    await ask(two, "Why is the sky blue?")
    for i in range(20):
        await produce(one, f"Question number {i} about topic {i * 7919 % 997}?")
        await eventually(lambda n=i: two.local.entry_count() == n + 1)
    for cache in (one, two):
        await asyncio.wait_for(cache.aclose(), 5)
        feed = cache.feed
        assert isinstance(feed, RedisEntryFeed) and not feed.streams._readers


async def test_closing_ends_a_reader_whose_read_swallows_the_cancellation() -> None:
    feed = RedisEntryFeed(SwallowingStreamClient(), block_ms=50)  # type: ignore[arg-type]
    feed.subscribe(lambda entry: None)
    await asyncio.sleep(0.01)
    closing = asyncio.create_task(feed.aclose())
    done, _ = await asyncio.wait({closing}, timeout=5)  # (wait_for would hang too: it waits for the cancel)
    assert closing in done, "aclose did not return"


async def test_another_embedding_models_vectors_never_mix_in() -> None:
    """During a rolling upgrade to another model of the same dimension, the stream still holds the old model's
    vectors: compared with the new model's, they would match unrelated questions. The vector size alone did not
    tell them apart."""
    hub = MemoryEntryFeed()
    clock = SimClock(100_000)
    two = instance(hub.view("two"), clock)
    await ask(two, "Why is the sky blue?")  # subscribed
    name = two.local.verifier.embedder
    vector = np.ones(384, dtype=np.float32) / np.sqrt(384)
    for k, model in enumerate(("another-model", name, "")):  # "": an instance older than the field
        stored = Stored("p", f"{QUESTION} {k}", vector, Entry("src", 200_000.0, ModelResult(candidate=A, text="x")))
        hub.view("one").publish(SharedEntry("one", "acme", "public", stored, model))
    assert two.stats["refused"] == 1 and two.local.entry_count() == 2
    wire = SharedEntry("o", "acme", "public", stored, "all-MiniLM-L6-v2").to_fields()
    assert SharedEntry.from_fields({k.encode(): v for k, v in wire.items()}).embedder == "all-MiniLM-L6-v2"


@pytest.mark.parametrize("counts", ["shared", "feed"])
def test_metrics_read_the_counts_safely_while_the_loop_adds_to_them(counts: str) -> None:
    """As the shared exact cache's (found in review, 2026-11-28): ``/metrics`` iterates these counts from its worker
    thread while the event loop counts into them; a name counted for the first time failed the scrape."""
    cache = instance(MemoryEntryFeed())
    stats = cache.stats if counts == "shared" else cache.feed.stats
    for i in range(2000):
        stats[f"seen_{i}"] += 1
    assert counts_read_race(stats, cache.cache_gauges) == []
