"""Semantic cache: answer a request from an earlier, differently worded request of the same tenant.

- Partitioned by tenant, requested model, generation parameters and system prompt: a tenant never sees
  another tenant's entries, and an answer is only reused under the same parameters.
- Only eligible requests are embedded, stored or matched (:mod:`sovrouter.cache.eligibility`): no personal
  data, single short text question, not time-sensitive, not generative, not code.
- A hit needs the calibrated pair verifier to accept the best candidate (:mod:`sovrouter.cache.semindex`); the
  entry then still must be fresh (TTL) and its producing candidate must be in the current request's allowed set,
  exactly like the exact cache. Entries remember the request id that produced them (``source_request_id``).
- The vector computed at lookup is kept until ``release`` so that ``store`` does not embed twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sovrouter.cache.eligibility import request_ineligible_reason
from sovrouter.cache.semindex import SemanticIndex
from sovrouter.cache.verifier import PairVerifier
from sovrouter.contracts import CacheOutcome, Candidate, Detection, ModelResult, NormalizedRequest
from sovrouter.embed import Embedder
from sovrouter.errors import ConfigError
from sovrouter.protocols import Clock


@dataclass(frozen=True)
class Entry:
    source_request_id: str
    expires_ms: float
    result: ModelResult


def partition_key(request: NormalizedRequest) -> str:
    system = [m.text for m in request.messages if m.role in ("system", "developer")]
    body = {
        "tenant": request.tenant,
        "model": request.requested_model,
        "parameters": request.parameters.model_dump(mode="json"),
        "system": system,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True)
class _Pending:
    partition: str
    text: str
    vector: NDArray[np.float32]


class SemanticCache:
    def __init__(self, clock: Clock, embedder: Embedder, verifier: PairVerifier, ttl_s: float = 3600.0,
                 alt_embedder: Embedder | None = None) -> None:
        if verifier.alt_embedder is not None and alt_embedder is None:
            raise ConfigError(f"this pair verifier needs the {verifier.alt_embedder} embedding model as well")
        self.clock = clock
        self.embedder = embedder
        self.alt_embedder = alt_embedder
        self.verifier = verifier
        self.ttl_ms = ttl_s * 1000.0
        self._indexes: dict[str, SemanticIndex[Entry]] = {}
        self._pending: dict[str, _Pending] = {}

    def _prepare(self, request: NormalizedRequest, detection: Detection) -> _Pending | None:
        if request_ineligible_reason(request, detection) is not None:
            return None
        pending = self._pending.get(request.request_id)
        if pending is None:
            text = request.user_text
            vector = self.embedder.embed([text])[0]
            pending = _Pending(partition_key(request), text, vector)
            self._pending[request.request_id] = pending
        return pending

    async def lookup(self, request: NormalizedRequest, detection: Detection,
                     allowed: Sequence[Candidate]) -> tuple[CacheOutcome, ModelResult | None]:
        pending = self._prepare(request, detection)
        if pending is None:
            return CacheOutcome(kind="bypass"), None
        index = self._indexes.get(pending.partition)
        match = index.match(pending.text, pending.vector) if index is not None else None
        if match is None:
            return CacheOutcome(kind="miss"), None
        entry = match.payload
        if entry.expires_ms <= self.clock.now_ms() or entry.result.candidate not in allowed:
            return CacheOutcome(kind="miss"), None  # stale, or produced where this request may not go
        outcome = CacheOutcome(kind="semantic", source_request_id=entry.source_request_id,
                               source_candidate=entry.result.candidate)
        self._pending.pop(request.request_id, None)  # served: no store or release follows for this request
        return outcome, entry.result

    async def store(self, request: NormalizedRequest, detection: Detection, result: ModelResult) -> None:
        if result.finish_reason != "stop" or not result.text:
            return  # truncated or empty answers are never reused
        pending = self._prepare(request, detection)
        if pending is None:
            return
        index = self._indexes.get(pending.partition)
        if index is None:
            index = SemanticIndex(self.verifier, self.embedder.dim, self.alt_embedder)
            self._indexes[pending.partition] = index
        entry = Entry(request.request_id, self.clock.now_ms() + self.ttl_ms, result)
        index.add(pending.text, pending.vector, entry)

    async def release(self, request: NormalizedRequest) -> None:
        self._pending.pop(request.request_id, None)
