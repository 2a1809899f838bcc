"""Semantic cache on the dev Quora pairs: static cosine threshold vs the calibrated pair verifier.

    python bench/semantic_cache.py [--pairs /work/shared/data/cache/qqp_dev.jsonl.gz]

Both methods follow the held-out protocol on each part of dev (split by a hash of q1): every distinct q1 of the
part in one fresh cache, every q2 looked up, strict scoring (a match never labelled duplicate is wrong, a verbatim
match is right). FHR = wrong hits / hits; recall = right non-verbatim hits / non-verbatim duplicate pairs.

(a) static cosine on all-MiniLM-L6-v2: best cached q1 by cosine, hit if cosine >= t; t chosen on part 1 as the
    lowest threshold with FHR <= 2% there, measured on part 2.
(b) ours: verifier fitted on part 0, threshold calibrated on part 1 (``sovrouter train-cache``'s procedure),
    measured on part 2 through the same code as ``sovrouter eval semantic-cache`` (layered exact + semantic).

MiniLM embeddings are cached under /tmp/semcache (benchmark only) so reruns skip the embedding pass.
Writes bench/results/semantic_cache.json.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sovrouter.cache.calibrate import Pair, is_right, positive_keys
from sovrouter.cache.evaluate import evaluate_pairs
from sovrouter.cache.training import (
    CALIBRATE,
    FIT,
    TEST,
    load_labelled,
    score_decisions,
    split,
    train,
    write_artifact,
)
from sovrouter.cache.verifier import PairVerifier
from sovrouter.embed import MiniLMEmbedder, Vectors

CACHE = Path("/tmp/semcache")
OUT = Path(__file__).parent / "results" / "semantic_cache.json"


class DiskCachedEmbedder:
    """MiniLM with an on-disk vector cache under /tmp (benchmarks only)."""

    dim = 384

    def __init__(self, texts: Sequence[str]) -> None:
        vec_path, txt_path = CACHE / "dev_minilm.npy", CACHE / "dev_texts.json"
        self._model: MiniLMEmbedder | None = None
        if vec_path.exists() and txt_path.exists():
            known = json.loads(txt_path.read_text())
            self._vectors = np.load(vec_path)
        else:
            known = sorted(set(texts))
            self._vectors = self._base().embed(known)
            CACHE.mkdir(parents=True, exist_ok=True)
            np.save(vec_path, self._vectors)
            txt_path.write_text(json.dumps(known))
        self._rows = {t: i for i, t in enumerate(known)}

    def _base(self) -> MiniLMEmbedder:
        if self._model is None:
            self._model = MiniLMEmbedder(threads=1, batch_size=128)
        return self._model

    def embed(self, texts: Sequence[str]) -> Vectors:
        missing = [t for t in texts if t not in self._rows]
        fresh = dict(zip(missing, self._base().embed(missing), strict=True)) if missing else {}
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i] = self._vectors[self._rows[t]] if t in self._rows else fresh[t]
        return out


def static_decisions(part: Sequence[Pair], emb: DiskCachedEmbedder) -> list[tuple[float, str]]:
    """Best cached q1 (all distinct q1 of the part) by cosine for each q2: (cosine, matched)."""
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=Path, default=Path("/work/shared/data/cache/qqp_dev.jsonl.gz"))
    ap.add_argument("--write-artifact", type=Path, default=None,
                    help="also write the trained verifier here (same train() as `sovrouter train-cache`)")
    args = ap.parse_args()
    pairs = load_labelled(args.pairs)
    used = [p for part in (FIT, CALIBRATE, TEST) for p in split(pairs)[part]]
    emb = DiskCachedEmbedder([t for p in used for t in (p.q1, p.q2)])
    parts = split(pairs)
    positives = positive_keys(pairs)

    # (a) static cosine threshold: chosen on part 1, measured on part 2
    cal, test = static_decisions(parts[CALIBRATE], emb), static_decisions(parts[TEST], emb)
    grid = [round(x, 3) for x in np.arange(0.80, 1.0001, 0.0025)]
    ok = [t for t in grid if static_at(parts[CALIBRATE], cal, t)["false_hit_rate"] <= 0.02]
    t_static = min(ok) if ok else 1.0
    static = {"threshold": t_static, "calibration_part": static_at(parts[CALIBRATE], cal, t_static),
              "test_part": static_at(parts[TEST], test, t_static),
              "sweep_test_part": {str(t): static_at(parts[TEST], test, t) for t in (0.90, 0.95, 0.98)}}

    # (b) ours: fit on part 0, calibrate on part 1, measure on part 2 (eval-command code path)
    t0 = time.perf_counter()
    verifier, report = train(pairs, emb.embed)
    train_s = time.perf_counter() - t0
    if args.write_artifact is not None:
        write_artifact(verifier, report, args.write_artifact)
    t0 = time.perf_counter()
    decisions, kinds = evaluate_pairs(parts[TEST], emb, verifier)
    eval_s = time.perf_counter() - t0
    ours = {"training": report, "test_part": score_decisions(parts[TEST], decisions), "outcome_kinds": kinds,
            "train_s_cached_embeddings": train_s, "eval_s_cached_embeddings": eval_s}
    shipped = PairVerifier.load()
    same = shipped.weights == verifier.weights and shipped.threshold == verifier.threshold
    ours["shipped_artifact_identical"] = same
    wrong = [(p.q2, d["matched"]) for p, d in zip(parts[TEST], decisions, strict=True)
             if d["hit"] and not is_right(p.q2, d["matched"], positives)]
    ours["wrong_hit_examples"] = wrong[:15]
    result = {"pairs_file": str(args.pairs), "parts": [len(p) for p in parts], "static_cosine_minilm": static,
              "pair_verifier": ours}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    for name, r in (("static cosine", static["test_part"]), ("pair verifier", ours["test_part"])):
        print(f"{name:14s} test part: hits {r['hits']:.0f}, FHR {100 * r['false_hit_rate']:.2f}%, "
              f"non-verbatim recall {100 * r['recall_nonverbatim']:.2f}%")
    print(f"static threshold {t_static}; verifier threshold {verifier.threshold:.4f}; shipped identical: {same}")
    print(f"-> {OUT}")


if __name__ == "__main__":
    main()
