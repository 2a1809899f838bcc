"""One partition of the semantic cache (one tenant and parameter set): vectors, texts, and the hit decision.

Retrieval is usearch's exact (brute-force, SIMD) cosine search over the partition's vectors, so the candidate set
is the true top-k and never depends on the order entries were added (an HNSW graph's answers can). Every
candidate at or above the verifier's cosine floor is scored by the pair verifier; the best one is chosen by
(verifier probability, cosine, text) and is a hit only if its probability reaches the calibrated threshold.

When the verifier reads a second embedding model (``verifier.alt_embedder``), the index computes that model's
vectors lazily, only for queries that have a candidate and for the entries they are compared with (an entry's
vector is kept once computed), so most requests pay for one embedding, not two.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
from numpy.typing import NDArray
from usearch.compiled import MetricKind
from usearch.index import search

from sovrouter.cache.textfeat import TextInfo, alt_features, analyse, hard_mismatch, pair_features
from sovrouter.cache.verifier import PairVerifier
from sovrouter.embed import Embedder
from sovrouter.errors import ConfigError

P = TypeVar("P")
_CLOSE = 0.02  # neighbours within this cosine of the best count as "close" (ambiguity feature)


@dataclass(frozen=True)
class Match(Generic[P]):
    text: str
    payload: P
    probability: float
    cosine: float


@dataclass(frozen=True)
class Scored:
    """One candidate of one query: for calibration and benchmarks (the cache itself only needs the best)."""

    text: str
    cosine: float
    probability: float
    features: list[float]


def normalise_text(text: str) -> str:
    return " ".join(text.split())


_Row = tuple[int, int, float, list[float]]  # (query position, entry row, cosine, features)


class SemanticIndex(Generic[P]):
    def __init__(self, verifier: PairVerifier, dim: int, alt: Embedder | None = None) -> None:
        if verifier.alt_embedder is not None and alt is None:
            raise ConfigError(f"this pair verifier needs the {verifier.alt_embedder} embedding model as well")
        self.verifier = verifier
        self.dim = dim
        self.alt = alt if verifier.alt_embedder is not None else None
        self._alt_vectors: dict[int, NDArray[np.float32]] = {}  # entry row -> second model's vector
        self._texts: list[str] = []
        self._infos: list[TextInfo] = []
        self._payloads: list[P] = []
        self._rows: dict[str, int] = {}
        self._vectors = np.zeros((16, dim), dtype=np.float32)  # grows by doubling; rows [0, len) are live

    def __len__(self) -> int:
        return len(self._texts)

    def add(self, text: str, vector: NDArray[np.float32], payload: P) -> None:
        """Add (or replace) the entry for ``text``; one entry per distinct normalised text."""
        key = normalise_text(text)
        row = self._rows.get(key)
        if row is not None:
            self._payloads[row] = payload
            return
        self._rows[key] = len(self._texts)
        self._texts.append(text)
        self._infos.append(analyse(text))
        self._payloads.append(payload)
        row = len(self._texts) - 1
        if row >= self._vectors.shape[0]:
            grown = np.zeros((2 * self._vectors.shape[0], self.dim), dtype=np.float32)
            grown[: self._vectors.shape[0]] = self._vectors
            self._vectors = grown
        self._vectors[row] = np.asarray(vector, dtype=np.float32).reshape(self.dim)

    def remove(self, keys: Collection[str]) -> int:
        """Drop the entries whose normalised text is in ``keys``, each by moving the last row into its place
        (O(1) per entry; row order never matters to a decision). Returns how many were dropped."""
        dropped = 0
        for key in keys:
            row = self._rows.pop(key, None)
            if row is None:
                continue
            last = len(self._texts) - 1
            if row != last:
                self._texts[row] = self._texts[last]
                self._infos[row] = self._infos[last]
                self._payloads[row] = self._payloads[last]
                self._vectors[row] = self._vectors[last]
                self._rows[normalise_text(self._texts[row])] = row
            moved = self._alt_vectors.pop(last, None)
            self._alt_vectors.pop(row, None)
            if moved is not None and row != last:
                self._alt_vectors[row] = moved
            self._texts.pop()
            self._infos.pop()
            self._payloads.pop()
            dropped += 1
        return dropped

    def payload(self, text: str) -> P | None:
        row = self._rows.get(normalise_text(text))
        return None if row is None else self._payloads[row]

    def _matrix(self) -> NDArray[np.float32]:
        return self._vectors[: len(self._texts)]

    # ------------------------------------------------------------------ decisions
    def match_many(self, texts: Sequence[str], vectors: NDArray[np.float32]) -> list[Match[P] | None]:
        return [self._best(t, s) for t, s in zip(texts, self.score_many(texts, vectors), strict=True)]

    def match(self, text: str, vector: NDArray[np.float32]) -> Match[P] | None:
        return self.match_many([text], np.asarray(vector, dtype=np.float32).reshape(1, self.dim))[0]

    def _best(self, text: str, scored: list[Scored]) -> Match[P] | None:
        verbatim = self._rows.get(normalise_text(text))
        if verbatim is not None:
            return Match(self._texts[verbatim], self._payloads[verbatim], 1.0, 1.0)
        if not scored:
            return None
        best = min(scored, key=lambda s: (-s.probability, -s.cosine, s.text))
        if best.probability < self.verifier.threshold:
            return None
        row = self._rows[normalise_text(best.text)]
        return Match(best.text, self._payloads[row], best.probability, best.cosine)

    def score_many(self, texts: Sequence[str], vectors: NDArray[np.float32]) -> list[list[Scored]]:
        """Every candidate at or above the cosine floor (hard mismatches dropped), with its verifier score."""
        matrix = self._matrix()
        n = len(texts)
        if n == 0 or matrix.shape[0] == 0:
            return [[] for _ in range(n)]
        top_k = self.verifier.top_k
        queries = np.asarray(vectors, dtype=np.float32).reshape(n, self.dim)
        rows_feats: list[_Row] = []
        for qi, ranked in enumerate(self._ranked(matrix, queries, top_k)):
            info = analyse(texts[qi])
            cands = ranked
            cands = [c for c in cands if self._texts[c[1]] != texts[qi]]
            if not cands or cands[0][0] < self.verifier.cos_floor:
                continue
            best_cos = cands[0][0]
            second_cos = cands[1][0] if len(cands) > 1 else 0.0
            n_close = sum(c[0] >= best_cos - _CLOSE for c in cands)
            for cos, row in cands:
                if cos < self.verifier.cos_floor or hard_mismatch(info, self._infos[row]):
                    continue
                feats = pair_features(info, self._infos[row], cos, best_cos, second_cos, n_close)
                rows_feats.append((qi, row, cos, feats))
        out: list[list[Scored]] = [[] for _ in range(n)]
        if rows_feats and self.alt is not None:
            rows_feats = self._with_alt(self.alt, texts, rows_feats)
        if rows_feats:
            probs = self.verifier.probability(np.asarray([f for *_, f in rows_feats], dtype=np.float64))
            for (qi, row, cos, feats), p in zip(rows_feats, probs, strict=True):
                out[qi].append(Scored(self._texts[row], cos, float(p), feats))
        return out

    def _ranked(self, matrix: NDArray[np.float32], queries: NDArray[np.float32],
                k: int) -> list[list[tuple[float, int]]]:
        """Per query, its ``k`` nearest entries as ``(cosine, row)``, best first, ties broken by text: a set that
        does not depend on the order entries were added. usearch breaks a tie by row, so when entries tie at the
        k-th place (the same vector: texts equal up to case for an uncased model) the search is widened until
        the tie is inside it, then cut by (cosine, text)."""
        total = matrix.shape[0]
        width = min(total, k + 8)
        while True:
            found = search(matrix, queries, width, MetricKind.Cos, exact=True, threads=1)
            keys = np.asarray(found.keys).reshape(len(queries), width)
            dists = np.asarray(found.distances).reshape(len(queries), width)
            out: list[list[tuple[float, int]]] = []
            widen = False
            for qk, qd in zip(keys, dists, strict=True):
                cands = sorted(((1.0 - float(d), int(key)) for key, d in zip(qk, qd, strict=True) if key >= 0),
                               key=lambda c: (-c[0], self._texts[c[1]]))
                if width < total and len(cands) == width and len(cands) > k and cands[k - 1][0] == cands[-1][0]:
                    widen = True  # the k-th place ties with the last one found: more may tie beyond it
                out.append(cands[:k])
            if not widen:
                return out
            width = min(total, width * 2)

    def _with_alt(self, alt: Embedder, texts: Sequence[str], rows_feats: list[_Row]) -> list[_Row]:
        """Append the second model's features to each candidate row (one batched embedding call)."""
        queries = sorted({qi for qi, *_ in rows_feats})
        missing = sorted({row for _, row, *_ in rows_feats if row not in self._alt_vectors})
        vecs = alt.embed([texts[qi] for qi in queries] + [self._texts[r] for r in missing])
        query_vec = {qi: vecs[i] for i, qi in enumerate(queries)}
        for j, row in enumerate(missing):
            self._alt_vectors[row] = vecs[len(queries) + j]
        by_query: dict[int, list[int]] = {}
        for pos, (qi, *_) in enumerate(rows_feats):
            by_query.setdefault(qi, []).append(pos)
        out = list(rows_feats)
        for qi, positions in by_query.items():
            sims = [float(query_vec[qi] @ self._alt_vectors[rows_feats[p][1]]) for p in positions]
            for p, extra in zip(positions, alt_features(sims), strict=True):
                q, row, cos, feats = rows_feats[p]
                out[p] = (q, row, cos, feats + extra)
        return out
