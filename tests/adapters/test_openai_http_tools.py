"""Tool calling through the HTTP adapter: the offer and the turns go upstream as OpenAI writes them, and the
upstream's calls come back whole (JSON) or gathered from a stream's fragments."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sovrouter.adapters.openai_http import OpenAIHTTPAdapter, request_body
from sovrouter.contracts import Candidate, ModelCall, ModelResult, ToolCall
from sovrouter.errors import UpstreamProtocolError
from sovrouter.gateway.server import ServerThread
from sovrouter.intake import normalize_chat
from sovrouter.testing_upstream import UpstreamBehaviour, create_upstream_app

C = Candidate(slot="frontier", deployment="us")
WEATHER = {"type": "function", "function": {"name": "get_weather",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"}}}}}
ARGS = '{"city": "Paris", "unit": "celsius"}'


@pytest.fixture
def upstream() -> Iterator[tuple[str, UpstreamBehaviour]]:
    b = UpstreamBehaviour(reply="plain", chunks=3, tool_calls=[{"name": "get_weather", "arguments": ARGS}])
    with ServerThread(create_upstream_app(b), log_level="critical") as server:
        yield server.url, b


def _call(**extra: Any) -> ModelCall:
    body = {"messages": [{"role": "user", "content": "weather in Paris?"}], "tools": [WEATHER], **extra}
    return ModelCall(request=normalize_chat(body, tenant="t", request_id="r"), allowed=[C])


def test_the_offer_and_the_turns_go_upstream_as_openai_writes_them() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": ARGS}}
    req = normalize_chat({"messages": [{"role": "user", "content": "weather in Paris?"},
                                       {"role": "assistant", "content": None, "tool_calls": [call]},
                                       {"role": "tool", "tool_call_id": "c1", "content": "21C"}],
                          "tools": [WEATHER], "tool_choice": "auto", "parallel_tool_calls": False},
                         tenant="t", request_id="r")
    body = request_body(req, "m", stream=False)
    assert body["tools"] == [WEATHER] and body["tool_choice"] == "auto" and body["parallel_tool_calls"] is False
    assert body["messages"][1] == {"role": "assistant", "content": None, "tool_calls": [call]}
    assert body["messages"][2] == {"role": "tool", "content": "21C", "tool_call_id": "c1"}
    plain = request_body(normalize_chat({"messages": [{"role": "user", "content": "hi"}]}, tenant="t",
                                        request_id="r"), "m", stream=False)
    assert "tools" not in plain and "tool_calls" not in plain["messages"][0]


async def test_generate_returns_the_calls(upstream: tuple[str, UpstreamBehaviour]) -> None:
    url, b = upstream
    ad = OpenAIHTTPAdapter(C, [url])
    try:
        result = await ad.generate(_call(tool_choice={"type": "function", "function": {"name": "get_weather"}}))
    finally:
        await ad.aclose()
    assert b.last_body is not None and b.last_body["tool_choice"]["function"]["name"] == "get_weather"
    assert result.text == "" and result.finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in result.tool_calls] == [("get_weather", ARGS)]
    assert result.tool_calls[0].id.startswith("call_")


async def test_a_stream_gathers_the_fragments_and_still_reports_its_first_token(
        upstream: tuple[str, UpstreamBehaviour]) -> None:
    url, _ = upstream
    ad = OpenAIHTTPAdapter(C, [url])
    early: list[str] = []
    final: ModelResult | None = None
    try:
        async for chunk in ad.stream(_call()):
            if chunk.final is None:
                early.append(chunk.delta)
            else:
                final = chunk.final
    finally:
        await ad.aclose()
    # the fragments are not shown as text, but chunks flow (first-token deadlines see the answer begin)
    assert early and all(d == "" for d in early)
    assert final is not None and final.ttft_ms is not None and final.finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in final.tool_calls] == [("get_weather", ARGS)]


def _sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def _delta(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


async def _via(content: bytes, stream: bool) -> ModelResult:
    def handler(request: httpx.Request) -> httpx.Response:
        kind = "text/event-stream" if stream else "application/json"
        return httpx.Response(200, content=content, headers={"content-type": kind})

    ad = OpenAIHTTPAdapter(C, ["http://up.test"], client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    try:
        if not stream:
            return await ad.generate(_call())
        final = None
        async for chunk in ad.stream(_call()):
            final = chunk.final or final
        assert final is not None
        return final
    finally:
        await ad.client.aclose()


async def test_a_server_that_says_stop_after_calling_is_read_as_tool_calls() -> None:
    """llama.cpp's server has answered calls with finish_reason "stop"; OpenAI clients read the reason."""
    completion = {"choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": "", "tool_calls": [
            {"id": "x", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}}]}
    result = await _via(json.dumps(completion).encode(), stream=False)
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls == (ToolCall(id="x", name="get_weather", arguments='{"city":"Paris"}'),)
    streamed = await _via(_sse(
        _delta({"tool_calls": [{"index": 0, "id": "y", "function": {"name": "get_weather", "arguments": "{}"}}]}),
        _delta({}, "stop")), stream=True)
    assert streamed.finish_reason == "tool_calls" and streamed.tool_calls[0].id == "y"


@pytest.mark.parametrize("events", [
    (_delta({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}), _delta({}, "tool_calls")),  # no name
    (_delta({"tool_calls": {"index": 0}}), _delta({}, "tool_calls")),  # not a list
    (_delta({"tool_calls": [{"index": "0", "function": {"name": "f"}}]}), _delta({}, "tool_calls")),
])
async def test_a_malformed_streamed_call_is_a_protocol_error(events: tuple[dict[str, Any], ...]) -> None:
    with pytest.raises(UpstreamProtocolError):
        await _via(_sse(*events), stream=True)


async def test_a_malformed_call_in_a_completion_is_a_protocol_error() -> None:
    completion = {"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "tool_calls": [{"id": "x", "type": "function"}]}}]}
    with pytest.raises(UpstreamProtocolError):
        await _via(json.dumps(completion).encode(), stream=False)
