"""The SSE reader after [DONE]: the rest of the body is read to reuse the connection, never at the cost of an answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from sovrouter.adapters import openai_http
from sovrouter.adapters.openai_http import OpenAIHTTPAdapter
from sovrouter.contracts import Candidate, ModelCall
from sovrouter.gateway.server import ServerThread
from sovrouter.intake import normalize_chat
from sovrouter.reliability.timeout import TimeoutAdapter
from sovrouter.testing_upstream import UpstreamBehaviour, create_upstream_app

C = Candidate(slot="sovereign-large", deployment="eu-sov")
ANSWER = "The answer is 42."


@pytest.fixture
def upstream() -> Iterator[tuple[str, UpstreamBehaviour]]:
    b = UpstreamBehaviour(reply=ANSWER, chunks=3)
    with ServerThread(create_upstream_app(b), log_level="critical") as server:
        yield server.url, b


def _call() -> ModelCall:
    req = normalize_chat({"messages": [{"role": "user", "content": "six times seven?"}]}, tenant="t", request_id="r")
    return ModelCall(request=req, allowed=[C])


async def _collect(ad: object, call: ModelCall) -> tuple[str, object]:
    text, final = "", None
    async for chunk in ad.stream(call):  # type: ignore[attr-defined]
        text += chunk.delta
        final = chunk.final or final
    return text, final


async def test_a_deadline_that_falls_in_the_drain_does_not_fail_a_complete_answer(
        upstream: tuple[str, UpstreamBehaviour], monkeypatch: pytest.MonkeyPatch) -> None:
    """[DONE] came well before the timeout wrapper's deadline, but the body stays open: the drain ran into the
    deadline, whose cancellation went through the drain and turned the complete answer into UpstreamTimeoutError
    (and a replica failure). Real DRAIN_S: every call whose [DONE] came less than 50 ms before its deadline.
    DRAIN_S is widened here so the timing is not tight."""
    monkeypatch.setattr(openai_http, "DRAIN_S", 1.0)
    url, b = upstream
    b.linger_after_done_s = 3.0
    ad = OpenAIHTTPAdapter(C, [url])
    try:
        text, final = await _collect(TimeoutAdapter(ad, total_s=0.5), _call())
    finally:
        await ad.aclose()
    assert text == ANSWER and final is not None and final.text == ANSWER  # type: ignore[attr-defined]


async def test_with_time_to_spare_the_drain_still_reuses_the_connection(
        upstream: tuple[str, UpstreamBehaviour]) -> None:
    url, b = upstream
    ad = OpenAIHTTPAdapter(C, [url])
    try:
        for _ in range(4):
            text, _ = await _collect(TimeoutAdapter(ad, total_s=30.0), _call())
            assert text == ANSWER
    finally:
        await ad.aclose()
    assert b.calls == 4 and len(b.peers) == 1


async def test_cancelling_the_caller_during_the_drain_cancels_at_once(
        upstream: tuple[str, UpstreamBehaviour], monkeypatch: pytest.MonkeyPatch) -> None:
    """The drain must not swallow the caller's cancellation (a client gone, a shutdown)."""
    monkeypatch.setattr(openai_http, "DRAIN_S", 5.0)
    url, b = upstream
    b.linger_after_done_s = 10.0
    ad = OpenAIHTTPAdapter(C, [url])
    try:
        task = asyncio.create_task(_collect(ad, _call()))
        await asyncio.sleep(0.5)  # the answer is complete; the drain is waiting on the open body
        assert not task.done()
        t0 = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.perf_counter() - t0 < 1.0
    finally:
        await ad.aclose()


async def test_a_connection_dropped_after_done_keeps_the_answer() -> None:
    """An upstream that drops the connection after [DONE] (no end of the chunked body): the answer stands."""
    sse = (b'data: {"choices":[{"index":0,"delta":{"content":"The answer"},"finish_reason":null}]}\n\n'
           b'data: {"choices":[{"index":0,"delta":{"content":" is 42."},"finish_reason":"stop"}]}\n\n'
           b"data: [DONE]\n\n")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) not in (b"\r\n", b""):
            pass  # headers (the body is not needed)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                     + f"{len(sse):x}\r\n".encode() + sse + b"\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)  # within DRAIN_S
        writer.close()  # no terminating chunk: the client's read of the rest fails (httpx.RemoteProtocolError)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ad = OpenAIHTTPAdapter(C, [f"http://127.0.0.1:{port}"])
    try:
        text, final = await _collect(ad, _call())
    finally:
        await ad.aclose()
        server.close()
    assert text == ANSWER and final is not None and final.text == ANSWER  # type: ignore[attr-defined]
