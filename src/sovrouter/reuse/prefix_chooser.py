"""The gateway's replica chooser: :class:`~sovrouter.reuse.prefix.PrefixAffinityRouter` over the rendered
messages of real requests (docs/prefix-affinity.md).

Prompts are hashed into chained blocks of whitespace tokens, salted by tenant. With ``affinity_events`` every
start and completion is shared with the other gateway instances, and each instance takes its rank among the
instances it hears from, so that instances sharing one model do not all send new work to the same replica.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections import deque
from collections.abc import Callable, Sequence

from sovrouter.adapters.engine_load import EngineReports
from sovrouter.config import ReplicaAffinity, Upstream
from sovrouter.contracts import Candidate, NormalizedRequest
from sovrouter.protocols import Clock
from sovrouter.reuse.affinity_events import AffinityEvent, AffinityEventBus
from sovrouter.reuse.prefix import AffinitySettings, BlockShape, PrefixAffinityRouter
from sovrouter.reuse.prefix_sim import BLOCK_TOKENS


def word_tokens(words: int) -> int:
    """Tokens for ``words`` whitespace tokens (x 4/3, a rough BPE ratio), at least 1."""
    return max(1, (words * 4) // 3)


def prompt_blocks(request: NormalizedRequest, block_words: int = 64) -> tuple[list[int], int, BlockShape]:
    """Chained hashes of the rendered messages in blocks of whitespace tokens, a token count, and the blocks' shape.

    Block ``k``'s hash covers every token before it, so equal hashes mean equal prefixes (as in vLLM/SGLang
    page hashing). Each message is cut into blocks of at most ``block_words`` words on its own, so a prompt ends
    at a block boundary and the next turn of the conversation (the same messages, the answer, a new question)
    starts with exactly the same blocks: until 2026-11-27 blocks ran across messages, and the prompt's last,
    partial block never matched the next turn's, so up to ``block_words`` words of a cached conversation counted
    as uncached. Tokens are words times 4/3 (a rough BPE ratio); only relative sizes matter to the cost model.
    The shape also marks the latest assistant message when a message follows it (the engine generated it there).
    """
    blocks: list[int] = []
    sizes: list[int] = []
    answer: tuple[int, int] | None = None
    h = hashlib.blake2b(request.tenant.encode("utf-8"), digest_size=8).digest()
    last = len(request.messages) - 1
    for i, m in enumerate(request.messages):
        words = [f"<{m.role}>"]
        for part in m.parts:  # in order; a media part is one marker naming its content (same text, another
            if part.text is not None:  # image: another prefix from there on, as in the engine)
                words += part.text.split()
            elif part.ref is not None:
                digest = hashlib.blake2b(part.ref.encode("utf-8"), digest_size=8).hexdigest()
                words.append(f"<{part.modality}:{digest}>")
        first = len(blocks)
        for start in range(0, len(words), block_words):
            chunk = words[start:start + block_words]
            h = hashlib.blake2b(h + "\x1f".join(chunk).encode("utf-8"), digest_size=8).digest()
            blocks.append(int.from_bytes(h, "big"))
            sizes.append(word_tokens(len(chunk)))
        if m.role == "assistant" and i == last - 1 and request.messages[last].role != "assistant":
            answer = (first, len(blocks))
    shape = BlockShape(tuple(sizes), word_tokens(block_words), answer)
    return blocks, max(1, sum(sizes)), shape


class PrefixAffinityChooser:
    """:class:`~sovrouter.adapters.replicas.ReplicaChooser` for the HTTP adapter (one instance per deployment).

    Blocks are tenant-salted, so two tenants never share modelled cache entries (the serving engine may still
    share them; the router just does not count on it). With ``events`` (several gateway instances), every start
    and completion is published on ``stream`` and the other instances' are applied, so each instance models the
    whole traffic (:mod:`sovrouter.reuse.affinity_events`). With ``engine``, the replicas' own reports of the
    requests they hold (on the same ``stream``) add the load this model did not see.

    Instances that share one model choose alike: until their events reach each other (a few ms through a local
    Redis, more when it is far or slow) they all send new work to the same idle replica. So each instance takes
    its rank among the instances it has heard from in the last ``peer_ttl_s`` seconds (the order of their
    ids, so every instance computes the same ranks) and passes it to the router, which spreads ranks over the
    replicas within ``AffinitySettings.instance_band_s`` of the best cost. Alone, or before it hears from
    another instance, an instance has rank 0 and chooses as a lone gateway does.
    """

    def __init__(self, clock: Clock, settings: AffinitySettings | None = None, block_words: int = 64,
                 events: AffinityEventBus | None = None, stream: str = "default",
                 engine: EngineReports | None = None, peer_ttl_s: float = 60.0, max_lag_s: float = 0.0,
                 max_call_s: float = 900.0) -> None:
        base = settings or AffinitySettings()
        # Gateway blocks are ``block_words`` words, not 512 tokens: size the model in the same unit.
        tokens_per_block = word_tokens(block_words)
        self._router = PrefixAffinityRouter(dataclasses.replace(
            base, capacity_blocks=base.capacity_blocks * max(1, base.block_tokens // tokens_per_block),
            block_tokens=tokens_per_block))
        self._clock = clock
        self._block_words = block_words
        self._seq = 0
        # (request id, replica) -> (call sequence number, leading blocks cached there when it was sent)
        self._inflight: dict[tuple[str, str], deque[tuple[int, int]]] = {}
        self._last: tuple[NormalizedRequest, list[int], int, BlockShape] | None = None  # for observe_start
        self._events = events
        self._stream = stream
        self._peer_ttl_s = peer_ttl_s
        # Count another instance's call as done once predicted done less than its event delay ago (at most
        # ``max_lag_s``). Off by default: neutral in the simulation up to 100 ms of delay, and no gain on the real
        # two-replica bench (20 of 64 waves herded with it, 14 of 64 without; docs/benchmarks.md).
        self.max_lag_s = max_lag_s
        self._peers: dict[str, float] = {}  # other instances sharing this stream -> when last heard from (s)
        # A call not seen done this long after it was sent is dropped from the model: its completion was lost (the
        # instance that sent it crashed, or its event never reached Redis). Longer than any call may last (the
        # reliability timeouts end this instance's own calls far sooner).
        self.max_call_s = max_call_s
        self._expired_at = -math.inf
        if events is not None:
            events.subscribe(stream, self.apply)
        if engine is not None:
            engine.subscribe(stream, self._router.report_held)

    def _blocks(self, request: NormalizedRequest) -> tuple[list[int], int, BlockShape]:
        """The request's blocks, computed once for a choose / observe_start pair (the same request object)."""
        if self._last is not None and self._last[0] is request:
            return self._last[1], self._last[2], self._last[3]
        blocks, tokens, shape = prompt_blocks(request, self._block_words)
        self._last = (request, blocks, tokens, shape)
        return blocks, tokens, shape

    @property
    def settings(self) -> AffinitySettings:
        """The router's settings, in this chooser's block units."""
        return self._router.settings

    @property
    def rank(self) -> int:
        """This instance's place among the instances heard from recently (0 alone or without events)."""
        if self._events is None or not self._peers:
            return 0
        cutoff = self._clock.now_ms() / 1000.0 - self._peer_ttl_s
        for gone in [p for p, t in self._peers.items() if t < cutoff]:
            del self._peers[gone]
        me = self._events.instance
        return sum(1 for p in self._peers if p < me)

    def choose(self, request: NormalizedRequest, replicas: Sequence[str]) -> int:
        blocks, tokens, shape = self._blocks(request)
        now = self._clock.now_ms() / 1000.0
        if now - self._expired_at >= 1.0:  # at most once a second
            self._expired_at = now
            self._router.expire(now - self.max_call_s)
        return self._router.choose(blocks, tokens, now, list(replicas), self.rank, shape)

    def observe_start(self, request: NormalizedRequest, replicas: Sequence[str], index: int) -> None:
        blocks, tokens, shape = self._blocks(request)
        self._seq += 1
        now = self._clock.now_ms() / 1000.0
        run = self._router.assign(self._seq, blocks, tokens, now, replicas[index], shape=shape)
        self._inflight.setdefault((request.request_id, replicas[index]), deque()).append((self._seq, run))
        if self._events is not None:
            self._events.publish(self._stream, AffinityEvent("start", self._events.instance, self._seq,
                                                             replicas[index], now, tuple(blocks), tokens,
                                                             sizes=shape.sizes, answer=shape.answer))

    def observe_done(
        self, request: NormalizedRequest, replicas: Sequence[str], index: int, ok: bool, latency_ms: float,
        *, rejected: bool = False, abandoned: bool = False,
    ) -> None:
        calls = self._inflight.get((request.request_id, replicas[index]))
        if not calls:
            return
        seq, run = calls.popleft()
        if not calls:
            del self._inflight[(request.request_id, replicas[index])]
        now = self._clock.now_ms() / 1000.0
        self._router.complete(seq, now, ok)
        forgotten: tuple[int, ...] = ()
        if not ok and not abandoned:  # an abandoned call says nothing about what the replica holds
            # A failure may mean the replica restarted empty: forget every block. A refused request (a client
            # error) was never prefilled on a healthy replica: forget only the blocks it would have added, so the
            # conversation's prefix cached there before stays counted.
            blocks = self._blocks(request)[0]
            forgotten = tuple(blocks[run:] if rejected else blocks)
            self._router.forget(replicas[index], forgotten)
        if self._events is not None:
            self._events.publish(self._stream, AffinityEvent("done", self._events.instance, seq, replicas[index],
                                                             now, forgotten, ok=ok))

    def apply(self, event: AffinityEvent) -> None:
        """Another gateway instance started or finished a call on one of this deployment's replicas.

        With ``max_lag_s``, a start event's delay (time here minus its time at the origin, clamped to it) is
        taken as how late the call's completion will be heard too: until then a call predicted done counts as
        done."""
        now = self._clock.now_ms() / 1000.0
        self._peers[event.origin] = now
        key = (event.origin, event.call)
        if event.kind == "start":
            lag = min(self.max_lag_s, max(0.0, now - event.t))
            shape = None
            if len(event.sizes) == len(event.blocks) > 0:  # an older instance sends no sizes: full blocks assumed
                shape = BlockShape(event.sizes, self._router.settings.block_tokens, event.answer)
            self._router.assign(key, event.blocks, event.tokens, event.t, event.replica, lag, shape)
            return
        self._router.complete(key, event.t, event.ok)
        if not event.ok:
            self._router.forget(event.replica, event.blocks)


def settings_from_config(cfg: ReplicaAffinity) -> AffinitySettings:
    """The router's settings for an upstream's ``affinity`` configuration (KV cache in 512-token blocks)."""
    return AffinitySettings(capacity_blocks=max(1, cfg.kv_cache_tokens // BLOCK_TOKENS),
                            prefill_rate=cfg.prefill_tokens_per_s, decode_rate=cfg.decode_tokens_per_s,
                            compute_price=cfg.compute_price, tail=cfg.tail,
                            learn_prefill_rate=cfg.learn_prefill_rate, instance_band_s=cfg.instance_band_s)


def prefix_affinity_factory(
    clock: Clock, settings: AffinitySettings | None = None
) -> Callable[[Candidate, Upstream], PrefixAffinityChooser]:
    """A ``chooser_factory`` for :func:`sovrouter.gateway.wiring.build_live_pipeline`: one fresh
    :class:`PrefixAffinityChooser` (its own cache and queue models) per deployment, with ``settings`` or, when
    omitted, each upstream's own ``affinity`` configuration."""

    def make(candidate: Candidate, upstream: Upstream) -> PrefixAffinityChooser:
        return PrefixAffinityChooser(clock, settings or settings_from_config(upstream.affinity))

    return make
