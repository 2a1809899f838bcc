"""Offline limits on the hit rate: Belady on one pooled cache (exactness on tiny cases, bound on policies)."""

from __future__ import annotations

import itertools
import random

import pytest

from sovrouter.errors import InvalidRequestError
from sovrouter.reuse.prefix_bound import belady_pooled
from sovrouter.reuse.prefix_policies import POLICIES, make_policy, run_online
from sovrouter.reuse.prefix_sim import SimConfig, TraceRequest, unbounded_hit_rate
from sovrouter.testing_traces import conversation_trace


def _req(t: float, ids: list[int], inp: int | None = None) -> TraceRequest:
    return TraceRequest(t, inp if inp is not None else 512 * len(ids), 1, tuple(ids))


def _brute_force_block_hits(reqs: list[TraceRequest], capacity: int) -> int:
    """Best block-hit count over every retention choice (C' any subset of C | R of size <= capacity)."""
    best: dict[frozenset[int], int] = {frozenset(): 0}
    for r in reqs:
        nxt: dict[frozenset[int], int] = {}
        for cache, hits in best.items():
            h = hits + sum(1 for b in r.hash_ids if b in cache)
            pool = sorted(cache | set(r.hash_ids))
            for k in range(min(capacity, len(pool)) + 1):
                for keep in itertools.combinations(pool, k):
                    key = frozenset(keep)
                    if nxt.get(key, -1) < h:
                        nxt[key] = h
        best = nxt
    return max(best.values())


def test_belady_block_hits_equal_the_brute_force_optimum() -> None:
    rng = random.Random(3)
    for _ in range(25):
        reqs = [_req(float(t), rng.sample(range(5), rng.randint(1, 2))) for t in range(7)]
        cap = rng.randint(1, 3)
        assert belady_pooled(reqs, cap).plain_blocks == _brute_force_block_hits(reqs, cap)


def test_belady_beats_lru_on_a_loop_and_counts_the_prefix_rule() -> None:
    # A loop over 3 blocks with room for 2: LRU never hits, Belady keeps one block of the loop.
    reqs = [_req(float(t), [t % 3]) for t in range(9)]
    b = belady_pooled(reqs, 2)
    assert b.plain_blocks == 4  # 0 1 2 | 0 1 hit, 2 misses | 0 1 hit, 2 misses (LRU: no hit at all)
    assert b.plain_blocks == _brute_force_block_hits(reqs, 2)
    assert b.prefix_tokens == 512 * b.plain_blocks  # single-block requests: prefix rule = plain count
    # Prefix rule: block 2 cached without block 1 gives no prefix hit, though it counts as a plain hit.
    reqs2 = [_req(0.0, [1, 2]), _req(1.0, [9]), _req(2.0, [1, 2])]
    b2 = belady_pooled(reqs2, 2)
    assert b2.plain_blocks == 2 and b2.prefix_tokens == 1024


def test_large_capacity_reaches_the_unbounded_bound_with_partial_blocks() -> None:
    reqs = [_req(0.0, [1, 2], 700), _req(1.0, [1, 2], 700), _req(2.0, [1, 4], 600)]
    b = belady_pooled(reqs, 100)
    assert b.prefix_token_rate == pytest.approx(unbounded_hit_rate(reqs))
    assert b.unbounded_tokens == 700 + 512  # the partial block counts for the 188 tokens it holds
    assert b.strict_token_bound >= b.prefix_token_rate


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_no_policy_beats_the_pooled_belady_bound(name: str) -> None:
    trace = conversation_trace(300, 11, rate=3.0, p_return=0.7, max_new=5, slack=400, max_output=300,
                               round_ms=False)
    cfg = SimConfig(capacity=24)
    run = run_online(trace, 3, make_policy(name, 3, cfg), cfg)
    hit = sum(s.cached_tokens for s in run.served) / sum(r.input_length for r in trace)
    starts = sorted(range(len(trace)), key=lambda i: (run.served[i].start_s, i))
    bound = belady_pooled(trace, 3 * cfg.capacity, order=starts)
    assert hit <= bound.strict_token_bound + 1e-12
    assert hit <= belady_pooled(trace, 3 * cfg.capacity).strict_token_bound + 1e-12  # arrival order too


def test_capacity_must_be_positive() -> None:
    with pytest.raises(InvalidRequestError):
        belady_pooled([_req(0.0, [1])], 0)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_ttft_floor_is_below_every_policy(name: str) -> None:
    from sovrouter.reuse.prefix_bound import ttft_floor
    from sovrouter.reuse.prefix_sim import summarize

    rng = random.Random(5)
    trace = [TraceRequest(100.0 * t, rng.randint(200, 5000), rng.randint(1, 500),
                          tuple([0] + [rng.randint(1, 6)] * rng.randint(0, 3)))
             for t in range(200)]
    cfg = SimConfig(capacity=8)
    run = run_online(trace, 2, make_policy(name, 2, cfg), cfg)
    sc = summarize(trace, run.served, run.busy_s)
    floor = ttft_floor(trace, cfg)
    assert 0.0 < floor["mean_ttft_s"] <= sc.mean_ttft_s + 1e-12
    assert floor["p99_ttft_s"] <= sc.p99_ttft_s + 1e-12


def test_ttft_floor_by_hand() -> None:
    from sovrouter.reuse.prefix_bound import ttft_floor

    reqs = [_req(0.0, [1, 2], 1000), _req(0.0, [1, 2, 3], 1500), _req(5.0, [4], 100)]
    # prefills beyond the unbounded-cache hit: 1000, 1500 - 1024, 100 tokens at 10,000 tok/s
    assert ttft_floor(reqs)["mean_ttft_s"] == pytest.approx((0.1 + 0.0476 + 0.01) / 3)
