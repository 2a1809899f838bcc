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
(b) ours: ``training.fit`` on the fitting half (trees fitted on its retrieval candidates, threshold on
    out-of-fold decisions at FHR <= 1%), measured on the other half through the code of
    ``sovrouter eval semantic-cache`` (layered exact + semantic cache, eligibility on).

Finally the shipped artifact is refitted on both halves (what ``sovrouter train-cache`` does) and compared with
the file in the package. MiniLM vectors are kept under ``--vectors`` (default /tmp/semcache-vectors) so reruns
embed nothing. Writes bench/results/semantic_cache.json.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sovrouter.cache.calibrate import Pair, is_right, positive_keys
from sovrouter.cache.evaluate import evaluate_pairs
from sovrouter.cache.training import VectorStore, collect, fit, load_labelled, score_decisions, split, write_artifact
from sovrouter.cache.verifier import PairVerifier
from sovrouter.embed import MiniLMEmbedder, Vectors
from sovrouter.errors import ConfigError

OUT = Path(__file__).parent / "results" / "semantic_cache.json"


class LazyMiniLM:
    """Loads MiniLM only if the vector store lacks a text."""

    def __init__(self) -> None:
        self._model: MiniLMEmbedder | None = None

    def __call__(self, texts: Sequence[str]) -> Vectors:
        if self._model is None:
            self._model = MiniLMEmbedder(threads=2, batch_size=128)
        return self._model.embed(texts)


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=Path, default=Path("/work/shared/data/cache/qqp_dev.jsonl.gz"))
    ap.add_argument("--vectors", type=Path, default=Path("/tmp/semcache-vectors"))
    ap.add_argument("--write-artifact", type=Path, default=None,
                    help="also write the verifier fitted on both halves here (what `sovrouter train-cache` ships)")
    args = ap.parse_args()
    pairs = load_labelled(args.pairs)
    emb = VectorStore(LazyMiniLM(), args.vectors)
    halves = split(pairs)
    grid = [round(float(x), 4) for x in np.arange(0.80, 1.0001, 0.0025)]
    t0 = time.perf_counter()
    groups = [collect(h, emb.embed) for h in halves]
    collect_s = time.perf_counter() - t0
    directions: list[dict[str, Any]] = []
    for a, b in ((0, 1), (1, 0)):
        fit_decs, test_decs = static_decisions(halves[a], emb), static_decisions(halves[b], emb)
        ok = [t for t in grid if static_at(halves[a], fit_decs, t)["false_hit_rate"] <= 0.02]
        t_static = min(ok) if ok else 1.0
        static = {"threshold": t_static, "fit_half": static_at(halves[a], fit_decs, t_static),
                  "test_half": static_at(halves[b], test_decs, t_static),
                  "sweep_test_half": {str(t): static_at(halves[b], test_decs, t) for t in (0.90, 0.95, 0.98)}}
        t1 = time.perf_counter()
        verifier, report = fit([groups[a]])
        fit_s = time.perf_counter() - t1
        t1 = time.perf_counter()
        decisions, kinds = evaluate_pairs(halves[b], emb, verifier)
        eval_s = time.perf_counter() - t1
        ours = {"training": report, "test_half": score_decisions(halves[b], decisions), "outcome_kinds": kinds,
                "fit_s": fit_s, "eval_s_cached_embeddings": eval_s,
                "wrong_hit_examples": wrong_examples(halves[b], decisions)}
        directions.append({"fit_half": a, "test_half": b, "pairs": [len(halves[a]), len(halves[b])],
                           "static_cosine_minilm": static, "pair_verifier": ours})
        for name, r in (("static cosine", static["test_half"]), ("pair verifier", ours["test_half"])):
            print(f"fit {a} -> test {b}: {name:14s} hits {r['hits']:.0f}, wrong {r['wrong_hits']:.0f}, "
                  f"FHR {100 * r['false_hit_rate']:.2f}%, non-verbatim recall {100 * r['recall_nonverbatim']:.2f}%"
                  f" (threshold {t_static if name == 'static cosine' else round(verifier.threshold, 4)})",
                  flush=True)
    shipped_fit, shipped_report = fit(groups)
    if args.write_artifact is not None:
        write_artifact(shipped_fit, shipped_report, args.write_artifact)
    try:
        same = PairVerifier.load().to_json() == shipped_fit.to_json()
    except ConfigError:  # the package holds an artifact of an older format
        same = False
    result = {"pairs_file": str(args.pairs), "halves": [len(h) for h in halves], "collect_s": collect_s,
              "directions": directions, "shipped": {"training": shipped_report, "artifact_identical": same}}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"shipped (both halves): threshold {shipped_fit.threshold:.4f}, calibration "
          f"{shipped_report['calibration']}; shipped file identical: {same}\n-> {OUT}")


if __name__ == "__main__":
    main()
