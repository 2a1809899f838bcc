"""``max_in_flight_per_tenant`` across gateway instances: one lease per request in flight, in Redis.

:class:`RedisTenantSlots` is the :class:`~sovrouter.protocols.TenantLimit` the gateway uses when
``shared_in_flight`` is configured (:func:`make_tenant_slots`; without it each instance counts its own requests,
:class:`~sovrouter.gateway.auth.TenantSlots`, and k instances let a tenant have k times the limit).

- **One sorted set per tenant**, ``{prefix}:inflight:{tenant digest}`` (the first 16 bytes of the tenant id's
  sha256, hex: no tenant name in Redis), of lease ids (``{instance}:{n}``) scored by their expiry, in milliseconds
  of the Redis server's clock (``TIME``), so gateway hosts whose clocks disagree still agree on what has expired.
- **Take** is one Lua script, atomic in Redis: drop the expired leases, count the others, add this one if the
  count is under the limit (else a 429, ``TooManyRequestsError``). The key expires with its last lease.
- **Refresh**: a lease lives ``lease_ttl_s`` (default 30 s); while this instance holds leases, one task pushes
  their expiry back every third of it (one script call per tenant), so a stream or a slow answer keeps its slot
  as long as it runs, and a lease left by an instance that died (no release, no refresh) stops counting at most
  ``lease_ttl_s`` later. A lease that expired anyway (Redis unreachable from here for that long) is not revived:
  others may have taken its place; it is counted in ``stats["lost"]``.
- **Release** removes the lease (``ZREM``) in a task of its own: the release is called from a stream task's
  done callback and never waits on Redis. A removal that fails leaves the lease to expire.
- **Fail open to the instance's own limit**, as the shared exact cache does: the same limit is always counted on
  this instance too (a local :class:`TenantSlots`), so with Redis down, slow (``op_timeout_s``) or answering
  something unreadable the request is served if this instance alone is under the limit (the behaviour without
  ``shared_in_flight``), the failure is counted in ``stats["errors"]`` and logged without tenant or request data,
  and Redis is not asked again for ``retry_s`` (a Redis host that drops packets would otherwise add
  ``op_timeout_s`` to every request). A chat request never fails because the shared count is unreachable.
- **On /metrics** (since 2026-11-28) through :class:`~sovrouter.telemetry.metrics.SharedSlotsCollector`: the
  refusals by the count that refused (``refused_by``, per tenant), the requests this instance's count alone
  admitted (a failed take, or within ``retry_s`` of one), Redis failures per operation, leases held and lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import secrets
from collections.abc import Awaitable, Coroutine
from typing import Any

import redis.asyncio as aioredis

from sovrouter.config import Settings, env_secret
from sovrouter.errors import TooManyRequestsError
from sovrouter.gateway.auth import TenantSlots, release_once, too_many
from sovrouter.protocols import GaugeCounter, Release, TenantLimit
from sovrouter.redis_streams import FAILURES

log = logging.getLogger(__name__)

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
# The key lives as long as its latest lease (instances may run with different lease_ttl_s).
_EXPIRE = ("local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES') "
           "if last[2] then redis.call('PEXPIREAT', KEYS[1], last[2]) end ")

# KEYS[1] the tenant's leases; ARGV: limit, lease ttl (ms), lease id. Returns {1, held} taken, {0, held} refused.
_TAKE = _NOW + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[1]) then return {0, held} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
""" + _EXPIRE + "return {1, held + 1}"

# KEYS[1] the tenant's leases; ARGV: lease ttl (ms), lease ids. Pushes back the expiry of the leases still live;
# returns the ids that had expired (removed, never revived: others may have taken their place).
_REFRESH = _NOW + """
local expires = now + tonumber(ARGV[1])
local lost = {}
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) > now then
    redis.call('ZADD', KEYS[1], 'XX', expires, ARGV[i])
  else
    redis.call('ZREM', KEYS[1], ARGV[i])
    lost[#lost + 1] = ARGV[i]
  end
end
""" + _EXPIRE + "return lost"

_COUNT = _NOW + "return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')"


def lease_key(prefix: str, tenant: str) -> str:
    """The sorted set of ``tenant``'s leases."""
    return f"{prefix}:inflight:{hashlib.sha256(tenant.encode('utf-8')).hexdigest()[:32]}"


class RedisTenantSlots:
    """Every gateway instance's chat requests in flight per tenant, at most ``limit`` together (module doc)."""

    def __init__(self, client: aioredis.Redis, limit: int, *, prefix: str = "sovrouter", lease_ttl_s: float = 30.0,
                 op_timeout_s: float = 0.5, retry_s: float = 1.0, instance: str | None = None) -> None:
        self.client = client
        self.limit = limit
        self.local = TenantSlots(limit)  # this instance's own count: the limit while Redis cannot be reached
        self.prefix = prefix
        self.lease_ttl_ms = int(lease_ttl_s * 1000)
        self.refresh_s = lease_ttl_s / 3
        self.op_timeout_s = op_timeout_s
        self.retry_s = retry_s
        self.instance = instance or secrets.token_hex(6)
        # taken, refused, released, refreshed, lost, errors (and "errors:{op}" per operation: take, count, refresh,
        # release), local_only (Redis not asked: within retry_s of a failure)
        self.stats: GaugeCounter[str] = GaugeCounter()
        # (tenant, "shared" | "instance") -> requests refused by every instance's count or by this one's own
        self.refused_by: GaugeCounter[tuple[str, str]] = GaugeCounter()
        self._take = client.register_script(_TAKE)
        self._refresh = client.register_script(_REFRESH)
        self._count = client.register_script(_COUNT)
        self._serial = itertools.count()
        self._leases: dict[str, str] = {}  # lease id -> key, for the leases this instance holds or may hold
        self._tasks: set[asyncio.Task[None]] = set()  # removals in flight
        self._refresher: asyncio.Task[None] | None = None
        self._skip_until = 0.0  # the loop's time before which Redis is not asked (after a failure)

    @classmethod
    def from_url(cls, url: str, limit: int, *, password: str | None = None, op_timeout_s: float = 0.5,
                 **kwargs: Any) -> RedisTenantSlots:
        client = aioredis.Redis.from_url(url, password=password, socket_timeout=op_timeout_s,
                                         socket_connect_timeout=op_timeout_s)
        return cls(client, limit, op_timeout_s=op_timeout_s, **kwargs)

    # ------------------------------------------------------------------ TenantLimit
    async def take(self, tenant: str) -> Release:
        try:
            release_local = await self.local.take(tenant)  # over the limit on this instance alone: refused here
        except TooManyRequestsError:
            self.refused_by[tenant, "instance"] += 1
            raise
        loop = asyncio.get_running_loop()
        if loop.time() < self._skip_until:
            self.stats["local_only"] += 1
            return release_local
        key = lease_key(self.prefix, tenant)
        lease = f"{self.instance}:{next(self._serial)}"
        try:
            taken = _taken(await self._call(self._take(keys=[key], args=[self.limit, self.lease_ttl_ms, lease])))
        except FAILURES as exc:
            self._failed("take", exc)
            self._skip_until = loop.time() + self.retry_s
            # the script may have run (a reply lost or late): the lease is released like any other, never refreshed
            return self._release(key, lease, release_local, refresh=False)
        except BaseException:  # cancelled while asking: the lease, if it was added, goes at once (then re-raised)
            release_local()
            self._spawn(self._remove(key, lease))
            raise
        if not taken:
            release_local()
            self.stats["refused"] += 1
            self.refused_by[tenant, "shared"] += 1
            raise TooManyRequestsError(too_many(self.limit))
        self.stats["taken"] += 1
        return self._release(key, lease, release_local, refresh=True)

    async def in_flight(self, tenant: str) -> int:
        """Every instance's leases of ``tenant`` not expired; this instance's own count when Redis cannot say."""
        try:
            return int(await self._call(self._count(keys=[lease_key(self.prefix, tenant)])))
        except FAILURES as exc:
            self._failed("count", exc)
            return await self.local.in_flight(tenant)

    @property
    def leases_held(self) -> int:
        """The leases this instance holds (and refreshes) now."""
        return len(self._leases)

    async def aclose(self) -> None:
        """Give back the leases still held (requests cut by the shutdown), let the removals land, close."""
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
        for lease, key in self._leases.items():
            self._spawn(self._remove(key, lease))
        self._leases.clear()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2 * self.op_timeout_s)
        for task in self._tasks:
            task.cancel()
        await self.client.aclose()

    # ------------------------------------------------------------------ leases
    async def refresh(self) -> None:
        """Push back the expiry of every lease this instance holds: one script call per tenant, side by side."""
        by_key: dict[str, list[str]] = {}
        for lease, key in self._leases.items():
            by_key.setdefault(key, []).append(lease)
        await asyncio.gather(*(self._refresh_key(key, leases) for key, leases in by_key.items()))

    async def _refresh_key(self, key: str, leases: list[str]) -> None:
        try:
            reply = await self._call(self._refresh(keys=[key], args=[self.lease_ttl_ms, *leases]))
            missing = [x.decode("ascii") if isinstance(x, bytes) else str(x) for x in reply]
        except FAILURES as exc:
            self._failed("refresh", exc)  # the next round tries again; two rounds fit in a lease's life
            return
        self.stats["refreshed"] += len(leases) - len(missing)
        # a lease released while this refresh was on its way (its removal reached Redis first) was given back
        lost = [lease for lease in missing if lease in self._leases]
        if lost:
            self.stats["lost"] += len(lost)
            log.warning("shared in-flight limit: %d lease(s) had expired before their refresh; their requests "
                        "are no longer counted across instances", len(lost))
            for lease in lost:
                self._leases.pop(lease, None)

    async def _refresh_loop(self) -> None:
        while self._leases:
            await asyncio.sleep(self.refresh_s)
            await self.refresh()

    def _release(self, key: str, lease: str, release_local: Release, *, refresh: bool) -> Release:
        if refresh:
            self._leases[lease] = key
            if self._refresher is None or self._refresher.done():
                self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())

        def free() -> None:
            release_local()
            self._leases.pop(lease, None)
            self._spawn(self._remove(key, lease))

        return release_once(free)

    async def _remove(self, key: str, lease: str) -> None:
        try:
            if await self._call(self.client.zrem(key, lease)):
                self.stats["released"] += 1
        except FAILURES as exc:
            self._failed("release", exc)  # the lease expires by itself after lease_ttl_s

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): the lease expires by itself
            work.close()
            return
        task = loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, awaitable: Awaitable[Any]) -> Any:
        return await asyncio.wait_for(awaitable, self.op_timeout_s)

    def _failed(self, op: str, exc: BaseException) -> None:
        self.stats["errors"] += 1
        self.stats[f"errors:{op}"] += 1
        log.warning("shared in-flight limit: %s failed, this instance counts its own requests (%s)", op,
                    type(exc).__name__)


def _taken(reply: Any) -> bool:
    """The take script's answer, ``[1, held]`` or ``[0, held]``; anything else is a ValueError (a failure)."""
    if not isinstance(reply, list) or len(reply) != 2 or reply[0] not in (0, 1):
        raise ValueError("unexpected reply from the take script")
    return bool(reply[0] == 1)


def make_tenant_slots(settings: Settings) -> TenantLimit:
    """The gateway's per-tenant limit: across instances in Redis with ``shared_in_flight`` (and a limit), else
    this instance's own count. An unset ``password_env`` is a start-up :class:`~sovrouter.errors.ConfigError`."""
    cfg = settings.shared_in_flight
    limit = settings.max_in_flight_per_tenant
    if cfg is None or limit is None:
        return TenantSlots(limit)
    return RedisTenantSlots.from_url(cfg.url, limit, password=env_secret(cfg.password_env, "shared_in_flight"),
                                     op_timeout_s=cfg.op_timeout_s, prefix=cfg.key_prefix,
                                     lease_ttl_s=cfg.lease_ttl_s)
