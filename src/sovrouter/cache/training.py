"""Rebuild the shipped pair verifier deterministically (``sovrouter train-cache --pairs FILE --out DIR``).

The labelled pairs are split into six parts by a hash of ``q1`` (all pairs of one q1 in one part): part 0 fits
the logistic verifier, part 1 calibrates its threshold (:func:`calibrate.choose_threshold`), part 2 is only
measured (``bench/semantic_cache.py``); parts 3-5 are not used (embedding all of dev took more CPU than this
2-core box could spare; see docs/semantic-cache.md). Each part is evaluated as the held-out protocol does: all its
distinct q1 in one fresh index, every q2 looked up.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sovrouter.cache.calibrate import (
    EmbedFn,
    Pair,
    best_decisions,
    build_index,
    choose_threshold,
    fit_verifier,
    is_right,
    part_of,
    positive_keys,
    read_pairs,
    score_queries,
)
from sovrouter.cache.textfeat import FEATURE_NAMES
from sovrouter.cache.verifier import PairVerifier, expand

PARTS = 6
FIT, CALIBRATE, TEST = 0, 1, 2
ALPHA = 0.01  # calibration target for the false-hit rate, verbatim hits included (acceptance: <= 2%)
DELTA: float | None = None  # point estimate: a 95% bound is not reachable on QQP (see docs/semantic-cache.md)
COS_FLOOR = 0.80
TOP_K = 8


def score_decisions(pairs: Sequence[Pair], decisions: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Strict scoring. FHR = wrong hits / hits; recall = right non-verbatim hits / non-verbatim duplicate pairs."""
    positives = positive_keys(pairs)
    hits = wrong = right_nv = 0
    for pair, d in zip(pairs, decisions, strict=True):
        if not d["hit"]:
            continue
        hits += 1
        if is_right(pair.q2, d["matched"], positives):
            right_nv += int(pair.q2.strip() != str(d["matched"]).strip())
        else:
            wrong += 1
    nv_dups = sum(1 for p in pairs if p.duplicate and p.q1.strip() != p.q2.strip())
    return {"pairs": float(len(pairs)), "hits": float(hits), "wrong_hits": float(wrong),
            "false_hit_rate": wrong / hits if hits else 0.0, "right_nonverbatim_hits": float(right_nv),
            "nonverbatim_duplicates": float(nv_dups), "recall_nonverbatim": right_nv / nv_dups if nv_dups else 0.0}


def split(pairs: Sequence[Pair]) -> list[list[Pair]]:
    return [[p for p in pairs if part_of(p.q1, PARTS) == k] for k in range(PARTS)]


def untrained(dim_hint: int = 384) -> PairVerifier:
    width = expand(np.zeros((1, len(FEATURE_NAMES)))).shape[1]
    return PairVerifier(mean=[0.0] * width, scale=[1.0] * width, weights=[0.0] * width, bias=0.0,
                        threshold=1.01, cos_floor=COS_FLOOR, top_k=TOP_K, embedder="all-MiniLM-L6-v2",
                        meta={"dim": dim_hint})


def train(pairs: Sequence[Pair], embed: EmbedFn, dim: int = 384, alpha: float = ALPHA,
          delta: float | None = DELTA) -> tuple[PairVerifier, dict[str, Any]]:
    positives = positive_keys(pairs)
    parts = split(pairs)
    base = untrained(dim)
    fit_index = build_index(parts[FIT], embed, base, dim)
    fitted = fit_verifier(score_queries(parts[FIT], fit_index, embed), positives, base)
    cal_index = build_index(parts[CALIBRATE], embed, base, dim)
    # Calibration is scored strictly within its own part, as the held-out file will be.
    cal_queries = score_queries(parts[CALIBRATE], cal_index, embed)
    cal = best_decisions(cal_queries, positive_keys(parts[CALIBRATE]), rescore=fitted)
    verbatim = sum(q.verbatim for q in cal_queries)
    threshold, info = choose_threshold(cal, alpha, delta, verbatim_hits=verbatim)
    report = {"alpha": alpha, "delta": delta, "parts": [len(p) for p in parts], "threshold": threshold,
              "calibration": info, "fit_pairs": fitted.meta.get("fit_pairs")}
    verifier = PairVerifier(mean=fitted.mean, scale=fitted.scale, weights=fitted.weights, bias=fitted.bias,
                            threshold=threshold, cos_floor=base.cos_floor, top_k=base.top_k,
                            embedder=base.embedder, meta={"alpha": alpha, "delta": delta, **info})
    return verifier, report


def write_artifact(verifier: PairVerifier, report: dict[str, Any], out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "verifier.json").write_text(verifier.to_json() + "\n", encoding="utf-8")
    (out / "training_report.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n",
                                              encoding="utf-8")
    return out / "verifier.json"


def load_labelled(path: str | Path) -> list[Pair]:
    return read_pairs(path, with_labels=True)
