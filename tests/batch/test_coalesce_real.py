"""Real SmolLM2-135M: concurrent requests to the coalescing adapter share decode steps. Slow: loads the model."""

from __future__ import annotations

import asyncio

import pytest

from sovrouter.batch.coalesce import CoalescingLlamaAdapter
from sovrouter.contracts import Candidate, ModelCall
from sovrouter.intake import normalize_chat
from sovrouter.local_model import find_smollm2_gguf
from tests.conftest import needs_process_without_usearch

pytestmark = pytest.mark.slow

LOCAL = Candidate(slot="local-small", deployment="edge")


def _call(text: str, rid: str, **params: object) -> ModelCall:
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": 16, **params}
    return ModelCall(request=normalize_chat(body, tenant="t", request_id=rid), allowed=[LOCAL])


async def test_concurrent_requests_are_decoded_together() -> None:
    if needs_process_without_usearch(f"{__file__}::test_concurrent_requests_are_decoded_together"):
        return
    adapter = CoalescingLlamaAdapter(LOCAL, find_smollm2_gguf(), slots=4, ctx_per_seq=512)
    try:
        calls = [_call("Name a colour.", "a"), _call("Name a fruit.", "b"), _call("Name an animal.", "c"),
                 _call("Count to three.", "d", stop=["3"]), _call("Say hello.", "e", temperature=0.8, seed=1)]
        results = await asyncio.wait_for(asyncio.gather(*(adapter.generate(c) for c in calls)), timeout=300)
        assert all(r.candidate == LOCAL and r.text.strip() for r in results)
        assert all(1 <= r.output_tokens <= 16 and r.input_tokens > 0 for r in results)
        assert "3" not in results[3].text
        total_tokens = sum(r.output_tokens for r in results)
        # one decode step per token if served one by one; coalesced, steps are shared across sequences
        assert adapter.steps < total_tokens
    finally:
        adapter.close()
