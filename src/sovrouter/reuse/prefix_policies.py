"""Replica-choice policies over Mooncake traces, and the online evaluation loop.

Policies: ``round-robin``, ``least-loaded`` (fewest outstanding requests), ``sglang`` (a block-level
re-implementation of SGLang router's cache-aware policy with its current launcher defaults; ``sglang-0.1`` with
the early ones) and ``ours``
(:class:`~sovrouter.reuse.prefix.PrefixAffinityRouter`).

The loop (:func:`run_online`) is what makes the choice online: before choosing request ``i`` it reveals to the
policy only the completions of the policy's own earlier requests whose finish time (under the scoring model) is
at or before request ``i``'s arrival, as a gateway observes them. The policy never sees a later request, so the
choices are identical when the trace is cut short.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sovrouter.errors import InvalidRequestError
from sovrouter.reuse.prefix import AffinitySettings, PrefixAffinityRouter
from sovrouter.reuse.prefix_sim import (
    ReplicaServer,
    Score,
    Served,
    SimConfig,
    TraceRequest,
    arrival_order,
    cached_tokens,
    summarize,
)


class TracePolicy(Protocol):
    def choose(self, req: TraceRequest, now_s: float) -> int: ...

    def assigned(self, i: int, req: TraceRequest, replica: int, now_s: float) -> None: ...

    def completed(self, i: int, replica: int, now_s: float) -> None: ...


class RoundRobinPolicy:
    def __init__(self, n: int) -> None:
        self._n = n
        self._next = 0

    def choose(self, req: TraceRequest, now_s: float) -> int:
        return self._next % self._n

    def assigned(self, i: int, req: TraceRequest, replica: int, now_s: float) -> None:
        self._next += 1

    def completed(self, i: int, replica: int, now_s: float) -> None:
        return None


class LeastLoadedPolicy:
    """Fewest outstanding requests (sent, completion not yet observed); ties rotate round-robin."""

    def __init__(self, n: int) -> None:
        self._n = n
        self._load = [0] * n
        self._next = 0

    def choose(self, req: TraceRequest, now_s: float) -> int:
        start = self._next % self._n
        order = [(start + k) % self._n for k in range(self._n)]
        return min(order, key=lambda r: self._load[r])

    def assigned(self, i: int, req: TraceRequest, replica: int, now_s: float) -> None:
        self._load[replica] += 1
        self._next += 1

    def completed(self, i: int, replica: int, now_s: float) -> None:
        self._load[replica] -= 1


@dataclass(frozen=True, slots=True)
class SGLangSettings:
    """sglang_router launcher defaults (``RouterArgs``): current releases; :data:`SGLANG_0_1` for the early ones."""

    cache_threshold: float = 0.3
    balance_abs_threshold: int = 64
    balance_rel_threshold: float = 1.5
    eviction_interval_s: float = 120.0
    max_tree_size: int = 2**26
    """Tree size bound per worker (character-level in SGLang); converted to blocks with ``chars_per_token``."""
    chars_per_token: float = 4.0
    block_tokens: int = 512

    @property
    def max_tree_blocks(self) -> int:
        return max(1, int(self.max_tree_size / (self.chars_per_token * self.block_tokens)))


SGLANG_0_1 = SGLangSettings(cache_threshold=0.5, balance_abs_threshold=32, balance_rel_threshold=1.0001,
                             eviction_interval_s=60.0, max_tree_size=2**24)


class SGLangCacheAwarePolicy:
    """SGLang router's cache-aware policy, approximated over block ids instead of characters.

    Per worker, the approximate radix tree is the set of block ids routed to it (hash ids are chained, so a
    block id stands for its whole prefix); leaves are evicted LRU every ``eviction_interval_s`` down to
    ``max_tree_size``. Per request: if the outstanding-request counts are imbalanced (``max - min >
    balance_abs_threshold`` and ``max > min * balance_rel_threshold``) go to the least-loaded worker; else if
    the longest prefix match covers more than ``cache_threshold`` of the input go to the worker holding it
    (SGLang takes an arbitrary tenant of the deepest matched node; here the one with the fewest outstanding
    requests, then the lowest index), else to the worker with the smallest tree (lowest index on ties). The
    chosen worker's tree gets the request's blocks in every case.
    """

    def __init__(self, n: int, settings: SGLangSettings | None = None) -> None:
        self.s = settings or SGLangSettings()
        self._n = n
        # Per worker: block id -> None, front = least recent. Blocks are touched deepest-first so a parent is
        # always at least as recent as its children and LRU order evicts leaves first.
        self._trees: list[OrderedDict[int, None]] = [OrderedDict() for _ in range(n)]
        self._load = [0] * n
        self._next_eviction_s: float | None = None

    def _evict(self, now_s: float) -> None:
        if self._next_eviction_s is None:
            self._next_eviction_s = now_s + self.s.eviction_interval_s
        while now_s >= self._next_eviction_s:
            cap = self.s.max_tree_blocks
            for tree in self._trees:
                while len(tree) > cap:
                    tree.popitem(last=False)
            self._next_eviction_s += self.s.eviction_interval_s
            if now_s - self._next_eviction_s > 1000 * self.s.eviction_interval_s:  # a long idle gap: the trees
                # are already within the bound, so the skipped rounds would evict nothing (a 1e15 ms timestamp
                # looped ~10^10 times)
                skip = int((now_s - self._next_eviction_s) // self.s.eviction_interval_s)
                self._next_eviction_s += skip * self.s.eviction_interval_s

    def choose(self, req: TraceRequest, now_s: float) -> int:
        self._evict(now_s)
        lo, hi = min(self._load), max(self._load)
        if hi - lo > self.s.balance_abs_threshold and hi > lo * self.s.balance_rel_threshold:
            return self._load.index(lo)
        best_len, best = 0, -1
        for r, tree in enumerate(self._trees):
            k = 0
            for b in req.hash_ids:
                if b not in tree:
                    break
                k += 1
            if k > best_len or (k == best_len and k > 0 and self._load[r] < self._load[best]):
                best_len, best = k, r
        matched = cached_tokens(best_len, req.input_length, self.s.block_tokens)
        if best >= 0 and req.input_length > 0 and matched / req.input_length > self.s.cache_threshold:
            return best
        sizes = [len(t) for t in self._trees]
        return sizes.index(min(sizes))

    def assigned(self, i: int, req: TraceRequest, replica: int, now_s: float) -> None:
        tree = self._trees[replica]
        for b in reversed(req.hash_ids):
            if b in tree:
                tree.move_to_end(b)
            else:
                tree[b] = None
        self._load[replica] += 1

    def completed(self, i: int, replica: int, now_s: float) -> None:
        self._load[replica] -= 1


def trace_settings(cfg: SimConfig, tail: float | None = None) -> AffinitySettings:
    """Our router's default settings with the scoring model's capacity, rates and block size; ``tail``
    overrides the long-wait penalty (``None`` keeps the default, 0 turns it off)."""
    base = AffinitySettings(capacity_blocks=cfg.capacity, prefill_rate=cfg.prefill_rate,
                            decode_rate=cfg.decode_rate, block_tokens=cfg.block_tokens)
    return base if tail is None else dataclasses.replace(base, tail=tail)


class OursPolicy:
    """:class:`PrefixAffinityRouter` driven by the trace's block ids and times."""

    def __init__(self, n: int, cfg: SimConfig, settings: AffinitySettings | None = None) -> None:
        self._names = list(range(n))
        self.router = PrefixAffinityRouter(settings or trace_settings(cfg))

    def choose(self, req: TraceRequest, now_s: float) -> int:
        return self.router.choose(req.hash_ids, req.input_length, now_s, self._names)

    def assigned(self, i: int, req: TraceRequest, replica: int, now_s: float) -> None:
        self.router.assign(i, req.hash_ids, req.input_length, now_s, replica)

    def completed(self, i: int, replica: int, now_s: float) -> None:
        self.router.complete(i, now_s)


PolicyFactory = Callable[[int, SimConfig], TracePolicy]

POLICIES: dict[str, PolicyFactory] = {
    "round-robin": lambda n, cfg: RoundRobinPolicy(n),
    "least-loaded": lambda n, cfg: LeastLoadedPolicy(n),
    "sglang": lambda n, cfg: SGLangCacheAwarePolicy(n, SGLangSettings(block_tokens=cfg.block_tokens)),
    "sglang-0.1": lambda n, cfg: SGLangCacheAwarePolicy(
        n, dataclasses.replace(SGLANG_0_1, block_tokens=cfg.block_tokens)),
    "ours": lambda n, cfg: OursPolicy(n, cfg),
}


def make_policy(name: str, n: int, cfg: SimConfig) -> TracePolicy:
    factory = POLICIES.get(name)
    if factory is None:
        raise InvalidRequestError(f"unknown policy {name!r}; choose from {', '.join(sorted(POLICIES))}")
    return factory(n, cfg)


@dataclass
class OnlineRun:
    assignment: list[int]
    served: list[Served]
    busy_s: list[float]


def run_online(trace: Sequence[TraceRequest], n: int, policy: TracePolicy,
               cfg: SimConfig | None = None) -> OnlineRun:
    """Assign every request in arrival order; completions are revealed only once their time has come.

    ``assignment[i]`` is request ``i``'s replica; ``served`` is in arrival order (the trace order when sorted).
    """
    cfg = cfg or SimConfig()
    if n < 1:
        raise InvalidRequestError("replicas must be >= 1")
    servers = [ReplicaServer(cfg) for _ in range(n)]
    pending: list[tuple[float, int, int]] = []  # (finish s, request index, replica)
    assignment: list[int] = [0] * len(trace)
    served: list[Served] = []
    for i in arrival_order(trace):
        req = trace[i]
        now = req.t_s
        while pending and pending[0][0] <= now:
            fin, j, r = heapq.heappop(pending)
            policy.completed(j, r, fin)
        r = policy.choose(req, now)
        if not 0 <= r < n:
            raise InvalidRequestError(f"policy chose replica {r} out of 0..{n - 1}")
        s = servers[r].serve(req)
        policy.assigned(i, req, r, now)
        heapq.heappush(pending, (s.finish_s, i, r))
        assignment[i] = r
        served.append(s)
    return OnlineRun(assignment, served, [s.busy_s for s in servers])


def evaluate(trace: Sequence[TraceRequest], n: int, policy_name: str, cfg: SimConfig | None = None) -> Score:
    cfg = cfg or SimConfig()
    run = run_online(trace, n, make_policy(policy_name, n, cfg), cfg)
    return summarize(trace, run.served, run.busy_s, cfg.block_tokens)
