"""A broadcast between gateway instances over Redis Streams: what the prefix-affinity events
(:mod:`sovrouter.reuse.affinity_events`) and the semantic cache's entries (:mod:`sovrouter.cache.semantic_share`)
both travel on.

- ``publish`` never waits on Redis: an ``XADD`` (approximately trimmed to ``max_len``) in a task of its own.
- ``follow`` starts one reader per stream key (``XREAD BLOCK``, no consumer group: every instance reads every
  entry), from where the caller says the first time and after the last entry read if the reader is started
  again. Each entry goes to the caller's ``deliver``.
- Fail open: Redis down, slow or returning something unreadable is counted in ``stats["errors"]``, logged
  without content, and retried after ``retry_s``; the caller goes on with what it has.
- One entry the caller cannot use never stops the reader: its error is counted and the reader goes on.
- ``aclose`` first gives the publishes still in flight ``flush_s`` to land (a gateway's last completions,
  which the other instances need to see), then ends the readers, even when a cancelled blocking read comes back
  as an empty reply instead of a cancellation (seen in a benchmark: the reader then looped on and ``aclose``
  hung).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from sovrouter.protocols import GaugeCounter

log = logging.getLogger(__name__)

FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError, ValueError, KeyError,
                                             TypeError)
Deliver = Callable[[Mapping[bytes, bytes]], None]


class StreamBroadcast:
    def __init__(self, client: aioredis.Redis, *, what: str, max_len: int = 100_000, block_ms: int = 500,
                 retry_s: float = 1.0) -> None:
        self.client = client
        self.what = what  # for the log: what this instance goes on without
        self.max_len = max_len
        self.block_ms = block_ms
        self.retry_s = retry_s
        # published, errors (and what the callers count; /metrics reads them)
        self.stats: GaugeCounter[str] = GaugeCounter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._last: dict[str, str] = {}  # key -> id of the last entry read (a restarted reader resumes after it)
        self._closing = False

    def publish(self, key: str, fields: Mapping[str, bytes | str]) -> None:
        """Needs the running loop (the caller is a coroutine of the serving loop)."""
        task = asyncio.get_running_loop().create_task(self._xadd(key, fields))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def follow(self, key: str, first: Callable[[], Awaitable[str]], deliver: Deliver) -> None:
        """Read ``key`` from the id ``first()`` returns (once), delivering each entry; a no-op while a reader of
        ``key`` runs or after ``aclose``. Needs the running loop."""
        task = self._readers.get(key)
        if not self._closing and (task is None or task.done()):
            self._readers[key] = asyncio.get_running_loop().create_task(self._read(key, first, deliver))

    async def aclose(self, flush_s: float = 1.0) -> None:
        self._closing = True
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=flush_s)
        tasks = [*self._readers.values(), *self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._readers.clear()
        await self.client.aclose()

    def failed(self, op: str, exc: BaseException) -> None:
        self.stats["errors"] += 1
        log.warning("%s: %s failed, this instance goes on with its own %s (%s)", self.what, op, self.what,
                    type(exc).__name__)

    async def _xadd(self, key: str, fields: Mapping[str, bytes | str]) -> None:
        try:
            await self.client.xadd(key, dict(fields), maxlen=self.max_len, approximate=True)  # type: ignore[arg-type]
            self.stats["published"] += 1
        except FAILURES as exc:
            self.failed("publish", exc)

    async def _read(self, key: str, first: Callable[[], Awaitable[str]], deliver: Deliver) -> None:
        while not self._closing:
            try:
                if key not in self._last:
                    self._last[key] = await first()
                reply = await self.client.xread({key: self._last[key]}, block=self.block_ms, count=500)
                for _, entries in reply or []:
                    for entry_id, fields in entries:
                        self._last[key] = entry_id.decode("ascii") if isinstance(entry_id, bytes) else str(entry_id)
                        try:
                            deliver(fields)
                        except Exception as exc:  # the reader's boundary: one bad entry is skipped, not fatal
                            self.failed("apply", exc)
            except asyncio.CancelledError:
                raise
            except FAILURES as exc:
                self.failed("read", exc)
                await asyncio.sleep(self.retry_s)
