"""Regeneration: a tenant re-asking the same (exact) or nearly the same (normalised text) prompt within a
window. A per-tenant index of recent prompt fingerprints (hashes only, never the text), bounded in size."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass, field

from sovrouter.contracts import Candidate, NormalizedRequest, RequestRecord
from sovrouter.evalloop.signals import Regeneration, SignalStore
from sovrouter.telemetry.metrics import RequestMetrics

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_WS = re.compile(r"\s+")


def normalize(text: str) -> str:
    t = unicodedata.normalize("NFKC", text).casefold()
    return _WS.sub(" ", _PUNCT.sub(" ", t)).strip()


def _h(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass
class _Seen:
    request_id: str
    t_ms: float
    route: Candidate | None


@dataclass
class RegenerationIndex:
    """``observe`` each served or refused request in arrival order; a hit names the earlier request and the
    route that served it (the route the regeneration counts against)."""

    window_ms: float = 10 * 60 * 1000.0
    max_per_tenant: int = 1000
    store: SignalStore | None = None
    metrics: RequestMetrics | None = None
    _index: dict[str, OrderedDict[str, _Seen]] = field(default_factory=dict)

    def observe(self, request: NormalizedRequest, record: RequestRecord) -> Regeneration | None:
        text = request.user_text
        exact, norm = "x" + _h(text), "n" + _h(normalize(text))
        idx = self._index.setdefault(request.tenant, OrderedDict())
        now = request.arrived_ms
        while idx:  # drop expired entries (oldest first)
            key, seen = next(iter(idx.items()))
            if now - seen.t_ms <= self.window_ms and len(idx) <= 2 * self.max_per_tenant:
                break
            idx.pop(key)
        hit: Regeneration | None = None
        earlier: _Seen | None = None
        for key, match in ((exact, "exact"), (norm, "normalized")):
            earlier = idx.get(key)
            if earlier is not None and earlier.request_id != record.request_id:
                route = earlier.route
                hit = Regeneration(request_id=record.request_id, previous_request_id=earlier.request_id,
                                   tenant=request.tenant, slot=route.slot if route else None,
                                   deployment=route.deployment if route else None,
                                   match="exact" if match == "exact" else "normalized", gap_ms=now - earlier.t_ms)
                break
        # Only an answer can be re-asked. A request that failed is retried (OpenAI's clients retry a 5xx on their
        # own), which says nothing of an answer's quality: until 2026-11-28 every outage raised the rate.
        if record.status == "ok":
            entry = _Seen(record.request_id, now, record.final)
            for key in (exact, norm):
                idx.pop(key, None)
                idx[key] = entry
        if hit is not None and earlier is not None:
            if self.store is not None:
                self.store.add_regeneration(hit)
            if self.metrics is not None:
                self.metrics.regeneration(request.tenant, earlier.route)
        return hit
