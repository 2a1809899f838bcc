"""Rebuild the shipped pair verifier deterministically (``sovrouter train-cache --pairs FILE --out DIR``).

Protocol, chosen to mimic the held-out evaluation (one file, all its distinct q1 in one fresh cache):

- the labelled pairs are split into *groups* (by default two halves, by a hash of ``q1``, so all pairs of one
  q1 are in one group); each group is indexed on its own, at about the density of the held-out file, and every q2 is
  looked up: the candidates retrieval returns (cosine >= floor, top-k, hard gates passed) are the training
  pairs, labelled strictly with the group's own labels (a candidate is right only if verbatim or labelled
  duplicate), so the model learns on the hard negatives retrieval actually produces;
- the model is gradient-boosted trees (scikit-learn ``HistGradientBoostingClassifier``, fixed seed, no early
  stopping: deterministic) over the pair features of :mod:`sovrouter.cache.textfeat` and, when a second
  embedding model is given (``alt``, shipped: multilingual-e5-small), its cosine features; exported as plain
  arrays;
- the threshold is calibrated on *out-of-fold* probabilities (five folds by a hash of ``q1``): each query's best
  candidate under a model that never saw that query, scored as the acceptance scores (verbatim hits count as
  hits); :func:`calibrate.choose_threshold` picks the lowest threshold whose false-hit rate stays <= ``alpha``.
  The shipped model is then fitted on all folds.

``bench/semantic_cache.py`` runs the same code on one half and measures on the other (both ways).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import HistGradientBoostingClassifier

from sovrouter.cache.calibrate import (
    EmbedFn,
    Pair,
    QueryScores,
    best_decisions,
    build_index,
    choose_threshold,
    is_right,
    part_of,
    positive_keys,
    read_pairs,
    score_queries,
)
from sovrouter.cache.verifier import LogisticModel, PairVerifier, TreeEnsemble, expand, feature_names
from sovrouter.embed import Embedder, Vectors
from sovrouter.errors import ConfigError

GROUPS = 2
GROUP_SALT = "semcache-half"
FOLDS = 5
FOLD_SALT = "semcache-fold"
ALPHA = 0.02  # calibration target for the false-hit rate, verbatim hits included (acceptance: <= 2%)
DELTA: float | None = None  # point estimate: a 95% bound is not reachable on QQP (see docs/semantic-cache.md)
COS_FLOOR = 0.80
TOP_K = 8
EMBEDDER = "all-MiniLM-L6-v2"
ALT_EMBEDDER = "multilingual-e5-small"  # the second opinion: a different model family, also trained on QQP-like pairs


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


def split(pairs: Sequence[Pair], groups: int = GROUPS, salt: str = GROUP_SALT) -> list[list[Pair]]:
    return [[p for p in pairs if part_of(p.q1, groups, salt) == k] for k in range(groups)]


def untrained(alt_embedder: str | None = None) -> PairVerifier:
    """A verifier that scores every pair 0.5 and accepts none: used to collect candidates before fitting."""
    width = expand(np.zeros((1, len(feature_names(alt_embedder is not None))))).shape[1]
    model = LogisticModel(mean=[0.0] * width, scale=[1.0] * width, weights=[0.0] * width, bias=0.0)
    return PairVerifier(model=model, threshold=1.01, cos_floor=COS_FLOOR, top_k=TOP_K, embedder=EMBEDDER,
                        alt_embedder=alt_embedder)


@dataclass(frozen=True)
class GroupScores:
    """One group's lookups against its own dense index, with strict labels from the group's own pairs."""

    queries: list[QueryScores]
    positives: set[tuple[str, str]]
    alt_embedder: str | None = None  # the second model whose features the candidates carry, if any

    @property
    def verbatim_hits(self) -> int:
        return sum(q.verbatim for q in self.queries)


def collect(group: Sequence[Pair], embed: EmbedFn, dim: int = 384, alt: Embedder | None = None,
            alt_name: str = ALT_EMBEDDER) -> GroupScores:
    """Index the group's q1s, look up its q2s: the candidates and their features (with ``alt``'s if given)."""
    name = alt_name if alt is not None else None
    index = build_index(group, embed, untrained(name), dim, alt)
    return GroupScores(score_queries(group, index, embed), positive_keys(group), name)


def _hgb() -> HistGradientBoostingClassifier:
    # Shallow trees, strong leaf minimum: the top of the ranking is what matters and QQP labels are noisy there.
    return HistGradientBoostingClassifier(max_iter=250, learning_rate=0.05, max_depth=4, min_samples_leaf=100,
                                          l2_regularization=3.0, early_stopping=False, random_state=0)


def _rows(groups: Sequence[GroupScores]) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    feats: list[list[float]] = []
    labels: list[float] = []
    folds: list[int] = []
    for g in groups:
        for q in g.queries:
            if q.verbatim:
                continue  # served by the exact layer; never scored by the verifier
            fold = part_of(q.pair.q1, FOLDS, FOLD_SALT)
            for c in q.candidates:
                feats.append(c.features)
                labels.append(1.0 if is_right(q.pair.q2, c.text, g.positives) else 0.0)
                folds.append(fold)
    if not feats or len(set(labels)) < 2:
        raise ConfigError("not enough labelled candidate pairs to fit the verifier")
    return np.asarray(feats, dtype=np.float64), np.asarray(labels), np.asarray(folds, dtype=np.int64)


def _per_query(groups: Sequence[GroupScores], probs: NDArray[np.float64]) -> list[list[list[float]]]:
    """Split a flat probability vector (in :func:`_rows` order) back into per-group, per-query lists."""
    out: list[list[list[float]]] = []
    i = 0
    for g in groups:
        per_group = []
        for q in g.queries:
            n = 0 if q.verbatim else len(q.candidates)
            per_group.append([float(p) for p in probs[i: i + n]])
            i += n
        out.append(per_group)
    return out


def oof_decisions(groups: Sequence[GroupScores]) -> tuple[list[tuple[float, bool]], NDArray[np.float64],
                                                             NDArray[np.float64]]:
    """Each non-verbatim query's best candidate under a model that never saw that query (five folds by a hash of
    ``q1``), as (probability, right); also the training rows (features, labels) for the final fit."""
    x, y, folds = _rows(groups)
    oof = np.zeros(len(y))
    for f in range(FOLDS):
        held = folds == f
        if held.any() and (~held).any():
            oof[held] = _hgb().fit(x[~held], y[~held]).predict_proba(x[held])[:, 1]
    decisions: list[tuple[float, bool]] = []
    for g, probs in zip(groups, _per_query(groups, oof), strict=True):
        decisions.extend(best_decisions(g.queries, probs, g.positives))
    return decisions, x, y


def fit(groups: Sequence[GroupScores], alpha: float = ALPHA, delta: float | None = DELTA,
        sweep: Sequence[float] = ()) -> tuple[PairVerifier, dict[str, Any]]:
    """Fit the trees on every group's candidates and calibrate the threshold on out-of-fold probabilities.

    ``sweep``: other calibration targets whose thresholds (on the same out-of-fold decisions) go into the
    report as ``sweep`` (benchmarks only; the shipped artifact uses ``alpha``)."""
    alts = {g.alt_embedder for g in groups}
    if len(alts) != 1:
        raise ConfigError("groups were collected with different second embedding models")
    alt_embedder = alts.pop()
    decisions, x, y = oof_decisions(groups)
    verbatim = sum(g.verbatim_hits for g in groups)
    threshold, info = choose_threshold(decisions, alpha, delta, verbatim_hits=verbatim)
    model = TreeEnsemble.from_sklearn(_hgb().fit(x, y))
    report = {"alpha": alpha, "delta": delta, "groups": [len(g.queries) for g in groups],
              "fit_pairs": len(y), "fit_positive": int(y.sum()), "threshold": threshold,
              "calibration": info, "calibration_queries": len(decisions), "folds": FOLDS}
    if sweep:
        report["sweep"] = {str(a): choose_threshold(decisions, a, delta, verbatim_hits=verbatim)[0] for a in sweep}
    verifier = PairVerifier(model=model, threshold=threshold, cos_floor=COS_FLOOR, top_k=TOP_K, embedder=EMBEDDER,
                            meta={"alpha": alpha, "delta": delta, "fit_pairs": len(y), **info},
                            alt_embedder=alt_embedder)
    return verifier, report


def train(pairs: Sequence[Pair], embed: EmbedFn, dim: int = 384, alpha: float = ALPHA,
          delta: float | None = DELTA, alt: Embedder | None = None) -> tuple[PairVerifier, dict[str, Any]]:
    """``sovrouter train-cache``: every group of ``pairs`` indexed on its own, then :func:`fit`."""
    return fit([collect(g, embed, dim, alt) for g in split(pairs)], alpha, delta)


def write_artifact(verifier: PairVerifier, report: dict[str, Any], out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "verifier.json").write_text(verifier.to_json() + "\n", encoding="utf-8")
    (out / "training_report.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n",
                                              encoding="utf-8")
    return out / "verifier.json"


def load_labelled(path: str | Path) -> list[Pair]:
    return read_pairs(path, with_labels=True)


class VectorStore:
    """Embeddings kept on disk between training runs (``train-cache --vectors DIR``): each distinct text is
    embedded once. Files: ``texts.json`` (list) and ``vectors.npy`` (rows in that order), plus a fingerprint
    of the embedder name so vectors from another model are never mixed in."""

    def __init__(self, base: EmbedFn, folder: str | Path, embedder: str = EMBEDDER, dim: int = 384) -> None:
        self.base = base
        self.dim = dim
        self.folder = Path(folder)
        self.tag = hashlib.sha256(embedder.encode()).hexdigest()[:12]
        self._rows: dict[str, int] = {}
        self._vectors: Vectors = np.zeros((0, 0), dtype=np.float32)
        texts_path, vec_path = self.folder / f"texts-{self.tag}.json", self.folder / f"vectors-{self.tag}.npy"
        if texts_path.is_file() and vec_path.is_file():
            texts = json.loads(texts_path.read_text(encoding="utf-8"))
            self._vectors = np.load(vec_path).astype(np.float32)
            if len(texts) != self._vectors.shape[0]:
                raise ConfigError(f"vector store {self.folder} is inconsistent; delete it")
            self._rows = {t: i for i, t in enumerate(texts)}

    def embed(self, texts: Sequence[str]) -> Vectors:
        missing = list(dict.fromkeys(t for t in texts if t not in self._rows))
        if missing:
            fresh = np.asarray(self.base(missing), dtype=np.float32)
            start = len(self._rows)
            self._vectors = fresh if start == 0 else np.vstack([self._vectors, fresh])
            self._rows.update({t: start + i for i, t in enumerate(missing)})
            self._save()
        out: Vectors = self._vectors[[self._rows[t] for t in texts]] if texts else self._vectors[:0]
        return out

    def _save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        texts = sorted(self._rows, key=self._rows.__getitem__)
        (self.folder / f"texts-{self.tag}.json").write_text(json.dumps(texts), encoding="utf-8")
        np.save(self.folder / f"vectors-{self.tag}.npy", self._vectors)
