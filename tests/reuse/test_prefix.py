"""The prefix/KV-affinity router: its cost model over block hashes and explicit times."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from sovrouter.clock import SimClock
from sovrouter.config import Upstream
from sovrouter.contracts import Candidate
from sovrouter.errors import InvalidRequestError
from sovrouter.reuse.prefix import AffinitySettings, PrefixAffinityRouter
from sovrouter.reuse.prefix_chooser import PrefixAffinityChooser, prefix_affinity_factory

R = ["a", "b", "c"]
S = AffinitySettings(capacity_blocks=100, prefill_rate=1000.0, decode_rate=100.0, block_tokens=100)


def test_goes_where_the_prefix_is_cached_when_loads_are_equal() -> None:
    r = PrefixAffinityRouter(S)
    r.assign(1, [1, 2, 3, 4], 400, 0.0, "b")
    r.complete(1, 1.0)
    assert r.choose([1, 2, 3, 4, 5], 500, 2.0, R) == 1
    est = r.estimate([1, 2, 3, 4, 5], 500, 2.0, R)
    assert est[1].hit_tokens == 400 and est[0].hit_tokens == 0
    assert est[1].prefill_s == pytest.approx(0.1) and est[0].prefill_s == pytest.approx(0.5)


def test_leaves_the_cached_replica_when_its_queue_costs_more_than_the_prefill_saved() -> None:
    r = PrefixAffinityRouter(S)
    r.assign(1, [1, 2], 200, 0.0, "b")
    r.assign(2, [7] * 1, 20_000, 0.0, "b")  # a 20 s prefill queued on b
    assert r.choose([1, 2, 3], 300, 0.1, R) != 1
    # with nothing queued, the same request sticks to b
    r2 = PrefixAffinityRouter(S)
    r2.assign(1, [1, 2], 200, 0.0, "b")
    r2.complete(1, 0.5)
    assert r2.choose([1, 2, 3], 300, 10.0, R) == 1


def test_wait_estimate_follows_fifo_queue_and_learns_decode_time() -> None:
    r = PrefixAffinityRouter(S)  # prior decode 0.25 s
    r.assign(1, [1], 100, 0.0, "a")  # prefill 0.1
    r.assign(2, [2], 100, 0.0, "a")
    w = r.estimate([9], 100, 0.0, ["a"])[0].wait_s
    assert w == pytest.approx(2 * (0.1 + 0.25))
    r.complete(1, 1.1)  # observed decode 1.0 s
    est = r.estimate([9], 100, 1.1, ["a"])[0]
    assert est.wait_s == pytest.approx(0.1 + (0.25 + 1.0) / 2)


def test_a_call_heard_of_late_counts_as_done_at_its_predicted_end_within_the_lag() -> None:
    r = PrefixAffinityRouter(S)  # prior decode 0.25 s; prefill 0.1 s for 100 uncached tokens
    r.assign(1, [1], 100, 0.0, "own")  # predicted done at 0.35 s
    r.assign(2, [2], 100, 0.0, "peer", lag_s=0.2)  # another instance's call: its completion is heard 0.2 s late

    def wait(t: float, replica: str) -> float:
        return r.estimate([9], 100, t, [replica])[0].wait_s

    assert wait(0.3, "own") == pytest.approx(0.05) and wait(0.3, "peer") == pytest.approx(0.05)
    # 0.1 s past the prediction, no completion heard: our own call is overdue (memoryless residual), the other
    # instance's is taken as done, its completion event still on its way.
    assert wait(0.45, "own") == pytest.approx(0.25) and wait(0.45, "peer") == 0.0
    # Past the prediction by more than the lag, the other instance's call is overdue too.
    assert wait(0.6, "peer") == pytest.approx(0.25)


def test_engine_reports_add_the_requests_this_router_did_not_send_to_the_wait() -> None:
    r = PrefixAffinityRouter(S)
    r.assign(1, [1], 100, 0.0, "a")  # one of ours in flight on a: 0.1 s prefill + 0.25 s prior decode
    r.assign(2, [2], 100, 0.0, "a")
    r.complete(2, 0.0, ok=False)  # a failed call: not counted on a any more
    mean = 0.35  # the mean estimated service of the router's sends in the window (both: 0.1 + 0.25)
    base = r.estimate([9], 100, 0.0, R)
    assert [e.wait_s for e in base] == pytest.approx([0.35, 0.0, 0.0])
    r.report_held("a", 4)  # the engine holds ours and three others
    r.report_held("b", 0)
    r.report_held("c", 2)  # two requests of someone else's
    est = r.estimate([9], 100, 0.0, R)
    assert [e.wait_s for e in est] == pytest.approx([0.35 + 3 * mean, 0.0, 2 * mean])
    assert r.choose([9], 100, 0.0, R) == 1
    r.assign(3, [3], 100, 0.0, "c")  # sent after c's report: its 2 others stay counted
    assert r.estimate([9], 100, 0.0, R)[2].wait_s == pytest.approx(3 * mean)
    r.report_held("a", 0)  # a report that has not seen our call yet: never below the model's own queue
    r.report_held("c", None)  # no current report: the model alone
    assert [e.wait_s for e in r.estimate([9], 100, 0.0, R)] == pytest.approx([0.35, 0.0, 0.35])


def test_new_prefixes_spread_over_idle_replicas() -> None:
    r = PrefixAffinityRouter(S)
    chosen = set()
    for k in range(3):
        c = r.choose([100 + k], 100, float(k), R)
        r.assign(k, [100 + k], 100, float(k), R[c])
        chosen.add(c)
    assert chosen == {0, 1, 2}


def test_instances_of_other_ranks_spread_new_work_over_the_replicas_near_the_best() -> None:
    r = PrefixAffinityRouter(S)
    alone = r.choose([7], 100, 0.0, R)
    picks = [r.choose([7], 100, 0.0, R, rank=k) for k in range(4)]
    assert picks[0] == alone  # rank 0 chooses as a lone gateway does
    assert sorted(picks[:3]) == [0, 1, 2]  # idle replicas at equal cost: one per rank
    assert picks[3] == picks[0]  # ranks beyond the band wrap around
    off = PrefixAffinityRouter(dataclasses.replace(S, instance_band_s=0.0))
    assert {off.choose([7], 100, 0.0, R, rank=k) for k in range(4)} == {alone}


def test_the_second_rank_never_takes_the_first_ranks_pick_while_the_band_holds_another() -> None:
    r = PrefixAffinityRouter(dataclasses.replace(S, compute_price=0.0, prefill_rate=2000.0))
    r.assign("q", [1], 100, 0.0, "a")  # a holds block 1 and has been busy; b has done nothing
    r.complete("q", 0.2)
    ests = r.estimate([1, 9], 200, 100.0, ["a", "b"])
    assert S.tie_s < ests[1].cost - ests[0].cost < S.instance_band_s  # a a little cheaper: both in the band
    first, second = (r.choose([1, 9], 200, 100.0, ["a", "b"], rank=k) for k in (0, 1))
    # Rank 0 takes the cheaper a. Ordered by recent busy time alone, the band would be [b, a] and rank 1 would
    # take a as well: the two instances would still herd.
    assert (first, second) == (0, 1)


def test_a_cached_prefix_worth_more_than_the_band_is_every_ranks_choice() -> None:
    r = PrefixAffinityRouter(S)
    doc = [1, 2, 3, 4, 5]
    r.assign("q", doc, 500, 0.0, "b")  # 0.5 s of prefill cached on b
    r.complete("q", 1.0)
    assert {r.choose([*doc, 6], 600, 2.0, R, rank=k) for k in range(5)} == {1}
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(InvalidRequestError, match="instance_band_s"):
            AffinitySettings(instance_band_s=bad)


def test_no_replica_is_an_error() -> None:
    with pytest.raises(InvalidRequestError):
        PrefixAffinityRouter(S).choose([1], 10, 0.0, [])
    with pytest.raises(InvalidRequestError):
        AffinitySettings(prefill_rate=0)


def test_the_long_wait_penalty_is_on_by_default_everywhere_and_can_be_turned_off() -> None:
    from sovrouter.reuse.prefix_policies import OursPolicy, make_policy, trace_settings
    from sovrouter.reuse.prefix_sim import SimConfig

    assert AffinitySettings().tail == 0.3
    cfg = SimConfig(capacity=64)
    assert trace_settings(cfg).tail == 0.3 and trace_settings(cfg, 0.0).tail == 0.0
    ours = make_policy("ours", 3, cfg)
    assert isinstance(ours, OursPolicy) and ours.router.settings.tail == 0.3
    chooser = prefix_affinity_factory(SimClock())(Candidate(slot="s", deployment="d"),
                                                  Upstream(base_urls=["http://r0.test/v1", "http://r1.test/v1"]))
    assert chooser.settings.tail == 0.3
    assert PrefixAffinityChooser(SimClock(), dataclasses.replace(S, tail=0.0)).settings.tail == 0.0
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(InvalidRequestError, match="tail"):
            AffinitySettings(tail=bad)


def _serve_sequentially(router: PrefixAffinityRouter, true_rate: float, n: int, decode_s: float = 0.1) -> None:
    """n one-at-a-time requests of varying size on replica "a", each finishing after its true service time."""
    t = 0.0
    for k in range(n):
        tokens = 500 + 250 * (k % 7)
        blocks = [10_000 * (k + 1) + j for j in range(tokens // 100 + 1)]  # never cached: all tokens uncached
        router.assign(k, blocks, tokens, t, "a")
        t += tokens / true_rate + decode_s
        router.complete(k, t)
        t += 1.0


def test_prefill_rate_is_learned_from_completions_when_asked() -> None:
    configured = dataclasses.replace(S, prefill_rate=1_000_000.0, load_window_s=1e6)  # 1,000x too fast
    learning = PrefixAffinityRouter(dataclasses.replace(configured, learn_prefill_rate=True))
    _serve_sequentially(learning, true_rate=1_000.0, n=19)
    assert learning.seconds_per_token == pytest.approx(1e-6)  # the prior until 20 completions
    _serve_sequentially(learning, true_rate=1_000.0, n=40)
    assert learning.seconds_per_token == pytest.approx(1e-4)  # clamped at 100x slower (the truth is 1e-3)
    cpu = PrefixAffinityRouter(dataclasses.replace(configured, prefill_rate=10_000.0, learn_prefill_rate=True))
    _serve_sequentially(cpu, true_rate=140.0, n=60)  # the default prior, a CPU engine 70x slower
    assert cpu.seconds_per_token == pytest.approx(1 / 140.0, rel=0.02)
    within = PrefixAffinityRouter(dataclasses.replace(configured, prefill_rate=2_000.0, learn_prefill_rate=True))
    _serve_sequentially(within, true_rate=1_000.0, n=60)
    assert within.seconds_per_token == pytest.approx(1e-3, rel=0.02)  # within the clamp: the true slope
    assert within.prefill_seconds(1000) == pytest.approx(1.0, rel=0.02)
    too_slow = PrefixAffinityRouter(dataclasses.replace(configured, prefill_rate=100.0, learn_prefill_rate=True))
    _serve_sequentially(too_slow, true_rate=10_000.0, n=60)
    assert too_slow.seconds_per_token == pytest.approx(1e-3)  # at most 10x faster than configured
    fixed = PrefixAffinityRouter(configured)
    _serve_sequentially(fixed, true_rate=1_000.0, n=60)
    assert fixed.seconds_per_token == pytest.approx(1e-6)  # off: the configured rate, whatever is observed


def test_failed_calls_teach_nothing_about_service_times() -> None:
    router = PrefixAffinityRouter(dataclasses.replace(S, prefill_rate=2_000.0, learn_prefill_rate=True,
                                                      load_window_s=1e6))
    _serve_sequentially(router, true_rate=1_000.0, n=40)
    learned = router.seconds_per_token
    t = 10_000.0
    for k in range(40):  # large prompts that fail at once (connection refused)
        router.assign(f"x{k}", [900_000 + k], 5_000, t, "a")
        router.complete(f"x{k}", t + 0.001, ok=False)
        t += 1.0
    assert router.seconds_per_token == learned
    router.assign("next", [1], 100, t, "a")
    assert router.estimate([2], 100, t, ["a"])[0].wait_s > 0.05  # the mean decode time was not dragged to 0


def test_a_learned_slow_prefill_keeps_a_follow_up_on_its_cached_replica() -> None:
    """With prefill believed 10x too fast, a short queue looks worse than re-reading a long prompt elsewhere;
    once the real rate is learned, staying where the prompt is cached is right."""
    base = dataclasses.replace(S, capacity_blocks=1000, prefill_rate=20_000.0, compute_price=0.0, tail=0.0,
                               externality=0.0, pollution=0.0, load_window_s=1e6)
    choices = {}
    for learn in (False, True):
        router = PrefixAffinityRouter(dataclasses.replace(base, learn_prefill_rate=learn))
        _serve_sequentially(router, true_rate=2_000.0, n=40)
        doc = list(range(1, 101))  # 100 blocks = 10,000 tokens, cached on "b"
        router.assign("doc", doc, 10_000, 500.0, "b")
        router.complete("doc", 505.1)
        router.assign("busy", [7_777_777], 100, 600.0, "b")  # b has one short request in front
        choices[learn] = router.choose([*doc, 999_999], 10_050, 600.0, ["b", "c"])
    assert choices == {False: 1, True: 0}


def test_eviction_value_is_measured_per_idle_age_and_never_rises_with_age() -> None:
    s = AffinitySettings(capacity_blocks=2, prefill_rate=1000.0, decode_rate=100.0, block_tokens=100,
                         age_aware=True, load_window_s=1e6)
    r = PrefixAffinityRouter(s)
    r.assign(1, [1, 2], 200, 0.0, "a")
    r.assign(2, [3, 4], 200, 100.0, "a")  # evicts 1, 2 after 100 s idle (bucket 60-120 s)
    r.assign(3, [5], 100, 101.0, "c")
    r.assign(4, [6], 100, 150.0, "c")  # then 7, 8 evict 5 (50 s idle) and 6 (1 s idle): not missed later
    r.assign(5, [7, 8], 200, 151.0, "c")
    assert r.eviction_cost_by_age() == [0.0] * len(r.eviction_cost_by_age())  # nothing missed yet
    r.assign(6, [1, 2, 9], 300, 152.0, "b")  # 1, 2 found only in a's ghost: 200 tokens lost to evictions
    by_age = r.eviction_cost_by_age()
    assert by_age[3] == pytest.approx(100.0, rel=1e-3)  # 200 tokens / 2 evictions in the 60-120 s bucket
    assert by_age[0] == pytest.approx(100.0, rel=1e-3)  # younger buckets are worth at least as much as older ones
    assert all(by_age[k] == 0.0 for k in range(4, len(by_age)))
    assert all(x >= y for x, y in itertools.pairwise(by_age))
    assert r.eviction_cost_tokens == pytest.approx(200.0 / 5, rel=1e-3)  # age-blind mean (b evicted its 1 too)


def test_age_aware_pollution_prefers_the_replica_whose_evicted_blocks_are_older() -> None:
    s = AffinitySettings(capacity_blocks=2, prefill_rate=1000.0, decode_rate=100.0, block_tokens=100,
                         age_aware=True, compute_price=0.0, externality=0.0, load_window_s=1e6)
    r = PrefixAffinityRouter(s)
    r.assign(1, [1, 2], 200, 0.0, "a")
    r.assign(2, [3, 4], 200, 100.0, "a")
    r.assign(3, [1, 2, 7], 300, 102.0, "b")  # measures a cost for 60-120 s-old evictions
    for k in (1, 2, 3):
        r.complete(k, 200.0)
    r.assign(4, [8, 9], 200, 1000.0, "c")  # c's content is 900 s older than a's by the next choice
    r.assign(5, [10, 11], 200, 1900.0, "a")
    for k in (4, 5):
        r.complete(k, 1950.0)
    est = {e.replica: e for e in r.estimate([20, 21], 200, 1960.0, ["a", "c"])}
    assert est[0].wait_s == est[1].wait_s == 0.0
    assert est[0].cost > est[1].cost  # evicting a's 60 s-old blocks is priced, c's 960 s-old ones are not
    assert r.choose([20, 21], 200, 1960.0, ["a", "c"]) == 1


def test_tail_penalty_avoids_a_long_wait_that_the_compute_price_would_accept() -> None:
    base = AffinitySettings(capacity_blocks=100, prefill_rate=1000.0, decode_rate=100.0, block_tokens=100,
                            externality=0.0, pollution=0.0, compute_price=10.0)
    for tail, expected in ((0.0, 1), (1.0, 0)):
        r = PrefixAffinityRouter(dataclasses.replace(base, tail=tail))
        r.assign(1, [1, 2, 3, 4, 5], 500, 0.0, "b")  # b caches 1..5; then 2 s of prefill queue on b
        r.complete(1, 1.0)
        r.assign(2, [9] * 20, 2000, 1.0, "b")
        # q on a: 0.6 s prefill, no wait; on b: ~2 s wait, 0.1 s prefill. Price 10 favours b (saves 0.5 s of
        # prefill = 5 s), a convex wait penalty favours a.
        assert r.choose([1, 2, 3, 4, 5, 6], 600, 1.0, ["a", "b"]) == expected


def test_decode_time_is_predicted_per_template_so_short_calls_do_not_look_busy() -> None:
    """Tool calls answered in a few tokens (template 100) and long replies (template 200) share the replicas.
    Five queued short calls are less work than one long reply; one mean decode for all says the opposite."""
    def trained(by_template: bool) -> tuple[PrefixAffinityRouter, float]:
        r = PrefixAffinityRouter(dataclasses.replace(S, decode_by_template=by_template, compute_price=0.0))
        t = 0.0
        for k in range(20):  # completions teach: template 100 decodes in 0.01 s, template 200 in 2 s
            r.assign(("s", k), [100, 1000 + k], 200, t, "c")
            t += 0.2 + 0.01
            r.complete(("s", k), t)
            r.assign(("l", k), [200, 2000 + k], 200, t, "c")
            t += 0.2 + 2.0
            r.complete(("l", k), t)
        for k in range(5):
            r.assign(("qs", k), [100, 3000 + k], 100, t, "a")
        r.assign("ql", [200, 4000], 100, t, "b")
        r.assign("busy", [300], 100_000, t, "c")  # c is out of the picture
        return r, t

    new = [500, 5000]
    r, now = trained(True)
    waits = [e.wait_s for e in r.estimate(new, 100, now, ["a", "b", "c"])]
    assert waits[0] == pytest.approx(0.1 + 5 * r._decode.predict(100))  # one prefill: the rest hit block 100
    assert waits[0] < waits[1]
    assert r.choose(new, 100, now, ["a", "b", "c"]) == 0
    r, now = trained(False)
    assert r.choose(new, 100, now, ["a", "b", "c"]) == 1
