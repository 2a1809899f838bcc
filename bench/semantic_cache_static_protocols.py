"""Where do the issue's static-threshold figures come from? The MiniLM cosine baseline under several protocols.

    python bench/semantic_cache_static_protocols.py [--pairs FILE] [--vectors DIR]

The issue says a static cosine threshold on all-MiniLM-L6-v2 chosen on dev gets "about 1.5%" non-verbatim recall
at 2% false hits, and that on Quora pairs a good static embedding is right on "about three hits in four at 0.90".
``bench/semantic_cache.py`` measures the baseline as the acceptance protocol reads (fitted on one half, measured
on the other, verbatim = the same text): 0.69% and 0.06%. This bench measures the same cosine under other
readings, in sample (threshold chosen on the measured file itself, so each figure is a ceiling for its protocol):

- ``cache``: every distinct q1 of the file in one cache, each q2 matched to its best q1 (as the acceptance);
  the file is the whole dev part (56k pairs) or one half (28k);
- ``verbatim``: ``exact`` (the same text, as our scoring) or ``loose`` (the same up to case, spacing and
  punctuation, all counted right whatever the label);
- ``pairwise``: each q2 against its own q1 only (GPTCache's benchmark): precision of the pairs with cosine >= t.

Nothing here changes what ships. Writes bench/results/semantic_cache_static_protocols.json.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from semantic_cache import Lazy, static_decisions

from sovrouter.cache.calibrate import Pair, is_right, positive_keys
from sovrouter.cache.training import VectorStore, load_labelled, split
from sovrouter.embed import MiniLMEmbedder

OUT = Path(__file__).parent / "results" / "semantic_cache_static_protocols.json"
GRID = [round(float(x), 4) for x in np.arange(0.80, 1.0001, 0.0025)]


def loose(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text.lower()).strip()


def curve(part: Sequence[Pair], decs: Sequence[tuple[float, str]], verbatim: str) -> dict[float, dict[str, float]]:
    same = (lambda a, b: loose(a) == loose(b)) if verbatim == "loose" else (lambda a, b: a.strip() == b.strip())
    positives = positive_keys(part)
    nv = sum(1 for p in part if p.duplicate and not same(p.q1, p.q2))
    out = {}
    for t in GRID:
        hits = wrong = right_nv = 0
        for p, (cos, matched) in zip(part, decs, strict=True):
            if cos < t:
                continue
            hits += 1
            if same(p.q2, matched):
                continue
            if is_right(p.q2, matched, positives):
                right_nv += 1
            else:
                wrong += 1
        out[t] = {"hits": hits, "wrong": wrong, "fhr": wrong / hits if hits else 0.0, "recall": right_nv / nv}
    return out


def at_2pct(c: dict[float, dict[str, float]]) -> dict[str, Any]:
    ok = [t for t, v in c.items() if v["fhr"] <= 0.02]
    t = min(ok) if ok else 1.01
    return {"threshold": t, **c.get(t, {"hits": 0, "wrong": 0, "fhr": 0.0, "recall": 0.0})}


def pairwise(part: Sequence[Pair], emb: VectorStore) -> dict[str, float]:
    a, b = emb.embed([p.q1 for p in part]), emb.embed([p.q2 for p in part])
    cos = np.einsum("ij,ij->i", a, b)
    dup = np.asarray([p.duplicate for p in part])
    return {str(t): float(dup[cos >= t].mean()) for t in (0.85, 0.90, 0.95)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=Path, default=Path("/work/shared/data/cache/qqp_dev.jsonl.gz"))
    ap.add_argument("--vectors", type=Path, default=Path("/tmp/semcache-vectors"))
    args = ap.parse_args()
    pairs = load_labelled(args.pairs)
    emb = VectorStore(Lazy(lambda: MiniLMEmbedder(threads=2, batch_size=128)), args.vectors)
    halves = split(pairs)
    result: dict[str, Any] = {"pairwise_precision_all_dev": pairwise(pairs, emb), "in_sample": {}}
    for name, part in (("all dev", pairs), ("half 0", halves[0]), ("half 1", halves[1])):
        decs = static_decisions(part, emb)
        for verbatim in ("exact", "loose"):
            c = curve(part, decs, verbatim)
            row = {"at_2pct": at_2pct(c), "at_0.90": c[0.9]}
            result["in_sample"][f"{name}, verbatim {verbatim}"] = row
            r = row["at_2pct"]
            print(f"{name:7s} verbatim {verbatim}: t={r['threshold']} hits {r['hits']} wrong {r['wrong']} "
                  f"FHR {100 * r['fhr']:.2f}% recall {100 * r['recall']:.2f}%; at 0.90 FHR "
                  f"{100 * row['at_0.90']['fhr']:.1f}%", flush=True)
    share = {k: round(v, 3) for k, v in result["pairwise_precision_all_dev"].items()}
    print("pairwise precision (own q1 only):", share)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {OUT}")


if __name__ == "__main__":
    main()
