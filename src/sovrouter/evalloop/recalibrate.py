"""Recalibration of the router's predicted quality from observed quality signals.

Small interface: a :class:`CalibrationSample` is (slot, domain, predicted probability, observed quality). Any
router that exposes a per-request predicted quality works (``observations.predicted_quality`` reads
``evidence["predicted_quality"]``: for the learned router, its verifiers' P(good) of the served answer).

:func:`fit_recalibration` fits, per slot and per (slot, domain) with enough samples, an isotonic map (or a Platt
map on the logit) from predicted to observed; the artifact (:class:`Recalibration`, JSON) is applied on top of
the router's calibrated model: ``apply(slot, domain, p)`` uses the (slot, domain) map, else the slot's, else
returns ``p``. The learned router applies it to its verifiers' probabilities before it compares them
(``Settings.recalibration``; ``LearnedRouter(calibrator=...)``), so the next drift check reads the corrected
numbers. (Until 2026-11-28 a ``RecalibratedClassifier`` rewrote the classifier's ``slot_prior`` instead, which
nothing loaded and which the router's decisions barely read: the artifact changed nothing. Found in review.)
:func:`detect_drift` flags slots whose observed quality departs from the prediction (CUSUM + ECE).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from sovrouter.errors import ConfigError
from sovrouter.evalloop.observations import Observation
from sovrouter.evalloop.stats import cusum_drop, ece

ALL = "*"
Method = Literal["isotonic", "platt"]


@dataclass(frozen=True)
class CalibrationSample:
    slot: str
    domain: str
    predicted: float
    observed: float


def samples_from(obs: Iterable[Observation], *, raw: bool = False) -> list[CalibrationSample]:
    """The (predicted, observed) pairs: the predictions the router acted on (drift), or with ``raw`` the ones
    before its recalibration map (what a new map is fitted on, since the router applies it to those)."""
    out = []
    for o in obs:
        p = (o.predicted_raw if o.predicted_raw is not None else o.predicted) if raw else o.predicted
        if p is not None:
            out.append(CalibrationSample(o.slot, o.domain, p, o.score))
    return out


class GroupMap(BaseModel):
    method: Method
    n: int
    x: list[float] = Field(default_factory=list, description="isotonic breakpoints (predicted)")
    y: list[float] = Field(default_factory=list, description="isotonic values (observed)")
    a: float = 1.0
    b: float = 0.0
    ece_before: float = 0.0
    ece_after: float = 0.0

    def apply(self, p: float) -> float:
        if self.method == "isotonic":
            return float(np.interp(p, self.x, self.y)) if self.x else p
        q = min(max(p, 1e-4), 1 - 1e-4)
        return 1.0 / (1.0 + math.exp(-(self.a * math.log(q / (1 - q)) + self.b)))


def _key(slot: str, domain: str) -> str:
    return f"{slot}|{domain}"


class Recalibration(BaseModel):
    version: int = 1
    method: Method = "isotonic"
    groups: dict[str, GroupMap] = Field(default_factory=dict)

    def apply(self, slot: str, domain: str | None, p: float) -> float:
        g = self.groups.get(_key(slot, domain or ALL)) or self.groups.get(_key(slot, ALL))
        return g.apply(p) if g is not None else p

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(self.model_dump_json(indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Recalibration:
        try:
            return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValidationError) as exc:
            raise ConfigError(f"cannot load recalibration artifact {path}: {type(exc).__name__}") from None


def _fit_group(pred: Sequence[float], obs: Sequence[float], method: Method) -> GroupMap:
    p = np.clip(np.asarray(pred, dtype=float), 0, 1)
    o = np.clip(np.asarray(obs, dtype=float), 0, 1)
    if method == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, o)
        g = GroupMap(method=method, n=int(p.size), x=[float(v) for v in iso.X_thresholds_],
                     y=[float(v) for v in iso.y_thresholds_])
    else:
        q = np.clip(p, 1e-4, 1 - 1e-4)
        z = np.log(q / (1 - q)).reshape(-1, 1)
        # graded outcomes: weighted duplicate rows (label 1 with weight o, label 0 with weight 1 - o)
        lr = LogisticRegression(C=1e4).fit(np.vstack([z, z]), np.r_[np.ones(p.size), np.zeros(p.size)],
                                           sample_weight=np.r_[o, 1 - o] + 1e-9)
        g = GroupMap(method=method, n=int(p.size), a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))
    g.ece_before = ece(p, o)
    g.ece_after = ece([g.apply(float(v)) for v in p], o)
    return g


def _cross_validated_gain(pred: Sequence[float], obs: Sequence[float], method: Method) -> float:
    """ECE before minus ECE after, 2-fold (alternate samples, so both folds span the whole period)."""
    gains = []
    for k in (0, 1):
        fit_p, fit_o = pred[k::2], obs[k::2]
        ev_p, ev_o = pred[1 - k::2], obs[1 - k::2]
        g = _fit_group(fit_p, fit_o, method)
        gains.append(ece(ev_p, ev_o) - ece([g.apply(p) for p in ev_p], ev_o))
    return float(np.mean(gains))


def fit_recalibration(samples: Sequence[CalibrationSample], method: Method = "isotonic", min_n: int = 50,
                      min_gain: float = 0.01, slots: Iterable[str] | None = None) -> Recalibration:
    """Per slot: a map for each domain with ``min_n`` samples, then a slot-wide map fitted on the samples of the
    domains left without one (it is what ``apply`` falls back to for them). A map is kept only when its 2-fold
    cross-validated ECE gain is at least ``min_gain`` (a calibrated slot or domain keeps its predictions).
    ``slots`` restricts the fit (e.g. to the slots whose drift check alarmed)."""
    wanted = set(slots) if slots is not None else None
    by_slot: dict[str, dict[str, list[CalibrationSample]]] = defaultdict(lambda: defaultdict(list))
    for s in samples:
        if wanted is None or s.slot in wanted:
            by_slot[s.slot][s.domain].append(s)
    out = Recalibration(method=method)
    for slot, domains in sorted(by_slot.items()):
        rest: list[CalibrationSample] = []
        for domain, members in sorted(domains.items()):
            group = _validated(members, method, min_n, min_gain) if domain != ALL else None
            if group is not None:
                out.groups[_key(slot, domain)] = group
            else:
                rest += members
        group = _validated(rest, method, min_n, min_gain)
        if group is not None:
            out.groups[_key(slot, ALL)] = group
    return out


def _validated(members: Sequence[CalibrationSample], method: Method, min_n: int, min_gain: float) -> GroupMap | None:
    if len(members) < min_n:
        return None
    pred, obs = [m.predicted for m in members], [m.observed for m in members]
    if _cross_validated_gain(pred, obs, method) < min_gain:
        return None
    return _fit_group(pred, obs, method)


def apply_all(recal: Recalibration, samples: Sequence[CalibrationSample]) -> list[float]:
    return [recal.apply(s.slot, s.domain, s.predicted) for s in samples]


@dataclass(frozen=True)
class DriftStatus:
    slot: str
    domain: str  # ALL for the whole slot
    n: int
    mean_predicted: float
    mean_observed: float
    ece: float
    cusum: float
    alarm: bool
    alarm_index: int | None


def detect_drift(samples: Sequence[CalibrationSample], ece_limit: float = 0.08, drop: float = 0.1,
                 arl: float = 20_000, ece_min_n: int = 200, min_n: int = 30) -> list[DriftStatus]:
    """Per slot and per (slot, domain), in sample (arrival) order: alarm when the CUSUM for a quality drop of
    ``drop`` below the prediction crosses ``log(arl x groups)`` (the false-alarm run length shared by all
    groups watched), or, with at least ``ece_min_n`` samples, when the group's ECE exceeds ``ece_limit``."""
    groups: dict[tuple[str, str], list[CalibrationSample]] = defaultdict(list)
    for s in samples:
        groups[(s.slot, ALL)].append(s)
        groups[(s.slot, s.domain)].append(s)
    watched = {k: v for k, v in groups.items() if len(v) >= min_n or k[1] == ALL}
    h = math.log(arl * max(1, len(watched)))
    out: list[DriftStatus] = []
    for (slot, domain), members in sorted(watched.items(), key=lambda kv: (kv[0][0], kv[0][1] != ALL, kv[0][1])):
        p = [m.predicted for m in members]
        o = [m.observed for m in members]
        c = cusum_drop(p, o, drop=drop, h=h)
        e = ece(p, o)
        out.append(DriftStatus(slot, domain, len(members), float(np.mean(p)), float(np.mean(o)), e, c.statistic,
                               c.alarm or (len(members) >= ece_min_n and e > ece_limit), c.alarm_index))
    return out


def drifted_slots(status: Iterable[DriftStatus]) -> list[str]:
    return sorted({d.slot for d in status if d.alarm})
