"""LayeredCache: exact first, then semantic; stores into both; single-flight lead ended on a semantic hit."""

from __future__ import annotations

from pathlib import Path

import pytest

from sovrouter.cache.exact import ExactCache
from sovrouter.cache.layered import LayeredCache
from sovrouter.cache.semantic import SemanticCache
from sovrouter.cache.verifier import PairVerifier
from sovrouter.clock import SimClock
from sovrouter.contracts import Candidate, ContentPart, Detection, Message, ModelResult, NormalizedRequest
from sovrouter.embed import HashingEmbedder

A = Candidate(slot="frontier", deployment="us")
NONE = Detection()


def req(text: str, rid: str) -> NormalizedRequest:
    return NormalizedRequest(request_id=rid, tenant="acme",
                             messages=(Message(role="user", parts=(ContentPart(modality="text", text=text),)),))


def layered() -> tuple[LayeredCache, ExactCache]:
    clock = SimClock()
    exact = ExactCache(clock)
    return LayeredCache(exact, SemanticCache(clock, HashingEmbedder(384), PairVerifier.cosine_only(0.7))), exact


async def test_exact_then_semantic_then_miss() -> None:
    cache, exact = layered()
    lead = req("How do I learn Python quickly?", "r1")
    outcome, _ = await cache.lookup(lead, NONE, [A])
    assert outcome.kind == "miss"
    await cache.store(lead, NONE, ModelResult(candidate=A, text="answer"))
    await cache.release(lead)

    same, r_same = await cache.lookup(req("How do I learn Python quickly?", "r2"), NONE, [A])
    assert same.kind == "exact" and r_same is not None and same.source_request_id == "r1"

    para = req("How can I learn Python quickly?", "r3")
    sem, r_sem = await cache.lookup(para, NONE, [A])
    assert sem.kind == "semantic" and r_sem is not None and r_sem.text == "answer"
    assert not exact._flights  # the exact lead taken by r3's lookup was ended on the semantic hit

    other, r_other = await cache.lookup(req("Why is the sky blue?", "r4"), NONE, [A])
    assert other.kind == "miss" and r_other is None


async def test_semantic_layer_respects_exact_bypass_for_personal_data() -> None:
    cache, _ = layered()
    pii = Detection(pii_types=["PERSON"])
    lead = req("How do I learn Python quickly?", "r1")
    await cache.lookup(lead, pii, [A])
    await cache.store(lead, pii, ModelResult(candidate=A, text="answer"))
    await cache.release(lead)
    outcome, result = await cache.lookup(req("How can I learn Python quickly?", "r2"), NONE, [A])
    assert result is None and outcome.kind == "miss"


def test_default_settings_keep_exact_only() -> None:
    from pathlib import Path

    from sovrouter.build import make_cache
    from sovrouter.config import Settings

    settings = Settings(catalog=Path("c.json"), tenants=Path("t.json"))
    cache = make_cache(settings, SimClock(), ":memory:")
    assert isinstance(cache, ExactCache) and cache.max_entries == 500_000 and cache.purge_every_ms == 60_000


def test_the_retention_settings_reach_the_cache_and_are_checked() -> None:
    from pathlib import Path

    from pydantic import ValidationError

    from sovrouter.build import make_cache
    from sovrouter.config import CacheSettings, Settings

    settings = Settings(catalog=Path("c.json"), tenants=Path("t.json"),
                        cache=CacheSettings(exact_max_entries=None, purge_every_s=5))
    cache = make_cache(settings, SimClock(), ":memory:")
    assert isinstance(cache, ExactCache) and cache.max_entries is None and cache.purge_every_ms == 5000
    for bad in ({"exact_max_entries": 0}, {"semantic_max_entries": -1}, {"purge_every_s": 0},
                {"purge_every_s": float("inf")},
                {"ttl_s": float("inf")}, {"ttl_s": 0.0004}):  # Redis keeps whole ms: PX 0 is refused, inf crashed
        with pytest.raises(ValidationError):
            CacheSettings.model_validate(bad)


@pytest.mark.slow
async def test_semantic_enabled_builds_layered_cache_with_real_model() -> None:
    from pathlib import Path

    from sovrouter.build import make_cache
    from sovrouter.config import CacheSettings, Settings

    settings = Settings(catalog=Path("c.json"), tenants=Path("t.json"), cache=CacheSettings(semantic_enabled=True))
    cache = make_cache(settings, SimClock(), ":memory:")
    assert isinstance(cache, LayeredCache)
    assert isinstance(cache.semantic, SemanticCache) and cache.semantic.max_entries == 100_000
    lead = req("How do I learn Python programming?", "r1")
    await cache.lookup(lead, NONE, [A])
    await cache.store(lead, NONE, ModelResult(candidate=A, text="answer"))
    await cache.release(lead)
    outcome, result = await cache.lookup(req("How do I learn Java programming?", "r2"), NONE, [A])
    assert result is None and outcome.kind == "miss"  # one entity swapped: never the same question


@pytest.mark.slow
async def test_the_gateway_cache_keeps_semantic_entries_across_a_restart(tmp_path: Path) -> None:
    from sovrouter.build import make_cache
    from sovrouter.config import CacheSettings, Settings

    settings = Settings(catalog=Path("c.json"), tenants=Path("t.json"), cache=CacheSettings(semantic_enabled=True))
    clock = SimClock(1_000.0)
    first = make_cache(settings, clock, str(tmp_path / "cache.sqlite"))
    lead = req("What is the meaning of life?", "r1")
    await first.lookup(lead, NONE, [A])
    await first.store(lead, NONE, ModelResult(candidate=A, text="answer"))
    await first.release(lead)
    assert (tmp_path / "semantic.sqlite").is_file()
    again = make_cache(settings, clock, str(tmp_path / "cache.sqlite"))
    outcome, result = await again.lookup(req("What's the meaning of life?", "r2"), NONE, [A])
    assert outcome.kind == "semantic" and outcome.source_request_id == "r1" and result is not None
    off = Settings(catalog=Path("c.json"), tenants=Path("t.json"),
                   cache=CacheSettings(semantic_enabled=True, semantic_persist=False))
    cold = make_cache(off, clock, str(tmp_path / "cache.sqlite"))  # without it, a restart starts empty
    assert (await cold.lookup(req("What's the meaning of life?", "r3"), NONE, [A]))[0].kind == "miss"


async def test_a_semantic_failure_ends_the_exact_lead() -> None:
    """The exact layer's miss leads its key's single flight; a failing semantic lookup (the embedder) left it
    held, so the next identical request waited forever."""
    import asyncio

    cache, _ = layered()
    failures = [RuntimeError("embedder failed")]
    real = cache.semantic.lookup

    async def flaky(*args: object) -> object:
        if failures:
            raise failures.pop()
        return await real(*args)  # type: ignore[arg-type]

    cache.semantic.lookup = flaky  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await cache.lookup(req("what is a cache?", "r1"), NONE, [A])
    outcome, _ = await asyncio.wait_for(cache.lookup(req("what is a cache?", "r2"), NONE, [A]), 5)
    assert outcome.kind == "miss"


async def test_with_the_exact_layer_off_a_semantic_miss_is_recorded_as_a_miss() -> None:
    clock = SimClock()
    cache = LayeredCache(ExactCache(clock, enabled=False),
                         SemanticCache(clock, HashingEmbedder(384), PairVerifier.cosine_only(0.7)))
    outcome, result = await cache.lookup(req("what is a cache?", "r1"), NONE, [A])
    assert result is None and outcome.kind == "miss"  # was "bypass": the semantic layer did look
