"""Offline evaluation of cascade thresholds over precomputed scores (vectorised), metrics, threshold selection.

``run_policy`` mirrors :class:`~sovrouter.routing.learned.LearnedRouter` step for step (direct / accept the first
cheap answer / accept the second / call top, then pick): ``bench/router_parity.py`` compares both on a replay
of dev at the shipped thresholds (v2.3: every request gets the same calls and the same served slot). Every call
made is paid for; an exact-cache repeat of a request costs nothing and serves the same answer (quality counted
per stream event).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sovrouter.routing.model import SLOT_ORDER, TierThresholds
from sovrouter.routing.training import StageProbs


def stricter_array(threshold: float, factor: NDArray[np.float64]) -> NDArray[np.float64]:
    """:func:`sovrouter.routing.model.stricter` per row (``factor`` 1 for standard tenants)."""
    return np.asarray(threshold * factor if threshold >= 0 else threshold / factor, dtype=np.float64)

L, S, M, F = range(4)


@dataclass
class EvalSet:
    """What outcome accounting needs per request (rows aligned with a :class:`StageProbs`)."""

    scores: NDArray[np.float64]  # (n, 4)
    cost: NDArray[np.float64]  # (n, 4), nan where the slot is not allowed
    accel: NDArray[np.bool_]  # (n, 4) slot's cheapest allowed deployment is a frontier accelerator
    latency: NDArray[np.float64]  # (n, 4) ms
    events: NDArray[np.float64]
    top: NDArray[np.int_]
    high: NDArray[np.bool_]
    domains: NDArray[np.str_]
    pick_case: NDArray[np.bool_]  # L and S extracted answers agree and top's extracted answer differs
    executable: NDArray[np.bool_]  # the prompt's question was executed (sandbox)
    exec_match: NDArray[np.bool_]  # (n, 4) the slot's answer equals the executed value
    top_cost_est: NDArray[np.float64]  # (n, 2) top's cost estimated from local-small's / sovereign-large's length
    step_share: NDArray[np.float64]  # (n,) sovereign-large's cost over top's, both estimated from local-small's

    def subset(self, rows: NDArray[np.int_]) -> EvalSet:
        return EvalSet(self.scores[rows], self.cost[rows], self.accel[rows], self.latency[rows], self.events[rows],
                       self.top[rows], self.high[rows], self.domains[rows], self.pick_case[rows],
                       self.executable[rows], self.exec_match[rows], self.top_cost_est[rows], self.step_share[rows])


@dataclass
class Outcome:
    served: NDArray[np.int_]
    called: NDArray[np.bool_]  # (n, 4)

    def quality(self, ev: EvalSet) -> NDArray[np.float64]:
        out: NDArray[np.float64] = ev.scores[np.arange(len(self.served)), self.served]
        return out


def reference(ev: EvalSet) -> Outcome:
    """Frontier-first under policy: the strongest allowed slot, one call."""
    called = np.zeros_like(ev.accel)
    called[np.arange(len(ev.top)), ev.top] = True
    return Outcome(served=ev.top.copy(), called=called)


def fixed(ev: EvalSet, slot: int) -> Outcome:
    """Always ``slot`` where allowed, else the reference's choice."""
    ok = ~np.isnan(ev.cost[:, slot])
    served = np.where(ok, slot, ev.top)
    called = np.zeros_like(ev.accel)
    called[np.arange(len(served)), served] = True
    return Outcome(served=served, called=called)


def run_policy(ev: EvalSet, sp: StageProbs, th: TierThresholds, high_factor: float,
               cost_unit: float = 0.0) -> Outcome:
    n = len(ev.top)
    f = np.where(ev.high, high_factor, 1.0)
    cs = ev.top_cost_est[:, 0] / cost_unit if cost_unit > 0 else 1.0
    cs2 = ev.top_cost_est[:, 1] / cost_unit if cost_unit > 0 else 1.0
    has_l = ~np.isnan(ev.cost[:, L]) & (ev.top > L)
    has_s = ~np.isnan(ev.cost[:, S]) & (ev.top > S)
    prior_top = sp.prior[np.arange(n), ev.top]
    best_cheap = np.maximum(np.where(has_l, sp.prior[:, L], -1), np.where(has_s, sp.prior[:, S], -1))
    ex = ev.executable
    direct = (prior_top - best_cheap) > stricter_array(th.direct, f)
    if th.direct_domains:
        direct = direct | np.isin(sp.predicted_domain(), th.direct_domains)
    cascade = has_l & (~direct | ex)
    # rows without a local slot, or sent direct: top only
    served = ev.top.copy()
    called = np.zeros((n, 4), dtype=bool)
    called[np.arange(n), ev.top] = True
    # stage 1 (only where the cascade starts with the local slot)
    called[cascade, L] = True
    called[cascade & (ev.top != L), ev.top[cascade & (ev.top != L)]] = False
    accept1 = cascade & np.where(ex, ev.exec_match[:, L],
                                 (sp.p1_top - sp.p1_first) <= stricter_array(th.stage1, f) * cs)
    served[accept1] = L
    go_on = cascade & ~accept1
    # escalation from L: to S when S is a cheap step, else straight to top (top == S for on-premises tenants)
    skip = ~ex & (ev.step_share >= th.skip_share) & ((sp.p1_top - sp.p1_first) > stricter_array(th.skip, f) * cs)
    to_s = go_on & has_s & ~skip
    to_top = go_on & ~to_s
    called[to_top, ev.top[to_top]] = True
    served[to_top] = ev.top[to_top]
    called[to_s, S] = True
    accept2 = to_s & np.where(ex, ev.exec_match[:, S],
                              (sp.p2_top - sp.p2_second) <= stricter_array(th.stage2, f) * cs2)
    served[accept2] = S
    esc = to_s & ~accept2
    vote = np.zeros(n, dtype=bool)
    if th.stage3 is not None:  # voter step: hosted-mini answers before frontier is called
        vote = esc & ~np.isnan(ev.cost[:, M]) & (ev.top == F)
        called[vote, M] = True
        accept3 = vote & np.where(ex, ev.exec_match[:, M],
                                  (sp.p3_top - sp.p3_mid) <= stricter_array(th.stage3, f) * cs2)
        served[accept3] = M
        esc = esc & ~accept3
    called[esc, ev.top[esc]] = True
    served[esc] = ev.top[esc]
    if th.pick is not None:  # all four answered: serve the cheap answer the picker trusts clearly more
        margin = th.pick / f
        cheap = np.where(sp.p4[:, M] >= sp.p4[:, S], M, S)
        better = sp.p4[np.arange(n), cheap] > sp.p4[:, F] + margin
        chosen = esc & vote & ~ex & better
        served[chosen] = cheap[chosen]
    if th.pick_agreeing:
        served[esc & ev.pick_case] = S
    return Outcome(served=served, called=called)


@dataclass
class Metrics:
    quality: float
    reference_quality: float
    diff: float
    diff_ci_low: float
    diff_ci_high: float
    domain_diff: dict[str, float]
    cost: float
    reference_cost: float
    cost_ratio: float
    off_frontier: float
    mean_calls: float
    latency_p50_ms: float
    latency_mean_ms: float
    cost_ratio_vs_uncached_reference: float = 0.0  # `sovrouter report`'s terms: the reference pays every event
    off_frontier_cache_hits_off: float = 0.0  # `sovrouter report`'s terms: a cache hit makes no call

    def as_dict(self) -> dict[str, object]:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def metrics(ev: EvalSet, out: Outcome, ref: Outcome | None = None) -> Metrics:
    ref = reference(ev) if ref is None else ref
    q, rq = out.quality(ev), ref.quality(ev)
    w = ev.events
    d = q - rq
    mean_d = float(np.average(d, weights=w))
    var = float(np.average((d - mean_d) ** 2, weights=w))
    se = (var / w.sum()) ** 0.5
    cost = float(np.nansum(np.where(out.called, ev.cost, 0.0)))  # a repeat is an exact-cache hit: no call
    ref_cost = float(np.nansum(np.where(ref.called, ev.cost, 0.0)))
    on_accel = (out.called & ev.accel).any(axis=1)
    lat = np.where(out.called, ev.latency, 0.0).sum(axis=1)
    domain_diff = {}
    for dom in sorted(set(ev.domains.tolist())):
        m = ev.domains == dom
        domain_diff[dom] = round(float(np.average(d[m], weights=w[m])), 5)
    return Metrics(
        quality=float(np.average(q, weights=w)), reference_quality=float(np.average(rq, weights=w)),
        diff=mean_d, diff_ci_low=mean_d - 1.96 * se, diff_ci_high=mean_d + 1.96 * se, domain_diff=domain_diff,
        cost=cost, reference_cost=ref_cost, cost_ratio=cost / ref_cost if ref_cost else float("nan"),
        off_frontier=float(np.average(~on_accel, weights=w)), mean_calls=float(out.called.sum(axis=1).mean()),
        latency_p50_ms=float(np.median(lat)), latency_mean_ms=float(lat.mean()),
        cost_ratio_vs_uncached_reference=cost / float(np.nansum(np.where(ref.called, ev.cost, 0.0).sum(axis=1) * w)),
        off_frontier_cache_hits_off=float(((~on_accel).sum() + (w - 1).sum()) / w.sum()),
    )


DIRECT_GRID: tuple[float, ...] = (2.0,)  # direct mode off: the cascade always starts cheap (docs/routing.md)
STAGE1_GRID: tuple[float, ...] = (-0.2, -0.1, -0.05, 0.0, 0.05)
STAGE2_GRID: tuple[float, ...] = (-0.05, 0.0, 0.02, 0.05, 0.1)
SKIP_GRID: tuple[float, ...] = (0.2, 0.3, 2.0)
SKIP_SHARE = 0.25  # the skip test weighs only steps costing at least a quarter of top (docs/routing.md)
STAGE3_GRID: tuple[float | None, ...] = (0.0, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15)
PICK_GRID: tuple[float | None, ...] = (None,)  # picker off: it did not pay in CV


def feasible(m: Metrics, margin: float, domain_floor: float, min_off_frontier: float = 0.0) -> bool:
    return (m.diff >= margin and min(m.domain_diff.values()) >= domain_floor
            and m.off_frontier_cache_hits_off >= min_off_frontier)


GRIDS: tuple[Sequence[float | None], ...] = (DIRECT_GRID, STAGE1_GRID, STAGE2_GRID, SKIP_GRID, STAGE3_GRID, PICK_GRID)
CURVE_GRIDS: tuple[Sequence[float | None], ...] = ((0.3, 2.0), STAGE1_GRID, STAGE2_GRID, SKIP_GRID, STAGE3_GRID,
                                                  (None, 0.1))
"""The cost-quality curve shows every option the router has, including the direct mode and the picker that
threshold selection leaves out (fewer dimensions, less winner's curse)."""


def grid_points(grids: Sequence[Sequence[float | None]] = GRIDS,
                domain_options: Sequence[tuple[str, ...]] = ((),)) -> Iterator[TierThresholds]:
    """Every threshold setting of ``grids`` (direct, stage1, stage2, skip, stage3, pick) for each set of direct
    domains in ``domain_options``, in a fixed order."""
    for domains in domain_options:
        for direct, s1, s2, sk, s3, pick in itertools.product(*grids):
            assert direct is not None and s1 is not None and s2 is not None and sk is not None
            yield TierThresholds(direct=direct, stage1=s1, stage2=s2, skip=sk, skip_share=SKIP_SHARE, stage3=s3,
                                 pick=pick, direct_domains=domains)


def direct_domain_options(domains: Sequence[str]) -> list[tuple[str, ...]]:
    """No direct domain, or any one of ``domains``: a domain where the cascade cannot hold the domain floor
    at a price the others can bear goes to top at once (docs/routing.md, v2.3). One domain at most: every
    further option is another chance for training-fold noise to win the selection."""
    return [(), *((d,) for d in domains)]


def select_thresholds(ev: EvalSet, sp: StageProbs, *, margin: float, domain_floor: float, high_factor: float,
                      cost_unit: float = 0.0, min_off_frontier: float = 0.0,
                      grids: Sequence[Sequence[float | None]] = GRIDS,
                      domain_options: Sequence[tuple[str, ...]] = ((),)) -> tuple[TierThresholds, Metrics]:
    """The cheapest grid point (times ``domain_options``, the sets of direct domains) whose quality on ``ev``
    beats the reference by ``margin`` with every domain's difference at least ``domain_floor`` and at least
    ``min_off_frontier`` of events off frontier accelerators.
    When none qualifies, the point with the best quality difference among those keeping the off-frontier share.

    This is the utility ``w_v * quality - lambda * cost`` with lambda as large as the quality constraint
    allows (lambda is the constraint's multiplier; ``w_v`` is 1/high_factor for high-value tenants)."""
    best: tuple[float, TierThresholds, Metrics] | None = None
    fallback: tuple[float, TierThresholds, Metrics] | None = None
    for th in grid_points(grids, domain_options):
        m = metrics(ev, run_policy(ev, sp, th, high_factor, cost_unit))
        if feasible(m, margin, domain_floor, min_off_frontier):
            if best is None or m.cost < best[0]:
                best = (m.cost, th, m)
        elif fallback is None or _fallback_key(m, min_off_frontier) > _fallback_key(fallback[2], min_off_frontier):
            fallback = (m.cost, th, m)
    chosen = best or fallback
    assert chosen is not None
    return chosen[1], chosen[2]


def _fallback_key(m: Metrics, min_off_frontier: float) -> tuple[bool, float]:
    """When no point is feasible: the best quality among points that keep the off-frontier share."""
    return (m.off_frontier_cache_hits_off >= min_off_frontier, m.diff)


def curve(ev: EvalSet, sp: StageProbs, high_factor: float, cost_unit: float = 0.0,
          grids: Sequence[Sequence[float | None]] = GRIDS,
          domain_options: Sequence[tuple[str, ...]] = ((),)) -> list[tuple[float, float, float]]:
    """(cost ratio, quality, off-frontier share) of the whole threshold grid's Pareto front (times
    ``domain_options``, as :func:`select_thresholds` searches it)."""
    pts = []
    for th in grid_points(grids, domain_options):
        m = metrics(ev, run_policy(ev, sp, th, high_factor, cost_unit))
        pts.append((m.cost_ratio, m.quality, m.off_frontier))
    return pareto(pts)


def pareto(points: Sequence[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    front: list[tuple[float, float, float]] = []
    for p in sorted(points):
        if not front or p[1] > front[-1][1]:
            front.append(p)
    return front


def slot_names() -> tuple[str, ...]:
    return SLOT_ORDER
