"""Semantic cache on the dev Quora pairs: static cosine threshold vs the calibrated pair verifier, out of sample.

    python bench/semantic_cache.py [--pairs /work/shared/data/cache/qqp_dev.jsonl.gz] [--vectors DIR]
                                   [--write-artifact DIR]

Dev is split in two halves by a hash of q1 (``training.split``); each half (~28k pairs, ~25k distinct q1) is as
dense as the held-out file (~24k pairs). Both methods are fitted on one half and measured on the other, then the
reverse. Measuring follows the held-out protocol: every distinct q1 of the half in one fresh cache, every q2
looked up, strict scoring with that half's labels only (a match never labelled duplicate is wrong, a verbatim
match is right). FHR = wrong hits / hits; recall = right non-verbatim hits / non-verbatim duplicate pairs.

(a) static cosine on all-MiniLM-L6-v2: best cached q1 by cosine, hit if cosine >= t; t is the lowest threshold
    with FHR <= 2% on the fitting half;
(b) ours: ``training.fit`` on the fitting half (trees fitted on its retrieval candidates and their pair features
    plus the second embedding model's (multilingual-e5-small) cosine features, threshold on out-of-fold
    decisions at the shipped FHR target), measured on the other half through the code of
    ``sovrouter eval semantic-cache`` (layered exact + semantic cache, eligibility on);
(c) the same without the second model (pair features only, the verifier shipped before 2026-11-26): measured on
    the collected candidates of the other half (same model choice as the index), calibration targets and oracle.

For (b) the bench also reports, on the measured half, what other calibration targets would have given (same
model, thresholds from the same out-of-fold decisions) and the best recall any threshold reaches at FHR <= 2%
when chosen *on the measured half's labels* (an oracle: a ceiling for this ranking, not a method). And over the
whole file, the share of pairs labelled duplicate by how close the two texts are (the label ceiling: strict
scoring cannot do better than the labels of the closest pairs allow).

Finally the shipped artifact is refitted on both halves (what ``sovrouter train-cache`` does) and compared with
the file in the package. MiniLM and e5 vectors are kept under ``--vectors`` (default /tmp/semcache-vectors) so
reruns embed nothing. Writes bench/results/semantic_cache.json.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import hashlib
import json
import pickle
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sovrouter.cache.calibrate import Pair, QueryScores, best_decisions, is_right, positive_keys
from sovrouter.cache.evaluate import evaluate_pairs
from sovrouter.cache.textfeat import FEATURE_NAMES, STOP_WORDS, stem, words
from sovrouter.cache.training import (
    ALT_EMBEDDER,
    GROUP_SALT,
    GroupScores,
    VectorStore,
    collect,
    fit,
    load_labelled,
    score_decisions,
    split,
    write_artifact,
)
from sovrouter.cache.verifier import PairVerifier
from sovrouter.embed import E5Embedder, Embedder, MiniLMEmbedder, Vectors
from sovrouter.errors import ConfigError

OUT = Path(__file__).parent / "results" / "semantic_cache.json"
Collector = Callable[[Sequence[Pair]], GroupScores]
Draw = tuple[str, list[list[Pair]], list[GroupScores]]  # (salt, the two halves, their collected lookups)
SWEEP = (0.0125, 0.015, 0.0175, 0.02)
N_PAIR_FEATURES = len(FEATURE_NAMES)


class Lazy:
    """Loads the embedding model only if the vector store lacks a text."""

    def __init__(self, load: Callable[[], Embedder]) -> None:
        self._load = load
        self._model: Embedder | None = None

    def __call__(self, texts: Sequence[str]) -> Vectors:
        if self._model is None:
            self._model = self._load()
        return self._model.embed(texts)


def collection_tag() -> str:
    """A fingerprint of the code that collecting lookups runs (retrieval, gates, eligibility, features), so a
    pickle made before a change to it (or with a patch applied) is never read back as if it were current. It reads
    the syntax tree without docstrings or comments, so a reworded docstring does not force a 20-minute recollection."""
    import sovrouter.cache as pkg
    folder = Path(pkg.__file__).parent
    digest = hashlib.sha256()
    for name in ("calibrate.py", "eligibility.py", "semindex.py", "textfeat.py", "training.py", "verifier.py"):
        tree = ast.parse((folder / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and body
                    and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
        digest.update(ast.dump(tree).encode())
    return digest.hexdigest()[:12]


def cached(path: Path, make: Callable[[], Any]) -> Any:
    """``make()``, pickled beside ``path`` under the :func:`collection_tag` of the current code, so a rerun of a
    training bench skips the lookups (our own files)."""
    path = path.with_name(f"{path.stem}-{collection_tag()}{path.suffix}")
    if path.is_file():
        with path.open("rb") as fh:
            return pickle.load(fh)  # our own file, written below
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        pickle.dump(value, fh)
    return value


def data_args(ap: argparse.ArgumentParser, salts: bool = False) -> None:
    """The dev pairs, the embedding cache and the pickled groups (and, with ``salts``, how many halvings besides
    the shipped one): shared by the semantic-cache training benches."""
    ap.add_argument("--pairs", type=Path, default=Path("/work/shared/data/cache/qqp_dev.jsonl.gz"))
    ap.add_argument("--vectors", type=Path, default=Path("/tmp/semcache-vectors"))
    ap.add_argument("--groups", type=Path, default=Path("/tmp/semcache-groups"))
    if salts:
        ap.add_argument("--salts", type=int, default=4, help="splits besides the shipped one")


def collector(vectors: Path) -> Collector:
    """Index a part and look up its q2s with both embedding models, vectors cached under ``vectors``."""
    emb = VectorStore(Lazy(lambda: MiniLMEmbedder(threads=2, batch_size=128)), vectors)
    alt = VectorStore(Lazy(E5Embedder), vectors, embedder=ALT_EMBEDDER)

    def col(part: Sequence[Pair]) -> GroupScores:
        return collect(part, emb.embed, alt=alt)
    return col


def nonverbatim_dups(pairs: Sequence[Pair]) -> int:
    """The recall denominator: duplicate pairs whose two texts differ."""
    return sum(1 for p in pairs if p.duplicate and p.q1.strip() != p.q2.strip())


def collect_parts(parts: list[list[Pair]], col: Collector) -> tuple[list[list[Pair]], list[GroupScores]]:
    return parts, [col(p) for p in parts]


def halving(pairs: Sequence[Pair], col: Collector, gdir: Path, salt: str) -> Draw:
    """Dev halved by ``salt`` and each half's lookups collected, pickled under ``gdir``."""
    halves, groups = cached(gdir / f"{salt}.pkl", lambda: collect_parts(split(pairs, salt=salt), col))
    return salt, halves, groups


def halvings(pairs: Sequence[Pair], col: Collector, gdir: Path, extra: int = 4) -> Iterator[Draw]:
    """The shipped halving and ``extra`` more (the repeated random splits every training bench shares), each
    collected (or read back) only when the caller reaches it."""
    for salt in [GROUP_SALT] + [f"{GROUP_SALT}-{k}" for k in range(1, extra + 1)]:
        yield halving(pairs, col, gdir, salt)


def target_stats(fhr: Sequence[float], recall: Sequence[float]) -> dict[str, float]:
    """Over draws at one calibration target: medians, extremes and how often each acceptance point holds."""
    n = len(fhr)
    return {"fhr_median": statistics.median(fhr), "fhr_max": max(fhr),
            "share_fhr_le_2pct": sum(f <= 0.02 for f in fhr) / n,
            "recall_median": statistics.median(recall), "recall_min": min(recall),
            "share_recall_ge_5pct": sum(r >= 0.05 for r in recall) / n,
            "share_both": sum(f <= 0.02 and r >= 0.05 for f, r in zip(fhr, recall, strict=True)) / n}


def without_alt(group: GroupScores) -> GroupScores:
    """The same candidates with the pair features only (the second model's columns dropped)."""
    queries = [QueryScores(q.pair, q.eligible, q.verbatim,
                           [dataclasses.replace(c, features=c.features[:N_PAIR_FEATURES]) for c in q.candidates])
               for q in group.queries]
    return GroupScores(queries, group.positives, None)


def static_decisions(part: Sequence[Pair], emb: VectorStore) -> list[tuple[float, str]]:
    """Best cached q1 (all distinct q1 of the part) by cosine for each q2: (cosine, matched); verbatim first."""
    q1s = list(dict.fromkeys(p.q1 for p in part))
    m = emb.embed(q1s)
    q = emb.embed([p.q2 for p in part])
    out: list[tuple[float, str]] = []
    for i in range(0, len(part), 2048):
        sims = q[i: i + 2048] @ m.T
        best = sims.argmax(axis=1)
        out.extend((float(sims[j, b]), q1s[b]) for j, b in enumerate(best))
    q1set = set(q1s)
    return [(1.0, p.q2) if p.q2 in q1set else d for p, d in zip(part, out, strict=True)]


def static_at(part: Sequence[Pair], decs: Sequence[tuple[float, str]], t: float) -> dict[str, float]:
    return score_decisions(part, [{"hit": c >= t, "matched": m} for c, m in decs])


def wrong_examples(part: Sequence[Pair], decisions: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    positives = positive_keys(part)
    return [(p.q2, d["matched"]) for p, d in zip(part, decisions, strict=True)
            if d["hit"] and not is_right(p.q2, d["matched"], positives)][:15]


def measured_curve(group: GroupScores, verifier: PairVerifier,
                   nonverbatim_dups: int) -> list[tuple[float, float, float]]:
    """(threshold, FHR, recall) on a measured half for every threshold, best candidate chosen as the index does."""
    probs = [list(verifier.probability(np.asarray([c.features for c in q.candidates], dtype=np.float64)))
             if q.candidates and not q.verbatim else [] for q in group.queries]
    ordered = sorted(best_decisions(group.queries, probs, group.positives), key=lambda d: -d[0])
    hits, wrong, right = group.verbatim_hits, 0, 0
    out = []
    for p, ok in ordered:
        hits += 1
        wrong += int(not ok)
        right += int(ok)
        out.append((p, wrong / hits, right / nonverbatim_dups))
    return out


def sweep_and_oracle(group: GroupScores, verifier: PairVerifier, thresholds: dict[str, float],
                     nonverbatim_dups: int) -> dict[str, Any]:
    curve = measured_curve(group, verifier, nonverbatim_dups)
    def at(t: float) -> dict[str, float]:
        inside = [c for c in curve if c[0] >= t]
        fhr, rec = (inside[-1][1], inside[-1][2]) if inside else (0.0, 0.0)
        return {"threshold": t, "false_hit_rate": fhr, "recall_nonverbatim": rec}
    ok = [c for c in curve if c[1] <= 0.02]
    best = max(ok, key=lambda c: c[2]) if ok else (1.0, 0.0, 0.0)
    return {"calibration_targets": {a: at(t) for a, t in thresholds.items()},
            "oracle_at_2pct": {"threshold": best[0], "false_hit_rate": best[1], "recall_nonverbatim": best[2]}}


def closeness(q1: str, q2: str) -> str:
    """How close two texts are, from identical to merely similar (surface analysis of ``textfeat``)."""
    if q1.strip() == q2.strip():
        return "verbatim"
    a, b = words(q1), words(q2)
    if a == b:
        return "same words, case or punctuation differs"
    if [stem(w) for w in a] == [stem(w) for w in b]:
        return "same word stems"
    if sorted(a) == sorted(b):
        return "same words, reordered"
    content_a, content_b = ([w for w in x if w not in STOP_WORDS] for x in (a, b))
    if content_a == content_b:
        return "same content words, stop words differ"
    if {stem(w) for w in content_a} == {stem(w) for w in content_b}:
        return "same content stems in another order"
    return "other"


def label_ceiling(pairs: Sequence[Pair]) -> dict[str, dict[str, float]]:
    counts: dict[str, list[int]] = {}
    for p in pairs:
        c = counts.setdefault(closeness(p.q1, p.q2), [0, 0])
        c[0] += 1
        c[1] += int(bool(p.duplicate))
    return {k: {"pairs": n, "labelled_duplicate": d / n} for k, (n, d) in counts.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=Path, default=Path("/work/shared/data/cache/qqp_dev.jsonl.gz"))
    ap.add_argument("--vectors", type=Path, default=Path("/tmp/semcache-vectors"))
    ap.add_argument("--write-artifact", type=Path, default=None,
                    help="also write the verifier fitted on both halves here (what `sovrouter train-cache` ships)")
    args = ap.parse_args()
    pairs = load_labelled(args.pairs)
    emb = VectorStore(Lazy(lambda: MiniLMEmbedder(threads=2, batch_size=128)), args.vectors)
    alt = VectorStore(Lazy(E5Embedder), args.vectors, embedder=ALT_EMBEDDER)
    halves = split(pairs)
    grid = [round(float(x), 4) for x in np.arange(0.80, 1.0001, 0.0025)]
    t0 = time.perf_counter()
    groups = [collect(h, emb.embed, alt=alt) for h in halves]
    collect_s = time.perf_counter() - t0
    plain_groups = [without_alt(g) for g in groups]
    directions: list[dict[str, Any]] = []
    for a, b in ((0, 1), (1, 0)):
        fit_decs, test_decs = static_decisions(halves[a], emb), static_decisions(halves[b], emb)
        ok = [t for t in grid if static_at(halves[a], fit_decs, t)["false_hit_rate"] <= 0.02]
        t_static = min(ok) if ok else 1.0
        static = {"threshold": t_static, "fit_half": static_at(halves[a], fit_decs, t_static),
                  "test_half": static_at(halves[b], test_decs, t_static),
                  "sweep_test_half": {str(t): static_at(halves[b], test_decs, t) for t in (0.90, 0.95, 0.98)}}
        t1 = time.perf_counter()
        verifier, report = fit([groups[a]], sweep=SWEEP)
        fit_s = time.perf_counter() - t1
        t1 = time.perf_counter()
        decisions, kinds = evaluate_pairs(halves[b], emb, verifier, alt)
        eval_s = time.perf_counter() - t1
        scored = score_decisions(halves[b], decisions)
        curve = sweep_and_oracle(groups[b], verifier, report["sweep"], int(scored["nonverbatim_duplicates"]))
        ours = {"training": report, "test_half": scored, "outcome_kinds": kinds,
                "fit_s": fit_s, "eval_s_cached_embeddings": eval_s,
                "wrong_hit_examples": wrong_examples(halves[b], decisions), "measured_half_curve": curve}
        plain_verifier, plain_report = fit([plain_groups[a]], sweep=SWEEP)
        plain = {"training": plain_report, "measured_half_curve": sweep_and_oracle(
            plain_groups[b], plain_verifier, plain_report["sweep"], int(scored["nonverbatim_duplicates"]))}
        directions.append({"fit_half": a, "test_half": b, "pairs": [len(halves[a]), len(halves[b])],
                           "static_cosine_minilm": static, "pair_verifier": ours,
                           "pair_verifier_without_alt": plain})
        for name, r in (("static cosine", static["test_half"]), ("pair verifier", ours["test_half"])):
            print(f"fit {a} -> test {b}: {name:14s} hits {r['hits']:.0f}, wrong {r['wrong_hits']:.0f}, "
                  f"FHR {100 * r['false_hit_rate']:.2f}%, non-verbatim recall {100 * r['recall_nonverbatim']:.2f}%"
                  f" (threshold {t_static if name == 'static cosine' else round(verifier.threshold, 4)})",
                  flush=True)
        for target, r in curve["calibration_targets"].items():
            print(f"    calibrated at {100 * float(target):.2f}%: FHR {100 * r['false_hit_rate']:.2f}%, "
                  f"recall {100 * r['recall_nonverbatim']:.2f}%")
        o = curve["oracle_at_2pct"]
        print(f"    oracle (threshold chosen on the measured half): FHR {100 * o['false_hit_rate']:.2f}%, "
              f"recall {100 * o['recall_nonverbatim']:.2f}%", flush=True)
        for target, r in plain["measured_half_curve"]["calibration_targets"].items():
            print(f"    without the second model, calibrated at {100 * float(target):.2f}%: "
                  f"FHR {100 * r['false_hit_rate']:.2f}%, recall {100 * r['recall_nonverbatim']:.2f}%")
        o = plain["measured_half_curve"]["oracle_at_2pct"]
        print(f"    without the second model, oracle: FHR {100 * o['false_hit_rate']:.2f}%, "
              f"recall {100 * o['recall_nonverbatim']:.2f}%", flush=True)
    ceiling = label_ceiling(pairs)
    for k, v in sorted(ceiling.items(), key=lambda kv: -kv[1]["labelled_duplicate"]):
        print(f"label ceiling: {k:42s} {v['pairs']:6.0f} pairs, {100 * v['labelled_duplicate']:5.1f}% duplicate")
    shipped_fit, shipped_report = fit(groups)
    if args.write_artifact is not None:
        write_artifact(shipped_fit, shipped_report, args.write_artifact)
    try:
        same = PairVerifier.load().to_json() == shipped_fit.to_json()
    except ConfigError:  # the package holds an artifact of an older format
        same = False
    result = {"pairs_file": str(args.pairs), "halves": [len(h) for h in halves], "collect_s": collect_s,
              "directions": directions, "label_ceiling": ceiling,
              "shipped": {"training": shipped_report, "artifact_identical": same}}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"shipped (both halves): threshold {shipped_fit.threshold:.4f}, calibration "
          f"{shipped_report['calibration']}; shipped file identical: {same}\n-> {OUT}")


if __name__ == "__main__":
    main()
