"""Weakness slices: where a model is worse than the reference route, or than its own predicted quality.

A slice is (slot, dimension, value) over the router's own classification (domain, language, output kind) or the
slot alone. For each slice: count, quality with a Wilson (0/1 scores) or bootstrap interval, the paired gap to
the reference and to the prediction (normal-approximation interval, one-sided p-value), failure modes, example
request ids, and the saving a fix would unlock. A weakness is declared when the gap is at least ``min_gap``
and significant after Holm-Bonferroni over every slice tested (family-wise error ``alpha``).

Saving if fixed: requests of the same dimension value served on a pricier slot (by mean observed cost per
request) could go to this slot if it matched the reference there: ``sum(cost - mean cost on this slot)`` over
them, in the period the data covers. Flagged slices are ranked by that saving, then by quality at stake
(gap x n); whole-slot rows come after the specific slices they summarise.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from sovrouter.evalloop.observations import Observation
from sovrouter.evalloop.stats import Interval, PairedGap, holm, paired_gap, quality_interval

DIMENSIONS = ("domain", "language", "output_kind")
Against = Literal["reference", "predicted"]


@dataclass
class Slice:
    slot: str
    dimension: str  # "slot" for the whole slot
    value: str
    against: Against
    n: int
    quality: Interval
    gap: PairedGap  # mean(expected - observed): positive = worse than expected
    expected_mean: float
    failure_modes: dict[str, int]
    examples: list[str]
    cost_usd: float
    saving_if_fixed_usd: float
    quality_at_stake: float  # gap x n: quality points lost on this slice
    weakness: bool = False
    explained_by: str | None = None  # a narrower flagged slice that accounts for this one's gap

    @property
    def label(self) -> str:
        return self.slot if self.dimension == "slot" else f"{self.slot} / {self.dimension}={self.value}"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["label"] = self.label
        return d


@dataclass
class WeaknessSettings:
    min_n: int = 30
    min_gap: float = 0.03
    alpha: float = 0.05
    examples: int = 5
    dimensions: tuple[str, ...] = DIMENSIONS


@dataclass
class WeaknessReport:
    settings: WeaknessSettings
    slices: list[Slice] = field(default_factory=list)
    observations: int = 0

    @property
    def weaknesses(self) -> list[Slice]:
        return [s for s in self.slices if s.weakness]


def _group(obs: Sequence[Observation], dims: Sequence[str]) -> dict[tuple[str, str, str], list[Observation]]:
    groups: dict[tuple[str, str, str], list[Observation]] = defaultdict(list)
    for o in obs:
        groups[(o.slot, "slot", "*")].append(o)
        for d in dims:
            groups[(o.slot, d, o.dim(d))].append(o)
    return groups


def _savings(obs: Sequence[Observation], slot: str, dim: str, value: str, slot_cost: dict[str, float]) -> float:
    own = slot_cost.get(slot)
    if own is None:
        return 0.0
    total = 0.0
    for o in obs:
        if o.slot == slot or slot_cost.get(o.slot, 0.0) <= own:
            continue
        if dim != "slot" and o.dim(dim) != value:
            continue
        total += max(0.0, o.cost_usd - own)
    return total


def analyse(obs: Sequence[Observation], settings: WeaknessSettings | None = None) -> WeaknessReport:
    cfg = settings or WeaknessSettings()
    slot_cost = {s: float(np.mean([o.cost_usd for o in obs if o.slot == s])) for s in {o.slot for o in obs}}
    slices: list[Slice] = []
    pairs_of: list[list[tuple[float, Observation]]] = []
    seen: set[tuple[str, str, frozenset[str]]] = set()
    groups = sorted(_group(obs, cfg.dimensions).items(), key=lambda kv: (kv[0][0], kv[0][1] != "slot", kv[0]))
    for (slot, dim, value), members in groups:
        if len(members) < cfg.min_n:
            continue
        for against in ("reference", "predicted"):
            paired = [(o.reference_score if against == "reference" else o.predicted, o) for o in members]
            pairs = [(e, o) for e, o in paired if e is not None]
            if len(pairs) < cfg.min_n:
                continue
            same = (slot, against, frozenset(o.request_id for _, o in pairs))
            if same in seen:  # exactly the requests of a slice already tested (e.g. the only language)
                continue
            seen.add(same)
            expected = [float(e) for e, _ in pairs]
            observed = [o.score for _, o in pairs]
            gap = paired_gap(expected, observed)
            failed = sorted((o for _, o in pairs if o.failure_mode or o.score < 0.5), key=lambda o: o.request_id)
            slices.append(Slice(
                slot=slot, dimension=dim, value=value, against=against,
                n=len(pairs), quality=quality_interval(observed), gap=gap,
                expected_mean=float(np.mean(expected)),
                failure_modes=dict(Counter(o.failure_mode for o in failed if o.failure_mode).most_common()),
                examples=[o.request_id for o in failed[: cfg.examples]],
                cost_usd=float(sum(o.cost_usd for _, o in pairs)),
                saving_if_fixed_usd=_savings(obs, slot, dim, value, slot_cost) if against == "reference" else 0.0,
                quality_at_stake=max(0.0, gap.mean) * len(pairs),
            ))
            pairs_of.append([(float(e), o) for e, o in pairs])
    rejected = holm([s.gap.p_value for s in slices], cfg.alpha)
    for s, rej in zip(slices, rejected, strict=True):
        # and the interval shown with it excludes 0: the report never flags a gap its own interval does not show
        s.weakness = bool(rej and s.gap.mean >= cfg.min_gap and s.gap.low > 0)
    _explain(slices, pairs_of, cfg)
    slices.sort(key=lambda s: (not s.weakness, s.explained_by is not None, -s.saving_if_fixed_usd,
                               -s.quality_at_stake, s.label))
    return WeaknessReport(settings=cfg, slices=slices, observations=len(obs))


def _explain(slices: Sequence[Slice], pairs_of: Sequence[Sequence[tuple[float, Observation]]],
             cfg: WeaknessSettings) -> None:
    """A flagged slice is *explained by* a strictly narrower flagged slice (same slot, same comparison) when,
    without the narrower slice's requests, its gap is no longer a weakness: the model team gets the narrow one
    first (e.g. ``domain=math`` rather than ``language=en`` or the whole slot)."""
    ids = [frozenset(o.request_id for _, o in p) for p in pairs_of]
    level = cfg.alpha / max(1, len(slices))  # the same family-wise standard as the flag itself (Bonferroni)
    flagged = [i for i, s in enumerate(slices) if s.weakness]
    for a in flagged:
        narrower = sorted((b for b in flagged if b != a and slices[b].slot == slices[a].slot
                           and slices[b].against == slices[a].against and ids[b] < ids[a]),
                          key=lambda b: len(ids[b]))
        for b in narrower:
            rest = [(e, o) for e, o in pairs_of[a] if o.request_id not in ids[b]]
            gap = paired_gap([e for e, _ in rest], [o.score for _, o in rest])
            if len(rest) < cfg.min_n or not (gap.mean >= cfg.min_gap and gap.p_value <= level):
                slices[a].explained_by = slices[b].label
                break
