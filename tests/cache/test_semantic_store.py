"""SQLiteEntryStore: the semantic cache's entries survive a restart, within the TTL and the entry bound; rows
that cannot be read back, or vectors of another model, are never served."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Collection, Iterator
from pathlib import Path

import numpy as np

from sovrouter.cache.semantic import DELETE_BATCH, Entry, SemanticCache, Stored
from sovrouter.cache.semantic_store import SQLiteEntryStore
from sovrouter.cache.verifier import PairVerifier
from sovrouter.clock import SimClock
from sovrouter.contracts import Candidate, ContentPart, Detection, Message, ModelResult, NormalizedRequest
from sovrouter.embed import HashingEmbedder

A = Candidate(slot="frontier", deployment="us")
NONE = Detection()
_ids = itertools.count()


def req(text: str, tenant: str = "acme") -> NormalizedRequest:
    return NormalizedRequest(request_id=f"r{next(_ids)}", tenant=tenant,
                             messages=(Message(role="user", parts=(ContentPart(modality="text", text=text),)),))


def cache_at(path: Path, clock: SimClock, embedder: str = "hashing", max_entries: int | None = None,
             dim: int = 384) -> SemanticCache:
    store = SQLiteEntryStore(path, embedder, dim)
    return SemanticCache(clock, HashingEmbedder(dim), PairVerifier.cosine_only(0.7), ttl_s=60,
                         max_entries=max_entries, store=store)


async def produce(cache: SemanticCache, text: str, tenant: str = "acme") -> str:
    r = req(text, tenant)
    await cache.store(r, NONE, ModelResult(candidate=A, text=f"answer to {text}"))
    await cache.release(r)
    return r.request_id


async def ask(cache: SemanticCache, text: str, tenant: str = "acme") -> str | None:
    r = req(text, tenant)
    outcome, result = await cache.lookup(r, NONE, [A])
    await cache.release(r)
    return outcome.source_request_id if result is not None else None


def rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM semantic_entries").fetchone()[0])


async def test_entries_survive_a_restart_within_their_ttl(tmp_path: Path) -> None:
    path, clock = tmp_path / "semantic.sqlite", SimClock()
    first = cache_at(path, clock)
    source = await produce(first, "How do I learn Python quickly?")
    await produce(first, "Why is the sky blue?", tenant="eurobank")
    clock.set(30_000)
    again = cache_at(path, clock)  # a restart: the same file, a fresh process's cache
    assert again.entry_count() == 2
    assert await ask(again, "How can I learn Python quickly?") == source
    assert await ask(again, "How can I learn Python quickly?", tenant="eurobank") is None  # partitions kept
    clock.set(61_000)
    later = cache_at(path, clock)  # expired while down: not loaded, and deleted from the file
    assert later.entry_count() == 0 and rows(path) == 0


async def test_purges_and_evictions_are_deleted_from_the_file(tmp_path: Path) -> None:
    path, clock = tmp_path / "semantic.sqlite", SimClock()
    cache = cache_at(path, clock, max_entries=3)
    for i in range(4):  # the fourth store evicts down to 2
        clock.set(i * 1000.0)
        await produce(cache, f"Question {i}: what is {i * 7919 % 1000} plus {i}?")
    assert cache.entry_count() == 2 and rows(path) == 2
    restarted = cache_at(path, clock, max_entries=3)
    assert await ask(restarted, "Question 3: what is 757 plus 3?") is not None
    assert await ask(restarted, "Question 0: what is 0 plus 0?") is None
    smaller = cache_at(path, clock, max_entries=1)  # a smaller bound after a restart holds at once
    assert smaller.entry_count() == 1 and rows(path) == 1


async def test_vectors_of_another_model_or_unreadable_rows_are_never_served(tmp_path: Path) -> None:
    path, clock = tmp_path / "semantic.sqlite", SimClock()
    await produce(cache_at(path, clock), "How do I learn Python quickly?")
    other = cache_at(path, clock, embedder="another-model")
    assert other.entry_count() == 0 and rows(path) == 0  # another vector space: emptied, not mixed
    await produce(other, "How do I learn Python quickly?")
    await produce(other, "Why is the sky blue?")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE semantic_entries SET result_json = '{' WHERE text = 'Why is the sky blue?'")
    reopened = cache_at(path, clock, embedder="another-model")
    assert reopened.entry_count() == 1 and rows(path) == 1
    assert await ask(reopened, "How can I learn Python quickly?") is not None


async def test_a_damaged_vector_blob_is_dropped_not_a_failed_start(tmp_path: Path) -> None:
    path, clock = tmp_path / "semantic.sqlite", SimClock()
    await produce(cache_at(path, clock), "How do I learn Python quickly?")
    await produce(cache_at(path, clock), "Why is the sky blue?")
    with sqlite3.connect(path) as db:  # 5 bytes: not a whole float32 (was a ValueError out of the constructor)
        db.execute("UPDATE semantic_entries SET vector = x'0102030405' WHERE text = 'Why is the sky blue?'")
    reopened = cache_at(path, clock)
    assert reopened.entry_count() == 1 and rows(path) == 1


async def test_a_write_the_database_refuses_is_not_the_requests_error(tmp_path: Path) -> None:
    path, clock = tmp_path / "semantic.sqlite", SimClock()
    cache = cache_at(path, clock)
    with sqlite3.connect(path) as db:  # another process holds a write lock: "database is locked"
        db.execute("PRAGMA busy_timeout = 0")
        db.execute("BEGIN IMMEDIATE")
        store = cache._persist
        assert isinstance(store, SQLiteEntryStore)
        store._db.execute("PRAGMA busy_timeout = 0")
        source = await produce(cache, "How do I learn Python quickly?")  # no error
        db.rollback()
    assert await ask(cache, "How can I learn Python quickly?") == source  # served from memory
    assert rows(path) == 0  # just not persisted


class CountingStore:
    """An entry store that keeps nothing and counts the rows each lookup or store deletes."""

    def __init__(self) -> None:
        self.deleted = 0

    def put(self, key: str, stored: Stored) -> None:
        return None

    def delete(self, partition: str, keys: Collection[str]) -> None:
        self.deleted += len(keys)

    def load(self, now_ms: float) -> Iterator[Stored]:
        return iter(())

    def take(self) -> int:
        n, self.deleted = self.deleted, 0
        return n


async def test_eviction_and_purge_delete_a_bounded_batch_per_call() -> None:
    """Eviction dropped 10% of the bound in one store, on the event loop: at the default 100,000 entries that is
    10,001 SQLite deletes, one commit each, about 1 s during which every request and /health waited (found in
    review, 2026-11-28). A purge of entries that expired together did the same, unbounded (7 s for 100,000). Now one
    lookup or store deletes at most about ``DELETE_BATCH`` entries, and the bound still holds after every store."""
    clock, store = SimClock(), CountingStore()
    bound, dim = 15_000, 16
    cache = SemanticCache(clock, HashingEmbedder(dim), PairVerifier.cosine_only(0.7), ttl_s=60,
                          max_entries=bound, store=store)
    vectors = np.random.default_rng(0).standard_normal((bound + 3000, dim)).astype(np.float32)
    per_store = []
    for i, vector in enumerate(vectors):
        clock.set(float(i))
        cache.insert(Stored(f"p{i % 7}", f"question {i}", vector,
                            Entry(f"r{i}", i + 60_000.0, ModelResult(candidate=A, text=f"answer {i}"))))
        per_store.append(store.take())
        assert cache.entry_count() <= bound  # after every store
    assert 0 < max(per_store) <= DELETE_BATCH + 1 and sum(per_store) == len(vectors) - cache.entry_count()
    clock.set(10**9)  # everything has expired: each lookup purges a batch, the next one goes on
    held, per_lookup = cache.entry_count(), []
    while cache.entry_count():
        await ask(cache, "Why is the sky blue?")
        per_lookup.append(store.take())
    assert max(per_lookup) <= DELETE_BATCH and sum(per_lookup) == held
    assert len(per_lookup) == -(-held // DELETE_BATCH)
