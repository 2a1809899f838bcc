"""Share the prefix-affinity model between gateway instances: every send and completion, broadcast.

A :class:`~sovrouter.reuse.prefix.PrefixAffinityChooser` models each replica's KV cache and queue from the calls
it sends. Behind a load balancer each gateway instance sends only part of the traffic, so each model misses the
others' prompts: a conversation's next turn, arriving at another instance, is sent where that instance thinks
best, not where the conversation is cached. Measured on the dev trace (`bench/prefix_multi_gateway.py`): two
instances with their own models fall from 87.5% to 64% of the hit-rate bound, four to 47%.

Here each chooser publishes what it observes (a call started on a replica with these block hashes; a call
ended) and applies what the other instances publish, so every instance keeps the model of the whole traffic.
It is the gateway-side counterpart of the KV-event streams some engines publish (vLLM's KV events, which NVIDIA
Dynamo's KV router reads): it needs nothing from the engines.

- :class:`RedisAffinityBus`: one Redis Stream per deployment (``XADD`` with approximate trimming; each instance
  reads every entry with ``XREAD BLOCK`` from the time it joined: a broadcast, no consumer group). Publishing
  never waits on Redis (a background task per event); if Redis is down, slow or returns something unreadable,
  the instance keeps its own model (fail open) and counts it in ``stats``.
- :class:`MemoryAffinityBus`: the same in one process (tests, benchmarks).

An event carries block hashes (chained blake2b digests of 64-word blocks, salted with the tenant), token
counts, a replica URL, times and an opaque call id: no prompt text, no request id, no tenant name.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AffinityEvent:
    kind: Literal["start", "done"]
    origin: str  # the publishing instance
    call: int  # the origin's call number
    replica: str
    t: float  # seconds, the origin's clock
    blocks: tuple[int, ...] = ()  # start; also done when not ok (the blocks to forget)
    tokens: int = 0  # start
    ok: bool = True  # done

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> AffinityEvent:
        d = json.loads(raw)
        if d.get("kind") not in ("start", "done"):
            raise ValueError("unknown event kind")
        return cls(kind=d["kind"], origin=str(d["origin"]), call=int(d["call"]), replica=str(d["replica"]),
                   t=float(d["t"]), blocks=tuple(int(b) for b in d.get("blocks", ())),
                   tokens=int(d.get("tokens", 0)), ok=bool(d.get("ok", True)))


Apply = Callable[[AffinityEvent], None]


class AffinityEventBus(Protocol):
    """Broadcast of affinity events per stream (one stream per deployment)."""

    instance: str

    def publish(self, stream: str, event: AffinityEvent) -> None: ...

    def subscribe(self, stream: str, apply: Apply) -> None:
        """``apply`` receives every event of ``stream`` published by *other* instances from now on."""
        ...


@dataclass
class MemoryAffinityBus:
    """In-process bus: ``instance`` views of one shared hub (``hub.view("a")``, ``hub.view("b")``), delivering
    synchronously to the other views' subscribers."""

    instance: str = "memory"
    _hub: dict[str, list[tuple[str, Apply]]] = field(default_factory=dict)

    def view(self, instance: str) -> MemoryAffinityBus:
        return MemoryAffinityBus(instance, self._hub)

    def publish(self, stream: str, event: AffinityEvent) -> None:
        for owner, apply in list(self._hub.get(stream, [])):
            if owner != event.origin:
                apply(event)

    def subscribe(self, stream: str, apply: Apply) -> None:
        self._hub.setdefault(stream, []).append((self.instance, apply))


_FAILURES = (RedisError, OSError, asyncio.TimeoutError, ValueError, KeyError, TypeError)


class RedisAffinityBus:
    """Affinity events through Redis Streams (one client for every deployment of a gateway)."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = "sovrouter", instance: str | None = None,
                 max_len: int = 100_000, block_ms: int = 500, retry_s: float = 1.0) -> None:
        self.client = client
        self.prefix = prefix
        self.instance = instance or secrets.token_hex(6)
        self.max_len = max_len
        self.block_ms = block_ms
        self.retry_s = retry_s
        self.stats: Counter[str] = Counter()  # published, applied, errors
        self._subs: dict[str, list[Apply]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._joined: dict[str, str] = {}  # stream -> id of the last entry read (reads resume after it)
        self._closing = False

    @classmethod
    def from_url(cls, url: str, *, password: str | None = None, op_timeout_s: float = 0.5,
                 prefix: str = "sovrouter", instance: str | None = None, block_ms: int = 500,
                 retry_s: float = 1.0) -> RedisAffinityBus:
        client = aioredis.Redis.from_url(url, password=password, socket_connect_timeout=op_timeout_s,
                                         socket_timeout=op_timeout_s + block_ms / 1000.0)  # reads block
        return cls(client, prefix=prefix, instance=instance, block_ms=block_ms, retry_s=retry_s)

    def _key(self, stream: str) -> str:
        return f"{self.prefix}:affinity:{stream}"

    # ------------------------------------------------------------------ AffinityEventBus
    def publish(self, stream: str, event: AffinityEvent) -> None:
        loop = self._loop()
        if loop is None:
            return  # no running loop (a synchronous caller): nothing to publish with
        self._start_readers(loop)
        task = loop.create_task(self._xadd(stream, event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def subscribe(self, stream: str, apply: Apply) -> None:
        self._subs.setdefault(stream, []).append(apply)
        loop = self._loop()
        if loop is not None:
            self._start_readers(loop)

    async def start(self) -> None:
        """Start reading every subscribed stream now (call it in the serving loop at start-up, so that events
        published before this instance's first own call are not missed)."""
        self._start_readers(asyncio.get_running_loop())

    async def aclose(self) -> None:
        self._closing = True  # a cancellation the client turns into a connection error still ends a reader
        for task in [*self._readers.values(), *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._readers.values(), *self._tasks, return_exceptions=True)
        self._readers.clear()
        await self.client.aclose()

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _loop() -> asyncio.AbstractEventLoop | None:
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            return None

    def _start_readers(self, loop: asyncio.AbstractEventLoop) -> None:
        """One reader per subscribed stream, started lazily inside the serving loop."""
        for stream in self._subs if not self._closing else ():
            task = self._readers.get(stream)
            if task is None or task.done():
                self._readers[stream] = loop.create_task(self._read(stream))

    async def _xadd(self, stream: str, event: AffinityEvent) -> None:
        try:
            await self.client.xadd(self._key(stream), {"e": event.to_json()}, maxlen=self.max_len,
                                   approximate=True)
            self.stats["published"] += 1
        except _FAILURES as exc:
            self._failed("publish", exc)

    async def _read(self, stream: str) -> None:
        key = self._key(stream)
        last = self._joined.get(stream)
        while not self._closing:
            try:
                if last is None:  # join at the stream's newest entry: older ones describe another time
                    newest = await self.client.xrevrange(key, count=1)
                    last = self._joined[stream] = _entry_id(newest[0][0]) if newest else "0-0"
                reply = await self.client.xread({key: last}, block=self.block_ms, count=500)
                for _, entries in reply or []:
                    for entry_id, fields in entries:
                        last = self._joined[stream] = _entry_id(entry_id)
                        self._deliver(stream, fields)
            except asyncio.CancelledError:
                raise
            except _FAILURES as exc:
                self._failed("read", exc)
                await asyncio.sleep(self.retry_s)

    def _deliver(self, stream: str, fields: dict[bytes, bytes]) -> None:
        try:
            event = AffinityEvent.from_json(fields[b"e"])
        except _FAILURES as exc:
            self._failed("decode", exc)
            return
        if event.origin == self.instance:
            return
        for apply in self._subs.get(stream, ()):
            apply(event)
        self.stats["applied"] += 1

    def _failed(self, op: str, exc: BaseException) -> None:
        self.stats["errors"] += 1
        log.warning("affinity events: %s failed, the local model goes on alone (%s)", op, type(exc).__name__)


def _entry_id(raw: bytes | str) -> str:
    return raw.decode("ascii") if isinstance(raw, bytes) else str(raw)
