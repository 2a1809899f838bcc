"""Send each request to a shared cache or to this instance's own cache, by what its tenant allows.

A shared store (Redis, :mod:`sovrouter.cache.redis_exact`) holds answers outside the gateway process, on
whatever host runs it. Writing an answer there is moving data, so it is a sovereignty decision taken before the
cache is touched and failing closed, like every other one: a request's answer may go to the shared store only if

- its tenant is listed in ``cache.shared.tenants`` (an operator's statement that the store's location meets
  that tenant's written policy; no tenant is shared by default),
- no personal data was detected and detection did not fail, and
- its declared class is at most ``cache.shared.max_class`` (default ``internal``).

Everything else uses the instance's local cache (SQLite), exactly as without a shared store. Lookup and store
take the same side for the same request, so an answer is only ever looked for where it may have been written.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sovrouter.contracts import (
    DATA_CLASS_ORDER,
    CacheOutcome,
    Candidate,
    DataClass,
    Detection,
    ModelResult,
    NormalizedRequest,
)
from sovrouter.protocols import AsyncClosable, ResponseCache, merged_gauges


@dataclass(frozen=True)
class SharedScope:
    """Which requests may be cached in the shared store."""

    tenants: frozenset[str]
    max_class: DataClass = "internal"

    @classmethod
    def of(cls, tenants: Collection[str], max_class: DataClass = "internal") -> SharedScope:
        return cls(frozenset(tenants), max_class)

    def admits(self, request: NormalizedRequest, detection: Detection) -> bool:
        return not detection.has_personal_data and self.admits_class(request.tenant, request.data_class)

    def admits_class(self, tenant: str, data_class: DataClass) -> bool:
        """The tenant and class part of the rule (what an entry received from another instance can be checked
        against; that instance checked for personal data before publishing it)."""
        return (tenant in self.tenants
                and DATA_CLASS_ORDER.index(data_class) <= DATA_CLASS_ORDER.index(self.max_class))


class SplitCache:
    """``shared`` for the requests ``scope`` admits, ``local`` for the others. Same Protocol as both."""

    def __init__(self, shared: ResponseCache, local: ResponseCache, scope: SharedScope) -> None:
        self.shared = shared
        self.local = local
        self.scope = scope
        self._side: dict[str, ResponseCache] = {}  # request id -> the cache its lookup used

    def _pick(self, request: NormalizedRequest, detection: Detection) -> ResponseCache:
        return self.shared if self.scope.admits(request, detection) else self.local

    async def lookup(self, request: NormalizedRequest, detection: Detection,
                     allowed: Sequence[Candidate]) -> tuple[CacheOutcome, ModelResult | None]:
        side = self._pick(request, detection)
        outcome, result = await side.lookup(request, detection, allowed)
        if result is None:
            self._side[request.request_id] = side  # store/release go to the same side
        return outcome, result

    async def store(self, request: NormalizedRequest, detection: Detection, result: ModelResult) -> None:
        side = self._side.get(request.request_id) or self._pick(request, detection)
        await side.store(request, detection, result)

    async def release(self, request: NormalizedRequest) -> None:
        side = self._side.pop(request.request_id, None)
        if side is not None:  # else it was served from the cache here, or never looked up: nothing to end
            await side.release(request)

    def cache_gauges(self) -> dict[str, float]:
        return merged_gauges(self.shared, self.local)

    async def aclose(self) -> None:
        for side in (self.shared, self.local):
            if isinstance(side, AsyncClosable):
                await side.aclose()
