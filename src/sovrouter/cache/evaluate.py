"""Label-free evaluation of the cache on question pairs (``sovrouter eval semantic-cache``).

Every distinct ``q1`` goes into one fresh cache of one tenant (the layered cache the gateway runs: exact, then
semantic), then every ``q2`` is looked up in file order. Nothing is fitted to the file: the verifier is the
shipped artifact. Texts are embedded once with the main model, in batches, before the loop (in memory only);
the verifier's second model, if it has one, is embedded lazily by the index (see ``semindex``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np

from sovrouter.cache.calibrate import Pair
from sovrouter.cache.eligibility import text_ineligible_reason
from sovrouter.cache.exact import ExactCache
from sovrouter.cache.layered import LayeredCache
from sovrouter.cache.semantic import SemanticCache
from sovrouter.cache.verifier import PairVerifier
from sovrouter.clock import SimClock
from sovrouter.contracts import Candidate, ContentPart, Detection, Message, ModelResult, NormalizedRequest
from sovrouter.embed import Embedder, Vectors
from sovrouter.unicode import valid_text

TENANT = "eval"
_CANDIDATE = Candidate(slot="eval", deployment="eval")


class PrecomputedEmbedder:
    """Serves vectors embedded beforehand in one batched pass; texts not seen then go to the base embedder."""

    def __init__(self, base: Embedder, texts: Sequence[str], batch_size: int = 2048) -> None:
        self.base = base
        self.dim = base.dim
        unique = sorted(set(texts))  # batches independent of file order (a vector varies ~1e-7 with its batch)
        self._rows: dict[str, int] = {t: i for i, t in enumerate(unique)}
        parts = [base.embed(unique[i: i + batch_size]) for i in range(0, len(unique), batch_size)]
        self._vectors = np.vstack(parts) if parts else np.zeros((0, self.dim), dtype=np.float32)

    def embed(self, texts: Sequence[str]) -> Vectors:
        missing = [t for t in texts if t not in self._rows]
        extra = self.base.embed(missing) if missing else np.zeros((0, self.dim), dtype=np.float32)
        fresh = {t: extra[i] for i, t in enumerate(missing)}
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i] = self._vectors[self._rows[t]] if t in self._rows else fresh[t]
        return out


def _request(i: int, text: str) -> NormalizedRequest:
    return NormalizedRequest(request_id=f"r{i}", tenant=TENANT,
                             messages=(Message(role="user", parts=(ContentPart(modality="text", text=text),)),))


async def _run(pairs: Sequence[Pair], embedder: Embedder, verifier: PairVerifier,
               alt: Embedder | None) -> tuple[list[dict[str, Any]], dict[str, int]]:
    clock = SimClock()
    exact = ExactCache(clock, ":memory:", ttl_s=1e9)
    cache = LayeredCache(exact, SemanticCache(clock, embedder, verifier, ttl_s=1e9, alt_embedder=alt))
    none = Detection()
    allowed = [_CANDIDATE]
    # a question with no text is never cached. Stored in a canonical (sorted) order, not file order: q1s that
    # share one cache key (equal up to whitespace for the semantic layer, or up to lone surrogates once repaired)
    # keep one entry, and which one must not depend on the order of the file's lines
    q1s = sorted({p.q1 for p in pairs if p.q1.strip()})
    for i, q1 in enumerate(q1s):
        req = _request(i, valid_text(q1))  # a lone surrogate: read as U+FFFD, but "matched" is q1 as written
        # the answer is the q1's position, not its text: a text holding a lone surrogate does not serialise, and
        # the exact layer then dropped it (a verbatim q2 of an ineligible q1 missed)
        await cache.store(req, none, ModelResult(candidate=_CANDIDATE, text=str(i)))
        await cache.release(req)
    out: list[dict[str, Any]] = []
    kinds: dict[str, int] = {}
    for j, pair in enumerate(pairs):
        if not pair.q2.strip():
            out.append({"id": pair.id, "hit": False, "matched": None})
            kinds["empty"] = kinds.get("empty", 0) + 1
            continue
        req = _request(len(q1s) + j, valid_text(pair.q2))
        outcome, result = await cache.lookup(req, none, allowed)
        if result is None:
            await cache.release(req)  # a lookup-only probe: nothing will be stored
        out.append({"id": pair.id, "hit": result is not None, "matched": q1s[int(result.text)] if result else None})
        kinds[outcome.kind] = kinds.get(outcome.kind, 0) + 1
    exact.close()
    return out, kinds


def evaluate_pairs(pairs: Sequence[Pair], base: Embedder, verifier: PairVerifier,
                   alt: Embedder | None = None) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Decisions ``{"id", "hit", "matched"}`` in file order, and the count of cache outcome kinds. ``alt``: the
    verifier's second embedding model, if it reads one (embedded lazily by the index, see ``semindex``)."""
    texts = [valid_text(p.q1) for p in pairs if text_ineligible_reason(p.q1) is None]
    texts += [valid_text(p.q2) for p in pairs if text_ineligible_reason(p.q2) is None]
    embedder = PrecomputedEmbedder(base, texts)
    return asyncio.run(_run(pairs, embedder, verifier, alt))
