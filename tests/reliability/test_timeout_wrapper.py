from __future__ import annotations

import asyncio

import pytest

from sovrouter.contracts import Candidate, ModelCall
from sovrouter.errors import UpstreamTimeoutError
from sovrouter.intake import normalize_chat
from sovrouter.reliability.timeout import TimeoutAdapter
from sovrouter.testing import FakeAdapter, FlakyAdapter

C = Candidate(slot="s", deployment="d")


def _call() -> ModelCall:
    req = normalize_chat({"messages": [{"role": "user", "content": "hi"}]}, tenant="t", request_id="r")
    return ModelCall(request=req, allowed=[C])


async def test_generate_within_deadline_passes() -> None:
    out = await TimeoutAdapter(FakeAdapter(C, text="fine", delay_s=0.01), total_s=1.0).generate(_call())
    assert out.text == "fine"


async def test_generate_past_deadline_raises_timeout() -> None:
    with pytest.raises(UpstreamTimeoutError):
        await TimeoutAdapter(FakeAdapter(C, delay_s=1.0), total_s=0.05).generate(_call())


async def test_stream_first_token_deadline() -> None:
    ad = TimeoutAdapter(FakeAdapter(C, delay_s=1.0), total_s=5.0, first_token_s=0.05)
    with pytest.raises(UpstreamTimeoutError, match="first token"):
        async for _ in ad.stream(_call()):
            pass


async def test_stream_total_deadline_after_first_token() -> None:
    ad = TimeoutAdapter(FlakyAdapter(C, fail_times=0, text="abcdefghijklmnopqrst", chunk_delay_s=0.05),
                        total_s=0.4, first_token_s=5.0)
    got: list[str] = []
    with pytest.raises(UpstreamTimeoutError, match="answer"):
        async for chunk in ad.stream(_call()):
            got.append(chunk.delta)
    assert 1 <= len(got) < 20  # some chunks came, then the total deadline cut it with an error


async def test_consumer_time_is_not_counted_against_first_token() -> None:
    ad = TimeoutAdapter(FakeAdapter(C, text="abc", chunks=3), total_s=5.0, first_token_s=0.2)
    chunks = []
    async for chunk in ad.stream(_call()):
        await asyncio.sleep(0.3)  # slower than the first-token limit, between chunks: fine
        chunks.append(chunk)
    assert chunks[-1].final is not None


def test_rejects_non_positive_limits() -> None:
    with pytest.raises(ValueError):
        TimeoutAdapter(FakeAdapter(C), total_s=0)
