"""Replay adapter: serves the recorded response of the slot it was asked for, on a simulated clock.

It can only return the response of its own slot for the request being served, so a router driven through it
only ever learns the answers of slots it actually called. Latency follows the catalog's profile:
``ttft_ms + output_tokens / tokens_per_s * 1000``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from pydantic import BaseModel

from sovrouter.catalog import Catalog
from sovrouter.contracts import Candidate, ModelCall, ModelResult, StreamChunk
from sovrouter.errors import UpstreamError
from sovrouter.unicode import valid_text


class RecordedResponse(BaseModel):
    response: str
    input_tokens: int
    output_tokens: int


@dataclass
class ReplayAdapter:
    candidate: Candidate
    catalog: Catalog
    responses: Mapping[tuple[str, str], RecordedResponse]  # (workload request id, slot) -> response

    @property
    def target(self) -> Candidate:
        return self.candidate

    async def generate(self, call: ModelCall) -> ModelResult:
        external = call.request.external_id  # the workload's id; "" is an id too (not a missing one)
        key = (call.request.request_id if external is None else external, self.candidate.slot)
        rec = self.responses.get(key)
        if rec is None:
            raise UpstreamError(f"no recorded response for slot {self.candidate.slot}")
        latency = self.catalog.deployment(self.candidate.slot, self.candidate.deployment).latency
        return ModelResult(
            candidate=self.candidate,
            text=valid_text(rec.response),
            input_tokens=rec.input_tokens,
            output_tokens=rec.output_tokens,
            latency_ms=latency.total_ms(rec.output_tokens),
            ttft_ms=latency.ttft_ms,
        )

    async def stream(self, call: ModelCall) -> AsyncIterator[StreamChunk]:
        result = await self.generate(call)
        yield StreamChunk(candidate=self.candidate, delta=result.text)
        yield StreamChunk(candidate=self.candidate, final=result)
