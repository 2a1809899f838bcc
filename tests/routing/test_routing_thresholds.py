"""Threshold selection: the cheapest grid point meeting the quality constraint, and the vectorised cascade."""

from __future__ import annotations

import numpy as np

from sovrouter.routing.model import Thresholds, TierThresholds
from sovrouter.routing.simulate import (
    EvalSet,
    curve,
    direct_domain_options,
    metrics,
    reference,
    run_policy,
    select_thresholds,
)
from sovrouter.routing.training import StageProbs


def _case() -> tuple[EvalSet, StageProbs]:
    """Four requests, top = frontier. Rows 0-1: local-small right and the verifier knows it; rows 2-3: only
    frontier is right and the verifier predicts a large gain."""
    n = 4
    scores = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1], [0, 0, 0, 1]], dtype=float)
    cost = np.tile(np.array([0.01, 0.2, 0.05, 1.0]), (n, 1))
    accel = np.tile(np.array([False, False, True, True]), (n, 1))
    ev = EvalSet(scores=scores, cost=cost, accel=accel, latency=np.ones((n, 4)), events=np.ones(n),
                 top=np.full(n, 3), high=np.zeros(n, dtype=bool), domains=np.array(["math"] * n),
                 pick_case=np.zeros(n, dtype=bool), executable=np.zeros(n, dtype=bool),
                 exec_match=np.zeros((n, 4), dtype=bool), top_cost_est=np.ones((n, 2)),
                 step_share=np.full(n, 0.2))
    sp = StageProbs(prior=np.full((n, 4), 0.5), p1_first=np.array([0.9, 0.9, 0.2, 0.2]),
                    p1_top=np.array([0.9, 0.9, 0.9, 0.9]), p2_second=np.array([0.9, 0.9, 0.2, 0.2]),
                    p2_top=np.array([0.9, 0.9, 0.9, 0.9]), domain_probs=np.ones((n, 1)),
                    p3_mid=np.array([0.9, 0.9, 0.9, 0.2]), p3_top=np.array([0.9, 0.9, 0.9, 0.9]),
                    p4=np.tile(np.array([0.0, 0.5, 0.5, 0.5]), (n, 1)))
    return ev, sp


def test_cascade_accepts_and_escalates_as_the_router_would() -> None:
    ev, sp = _case()
    out = run_policy(ev, sp, TierThresholds(direct=2.0, stage1=0.1, stage2=0.1, skip=2.0), 0.5)
    assert out.served.tolist() == [0, 0, 3, 3]
    assert out.called[2].tolist() == [True, True, False, True]  # local, sovereign, then frontier
    skip = run_policy(ev, sp, TierThresholds(direct=2.0, stage1=0.1, stage2=0.1, skip=0.5), 0.5)
    assert skip.called[2].tolist() == [True, False, False, True]  # large stage-1 gain: straight to frontier


def test_skip_weighs_only_steps_that_cost_a_real_share_of_top() -> None:
    ev, sp = _case()
    ev.step_share[:] = [0.2, 0.2, 0.1, 0.4]  # sovereign-large costs 10% of frontier on row 2, 40% on row 3
    th = TierThresholds(direct=2.0, stage1=0.1, stage2=0.1, skip=0.5, skip_share=0.25)
    out = run_policy(ev, sp, th, 0.5)
    assert out.called[2].tolist() == [True, True, False, True]  # a cheap step is still tried
    assert out.called[3].tolist() == [True, False, False, True]  # a dear one is skipped on a large gain
    assert out.served.tolist() == [0, 0, 3, 3]


def test_selection_picks_cheapest_feasible_point() -> None:
    ev, sp = _case()
    th, m = select_thresholds(ev, sp, margin=0.0, domain_floor=-0.01, high_factor=0.5,
                              grids=((2.0,), (-0.5, 0.1, 2.0), (0.1,), (2.0,), (None,), (None,)))
    assert th.stage1 == 0.1  # -0.5 escalates everything (dearer), 2.0 accepts wrong answers (infeasible)
    assert m.diff == 0.0 and m.cost < metrics(ev, reference(ev)).cost


def test_selection_falls_back_to_best_quality_when_nothing_is_feasible() -> None:
    ev, sp = _case()
    th, m = select_thresholds(ev, sp, margin=0.5, domain_floor=-0.01, high_factor=0.5,
                              grids=((2.0,), (-0.5, 2.0), (0.1,), (2.0,), (None,), (None,)))
    assert th.stage1 == -0.5 and m.diff == 0.0


def test_voter_step_answers_before_frontier_and_is_paid_for() -> None:
    ev, sp = _case()
    th = TierThresholds(direct=2.0, stage1=0.1, stage2=0.1, skip=2.0, stage3=0.1)
    out = run_policy(ev, sp, th, 0.5)
    # row 2: the verifier trusts hosted-mini's answer (gain 0) -> served by the voter, frontier never called;
    # row 3: gain 0.7 -> frontier after the voter, every step paid
    assert out.called[2].tolist() == [True, True, True, False] and out.served[2] == 2
    assert out.called[3].tolist() == [True, True, True, True] and out.served[3] == 3
    assert metrics(ev, out).cost == sum(float(ev.cost[i][out.called[i]].sum()) for i in range(4))


def test_voter_step_is_skipped_where_hosted_mini_is_not_allowed() -> None:
    ev, sp = _case()
    ev.cost[:, 2] = np.nan  # not in the allowed set
    out = run_policy(ev, sp, TierThresholds(direct=2.0, stage1=0.1, stage2=0.1, skip=2.0, stage3=0.1), 0.5)
    assert not out.called[:, 2].any()
    assert out.served[2:].tolist() == [3, 3]


def test_picker_serves_a_cheap_answer_only_when_clearly_more_trusted() -> None:
    ev, sp = _case()
    th = TierThresholds(direct=2.0, stage1=0.1, stage2=0.1, skip=2.0, stage3=0.1, pick=0.1)
    sp.p4[3] = [0.0, 0.3, 0.8, 0.6]  # hosted-mini 0.2 above frontier: more than the 0.1 margin
    assert run_policy(ev, sp, th, 0.5).served[3] == 2
    sp.p4[3] = [0.0, 0.3, 0.65, 0.6]  # within the margin: keep frontier
    assert run_policy(ev, sp, th, 0.5).served[3] == 3


def test_high_value_thresholds_are_stricter_on_both_sides_of_zero() -> None:
    """Halving a negative gain threshold (stage 1 ships at -0.2) moved it to -0.1: high-value tenants accepted the
    cheap answer more often than standard ones, the opposite of weighing quality twice."""
    from sovrouter.routing.model import Thresholds, TierThresholds, stricter

    std = TierThresholds(direct=2.0, stage1=-0.2, stage2=0.02, skip=0.2, skip_share=0.25, pick_agreeing=False,
                         stage3=0.01, pick=None)
    high = Thresholds(standard=std, high_value_factor=0.5).for_value("high")
    assert high.stage1 == -0.4 and high.stage2 == 0.01 and high.stage3 == 0.005 and high.direct == 1.0
    for t in (-0.3, -0.01, 0.0, 0.02, 0.5):
        assert stricter(t, 0.5) <= t  # never easier to accept


def test_every_negative_gain_threshold_is_stricter_for_high_value_tenants() -> None:
    """Only stage 1 had been fixed: a negative stage2 (the selection grid holds -0.05), stage3, direct or skip was
    still halved towards zero, and the serving router and the simulation both accepted more readily for
    high-value tenants."""
    from sovrouter.routing.model import Thresholds

    std = TierThresholds(direct=-0.1, stage1=-0.2, stage2=-0.05, skip=-0.3, stage3=-0.02)
    high = Thresholds(standard=std, high_value_factor=0.5).for_value("high")
    assert (high.direct, high.stage1, high.stage2, high.skip, high.stage3) == (-0.2, -0.4, -0.1, -0.6, -0.04)
    ev, sp = _case()
    sp.p2_top[:] = sp.p2_second + (-0.07)  # a stage-2 gain of -0.07: under -0.05, over -0.1
    th = TierThresholds(direct=2.0, stage1=-1.0, stage2=-0.05, skip=2.0)
    standard = run_policy(ev, sp, th, 0.5)
    ev.high[:] = True
    valued = run_policy(ev, sp, th, 0.5)
    assert (standard.served == 1).all()  # standard tenants accept the sovereign answer
    assert (valued.served == 3).all()  # high-value ones escalate to frontier


def _two_domains() -> tuple[EvalSet, StageProbs]:
    """Rows 0-1 math (local-small right, the verifier knows it); rows 2-3 chat (local-small wrong, but the
    verifier cannot tell: it predicts no gain); row 3 is an executable question."""
    ev, sp = _case()
    ev.scores[:] = [[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1], [0, 0, 0, 1]]
    ev.domains[:] = ["math", "math", "chat", "chat"]
    ev.executable[3] = True
    ev.exec_match[3] = [False, False, False, True]
    sp.p1_first[:] = 0.9
    sp.p1_top[:] = 0.9
    sp.domain_probs = np.array([[0.1, 0.9], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]])
    sp.domains = ("chat", "math")
    return ev, sp


def test_a_direct_domain_goes_to_top_at_once_except_executable_questions() -> None:
    ev, sp = _two_domains()
    th = TierThresholds(direct=2.0, stage1=0.1, stage2=0.1, skip=2.0)
    assert run_policy(ev, sp, th, 0.5).served.tolist() == [0, 0, 0, 3]  # chat row 2 accepted wrongly
    out = run_policy(ev, sp, th.model_copy(update={"direct_domains": ("chat",)}), 0.5)
    assert out.served.tolist() == [0, 0, 3, 3]
    assert out.called[2].tolist() == [False, False, False, True]  # top only: no cheap call paid
    assert out.called[3].tolist()[0] is True  # an executable question still starts cheap (the check is exact)
    assert sp.predicted_domain().tolist() == ["math", "math", "chat", "chat"]  # the classifier's, not the labels'


def test_selection_makes_a_domain_direct_when_its_cascade_breaks_the_floor() -> None:
    ev, sp = _two_domains()
    grids = ((2.0,), (0.1,), (0.1,), (2.0,), (None,), (None,))
    th, m = select_thresholds(ev, sp, margin=0.0, domain_floor=-0.01, high_factor=0.5, grids=grids)
    assert th.direct_domains == () and m.domain_diff["chat"] < -0.01  # nothing feasible without the option
    th, m = select_thresholds(ev, sp, margin=0.0, domain_floor=-0.01, high_factor=0.5, grids=grids,
                              domain_options=direct_domain_options(sp.domains))
    assert th.direct_domains == ("chat",)
    assert m.domain_diff == {"chat": 0.0, "math": 0.0}


def test_direct_domains_hold_for_high_value_tenants_and_old_files_load() -> None:
    std = TierThresholds(direct=2.0, stage1=-0.2, stage2=0.02, skip=0.2, direct_domains=("chat_hard",))
    assert Thresholds(standard=std).for_value("high").direct_domains == ("chat_hard",)
    old = {"direct": 2.0, "stage1": -0.2, "stage2": 0.02}  # a thresholds file written before v2.3
    assert TierThresholds.model_validate(old).direct_domains == ()


def test_the_curve_covers_the_direct_domains_selection_searches() -> None:
    """bench/router_curves.py plots the grid's Pareto front next to the CV operating point chosen with direct
    domains: a front drawn without them cannot reach the point selection takes (found in review)."""
    ev, sp = _two_domains()
    grids = ((2.0,), (0.1,), (0.1,), (2.0,), (None,), (None,))
    options = direct_domain_options(sp.domains)
    _, m = select_thresholds(ev, sp, margin=0.0, domain_floor=-0.01, high_factor=0.5, grids=grids,
                             domain_options=options)
    front = curve(ev, sp, 0.5, grids=grids, domain_options=options)
    assert any(c <= m.cost_ratio + 1e-12 and q >= m.quality - 1e-12 for c, q, _ in front)


def test_selection_sends_no_domain_direct_when_every_cascade_holds_its_floor() -> None:
    """The options searched include no direct domain at all: where each domain's cascade already holds the floor,
    selection keeps the cheap path for all of them rather than paying top for a whole domain (found in review)."""
    ev, sp = _two_domains()
    ev.scores[:] = 1.0  # local-small right everywhere
    ev.exec_match[3] = True
    grids = ((2.0,), (0.1,), (0.1,), (2.0,), (None,), (None,))
    options = direct_domain_options(sp.domains)
    assert options[0] == ()
    th, m = select_thresholds(ev, sp, margin=0.0, domain_floor=-0.01, high_factor=0.5, grids=grids,
                              domain_options=options)
    assert th.direct_domains == ()
    assert m.domain_diff == {"chat": 0.0, "math": 0.0}
