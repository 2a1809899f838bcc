"""Tool calling end to end: the official ``openai`` client, the gateway, real upstreams on loopback. Only the
deployments the catalog declares ``tools`` serve a request that offers tools."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from gateway_harness import ACME_KEY, DATA, Live, live_gateway

WEATHER: Any = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ARGS = '{"city": "Paris"}'
ASK: Any = [{"role": "user", "content": "What is the weather in Paris?"}]


def _catalog(tmp: Path, capable: set[str]) -> Path:
    models = json.loads((DATA / "models.json").read_text())
    for slot in models["slots"]:
        for dep in slot["deployments"]:
            dep["tools"] = f"{slot['id']}/{dep['id']}" in capable
    path = tmp / "models.json"
    path.write_text(json.dumps(models))
    return path


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    # sovereign-large/eu-sov, the baseline's first choice for this tenant, does not declare tools
    with live_gateway(tmp_path / "state", catalog=_catalog(tmp_path, {"frontier/us"})) as gateway:
        for up in (gateway.primary, gateway.backup):
            up.tool_calls = [{"name": "get_weather", "arguments": ARGS}]
        yield gateway


def test_a_call_comes_back_from_a_deployment_that_declares_tools(live: Live) -> None:
    raw = live.client().chat.completions.with_raw_response.create(model="auto", messages=ASK, tools=[WEATHER],
                                                                   tool_choice="auto")
    completion = raw.parse()
    choice = completion.choices[0]
    assert raw.headers["x-sovrouter-route"] == "frontier/us"
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert (call.type, call.function.name, call.function.arguments) == ("function", "get_weather", ARGS)
    assert live.primary.calls == 0
    sent = live.backup.last_body
    assert sent is not None and sent["tools"] == [WEATHER] and sent["tool_choice"] == "auto"
    records = live.records()
    assert records[-1].status == "ok" and records[-1].final is not None
    assert records[-1].final.key == "frontier/us"


def test_a_streamed_call_is_assembled_by_the_client(live: Live) -> None:
    stream = live.client().chat.completions.create(model="auto", messages=ASK, tools=[WEATHER], stream=True)
    name, args, ids, finish = "", "", set(), None
    for chunk in stream:
        if not chunk.choices:
            continue
        for frag in chunk.choices[0].delta.tool_calls or []:
            if frag.id:
                ids.add(frag.id)
            if frag.function is not None:
                name += frag.function.name or ""
                args += frag.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert (name, args, finish) == ("get_weather", ARGS, "tool_calls") and len(ids) == 1
    assert live.records()[-1].status == "ok"


def test_an_allowed_tools_choice_reaches_the_upstream_as_the_cut_offer(live: Live) -> None:
    """OpenAI's ``allowed_tools`` through the official client; llama.cpp and vLLM do not read it, so the upstream
    gets the offer cut to the allowed functions with the mode as ``tool_choice``."""
    book: Any = {"type": "function", "function": {"name": "book_table", "parameters": {"type": "object"}}}
    choice: Any = {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
        {"type": "function", "function": {"name": "get_weather"}}]}}
    client = live.client()
    completion = client.chat.completions.create(model="auto", messages=ASK, tools=[WEATHER, book], tool_choice=choice)
    assert completion.choices[0].message.tool_calls is not None
    sent = live.backup.last_body
    assert sent is not None and sent["tools"] == [WEATHER] and sent["tool_choice"] == "required"
    widened: Any = {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
        {"type": "function", "function": {"name": "get_weather"}},
        {"type": "function", "function": {"name": "book_table"}}]}}
    again = client.chat.completions.with_raw_response.create(model="auto", messages=ASK, tools=[WEATHER, book],
                                                             tool_choice=widened)
    assert again.headers["x-sovrouter-cache"] == "miss"  # another allowed set is not the same request
    sent = live.backup.last_body
    assert sent is not None and sent["tools"] == [WEATHER, book]


def test_the_tool_result_turn_goes_upstream_and_the_answer_comes_back(live: Live) -> None:
    client = live.client()
    first = client.chat.completions.create(model="auto", messages=ASK, tools=[WEATHER])
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    live.backup.tool_calls = None  # the model answers in words once it has the result
    follow: Any = [*ASK, first.choices[0].message.model_dump(exclude_none=True),
                   {"role": "tool", "tool_call_id": call.id, "content": "21C and sunny"}]
    second = client.chat.completions.create(model="auto", messages=follow, tools=[WEATHER])
    assert second.choices[0].message.content == "backup answer"
    assert second.choices[0].finish_reason == "stop"
    sent = live.backup.last_body
    assert sent is not None
    assert sent["messages"][1]["tool_calls"][0]["id"] == call.id
    assert sent["messages"][2] == {"role": "tool", "content": "21C and sunny", "tool_call_id": call.id}


def test_a_repeated_call_is_an_exact_hit_and_other_tools_are_a_miss(live: Live) -> None:
    client = live.client()
    client.chat.completions.create(model="auto", messages=ASK, tools=[WEATHER])
    again = client.chat.completions.with_raw_response.create(model="auto", messages=ASK, tools=[WEATHER])
    assert again.headers["x-sovrouter-cache"] == "exact"
    assert again.parse().choices[0].message.tool_calls[0].function.arguments == ARGS  # type: ignore[index]
    other = {**WEATHER, "function": {**WEATHER["function"], "description": "Forecast for a city"}}
    miss = client.chat.completions.with_raw_response.create(model="auto", messages=ASK, tools=[other])
    plain = client.chat.completions.with_raw_response.create(model="auto", messages=ASK)
    assert miss.headers["x-sovrouter-cache"] == "miss" and plain.headers["x-sovrouter-cache"] == "miss"
    assert plain.parse().choices[0].message.tool_calls is None
    assert live.backup.calls == 2 and live.primary.calls == 1  # the plain ask goes to the baseline's first choice


def test_without_a_capable_deployment_tools_are_a_clear_400(tmp_path: Path) -> None:
    with live_gateway(tmp_path / "state") as live:  # the demo catalog declares no tools
        with pytest.raises(openai.BadRequestError) as exc:
            live.client().chat.completions.create(model="auto", messages=ASK, tools=[WEATHER])
        body: Any = exc.value.body
        assert body["code"] == "tools_not_supported" and body["param"] == "tools"
        assert "Paris" not in json.dumps(body)
        call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": ARGS}}
        follow: Any = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call]},
                       {"role": "tool", "tool_call_id": "c1", "content": "21C"}]
        with pytest.raises(openai.BadRequestError) as exc:  # a follow-up without the offer: the turns are named
            live.client().chat.completions.create(model="auto", messages=follow)
        body = exc.value.body
        assert body["code"] == "tools_not_supported" and body["param"] == "messages"
        assert live.primary.calls == live.backup.calls == 0
        assert [r.error_code for r in live.records()] == ["tools_not_supported"] * 2


def test_a_follow_up_without_the_offer_still_goes_only_to_tool_capable_deployments(live: Live) -> None:
    """A client that left ``tools`` out of the follow-up still sends the calls and their results: it went to a
    deployment declaring no tool calling (the local llama.cpp path drops the calls silently)."""
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ARGS}}
    follow: Any = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call]},
                   {"role": "tool", "tool_call_id": "call_1", "content": "21C and sunny"}]
    live.backup.tool_calls = None
    raw = live.client().chat.completions.with_raw_response.create(model="auto", messages=follow)
    assert raw.headers["x-sovrouter-route"] == "frontier/us" and live.primary.calls == 0


def test_without_usage_a_call_is_billed_for_what_was_sent_and_generated(live: Live) -> None:
    """A call-only answer was 0 output tokens, and the input estimate left the offer out."""
    live.backup.usage = False
    live.backup.tool_calls = [{"name": "get_weather", "arguments": json.dumps({"city": "Paris", "note": "x" * 400})}]
    out = live.client().chat.completions.create(model="auto", messages=ASK, tools=[WEATHER])
    assert out.usage is not None and out.usage.completion_tokens >= 100
    offered = len(ASK[0]["content"]) + len(WEATHER["function"]["description"]) + len("get_weather")
    assert out.usage.prompt_tokens >= offered // 4  # the offer counts, not only the question


def test_a_tool_stream_that_fails_before_showing_anything_falls_back(tmp_path: Path) -> None:
    """The gathered fragments' empty chunks counted as a started answer: no fallback, and the client got a 200
    stream ending in an error event although nothing had been shown."""
    capable = {"frontier/us", "sovereign-large/eu-sov"}
    with live_gateway(tmp_path / "state", catalog=_catalog(tmp_path, capable)) as live:
        for up in (live.primary, live.backup):
            up.tool_calls = [{"name": "get_weather", "arguments": ARGS}]
        live.primary.mode = "die_mid_stream"
        stream = live.client().chat.completions.create(model="auto", messages=ASK, tools=[WEATHER], stream=True)
        args = "".join(f.function.arguments or "" for c in stream if c.choices
                       for f in c.choices[0].delta.tool_calls or [] if f.function)
        assert args == ARGS
        record = live.records()[-1]
        assert record.status == "ok" and record.fallback_used and record.final is not None
        assert record.final.key == "frontier/us"
        live.backup.mode = "die_mid_stream"  # both fail: a JSON error, not a 200 stream that ends in an error
        other: Any = [{"role": "user", "content": "And in Lyon?"}]  # (the first answer is cached)
        with pytest.raises(openai.APIStatusError) as exc:
            live.client().chat.completions.create(model="auto", messages=other, tools=[WEATHER], stream=True)
        assert exc.value.status_code == 502


def test_a_tool_schema_nested_near_the_parsers_depth_is_a_400_with_its_record(tmp_path: Path) -> None:
    """Accepted at intake, the schema is parsed again when the call is forwarded, at a deeper stack: a
    RecursionError there was a 500, and the request had no record."""
    import httpx

    with live_gateway(tmp_path / "state", catalog=_catalog(tmp_path, {"frontier/us"}),
                      max_body_bytes=100_000) as live:
        depth = 960
        schema = '{"a":' * depth + "1" + "}" * depth
        raw = ('{"model":"auto","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function",'
               '"function":{"name":"f","parameters":' + schema + '}}]}')
        r = httpx.post(live.url + "/v1/chat/completions", content=raw.encode(), timeout=20,
                       headers={"Authorization": f"Bearer {ACME_KEY}", "Content-Type": "application/json"})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "tools"
        (record,) = live.records()
        assert record.status == "error" and record.error_code == "invalid_request"
