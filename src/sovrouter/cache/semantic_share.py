"""Share the semantic cache between gateway instances: each stored entry is broadcast to the others.

Behind a load balancer each instance stores only the answers it produced, so with k instances a paraphrase
finds its earlier question in the same instance's index about once in k. The exact cache is shared in Redis
(:mod:`sovrouter.cache.redis_exact`); a semantic hit needs the vectors in the process that searches them, so
here every instance keeps the whole index and the entries travel instead:

- :class:`SharedSemanticCache` wraps an instance's :class:`~sovrouter.cache.semantic.SemanticCache` (same
  :class:`~sovrouter.protocols.ResponseCache` Protocol). Lookups search the local index; an answer stored
  locally is also published, **only if the shared scope admits the request** (:class:`~sovrouter.cache.split.
  SharedScope`: a listed tenant, no personal data detected, class at most ``max_class``: the rule of the shared
  exact cache, decided before anything leaves the process). Entries from other instances are inserted with their
  own expiry, only for a tenant and class the receiving instance's scope admits too, and only if the vector has
  this instance's dimension. A hit on such an entry passes the same checks as a local one: verifier, TTL, and
  the producing candidate in the current request's allowed set.
- :class:`RedisEntryFeed`: one Redis Stream (``{prefix}:semantic``, ``XADD`` trimmed to about ``max_len``
  entries). Each instance reads it **from its oldest entry**, so a new or restarted instance starts with the
  entries the others still hold (expired ones are skipped), then follows it with ``XREAD BLOCK``. Publishing never
  waits on Redis (a task per entry); Redis down, slow or holding unreadable entries leaves each instance with its
  own index (fail open, counted in ``stats``).
- :class:`MemoryEntryFeed`: the same in one process (tests, benchmarks).

An entry carries the question text, the answer, its vector (float32 bytes), the tenant id, the declared class,
the partition hash and the producing request id: what the shared exact cache already keeps in Redis for the
same requests. Redis is trusted like that cache: whoever can write to it can plant answers.
"""

from __future__ import annotations

import contextlib
import json
import math
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import redis.asyncio as aioredis

from sovrouter.cache.semantic import Entry, SemanticCache, Stored
from sovrouter.cache.split import SharedScope
from sovrouter.contracts import (
    DATA_CLASS_ORDER,
    CacheOutcome,
    Candidate,
    DataClass,
    Detection,
    ModelResult,
    NormalizedRequest,
)
from sovrouter.protocols import AsyncClosable, GaugeCounter
from sovrouter.redis_streams import FAILURES, StreamBroadcast


@dataclass(frozen=True)
class SharedEntry:
    origin: str  # the publishing instance
    tenant: str
    data_class: DataClass
    stored: Stored
    embedder: str = ""  # the embedding model of ``stored.vector`` ("" from instances older than the field)

    def to_fields(self) -> dict[str, bytes]:
        meta = {"origin": self.origin, "tenant": self.tenant, "class": self.data_class, "model": self.embedder,
                "partition": self.stored.partition, "text": self.stored.text,
                "source": self.stored.entry.source_request_id, "expires_ms": self.stored.entry.expires_ms,
                "result": self.stored.entry.result.model_dump(mode="json")}
        vector = np.ascontiguousarray(self.stored.vector, dtype="<f4").tobytes()
        return {"m": json.dumps(meta, separators=(",", ":"), ensure_ascii=False).encode(), "v": vector}

    @classmethod
    def from_fields(cls, fields: Mapping[bytes, bytes]) -> SharedEntry:
        meta = json.loads(fields[b"m"])
        data_class = meta["class"]
        if data_class not in DATA_CLASS_ORDER:
            raise ValueError("unknown data class")
        vector = np.frombuffer(fields[b"v"], dtype="<f4").astype(np.float32)
        expires_ms = float(meta["expires_ms"])
        if not (np.isfinite(vector).all() and math.isfinite(expires_ms)):
            raise ValueError("non-finite vector or expiry")
        entry = Entry(str(meta["source"]), expires_ms, ModelResult.model_validate(meta["result"]))
        stored = Stored(str(meta["partition"]), str(meta["text"]), vector, entry)
        return cls(str(meta["origin"]), str(meta["tenant"]), data_class, stored, str(meta.get("model", "")))


Apply = Callable[[SharedEntry], None]


class EntryFeed(Protocol):
    """Broadcast of semantic-cache entries between instances."""

    instance: str
    stats: GaugeCounter[str]  # what the transport counts (published, delivered, errors)

    def publish(self, entry: SharedEntry) -> None: ...

    def subscribe(self, apply: Apply) -> None:
        """``apply`` receives the entries other instances publish (and, for a durable feed, those still held)."""
        ...


@dataclass
class MemoryEntryFeed:
    """In-process feed: ``hub.view("a")``, ``hub.view("b")`` share one list of subscribers."""

    instance: str = "memory"
    _hub: list[tuple[str, Apply]] = field(default_factory=list)
    stats: GaugeCounter[str] = field(default_factory=GaugeCounter)

    def view(self, instance: str) -> MemoryEntryFeed:
        return MemoryEntryFeed(instance, self._hub)

    def publish(self, entry: SharedEntry) -> None:
        self.stats["published"] += 1
        for owner, apply in list(self._hub):
            if owner != entry.origin:
                apply(entry)

    def subscribe(self, apply: Apply) -> None:
        self._hub.append((self.instance, apply))


class RedisEntryFeed:
    """Semantic-cache entries through one Redis Stream (the transport is
    :class:`~sovrouter.redis_streams.StreamBroadcast`)."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = "sovrouter", instance: str | None = None,
                 max_len: int = 100_000, block_ms: int = 500, retry_s: float = 1.0) -> None:
        self.key = f"{prefix}:semantic"
        self.instance = instance or secrets.token_hex(6)
        self.streams = StreamBroadcast(client, what="semantic index", max_len=max_len, block_ms=block_ms,
                                       retry_s=retry_s)
        self.stats = self.streams.stats  # published, delivered, errors
        self._subs: list[Apply] = []

    @classmethod
    def from_url(cls, url: str, *, password: str | None = None, op_timeout_s: float = 0.5,
                 prefix: str = "sovrouter", max_len: int = 100_000, block_ms: int = 500) -> RedisEntryFeed:
        client = aioredis.Redis.from_url(url, password=password, socket_connect_timeout=op_timeout_s,
                                         socket_timeout=op_timeout_s + block_ms / 1000.0)  # reads block
        return cls(client, prefix=prefix, max_len=max_len, block_ms=block_ms)

    def publish(self, entry: SharedEntry) -> None:
        self._follow()
        self.streams.publish(self.key, entry.to_fields())

    def subscribe(self, apply: Apply) -> None:
        self._subs.append(apply)
        with contextlib.suppress(RuntimeError):  # no loop yet: the reader starts with a publish or ``start``
            self._follow()

    async def start(self) -> None:
        self._follow()

    async def aclose(self) -> None:
        await self.streams.aclose()

    def _follow(self) -> None:
        if self._subs:
            self.streams.follow(self.key, _oldest, self._deliver)

    def _deliver(self, fields: Mapping[bytes, bytes]) -> None:
        try:
            entry = SharedEntry.from_fields(fields)
        except FAILURES as exc:  # (pydantic's ValidationError is a ValueError)
            self.streams.failed("decode", exc)
            return
        if entry.origin == self.instance:
            return
        for apply in self._subs:
            apply(entry)
        self.stats["delivered"] += 1


async def _oldest() -> str:
    """From the oldest entry held: a new or restarted instance starts with what the others cached."""
    return "0-0"


class SharedSemanticCache:
    """A semantic cache whose admitted entries reach every instance. Same Protocol as the cache it wraps."""

    def __init__(self, local: SemanticCache, feed: EntryFeed, scope: SharedScope) -> None:
        self.local = local
        self.feed = feed
        self.scope = scope
        # published, inserted, refused (read by /metrics from its worker thread)
        self.stats: GaugeCounter[str] = GaugeCounter()
        self._subscribed = False

    def _subscribe(self) -> None:
        if not self._subscribed:  # inside the serving loop: a Redis feed starts reading here
            self._subscribed = True
            self.feed.subscribe(self._apply)

    async def lookup(self, request: NormalizedRequest, detection: Detection,
                     allowed: Sequence[Candidate]) -> tuple[CacheOutcome, ModelResult | None]:
        self._subscribe()
        return await self.local.lookup(request, detection, allowed)

    async def store(self, request: NormalizedRequest, detection: Detection, result: ModelResult) -> None:
        self._subscribe()
        stored = self.local.store_entry(request, detection, result)
        if stored is not None and self.scope.admits(request, detection):
            self.feed.publish(SharedEntry(self.feed.instance, request.tenant, request.data_class, stored,
                                          self.local.verifier.embedder))
            self.stats["published"] += 1

    async def release(self, request: NormalizedRequest) -> None:
        await self.local.release(request)

    def _apply(self, shared: SharedEntry) -> None:
        stored = shared.stored
        if (shared.origin == self.feed.instance or not self.scope.admits_class(shared.tenant, shared.data_class)
                or stored.vector.shape != (self.local.embedder.dim,)
                # another model's vectors (an instance not yet upgraded, or one upgraded first) never mix in
                or (shared.embedder and shared.embedder != self.local.verifier.embedder)
                or stored.entry.expires_ms <= self.local.clock.now_ms()):
            self.stats["refused"] += 1
            return
        self.local.insert(stored)
        self.stats["inserted"] += 1

    def cache_gauges(self) -> dict[str, float]:
        out = self.local.cache_gauges()
        out.update({f"semantic_shared_{name}_total": float(n) for name, n in self.stats.snapshot().items()})
        out.update({f"semantic_feed_{name}_total": float(n) for name, n in self.feed.stats.snapshot().items()})
        return out

    async def aclose(self) -> None:
        if isinstance(self.feed, AsyncClosable):
            await self.feed.aclose()
