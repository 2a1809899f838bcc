"""Semantic cache: answer a request from an earlier, differently worded request of the same tenant.

- Partitioned by tenant, requested model, generation parameters and system prompt: a tenant never sees
  another tenant's entries, and an answer is only reused under the same parameters.
- Only eligible requests are embedded, stored or matched (:mod:`sovrouter.cache.eligibility`): no personal
  data, single short text question, not time-sensitive, not generative, not code.
- A hit needs the calibrated pair verifier to accept the best candidate (:mod:`sovrouter.cache.semindex`); the
  entry then still must be fresh (TTL) and its producing candidate must be in the current request's allowed set,
  exactly like the exact cache. Entries remember the request id that produced them (``source_request_id``).
- The vector computed at lookup is kept until ``release`` so that ``store`` does not embed twice. The lookup's
  eligibility rules and embedding run in a worker thread, one embedding at a time (a tokenizer is not safe to share
  between threads): until 2026-11-28 they ran on the event loop, which every request and /health waited on for
  each eligible request's embedding (about 17 ms with all-MiniLM-L6-v2 on one CPU thread), and for the rules'
  regular expressions over a long system prompt (0.5 s for 1 MB). The index is searched on the loop, where it is
  changed.
- Retention, as in the exact cache: expired entries are dropped at most ``purge_every_s`` apart (checked on lookup
  and store; a partition left empty goes with them), and with ``max_entries`` the cache never holds more
  entries than that after a store: the entries closest to expiry (the oldest stored) go first, down to 90% of
  the bound or ``DELETE_BATCH`` below it, whichever is more; a purge that finds more than ``DELETE_BATCH``
  expired entries goes on at the next lookup or store. Drops run on the event loop with the entry store's
  deletes, so one call drops at most about ``DELETE_BATCH`` entries (12-30 ms with the SQLite store): until
  2026-11-28 eviction dropped 10% of the bound at once (1 s for the default 100,000; found in review). Which
  entries remain is a set, so decisions still do not depend on the order they came in.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import json
import threading
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from sovrouter.cache.eligibility import request_ineligible_reason
from sovrouter.cache.semindex import SemanticIndex, normalise_text
from sovrouter.cache.verifier import PairVerifier
from sovrouter.contracts import CacheOutcome, Candidate, Detection, ModelResult, NormalizedRequest
from sovrouter.embed import Embedder
from sovrouter.errors import ConfigError
from sovrouter.protocols import Clock

_LOW_WATER = 0.9  # eviction brings the cache down to this share of max_entries (at most a batch below it)
DELETE_BATCH = 500  # entries one lookup or store drops at most (purge), or past the bound (eviction)


@dataclass(frozen=True)
class Entry:
    source_request_id: str
    expires_ms: float
    result: ModelResult


def partition_key(request: NormalizedRequest, scope: str = "") -> str:
    """``scope`` as in :func:`sovrouter.cache.exact.cache_key`."""
    system = [m.text for m in request.messages if m.role in ("system", "developer")]
    body = {
        "tenant": request.tenant,
        "model": request.requested_model,
        "parameters": request.parameters.key_fields(),
        "system": system,
        **({"catalog": scope} if scope else {}),
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogatepass")
                          ).hexdigest()


@dataclass(frozen=True)
class Stored:
    """One entry as stored in a partition: the text, its main-model vector and the entry."""

    partition: str
    text: str
    vector: NDArray[np.float32]
    entry: Entry


class EntryStore(Protocol):
    """Where entries outlive the process (``semantic_store.SQLiteEntryStore``): written as they are added,
    deleted as they are dropped, loaded at start-up."""

    def put(self, key: str, stored: Stored) -> None: ...

    def delete(self, partition: str, keys: Collection[str]) -> None: ...

    def load(self, now_ms: float) -> Iterator[Stored]: ...


@dataclass(frozen=True)
class _Pending:
    partition: str
    text: str
    vector: NDArray[np.float32]


class SemanticCache:
    def __init__(self, clock: Clock, embedder: Embedder, verifier: PairVerifier, ttl_s: float = 3600.0,
                 alt_embedder: Embedder | None = None, *, max_entries: int | None = None,
                 purge_every_s: float = 60.0, store: EntryStore | None = None, scope: str = "") -> None:
        if verifier.alt_embedder is not None and alt_embedder is None:
            raise ConfigError(f"this pair verifier needs the {verifier.alt_embedder} embedding model as well")
        if max_entries is not None and max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.clock = clock
        self.scope = scope  # the catalog's fingerprint, in every partition key
        self.embedder = embedder
        self.alt_embedder = alt_embedder
        self.verifier = verifier
        self.ttl_ms = ttl_s * 1000.0
        self.max_entries = max_entries
        self.purge_every_ms = purge_every_s * 1000.0
        self._indexes: dict[str, SemanticIndex[Entry]] = {}
        self._pending: dict[str, _Pending] = {}
        self._embedding = threading.Lock()  # one main-model embedding at a time (lookups embed in worker threads)
        self._entries = 0
        self._next_purge_ms = -1.0
        self._expiry: list[tuple[float, str, str]] = []  # heap of (expires_ms, partition, text key) per store
        self._purged = self._evicted = 0
        self._persist = store  # every change is written through, after loading what an earlier run kept
        self._loading = store is not None
        for stored in store.load(clock.now_ms()) if store is not None else ():
            self.insert(stored)  # (evictions past the bound are deleted from the store too)
        self._loading = False

    def entry_count(self) -> int:
        """Entries held in every partition, expired ones not yet purged included."""
        return self._entries

    def cache_gauges(self) -> dict[str, float]:
        return {"semantic_entries": self._entries, "semantic_partitions": len(self._indexes),
                "semantic_purged_total": self._purged, "semantic_evicted_total": self._evicted}

    def _prepare(self, request: NormalizedRequest, detection: Detection) -> _Pending | None:
        pending = self._pending.get(request.request_id)
        if pending is None:
            pending = self._embedded(request, detection)
            if pending is not None:
                self._pending[request.request_id] = pending
        return pending

    def _embedded(self, request: NormalizedRequest, detection: Detection) -> _Pending | None:
        """The request's partition, text and vector; None if it may not use the cache. CPU work, thread-safe."""
        if request_ineligible_reason(request, detection) is not None:
            return None
        text = request.user_text
        with self._embedding:
            vector = self.embedder.embed([text])[0]
        return _Pending(partition_key(request, self.scope), text, vector)

    async def lookup(self, request: NormalizedRequest, detection: Detection,
                     allowed: Sequence[Candidate]) -> tuple[CacheOutcome, ModelResult | None]:
        pending = self._pending.get(request.request_id)
        if pending is None:  # off the event loop (module doc); kept for store once back on it
            pending = await asyncio.to_thread(self._embedded, request, detection)
            if pending is not None:
                self._pending[request.request_id] = pending
        if pending is None:
            return CacheOutcome(kind="bypass"), None
        self._purge_expired_if_due()
        index = self._indexes.get(pending.partition)
        match = index.match(pending.text, pending.vector) if index is not None else None
        if match is None:
            return CacheOutcome(kind="miss"), None
        entry = match.payload
        if entry.expires_ms <= self.clock.now_ms() or entry.result.candidate not in allowed:
            return CacheOutcome(kind="miss"), None  # stale, or produced where this request may not go
        outcome = CacheOutcome(kind="semantic", source_request_id=entry.source_request_id,
                               source_candidate=entry.result.candidate)
        self._pending.pop(request.request_id, None)  # served: no store or release follows for this request
        return outcome, entry.result

    async def store(self, request: NormalizedRequest, detection: Detection, result: ModelResult) -> None:
        self.store_entry(request, detection, result)

    def store_entry(self, request: NormalizedRequest, detection: Detection, result: ModelResult) -> Stored | None:
        """``store``, returning what was stored (None when the request or answer may not be reused), so that a
        wrapper can hand the entry on (``semantic_share``) without embedding the text again."""
        if result.finish_reason != "stop" or not result.text:
            return None  # truncated or empty answers are never reused
        pending = self._prepare(request, detection)
        if pending is None:
            return None
        stored = Stored(pending.partition, pending.text, pending.vector,
                        Entry(request.request_id, self.clock.now_ms() + self.ttl_ms, result))
        self.insert(stored)
        return stored

    def insert(self, stored: Stored) -> None:
        """Add an entry as it is (its own expiry): one stored here, or by another instance."""
        index = self._indexes.get(stored.partition)
        if index is None:
            index = SemanticIndex(self.verifier, self.embedder.dim, self.alt_embedder)
            self._indexes[stored.partition] = index
        current = index.payload(stored.text)
        if current is not None and current.expires_ms >= stored.entry.expires_ms:
            return  # an older copy of an entry held already (another instance's history, read late)
        before = len(index)
        index.add(stored.text, stored.vector, stored.entry)
        self._entries += len(index) - before
        key = normalise_text(stored.text)
        heapq.heappush(self._expiry, (stored.entry.expires_ms, stored.partition, key))
        if self._persist is not None and not self._loading:
            self._persist.put(key, stored)
        self._purge_expired_if_due()
        self._bound()

    def _purge_expired_if_due(self) -> None:
        now = self.clock.now_ms()
        if now < self._next_purge_ms:
            return
        doomed: dict[str, set[str]] = {}
        taken = 0
        while self._expiry and self._expiry[0][0] <= now and taken < DELETE_BATCH:
            taken += self._take_oldest(doomed)
        if taken < DELETE_BATCH:  # else more may have expired: the next lookup or store goes on
            self._next_purge_ms = now + self.purge_every_ms
        self._purged += self._drop(doomed)

    def _bound(self) -> None:
        if self.max_entries is None or self._entries <= self.max_entries:
            return
        keep = max(1, int(self.max_entries * _LOW_WATER), self.max_entries - DELETE_BATCH)
        doomed: dict[str, set[str]] = {}
        taken = 0
        while self._entries - taken > keep and self._expiry:
            taken += self._take_oldest(doomed)
        self._evicted += self._drop(doomed)

    def _take_oldest(self, doomed: dict[str, set[str]]) -> int:
        """Pop the oldest expiry record into ``doomed``: 1 if it names a live entry not stored again since (a
        later store leaves a record of its own) and not already doomed, else 0."""
        expires_ms, part, key = heapq.heappop(self._expiry)
        index = self._indexes.get(part)
        entry = index.payload(key) if index is not None else None
        if entry is None or entry.expires_ms != expires_ms or key in doomed.get(part, ()):
            return 0
        doomed.setdefault(part, set()).add(key)
        return 1

    def _drop(self, doomed: dict[str, set[str]]) -> int:
        dropped = 0
        for part, keys in doomed.items():
            index = self._indexes[part]
            dropped += index.remove(keys)
            if self._persist is not None:
                self._persist.delete(part, keys)
            if len(index) == 0:
                del self._indexes[part]
        self._entries -= dropped
        return dropped

    async def release(self, request: NormalizedRequest) -> None:
        self._pending.pop(request.request_id, None)
