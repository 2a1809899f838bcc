"""Share the prefix-affinity model between gateway instances: every send and completion, broadcast.

A :class:`~sovrouter.reuse.prefix_chooser.PrefixAffinityChooser` models each replica's KV cache and queue from the calls
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
import math
import secrets
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Literal, Protocol

import redis.asyncio as aioredis

from sovrouter.redis_streams import FAILURES, StreamBroadcast


@dataclass(frozen=True, slots=True)
class AffinityEvent:
    kind: Literal["start", "done"]
    origin: str  # the publishing instance
    call: int  # the origin's call number
    replica: str
    t: float  # seconds since the Unix epoch, the origin's clock (``WallClock``: comparable across hosts)
    blocks: tuple[int, ...] = ()  # start; also done when not ok (the blocks to forget)
    tokens: int = 0  # start
    ok: bool = True  # done
    sizes: tuple[int, ...] = ()  # start: tokens per block (absent from older instances' events)
    answer: tuple[int, int] | None = None  # start: block range of the latest assistant message, if one is followed

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> AffinityEvent:
        """Parse an event another instance published; anything malformed (another shape, a non-finite time,
        negative counts, an answer range past the blocks, numbers too large for an int) is a ValueError, so a
        bad entry is counted and skipped, never applied."""
        d = json.loads(raw)
        if not isinstance(d, dict) or d.get("kind") not in ("start", "done"):
            raise ValueError("not an affinity event")
        try:
            event = cls(kind=d["kind"], origin=str(d["origin"]), call=int(d["call"]), replica=str(d["replica"]),
                        t=float(d["t"]), blocks=tuple(int(b) for b in d.get("blocks", ())),
                        tokens=int(d.get("tokens", 0)), ok=bool(d.get("ok", True)),
                        sizes=tuple(int(n) for n in d.get("sizes", ())), answer=_span(d.get("answer")))
        except (KeyError, TypeError, OverflowError) as exc:
            raise ValueError("malformed affinity event") from exc
        if not math.isfinite(event.t) or event.tokens < 0 or any(n < 0 for n in event.sizes):
            raise ValueError("affinity event out of range")
        if event.answer is not None and event.answer[1] > len(event.blocks):
            raise ValueError("answer range past the blocks")
        return event


def _span(raw: object) -> tuple[int, int] | None:
    if raw is None:
        return None
    if not (isinstance(raw, list) and len(raw) == 2):
        raise ValueError("answer must be two block indices")
    start, end = int(raw[0]), int(raw[1])
    if not 0 <= start <= end:
        raise ValueError("answer must be an ordered block range")
    return start, end


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


class RedisAffinityBus:
    """Affinity events through Redis Streams (one client for every deployment of a gateway; the transport is
    :class:`~sovrouter.redis_streams.StreamBroadcast`)."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = "sovrouter", instance: str | None = None,
                 max_len: int = 100_000, block_ms: int = 500, retry_s: float = 1.0) -> None:
        self.prefix = prefix
        self.instance = instance or secrets.token_hex(6)
        self.streams = StreamBroadcast(client, what="affinity model", max_len=max_len, block_ms=block_ms,
                                       retry_s=retry_s)
        self.stats = self.streams.stats  # published, applied, errors
        self._subs: dict[str, list[Apply]] = {}

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
        if not _in_loop():
            return  # no running loop (a synchronous caller): nothing to publish with
        self._follow_all()
        self.streams.publish(self._key(stream), {"e": event.to_json()})

    def subscribe(self, stream: str, apply: Apply) -> None:
        self._subs.setdefault(stream, []).append(apply)
        if _in_loop():
            self._follow_all()

    async def start(self) -> None:
        """Start reading every subscribed stream now (call it in the serving loop at start-up, so that events
        published before this instance's first own call are not missed)."""
        self._follow_all()

    async def aclose(self) -> None:
        await self.streams.aclose()

    # ------------------------------------------------------------------ internals
    def _follow_all(self) -> None:
        """One reader per subscribed stream, started lazily inside the serving loop."""
        for stream in self._subs:
            key = self._key(stream)
            self.streams.follow(key, partial(self._newest, key), partial(self._deliver, stream))

    async def _newest(self, key: str) -> str:
        """Join at the stream's newest entry: older ones describe another time."""
        newest = await self.streams.client.xrevrange(key, count=1)
        return _entry_id(newest[0][0]) if newest else "0-0"

    def _deliver(self, stream: str, fields: Mapping[bytes, bytes]) -> None:
        try:
            event = AffinityEvent.from_json(fields[b"e"])
        except FAILURES as exc:
            self.streams.failed("decode", exc)
            return
        if event.origin == self.instance:
            return
        for apply in self._subs.get(stream, ()):
            apply(event)
        self.stats["applied"] += 1


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _entry_id(raw: bytes | str) -> str:
    return raw.decode("ascii") if isinstance(raw, bytes) else str(raw)
