"""SplitCache and SharedScope: only admitted requests (listed tenant, no personal data, class at most the limit)
ever reach the shared store; two pipelines sharing one Redis make one upstream call for the same question."""

from __future__ import annotations

import asyncio
import itertools

import pytest
import redis.asyncio as aioredis

from sovrouter.build import assemble
from sovrouter.cache.exact import ExactCache
from sovrouter.cache.redis_exact import RedisExactCache
from sovrouter.cache.split import SharedScope, SplitCache
from sovrouter.catalog import Catalog, Tenants
from sovrouter.clock import SimClock, WallClock
from sovrouter.config import Settings, SharedCacheSettings
from sovrouter.contracts import Candidate, DataClass, Detection, ModelResult
from sovrouter.intake import normalize_chat
from sovrouter.testing import FakeAdapter, MemorySink
from sovrouter.testing_redis import RedisServer

A = Candidate(slot="frontier", deployment="us")
_prefixes = itertools.count()


def chat(text: str, rid: str, tenant: str = "acme-us", data_class: DataClass = "public"):  # type: ignore[no-untyped-def]
    r = normalize_chat({"messages": [{"role": "user", "content": text}]}, tenant=tenant, request_id=rid)
    return r.model_copy(update={"data_class": data_class})


@pytest.mark.parametrize(("tenant", "detection", "data_class", "admitted"), [
    ("acme-us", Detection(), "public", True),
    ("acme-us", Detection(), "internal", True),
    ("acme-us", Detection(), "confidential", False),
    ("acme-us", Detection(pii_types=["EMAIL_ADDRESS"]), "public", False),
    ("acme-us", Detection(failed=True), "public", False),  # detection failed: treated as personal data
    ("eurobank", Detection(), "public", False),  # not listed: its policy was not stated to allow the store
])
def test_scope(tenant: str, detection: Detection, data_class: DataClass, admitted: bool) -> None:
    scope = SharedScope.of(["acme-us", "research-open"])
    assert scope.admits(chat("q", "r", tenant, data_class), detection) is admitted


async def test_only_admitted_answers_are_written_to_the_shared_store(redis_srv: RedisServer) -> None:
    prefix = f"s{next(_prefixes)}"
    shared = RedisExactCache.from_url(SimClock(), redis_srv.url, prefix=prefix)
    cache = SplitCache(shared, ExactCache(SimClock()), SharedScope.of(["acme-us"]))
    raw = aioredis.Redis.from_url(redis_srv.url)
    try:
        cases = [("acme-us", Detection(), "public"), ("acme-us", Detection(pii_types=["PERSON"]), "public"),
                 ("acme-us", Detection(), "restricted"), ("eurobank", Detection(), "public")]
        for i, (tenant, det, cls) in enumerate(cases):
            r = chat(f"question {i}", f"r{i}", tenant, cls)  # type: ignore[arg-type]
            assert (await cache.lookup(r, det, [A]))[1] is None
            await cache.store(r, det, ModelResult(candidate=A, text=f"answer {i}"))
            await cache.release(r)
        entries = [k async for k in raw.scan_iter(match=f"{prefix}:e:*")]
        assert len(entries) == 1  # only the first case; the other three live in the local cache
        for i, (tenant, det, cls) in enumerate(cases):  # each is served again, from its own side
            out, res = await cache.lookup(chat(f"question {i}", f"again{i}", tenant, cls), det, [A])  # type: ignore[arg-type]
            assert out.kind == "exact" and res is not None and res.text == f"answer {i}"
        assert [k async for k in raw.scan_iter(match=f"{prefix}:l:*")] == []  # no lock left behind
        gauges = cache.cache_gauges()  # both sides report, for /metrics
        assert gauges["exact_entries"] == 3 and gauges["shared_exact_hits_total"] == 1
    finally:
        await raw.aclose()
        await cache.aclose()  # closes the shared store's client
    pool = shared.client.connection_pool
    assert not any(c.is_connected for c in pool._available_connections)  # the shared store's client was closed
    assert not pool._in_use_connections


def _settings(url: str, prefix: str) -> Settings:
    shared = SharedCacheSettings(url=url, tenants=["acme-us"], key_prefix=prefix)
    return Settings(catalog="x", tenants="y", router="baseline",  # type: ignore[arg-type]
                    cache={"shared": shared})  # type: ignore[arg-type]


def _fakes(catalog: Catalog) -> dict[Candidate, FakeAdapter]:
    out = {}
    for s, d in catalog.pairs():
        c = Candidate(slot=s.id, deployment=d.id)
        out[c] = FakeAdapter(c, text=s.id)
        out[c].delay_s = 0.1
    return out


async def test_two_gateway_pipelines_make_one_upstream_call(redis_srv: RedisServer, catalog: Catalog,
                                                           tenants: Tenants) -> None:
    settings = _settings(redis_srv.url, f"p{next(_prefixes)}")  # real PII detector and Cedar policy
    assert settings.cache.shared is not None
    fakes = [_fakes(catalog), _fakes(catalog)]
    pipes = [assemble(settings, catalog, tenants, f, WallClock(), MemorySink()) for f in fakes]
    try:
        outs = await asyncio.gather(*[pipes[i % 2].handle(chat("popular question", f"r{i}")) for i in range(6)])
        assert all(o.result is not None and o.error is None for o in outs)
        assert sum(a.calls for f in fakes for a in f.values()) == 1
        assert sorted(o.record.cache.kind for o in outs) == ["exact"] * 5 + ["miss"]
        # a tenant outside the shared scope keeps a cache per instance: one call per pipeline
        for i in range(4):
            await pipes[i % 2].handle(chat("popular question", f"e{i}", tenant="eurobank"))
        assert sum(a.calls for f in fakes for a in f.values()) == 3
        # the real detector finds personal data: answered, cached locally, never written to the shared store
        pii = chat("I am John Smith, call me on +1 415 555 0100: what is the popular question?", "pii1")
        out = await pipes[0].handle(pii)
        assert out.result is not None and out.record.detected_pii_types
        raw = aioredis.Redis.from_url(redis_srv.url)
        try:
            assert len([k async for k in raw.scan_iter(match=f"{settings.cache.shared.key_prefix}:e:*")]) == 1
        finally:
            await raw.aclose()
        again = await pipes[0].handle(pii.model_copy(update={"request_id": "pii2"}))
        assert again.record.cache.kind == "exact"  # from the instance's own cache
    finally:
        for p in pipes:
            assert isinstance(p.cache, SplitCache) and isinstance(p.cache.shared, RedisExactCache)
            await p.cache.shared.aclose()


async def test_a_semantic_hit_ends_the_shared_exact_lead(redis_srv: RedisServer) -> None:
    """Exact layer shared in Redis under the semantic layer: a semantic hit is served without an upstream call,
    so the exact layer's cross-instance lead (a lock in Redis) must end with it, or other instances would wait."""
    from sovrouter.cache.layered import LayeredCache
    from sovrouter.cache.semantic import SemanticCache
    from sovrouter.cache.verifier import PairVerifier
    from sovrouter.embed import HashingEmbedder

    prefix = f"s{next(_prefixes)}"
    clock = SimClock()
    shared = RedisExactCache.from_url(clock, redis_srv.url, prefix=prefix)
    exact = SplitCache(shared, ExactCache(clock), SharedScope.of(["acme-us"]))
    cache = LayeredCache(exact, SemanticCache(clock, HashingEmbedder(384), PairVerifier.cosine_only(0.7)))
    raw = aioredis.Redis.from_url(redis_srv.url)
    try:
        lead = chat("How do I learn Python quickly?", "r1")
        assert (await cache.lookup(lead, Detection(), [A]))[1] is None
        await cache.store(lead, Detection(), ModelResult(candidate=A, text="answer"))
        await cache.release(lead)
        outcome, result = await cache.lookup(chat("How can I learn Python quickly?", "r2"), Detection(), [A])
        assert outcome.kind == "semantic" and result is not None
        assert [k async for k in raw.scan_iter(match=f"{prefix}:l:*")] == []
        assert len([k async for k in raw.scan_iter(match=f"{prefix}:e:*")]) == 1
    finally:
        await raw.aclose()
        await cache.aclose()


async def test_the_configured_class_limit_reaches_the_shared_scope() -> None:
    """``cache.shared.max_class`` is the operator's limit on what may be written outside the instance: stricter
    than the default (``public``), an internal request's answer must stay in the instance's own cache."""
    from sovrouter.build import make_exact_cache

    shared = SharedCacheSettings(url="redis://127.0.0.1:1", tenants=["acme-us"], max_class="public")
    settings = Settings(catalog="x", tenants="y", cache={"shared": shared})  # type: ignore[arg-type]
    cache = make_exact_cache(settings, SimClock(), ":memory:")
    try:
        assert isinstance(cache, SplitCache) and cache.scope.max_class == "public"
        assert cache.scope.admits(chat("q", "r1", data_class="public"), Detection())
        assert not cache.scope.admits(chat("q", "r2", data_class="internal"), Detection())
    finally:
        await cache.aclose()
