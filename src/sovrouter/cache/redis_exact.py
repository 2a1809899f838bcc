"""Exact cache in Redis, shared by every gateway instance, with single-flight across instances.

The same :class:`~sovrouter.protocols.ResponseCache` as :class:`~sovrouter.cache.exact.ExactCache` (same key,
same rule that an entry is served only if the deployment that produced it is in the current request's allowed
set), for a gateway run as several processes or hosts: an answer produced behind one instance is reused by the
others, and identical requests arriving at different instances at the same time cause one upstream call.

- **Entry** ``{prefix}:e:{key}`` = JSON ``{"expires_ms", "source_request_id", "result"}``, written with ``PX``
  = the TTL (Redis drops it) and checked against the injected clock too (the same expiry as the SQLite cache).
- **Single-flight** across instances: on a miss an instance takes the lock ``{prefix}:l:{key}`` (``SET NX PX``,
  value = a token of this request). Another instance that finds the lock held waits for the entry, polling
  with a growing interval, until the entry lands, the lock disappears (the leader stored, failed or died:
  ``lock_ttl_s`` bounds a dead leader) or ``wait_s`` passes; then it looks again and may lead itself. The lock
  is deleted only by its owner (compare-and-delete script). Within one process, requests for the same key
  wait on one local flight, so one poller per key and process talks to Redis. A ``SET NX`` whose reply does not
  come (late past ``op_timeout_s``, lost, or its request cancelled) may have taken the lock all the same: its
  request does not lead, so the lock is deleted at once (compare-and-delete, in a task of its own) rather than
  left for ``lock_ttl_s`` (until 2026-11-28 every identical request, on every instance, waited ``wait_s`` for it).
- **Fail open**: Redis down, slow (``op_timeout_s``) or returning something unreadable makes the cache a miss
  (no lead, no wait) and ``store`` a no-op; the request is served upstream and counted in ``stats``. The cache
  never fails a request and never serves an entry it cannot validate.

Which requests may be written to a shared store at all is decided outside, by :class:`~sovrouter.cache.split.
SplitCache` (tenants that allow it, no personal data, class at most ``internal``): this class stores what it is
given.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from sovrouter.cache.exact import cache_key, worth_keeping
from sovrouter.contracts import CacheOutcome, Candidate, Detection, ModelResult, NormalizedRequest
from sovrouter.protocols import Clock, GaugeCounter

log = logging.getLogger(__name__)

# Delete the lock only if it still holds this request's token (the standard Redis pattern: a leader whose lock
# expired must not delete the next leader's lock).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"

_FAILURES = (RedisError, OSError, asyncio.TimeoutError)


class RedisExactCache:
    def __init__(self, clock: Clock, client: aioredis.Redis, *, ttl_s: float = 3600.0, prefix: str = "sovrouter",
                 lock_ttl_s: float = 60.0, wait_s: float = 30.0, poll_s: tuple[float, float] = (0.01, 0.2),
                 op_timeout_s: float = 0.5, scope: str = "") -> None:
        self.clock = clock
        self.scope = scope  # the catalog's fingerprint, in every key (cache_key)
        self.client = client
        self.ttl_ms = int(ttl_s * 1000)
        self.prefix = prefix
        self.lock_ttl_ms = int(lock_ttl_s * 1000)
        self.wait_s = wait_s
        self.poll_s = poll_s
        self.op_timeout_s = op_timeout_s
        # hits, misses, leads, waits, store, errors (read by tests, benches, and /metrics from its worker thread)
        self.stats: GaugeCounter[str] = GaugeCounter()
        self._release_script = client.register_script(_RELEASE)
        self._flights: dict[str, asyncio.Future[bool]] = {}  # key -> this process's leader or poller
        self._answered: set[str] = set()  # request ids that stored an answer, until their release
        self._leading: dict[str, tuple[str, str]] = {}  # request id -> (key, lock token)
        self._unlocking: set[asyncio.Task[None]] = set()  # deletions of locks taken by failed lookups
        self._instance = secrets.token_hex(4)

    @classmethod
    def from_url(cls, clock: Clock, url: str, *, password: str | None = None, **kwargs: Any) -> RedisExactCache:
        op_timeout = float(kwargs.get("op_timeout_s", 0.5))
        client = aioredis.Redis.from_url(url, password=password, socket_timeout=op_timeout,
                                         socket_connect_timeout=op_timeout)
        return cls(clock, client, **kwargs)

    # ------------------------------------------------------------------ ResponseCache
    async def lookup(self, request: NormalizedRequest, detection: Detection,
                     allowed: Sequence[Candidate]) -> tuple[CacheOutcome, ModelResult | None]:
        key = cache_key(request, self.scope)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        try:
            while True:
                hit = await self._get(key, allowed)
                if hit is not None:
                    self.stats["hits"] += 1
                    return hit
                flight = self._flights.get(key)
                if flight is not None:  # someone in this process leads or polls for this key
                    if await asyncio.shield(flight):
                        continue  # an answer may be stored: look again
                    self.stats["leader_gave_up"] += 1  # go upstream now, side by side with the other waiters
                    return CacheOutcome(kind="miss"), None
                # this request leads or polls for the process (registered before any await: one per key)
                self._flights[key] = loop.create_future()
                token = f"{self._instance}:{request.request_id}"
                try:
                    led = await self._call(self.client.set(self._lock(key), token, nx=True, px=self.lock_ttl_ms))
                except BaseException:  # the lock may be taken all the same, by a request that will not lead
                    self._land(key, look_again=False)
                    self._spawn_unlock(key, token)
                    raise
                if led:
                    self._leading[request.request_id] = (key, token)
                    self.stats["leads"] += 1
                    return CacheOutcome(kind="miss"), None
                if loop.time() >= deadline:  # another instance leads for too long: serve this one ourselves
                    self._land(key, look_again=False)
                    self.stats["wait_expired"] += 1
                    return CacheOutcome(kind="miss"), None
                if await self._poll(key, deadline):  # the lock went; the leader stored an answer, or gave up
                    try:
                        gave_up = await self._get(key, allowed) is None
                    except BaseException:
                        self._land(key, look_again=False)
                        raise
                    if gave_up:  # go upstream now, and so do this process's waiters
                        self._land(key, look_again=False)
                        self.stats["leader_gave_up"] += 1
                        return CacheOutcome(kind="miss"), None
                self._land(key, look_again=True)
        except _FAILURES as exc:
            self._failed("lookup", exc)
            return CacheOutcome(kind="miss"), None

    async def store(self, request: NormalizedRequest, detection: Detection, result: ModelResult) -> None:
        lead = self._leading.get(request.request_id)
        key = lead[0] if lead is not None else cache_key(request, self.scope)
        if not worth_keeping(result):
            return  # release() wakes the waiters with nothing stored: they go upstream
        now = self.clock.now_ms()
        value = json.dumps({"expires_ms": now + self.ttl_ms, "source_request_id": request.request_id,
                            "result": result.model_dump(mode="json")}, ensure_ascii=False)
        try:
            await self._call(self.client.set(self._entry(key), value, px=self.ttl_ms))
            self.stats["stores"] += 1
            self._answered.add(request.request_id)
        except _FAILURES as exc:
            self._failed("store", exc)
        # the pipeline calls release() next, which ends the lead and wakes the waiters

    async def release(self, request: NormalizedRequest) -> None:
        answered = request.request_id in self._answered
        self._answered.discard(request.request_id)
        lead = self._leading.pop(request.request_id, None)
        if lead is None:
            return
        key, token = lead
        await self._unlock(key, token)
        self._land(key, look_again=answered)

    def cache_gauges(self) -> dict[str, float]:
        return {f"shared_exact_{name}_total": float(n) for name, n in self.stats.snapshot().items()}

    async def aclose(self) -> None:
        if self._unlocking:  # let the deletions in flight land (bounded), then close
            await asyncio.wait(list(self._unlocking), timeout=2 * self.op_timeout_s)
        for task in self._unlocking:
            task.cancel()
        await self.client.aclose()

    # ------------------------------------------------------------------ internals
    def _entry(self, key: str) -> str:
        return f"{self.prefix}:e:{key}"

    def _lock(self, key: str) -> str:
        return f"{self.prefix}:l:{key}"

    async def _call(self, awaitable: Any) -> Any:
        return await asyncio.wait_for(awaitable, self.op_timeout_s)

    async def _unlock(self, key: str, token: str) -> None:
        """Delete the lock if it still holds ``token`` (never another leader's)."""
        try:
            await self._call(self._release_script(keys=[self._lock(key)], args=[token]))
        except _FAILURES as exc:
            self._failed("release", exc)  # the lock expires by itself after lock_ttl_s

    def _spawn_unlock(self, key: str, token: str) -> None:
        task = asyncio.get_running_loop().create_task(self._unlock(key, token))
        self._unlocking.add(task)
        task.add_done_callback(self._unlocking.discard)

    async def _get(self, key: str, allowed: Sequence[Candidate]) -> tuple[CacheOutcome, ModelResult] | None:
        raw = await self._call(self.client.get(self._entry(key)))
        if raw is None:
            return None
        try:
            entry = json.loads(raw)
            expires_ms = float(entry["expires_ms"])
            source = str(entry["source_request_id"])
            result = ModelResult.model_validate(entry["result"])
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            self._failed("decode", exc)  # unreadable entry: a miss, never served
            return None
        if expires_ms <= self.clock.now_ms():
            return None
        if not worth_keeping(result):  # stored by a version before 2026-11-28 (b352843): dropped, for everyone
            self.stats["dropped_empty"] += 1
            log.warning("shared exact cache: dropped an empty answer an earlier version stored")
            await self._call(self.client.delete(self._entry(key)))
            return None
        if result.candidate not in allowed:
            return None  # produced on a deployment this request may not use: never served
        return CacheOutcome(kind="exact", source_request_id=source, source_candidate=result.candidate), result

    async def _poll(self, key: str, deadline: float) -> bool:
        """Another instance holds the lock: wait (as this process's only poller for the key) until the entry
        lands, the lock is gone or the deadline passes. True when the lock went (the leader ended: with an entry,
        or having given up); the caller then wakes this process's other waiters (on an error, this does)."""
        loop = asyncio.get_running_loop()
        self.stats["waits"] += 1
        delay = self.poll_s[0]
        try:
            # An entry already there could not serve this request (another deployment produced it): wait for
            # the leader to end rather than for an entry, or this would poll at the shortest interval.
            stale = bool(await self._call(self.client.exists(self._entry(key))))
            while loop.time() < deadline:
                await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
                delay = min(delay * 2, self.poll_s[1])
                if not stale and await self._call(self.client.exists(self._entry(key))):
                    return False
                if not await self._call(self.client.exists(self._lock(key))):
                    return True
        except BaseException:
            self._land(key, look_again=False)
            raise
        return False

    def _land(self, key: str, *, look_again: bool) -> None:
        """End this process's flight for ``key``: its waiters look again (an answer may be stored), or go
        upstream at once (the leader gave up)."""
        flight = self._flights.pop(key, None)
        if flight is not None and not flight.done():
            flight.set_result(look_again)

    def _failed(self, op: str, exc: BaseException) -> None:
        self.stats["errors"] += 1
        log.warning("shared exact cache: %s failed, serving without it (%s)", op, type(exc).__name__)
