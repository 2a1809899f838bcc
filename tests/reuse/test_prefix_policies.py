"""Online replica-choice policies over traces: online-ness, prefix stability, baselines, scorer agreement."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from sovrouter.errors import InvalidRequestError
from sovrouter.reuse.prefix_policies import (
    POLICIES,
    SGLangCacheAwarePolicy,
    SGLangSettings,
    make_policy,
    run_online,
)
from sovrouter.reuse.prefix_sim import SimConfig, TraceRequest, load_trace, score, summarize
from sovrouter.testing_traces import conversation_trace

CFG = SimConfig(capacity=64)


def synthetic_trace(n: int = 400, seed: int = 7) -> list[TraceRequest]:
    """Multi-turn conversations sharing a system block: each turn extends its conversation's blocks."""
    return conversation_trace(n, seed)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_choices_identical_when_trace_cut_short(name: str) -> None:
    trace = synthetic_trace()
    full = run_online(trace, 4, make_policy(name, 4, CFG), CFG).assignment
    for cut in (1, 57, 200, 399):
        part = run_online(trace[:cut], 4, make_policy(name, 4, CFG), CFG).assignment
        assert part == full[:cut]


@pytest.mark.parametrize("name", ["ours", "sglang", "least-loaded"])
def test_choice_unaffected_by_changing_later_requests(name: str) -> None:
    trace = synthetic_trace()
    k = 150
    changed = trace[: k + 1] + [
        dataclasses.replace(r, input_length=r.input_length * 3, output_length=5, hash_ids=(10**6 + j,))
        for j, r in enumerate(trace[k + 1:])
    ]
    a = run_online(trace, 4, make_policy(name, 4, CFG), CFG).assignment
    b = run_online(changed, 4, make_policy(name, 4, CFG), CFG).assignment
    assert a[: k + 1] == b[: k + 1]
    assert a != b  # the later requests did change later choices, so the comparison above means something


class _Spy:
    """Wraps a policy and checks that it only hears of its own past requests once they are done."""

    def __init__(self, inner: object, trace: list[TraceRequest]) -> None:
        self.inner = inner
        self.trace = trace
        self.sent: dict[int, float] = {}
        self.now = 0.0

    def choose(self, req: TraceRequest, now_s: float) -> int:
        self.now = now_s
        return self.inner.choose(req, now_s)  # type: ignore[attr-defined,no-any-return]

    def assigned(self, i: int, req: TraceRequest, replica: int, now_s: float) -> None:
        self.sent[i] = now_s
        self.inner.assigned(i, req, replica, now_s)  # type: ignore[attr-defined]

    def completed(self, i: int, replica: int, now_s: float) -> None:
        assert i in self.sent and self.sent[i] <= now_s
        assert now_s <= self.trace[len(self.sent)].t_s  # revealed no later than the next arrival
        self.inner.completed(i, replica, now_s)  # type: ignore[attr-defined]


def test_completions_are_revealed_only_when_due() -> None:
    trace = synthetic_trace(200)
    spy = _Spy(make_policy("ours", 4, CFG), trace)
    run = run_online(trace, 4, spy, CFG)
    assert len(run.assignment) == 200


def test_online_figures_match_the_independent_scorer() -> None:
    trace = synthetic_trace()
    run = run_online(trace, 4, make_policy("ours", 4, CFG), CFG)
    online = summarize(trace, run.served, run.busy_s)
    offline = score(trace, run.assignment, 4, CFG)
    assert online.as_dict() == offline.as_dict()


def test_affinity_policies_beat_round_robin_on_hits() -> None:
    trace = synthetic_trace(600)
    rr = score(trace, run_online(trace, 4, make_policy("round-robin", 4, CFG), CFG).assignment, 4, CFG)
    for name in ("ours", "sglang"):
        got = score(trace, run_online(trace, 4, make_policy(name, 4, CFG), CFG).assignment, 4, CFG)
        assert got.token_hit_rate > rr.token_hit_rate + 0.1


def test_sglang_follows_match_above_threshold_and_balances_when_imbalanced() -> None:
    pol = SGLangCacheAwarePolicy(2, SGLangSettings(balance_abs_threshold=2))
    a = TraceRequest(0, 2048, 1, (1, 2, 3, 4))
    pol.assigned(0, a, 1, 0.0)
    assert pol.choose(TraceRequest(0, 2560, 1, (1, 2, 3, 4, 5)), 0.0) == 1  # 80% match
    assert pol.choose(TraceRequest(0, 4096, 1, (1, 9, 9, 9, 9, 9, 9, 9)), 0.0) == 0  # low match: smaller tree
    for j in range(3):
        pol.assigned(j + 1, a, 1, 0.0)
    assert pol.choose(TraceRequest(0, 2560, 1, (1, 2, 3, 4, 5)), 0.0) == 0  # 4 vs 0 outstanding: imbalanced


def test_unknown_policy_and_bad_replica_count() -> None:
    with pytest.raises(InvalidRequestError, match="unknown policy"):
        make_policy("nope", 2, CFG)
    with pytest.raises(InvalidRequestError):
        run_online(synthetic_trace(3), 0, make_policy("round-robin", 1, CFG), CFG)


DEV_TRACE = Path("/work/shared/data/prefix/mooncake_conversation.jsonl.gz")


@pytest.mark.slow
@pytest.mark.skipif(not DEV_TRACE.exists(), reason="shared dev trace not on this machine")
def test_dev_trace_choices_identical_when_cut_short() -> None:
    trace = load_trace(DEV_TRACE)[:4000]
    cfg = SimConfig()
    full = run_online(trace, 8, make_policy("ours", 8, cfg), cfg).assignment
    part = run_online(trace[:2500], 8, make_policy("ours", 8, cfg), cfg).assignment
    assert part == full[:2500]


def test_out_of_order_trace_is_routed_in_arrival_order() -> None:
    trace = synthetic_trace(120)
    shuffled_idx = list(range(120))
    random.Random(3).shuffle(shuffled_idx)
    shuffled = [trace[i] for i in shuffled_idx]
    a = run_online(trace, 3, make_policy("ours", 3, CFG), CFG).assignment
    b = run_online(shuffled, 3, make_policy("ours", 3, CFG), CFG).assignment
    assert [b[shuffled_idx.index(i)] for i in range(120)] == a


@pytest.mark.parametrize("options", [{"age_aware": True}, {"tail": 0.0}])
def test_router_options_are_online_too(options: dict[str, object]) -> None:
    from sovrouter.reuse.prefix import AffinitySettings
    from sovrouter.reuse.prefix_policies import OursPolicy

    def make() -> OursPolicy:
        return OursPolicy(4, CFG, AffinitySettings(capacity_blocks=CFG.capacity, **options))  # type: ignore[arg-type]

    trace = synthetic_trace()
    full = run_online(trace, 4, make(), CFG).assignment
    for cut in (57, 250):
        assert run_online(trace[:cut], 4, make(), CFG).assignment == full[:cut]
