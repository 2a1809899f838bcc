"""SemanticCache: hits, tenant isolation, policy check, personal data, TTL, order independence."""

from __future__ import annotations

from pathlib import Path

import pytest

from sovrouter.cache.semantic import SemanticCache
from sovrouter.cache.semindex import SemanticIndex
from sovrouter.cache.verifier import PairVerifier
from sovrouter.clock import SimClock
from sovrouter.contracts import Candidate, ContentPart, Detection, Message, ModelResult, NormalizedRequest
from sovrouter.embed import HashingEmbedder

A = Candidate(slot="frontier", deployment="us")
B = Candidate(slot="local-small", deployment="edge")
NONE = Detection()


def req(text: str, tenant: str = "acme", rid: str = "r1", temperature: float | None = None) -> NormalizedRequest:
    params = {"temperature": temperature} if temperature is not None else {}
    return NormalizedRequest.model_validate({
        "request_id": rid, "tenant": tenant, "parameters": params,
        "messages": (Message(role="user", parts=(ContentPart(modality="text", text=text),)),),
    })


def make_cache(clock: SimClock | None = None, ttl_s: float = 3600.0) -> SemanticCache:
    return SemanticCache(clock or SimClock(), HashingEmbedder(384), PairVerifier.cosine_only(0.7), ttl_s=ttl_s)


async def put(cache: SemanticCache, text: str, cand: Candidate = A, tenant: str = "acme", rid: str = "src") -> None:
    r = req(text, tenant, rid)
    await cache.store(r, NONE, ModelResult(candidate=cand, text=f"answer to {text}"))
    await cache.release(r)


async def test_paraphrase_hits_with_source_and_candidate() -> None:
    cache = make_cache()
    await put(cache, "How do I learn Python quickly?")
    outcome, result = await cache.lookup(req("How can I learn Python quickly?", rid="q"), NONE, [A, B])
    assert result is not None and result.text == "answer to How do I learn Python quickly?"
    assert outcome.kind == "semantic" and outcome.source_request_id == "src" and outcome.source_candidate == A


async def test_unrelated_question_misses() -> None:
    cache = make_cache()
    await put(cache, "How do I learn Python quickly?")
    outcome, result = await cache.lookup(req("Why is the sky blue?", rid="q"), NONE, [A])
    assert result is None and outcome.kind == "miss"


async def test_tenant_isolation() -> None:
    cache = make_cache()
    await put(cache, "How do I learn Python quickly?", tenant="acme")
    _, other = await cache.lookup(req("How can I learn Python quickly?", tenant="eurobank", rid="q"), NONE, [A])
    _, same = await cache.lookup(req("How can I learn Python quickly?", tenant="acme", rid="q2"), NONE, [A])
    assert other is None and same is not None


async def test_entry_from_deployment_not_allowed_now_is_not_served() -> None:
    cache = make_cache()
    await put(cache, "How do I learn Python quickly?", cand=A)
    outcome, result = await cache.lookup(req("How can I learn Python quickly?", rid="q"), NONE, [B])
    assert result is None and outcome.kind == "miss"


async def test_personal_data_bypasses_and_is_never_stored() -> None:
    cache = make_cache()
    pii = Detection(pii_types=["PERSON"])
    r = req("How do I learn Python quickly?", rid="p")
    outcome, _ = await cache.lookup(r, pii, [A])
    assert outcome.kind == "bypass"
    await cache.store(r, pii, ModelResult(candidate=A, text="x"))
    await cache.release(r)
    _, result = await cache.lookup(req("How do I learn Python quickly?", rid="q"), NONE, [A])
    assert result is None


async def test_detector_failure_counts_as_personal_data() -> None:
    cache = make_cache()
    outcome, _ = await cache.lookup(req("How do I learn Python quickly?"), Detection(failed=True), [A])
    assert outcome.kind == "bypass"


async def test_numbers_must_match_exactly() -> None:
    cache = make_cache()
    await put(cache, "How should I invest 500 dollars as a student?")
    _, result = await cache.lookup(req("How should I invest 5000 dollars as a student?", rid="q"), NONE, [A])
    assert result is None


async def test_different_parameters_do_not_share_entries() -> None:
    cache = make_cache()
    await put(cache, "How do I learn Python quickly?")
    _, result = await cache.lookup(req("How can I learn Python quickly?", rid="q", temperature=0.9), NONE, [A])
    assert result is None


async def test_expired_entry_is_not_served() -> None:
    clock = SimClock()
    cache = make_cache(clock, ttl_s=10)
    await put(cache, "How do I learn Python quickly?")
    clock.set(11_000)
    _, result = await cache.lookup(req("How can I learn Python quickly?", rid="q"), NONE, [A])
    assert result is None


async def test_truncated_answers_are_not_stored() -> None:
    cache = make_cache()
    r = req("How do I learn Python quickly?")
    await cache.store(r, NONE, ModelResult(candidate=A, text="partial", finish_reason="length"))
    _, result = await cache.lookup(req("How can I learn Python quickly?", rid="q"), NONE, [A])
    assert result is None


async def test_lookup_vector_is_reused_by_store_and_dropped_on_release() -> None:
    cache = make_cache()
    r = req("How do I learn Python quickly?", rid="lead")
    await cache.lookup(r, NONE, [A])
    assert "lead" in cache._pending
    await cache.store(r, NONE, ModelResult(candidate=A, text="y"))
    await cache.release(r)
    assert not cache._pending


STORED = [
    "How do I learn Python fast?", "How do I learn Python quick?", "What is the capital of France?",
    "Why do cats purr?", "How can I improve my English speaking?", "What is machine learning?",
    "How do I make good coffee at home?", "Is coffee bad for your health?", "What causes rainbows?",
]
QUERIES = ["How do I learn Python?", "How can I improve my spoken English?", "What is the capital city of France?",
           "Why do cats purr so much?", "What is deep learning?", "Is tea bad for your health?"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_decisions_do_not_depend_on_insertion_order(seed: int) -> None:
    import random

    emb = HashingEmbedder(384)
    verifier = PairVerifier.cosine_only(0.6)

    def decide(order: list[str]) -> list[tuple[str, float] | None]:
        index: SemanticIndex[str] = SemanticIndex(verifier, emb.dim)
        for t in order:
            index.add(t, emb.embed([t])[0], t)
        out = index.match_many(QUERIES, emb.embed(QUERIES))
        return [None if m is None else (m.text, round(m.probability, 9)) for m in out]

    shuffled = list(STORED)
    random.Random(seed).shuffle(shuffled)
    first = decide(STORED)
    assert first == decide(shuffled)
    assert first[0] is not None and first[0][0] in STORED[:2]


def test_exact_ties_are_broken_by_text_not_by_order() -> None:
    import numpy as np

    verifier = PairVerifier.cosine_only(0.6)
    vec = np.ones(8, dtype=np.float32) / np.sqrt(8)
    picks = set()
    for order in (["What is b?", "What is a?"], ["What is a?", "What is b?"]):
        index: SemanticIndex[str] = SemanticIndex(verifier, 8)
        for t in order:
            index.add(t, vec, t)
        m = index.match("What is c?", vec)
        picks.add(None if m is None else m.text)
    assert picks == {"What is a?"}


def test_more_ties_than_the_top_k_do_not_make_the_choice_depend_on_order() -> None:
    """Entries with the same vector (texts equal up to case for an uncased model) tying at the k-th place were cut
    by row, i.e. by insertion order, so which one was served depended on the order entries were added."""
    import itertools
    import random

    import numpy as np

    verifier = PairVerifier.cosine_only(0.3, top_k=4)
    vec = np.ones(8, dtype=np.float32) / np.sqrt(8)
    texts = ["".join(c.upper() if (m >> i) & 1 else c for i, c in enumerate("what is x?")) for m in range(12)]
    picks = set()
    for seed in itertools.islice(itertools.count(), 6):
        order = list(texts)
        random.Random(seed).shuffle(order)
        index: SemanticIndex[str] = SemanticIndex(verifier, 8)
        for t in order:
            index.add(t, vec, t)
        m = index.match("what is y?", vec)
        picks.add(None if m is None else m.text)
    assert picks == {min(texts)}


# ---------------------------------------------------------------- retention: expiry purge and the entry bound
async def test_expired_entries_are_purged_and_their_partition_dropped() -> None:
    clock = SimClock()
    cache = SemanticCache(clock, HashingEmbedder(384), PairVerifier.cosine_only(0.7), ttl_s=10, purge_every_s=60)
    await put(cache, "How do I learn Python quickly?", tenant="acme")
    await put(cache, "Why is the sky blue?", tenant="eurobank")
    assert cache.entry_count() == 2
    clock.set(30_000)  # expired, but the next purge is not due yet: held, never served
    _, result = await cache.lookup(req("How can I learn Python quickly?", rid="q"), NONE, [A])
    assert result is None and cache.entry_count() == 2
    clock.set(61_000)
    await cache.lookup(req("What is the capital of France?", rid="q2"), NONE, [A])
    assert cache.entry_count() == 0 and not cache._indexes and not cache._expiry


def held(cache: SemanticCache) -> set[str]:
    """Source request ids of every entry the cache holds."""
    return {index.payload(t).source_request_id  # type: ignore[union-attr]
            for index in cache._indexes.values() for t in index._texts}


async def test_the_entry_bound_drops_the_oldest_first_and_holds_after_every_store() -> None:
    clock = SimClock()
    cache = SemanticCache(clock, HashingEmbedder(384), PairVerifier.cosine_only(0.7), max_entries=10)
    for i in range(20):
        clock.set(i * 1000.0)
        await put(cache, f"Question {i}: what is {i * 7919 % 1000} plus {i}?", rid=f"s{i}",
                  tenant="acme" if i % 2 else "eurobank")
        assert cache.entry_count() <= 10 and cache.entry_count() == len(held(cache))
    # 11 entries -> down to 9 (90%), the oldest first; one store later 10, and so on
    assert held(cache) == {f"s{i}" for i in range(10, 20)}


async def test_storing_an_entry_again_makes_it_new() -> None:
    clock = SimClock()
    cache = SemanticCache(clock, HashingEmbedder(384), PairVerifier.cosine_only(0.7), max_entries=3)
    texts = ["Why is the sky blue?", "What do pandas eat?", "How tall is Mount Everest?", "Who wrote Hamlet?"]
    for i, text in enumerate(texts[:3]):
        clock.set(i * 1000.0)
        await put(cache, text, rid=f"s{i}")
    clock.set(5000.0)
    await put(cache, texts[0], rid="again")  # refreshed: its first expiry record is stale now
    clock.set(6000.0)
    await put(cache, texts[3], rid="s3")  # 4 > 3: down to 2 entries, the two oldest go
    assert cache.entry_count() == 2
    assert held(cache) == {"again", "s3"}


def test_decisions_after_removal_equal_a_fresh_index_of_the_survivors() -> None:
    emb = HashingEmbedder(384)
    verifier = PairVerifier.cosine_only(0.6)
    index: SemanticIndex[str] = SemanticIndex(verifier, emb.dim)
    for t in STORED:
        index.add(t, emb.embed([t])[0], t)
    gone = {STORED[0], STORED[4], STORED[-1], "never stored"}
    assert index.remove(gone) == 3
    survivors = [t for t in STORED if t not in gone]
    fresh: SemanticIndex[str] = SemanticIndex(verifier, emb.dim)
    for t in reversed(survivors):
        fresh.add(t, emb.embed([t])[0], t)

    def decide(ix: SemanticIndex[str]) -> list[tuple[str, str, float] | None]:
        out = ix.match_many(QUERIES + STORED, emb.embed(QUERIES + STORED))
        return [None if m is None else (m.text, m.payload, round(m.probability, 9)) for m in out]

    assert len(index) == len(survivors) and decide(index) == decide(fresh)
    assert all(index.payload(t) == t for t in survivors) and index.payload(STORED[0]) is None


def test_the_bound_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SemanticCache(SimClock(), HashingEmbedder(384), PairVerifier.cosine_only(0.7), max_entries=0)


async def test_an_entry_stored_under_another_catalog_is_never_served(tmp_path: Path) -> None:
    """As in the exact cache: a hit is checked against the allowed set by the producing deployment's name, under
    the current catalog. An entry kept across a restart in which the catalog moved that deployment (another
    region, another audience) must not match: the catalog's fingerprint is part of the partition."""
    from sovrouter.cache.semantic_store import SQLiteEntryStore

    stores: list[SQLiteEntryStore] = []

    def under(catalog_fingerprint: str) -> SemanticCache:
        stores.append(SQLiteEntryStore(tmp_path / "semantic.sqlite", "hashing", 384))
        return SemanticCache(SimClock(), HashingEmbedder(384), PairVerifier.cosine_only(0.7), store=stores[-1],
                             scope=catalog_fingerprint)

    before = under("catalog-1")
    r = req("How do I learn Python quickly?")
    await before.store(r, NONE, ModelResult(candidate=A, text="answer"))
    await before.release(r)
    _, moved = await under("catalog-2").lookup(req("How can I learn Python quickly?", rid="q1"), NONE, [A])
    _, same = await under("catalog-1").lookup(req("How can I learn Python quickly?", rid="q2"), NONE, [A])
    for store in stores:
        store.close()
    assert moved is None and same is not None


async def test_embedding_a_lookup_leaves_the_event_loop_free() -> None:
    """The lookup's embedding (all-MiniLM-L6-v2 on CPU, about 17 ms on this project's machine, for every eligible
    request) and the eligibility rules (regular expressions over a system prompt of up to ``max_body_bytes``,
    0.5 s for one of 1 MB) ran on the event loop, holding every other request and /health meanwhile, as detection
    once did. They run in a worker thread now: here the embedding waits for an event only the loop can set."""
    import asyncio
    import threading

    freed = threading.Event()
    seen: list[bool] = []

    class Slow(HashingEmbedder):
        def embed(self, texts):  # type: ignore[no-untyped-def]
            seen.append(freed.wait(timeout=2.0))  # on the loop's thread this waits out its 2 s: nobody sets it
            return super().embed(texts)

    cache = SemanticCache(SimClock(), Slow(384), PairVerifier.cosine_only(0.7))

    async def loop_side() -> None:
        await asyncio.sleep(0.05)
        freed.set()

    (outcome, _), _ = await asyncio.gather(cache.lookup(req("How do I learn Python quickly?"), NONE, [A]),
                                           loop_side())
    assert outcome.kind == "miss" and seen == [True]
    await cache.store(req("How do I learn Python quickly?"), NONE, ModelResult(candidate=A, text="a"))
    assert seen == [True] and cache.entry_count() == 1  # the lookup's vector is reused: no second embedding
