"""Exact cache first, then the semantic cache; stores into both. Same :class:`ResponseCache` Protocol."""

from __future__ import annotations

from collections.abc import Sequence

from sovrouter.contracts import CacheOutcome, Candidate, Detection, ModelResult, NormalizedRequest
from sovrouter.protocols import AsyncClosable, ResponseCache, merged_gauges


class LayeredCache:
    def __init__(self, exact: ResponseCache, semantic: ResponseCache) -> None:
        self.exact = exact
        self.semantic = semantic

    async def lookup(self, request: NormalizedRequest, detection: Detection,
                     allowed: Sequence[Candidate]) -> tuple[CacheOutcome, ModelResult | None]:
        outcome, result = await self.exact.lookup(request, detection, allowed)
        if result is not None:
            return outcome, result
        try:
            s_outcome, s_result = await self.semantic.lookup(request, detection, allowed)
        except BaseException:  # the exact miss leads its key's single flight: end it, or identical requests hang
            await self.release(request)
            raise
        if s_result is None:
            # the exact layer's miss (and its single-flight lead) stands; with the exact layer off, the semantic
            # layer's outcome says what happened (a miss there is a miss, not a bypass)
            return (s_outcome if outcome.kind == "bypass" else outcome), None
        # Served without an upstream call: the pipeline will not release, so end the exact lead here.
        await self.exact.release(request)
        await self.semantic.release(request)
        return s_outcome, s_result

    async def store(self, request: NormalizedRequest, detection: Detection, result: ModelResult) -> None:
        await self.exact.store(request, detection, result)
        await self.semantic.store(request, detection, result)

    async def release(self, request: NormalizedRequest) -> None:
        await self.exact.release(request)
        await self.semantic.release(request)

    def cache_gauges(self) -> dict[str, float]:
        return merged_gauges(self.exact, self.semantic)

    async def aclose(self) -> None:
        for layer in (self.exact, self.semantic):
            if isinstance(layer, AsyncClosable):
                await layer.aclose()

