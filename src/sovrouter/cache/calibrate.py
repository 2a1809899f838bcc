"""Fit and calibrate the pair verifier on labelled question pairs (``sovrouter train-cache``), and score decisions.

Protocol (the same one the held-out evaluation uses): every distinct eligible ``q1`` of a part goes into one
fresh index; each ``q2`` is looked up; a decision is right if it is a verbatim match or the pair (q2, matched q1)
is labelled duplicate in the same labelled set, and wrong otherwise (strict: matching another pair's q1 that was never
labelled counts as wrong).

- fit: the candidates retrieved for each q2 (cosine >= floor) are the training pairs, labelled as above, so the
  verifier learns on the hard negatives retrieval actually produces (:mod:`sovrouter.cache.training`);
- calibrate: on decisions the model did not see in fitting, the threshold is the lowest one reached by
  fixed-sequence testing from the top whose false-hit rate (point estimate, or a Clopper-Pearson upper bound
  as in Learn-then-Test) stays <= alpha.
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from sovrouter.cache.eligibility import text_ineligible_reason
from sovrouter.cache.semindex import Scored, SemanticIndex, normalise_text
from sovrouter.cache.verifier import PairVerifier
from sovrouter.embed import Embedder
from sovrouter.errors import ConfigError
from sovrouter.fileio import open_text

EmbedFn = Callable[[Sequence[str]], NDArray[np.float32]]


@dataclass(frozen=True)
class Pair:
    id: str | int | float
    q1: str
    q2: str
    duplicate: bool | None = None


def read_pairs(path: str | Path, with_labels: bool = False) -> list[Pair]:
    """gzip (by magic bytes) or plain JSONL ``{"id", "q1", "q2"}``. The id is kept as written (a JSON string or
    number, so decisions join back to the file's ids); a missing id becomes the line index; a null question
    becomes the empty text, which is never cached or matched. ``duplicate`` is read only when ``with_labels``
    (training), never by the evaluation. A file where no line has a ``q1`` or ``q2`` text (an empty file, another
    JSONL format) is a :class:`ConfigError`."""
    p = Path(path)
    out: list[Pair] = []
    try:
        with open_text(p) as fh:
            for i, line in enumerate(fh):
                if not line.strip():
                    continue
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError(f"line {i + 1}: not a JSON object")
                q1, q2 = (_question(row.get(k), i) for k in ("q1", "q2"))
                dup = bool(row["duplicate"]) if with_labels and "duplicate" in row else None
                raw_id = row.get("id")
                out.append(Pair(_pair_id(i if raw_id is None else raw_id), q1, q2, dup))
    except (OSError, EOFError, ValueError, KeyError, TypeError, zlib.error) as exc:
        raise ConfigError(f"cannot read pairs file {p}: {exc}") from exc
    if not any(pair.q1 or pair.q2 for pair in out):
        # another JSONL file (a decisions file, a Mooncake trace) read as all misses, and the command exited 0
        # (found in review, 2026-11-28); a file where only some lines lack a question is read as before
        raise ConfigError(f"{p} is not a pairs file: no line has a q1 or q2 text (expected JSONL "
                          '{"id", "q1", "q2"})')
    return out


def _question(value: object, i: int) -> str:
    """A question's text: missing, null or NaN (how pandas writes QQP's empty questions) is no text, which is
    never cached and always a miss; a number is its digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"line {i + 1}: q1 and q2 must be text, numbers or null")


def _pair_id(raw: object) -> str | int | float:
    if isinstance(raw, float) and not math.isfinite(raw):
        raise ValueError("id must be a finite number")  # JSON cannot write it back (it was written as NaN)
    if isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
        return raw
    raise ValueError("id must be a string or a number")


def part_of(q1: str, parts: int, salt: str = "semcache-split") -> int:
    return int(hashlib.blake2b(f"{salt}:{q1}".encode(), digest_size=8).hexdigest(), 16) % parts


def positive_keys(pairs: Iterable[Pair]) -> set[tuple[str, str]]:
    keys: set[tuple[str, str]] = set()
    for p in pairs:
        if p.duplicate:
            a, b = normalise_text(p.q1), normalise_text(p.q2)
            keys.update({(a, b), (b, a)})
    return keys


def build_index(pairs: Sequence[Pair], embed: EmbedFn, verifier: PairVerifier, dim: int,
                alt: Embedder | None = None) -> SemanticIndex[str]:
    """A fresh index holding every distinct eligible q1, in file order."""
    texts = list(dict.fromkeys(p.q1 for p in pairs if text_ineligible_reason(p.q1) is None))
    index: SemanticIndex[str] = SemanticIndex(verifier, dim, alt)
    vecs = embed(texts)
    for t, v in zip(texts, vecs, strict=True):
        index.add(t, v, t)
    return index


@dataclass(frozen=True)
class QueryScores:
    pair: Pair
    eligible: bool
    verbatim: bool
    candidates: list[Scored]


def score_queries(pairs: Sequence[Pair], index: SemanticIndex[str], embed: EmbedFn) -> list[QueryScores]:
    """Each q2 looked up as the layered cache would: ``verbatim`` when the cache answers it with the same text (the
    semantic index's entry for an eligible text, or the exact layer's for any text, eligible or not, exactly as
    cached), else the semantic candidates of an eligible q2. Every verbatim answer is a right hit in the false-hit
    rate the evaluation command produces, so calibration must count all of them."""
    eligible = [text_ineligible_reason(p.q2) is None for p in pairs]
    qs = [p.q2 for p, e in zip(pairs, eligible, strict=True) if e]
    scored = iter(index.score_many(qs, embed(qs)) if qs else [])
    exact = {p.q1 for p in pairs if p.q1.strip()}  # the exact layer keys on the text as written
    out = []
    for p, e in zip(pairs, eligible, strict=True):
        cands = next(scored) if e else []
        verbatim = index.payload(p.q2) is not None if e else p.q2 in exact
        out.append(QueryScores(p, e, verbatim, cands))
    return out


def is_right(q2: str, matched: str, positives: set[tuple[str, str]]) -> bool:
    a, b = normalise_text(q2), normalise_text(matched)
    return a == b or (a, b) in positives


def best_decisions(queries: Sequence[QueryScores], probabilities: Sequence[Sequence[float]],
                   positives: set[tuple[str, str]]) -> list[tuple[float, bool]]:
    """(probability, right) of each eligible non-verbatim query's best candidate, the best chosen as the index does
    (probability, then cosine, then text) under ``probabilities`` (one list per query, one value per candidate)."""
    out = []
    for q, probs in zip(queries, probabilities, strict=True):
        if q.verbatim or not q.candidates:
            continue
        cands = [Scored(c.text, c.cosine, float(p), c.features) for c, p in zip(q.candidates, probs, strict=True)]
        best = min(cands, key=lambda s: (-s.probability, -s.cosine, s.text))
        out.append((best.probability, is_right(q.pair.q2, best.text, positives)))
    return out


def clopper_pearson_upper(wrong: int, n: int, delta: float) -> float:
    """One-sided upper confidence bound on a binomial rate (exact, by bisection on the beta tail)."""
    if n == 0:
        return 1.0
    if wrong >= n:
        return 1.0
    from math import comb  # local: exact tail sums for the small counts involved

    def tail(p: float) -> float:  # P(X <= wrong | n, p)
        return sum(comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(wrong + 1))

    lo, hi = wrong / n, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if tail(mid) > delta:
            lo = mid
        else:
            hi = mid
    return hi


def choose_threshold(decisions: Sequence[tuple[float, bool]], alpha: float, delta: float | None,
                     verbatim_hits: int = 0) -> tuple[float, dict[str, float]]:
    """Fixed-sequence test from the highest threshold down; return the last threshold whose false-hit rate
    (wrong / (verbatim_hits + semantic hits)) stays <= alpha: its one-sided Clopper-Pearson upper bound at level
    ``delta``, or the point estimate when ``delta`` is None.

    With a bound, testing starts at the first threshold with enough hits for a zero-error bound to pass
    (``n >= ln(delta) / ln(1 - alpha)``): the sequence depends on scores only, never on labels, so the
    family-wise guarantee of fixed-sequence testing holds."""
    start = math.ceil(math.log(delta) / math.log(1.0 - alpha)) if delta is not None else 1
    ordered = sorted(decisions, key=lambda d: -d[0])
    chosen, info = 1.01, {"hits": float(verbatim_hits), "wrong": 0.0, "fhr": 0.0}
    hits, wrong = verbatim_hits, 0
    i = 0
    while i < len(ordered):
        p = ordered[i][0]
        while i < len(ordered) and ordered[i][0] == p:
            hits += 1
            wrong += int(not ordered[i][1])
            i += 1
        if hits < start:
            continue
        fhr = clopper_pearson_upper(wrong, hits, delta) if delta is not None else wrong / hits
        if fhr > alpha:
            break
        chosen, info = p, {"hits": float(hits), "wrong": float(wrong), "fhr": fhr}
    return chosen, info
