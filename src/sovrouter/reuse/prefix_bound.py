"""Offline (clairvoyant) limits on the token hit rate of n replicas of ``capacity`` blocks each.

Any assignment of a trace to ``n`` LRU replicas of ``capacity`` blocks holds, at any moment, at most
``n * capacity`` distinct blocks (the union of the replica caches), and after a request starts all its blocks
are in that union. The union is therefore one cache of ``n * capacity`` blocks with demand insertion, and a
request's cached prefix on its replica is at most its leading run in the union. No router can beat the best
such pooled cache; Belady's rule (evict the block whose next use is furthest in the future) gives it:

- ``plain_blocks`` (:func:`belady_pooled`): blocks found in the pooled cache anywhere in the request (no
  prefix rule). Belady maximises this count (uniform-cost paging; evicting the incoming block at once is
  allowed, so bypass is covered), so it bounds the cached blocks any policy of that capacity finds, with or
  without the prefix rule. ``strict_token_bound`` counts each such block as a full 512 tokens: a true upper
  bound on any policy's token hit rate (for requests started in arrival order, see below).
- ``prefix_tokens``: the same Belady cache counted with the scoring model's rule (leading run, a partial last
  block for the tokens it holds): a clairvoyant policy's figure, a lower estimate of the pooled optimum.

Order: the bound takes requests in arrival order. Replicas start requests in arrival order per replica; across
replicas a start can move behind a later arrival by at most the queue wait (seconds; reuse distances in the
Mooncake traces are minutes). :func:`belady_pooled` accepts any order, so a caller can check the bound on a
policy's real start order (bench/prefix_bound.py does).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sovrouter.errors import InvalidRequestError
from sovrouter.reuse.prefix_sim import BLOCK_TOKENS, SimConfig, TraceRequest, arrival_order, cached_tokens


@dataclass(frozen=True, slots=True)
class PooledBound:
    capacity: int
    total_tokens: int
    total_block_refs: int
    plain_blocks: int
    """Blocks found cached by the Belady pooled cache (any position in the request)."""
    prefix_tokens: int
    """Tokens of the leading cached run per request under the same cache (the scoring model's rule)."""
    unbounded_blocks: int
    unbounded_tokens: int
    block_tokens: int = BLOCK_TOKENS

    @property
    def strict_token_bound(self) -> float:
        """Upper bound on any policy's token hit rate: every Belady block hit counted as a full block."""
        return self.block_tokens * self.plain_blocks / self.total_tokens if self.total_tokens else 0.0

    @property
    def block_bound_fraction(self) -> float:
        """Belady block hits / unbounded-cache block hits (the bound as a fraction of the reuse bound)."""
        return self.plain_blocks / self.unbounded_blocks if self.unbounded_blocks else 1.0

    @property
    def prefix_token_rate(self) -> float:
        return self.prefix_tokens / self.total_tokens if self.total_tokens else 0.0

    @property
    def unbounded_token_rate(self) -> float:
        return self.unbounded_tokens / self.total_tokens if self.total_tokens else 0.0

    def as_dict(self) -> dict[str, Any]:
        u = self.unbounded_token_rate
        return {
            "capacity_blocks": self.capacity,
            "unbounded_token_hit_rate": round(u, 5),
            "belady_prefix_token_hit_rate": round(self.prefix_token_rate, 5),
            "belady_prefix_fraction_of_bound": round(self.prefix_token_rate / u, 5) if u else 1.0,
            "belady_block_hits_fraction_of_unbounded_blocks": round(self.block_bound_fraction, 5),
            "strict_token_bound": round(self.strict_token_bound, 5),
            "strict_token_bound_fraction_of_bound": round(self.strict_token_bound / u, 5) if u else 1.0,
        }


def belady_pooled(trace: Sequence[TraceRequest], capacity: int, order: Sequence[int] | None = None,
                  block_tokens: int = BLOCK_TOKENS) -> PooledBound:
    """One clairvoyant cache of ``capacity`` blocks seeing every request in ``order`` (default: arrival)."""
    if capacity < 1:
        raise InvalidRequestError("capacity must be >= 1")
    seq = list(order) if order is not None else arrival_order(trace)
    # next_use[t][k]: position (in seq) of the next request containing block k of request seq[t]
    nxt: dict[int, float] = {}
    next_use: list[list[float]] = [[] for _ in seq]
    for t in range(len(seq) - 1, -1, -1):
        ids = trace[seq[t]].hash_ids
        next_use[t] = [nxt.get(b, math.inf) for b in ids]
        for b in ids:
            nxt[b] = t
    cache: dict[int, float] = {}  # block -> its next use
    heap: list[tuple[float, int]] = []  # (-next use, block), lazy
    seen: set[int] = set()
    plain = prefix = total_tokens = refs = un_blocks = un_tokens = 0
    for t, i in enumerate(seq):
        req = trace[i]
        ids = req.hash_ids
        total_tokens += req.input_length
        refs += len(ids)
        run = 0
        while run < len(ids) and ids[run] in cache:
            run += 1
        prefix += cached_tokens(run, req.input_length, block_tokens)
        u = 0
        while u < len(ids) and ids[u] in seen:
            u += 1
        un_blocks += u
        un_tokens += cached_tokens(u, req.input_length, block_tokens)
        for b, nu in zip(ids, next_use[t], strict=True):
            seen.add(b)
            if b in cache:
                plain += 1
            cache[b] = nu
            heapq.heappush(heap, (-nu, b))
        while len(cache) > capacity:
            neg, b = heapq.heappop(heap)
            if cache.get(b) == -neg:
                del cache[b]
        if len(heap) > 4 * capacity + 1024:  # drop stale entries now and then
            heap = [(-v, b) for b, v in cache.items()]
            heapq.heapify(heap)
    return PooledBound(capacity, total_tokens, refs, plain, prefix, un_blocks, un_tokens, block_tokens)


def ttft_floor(trace: Sequence[TraceRequest], cfg: SimConfig | None = None) -> dict[str, float]:
    """Mean and p99 of a per-request TTFT lower bound: no queue wait and the unbounded-cache prefix hit.

    A request's cached prefix on any replica is at most its leading run among the blocks of the requests that
    arrived before it, so its TTFT is at least its prefill beyond that run; order statistics keep the bound
    for the mean and every percentile. No router gets below these figures under the scoring model.
    """
    cfg = cfg or SimConfig()
    seen: set[int] = set()
    floor: list[float] = []
    for i in arrival_order(trace):
        req = trace[i]
        k = 0
        while k < len(req.hash_ids) and req.hash_ids[k] in seen:
            k += 1
        floor.append((req.input_length - cached_tokens(k, req.input_length, cfg.block_tokens)) / cfg.prefill_rate)
        seen.update(req.hash_ids)
    arr = np.asarray(floor, dtype=float)
    if not arr.size:
        return {"mean_ttft_s": 0.0, "p99_ttft_s": 0.0}
    return {"mean_ttft_s": float(arr.mean()), "p99_ttft_s": float(np.percentile(arr, 99))}
