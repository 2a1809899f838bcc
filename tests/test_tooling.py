"""Tool calling on the wire: the client's offer (strict, as OpenAI's API) and an upstream's calls (lenient)."""

from __future__ import annotations

from typing import Any

import pytest

from sovrouter.contracts import Message, NormalizedRequest, ToolCall
from sovrouter.errors import InvalidRequestError
from sovrouter.intake import normalize_chat
from sovrouter.tooling import ToolCallFragments, read_tooling, upstream_calls

_WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                             "parameters": {"type": "object",
                                                            "properties": {"city": {"type": "string"}}}}}


def _body(**extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "weather in Paris?"}], **extra}


def test_an_offer_is_read_and_written_back_as_openai_writes_it() -> None:
    use = read_tooling(_body(tools=[_WEATHER], tool_choice="required", parallel_tool_calls=True))
    assert use is not None
    assert use.openai() == {"tools": [_WEATHER], "tool_choice": "required", "parallel_tool_calls": True}
    forced = read_tooling(_body(tools=[_WEATHER],
                                tool_choice={"type": "function", "function": {"name": "get_weather"}}))
    assert forced is not None and forced.forced == "get_weather"
    assert forced.openai()["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


_BOOK = {"type": "function", "function": {"name": "book_table", "parameters": {"type": "object"}}}


def test_an_allowed_tools_choice_sends_only_the_allowed_functions_with_its_mode() -> None:
    """OpenAI's ``allowed_tools``: the whole offer stays (its prompt prefix), the model may call only the listed
    functions. Upstreams that do not read it get the offer cut to those functions and the mode as the choice."""
    choice = {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
        {"type": "function", "function": {"name": "book_table"}},
        {"type": "function", "function": {"name": "book_table"}}]}}
    use = read_tooling(_body(tools=[_WEATHER, _BOOK], tool_choice=choice))
    assert use is not None and use.allowed == ("book_table",) and use.choice == "required"
    assert use.openai() == {"tools": [_BOOK], "tool_choice": "required"}
    assert "get_weather" in use.text  # detection still reads the whole offer
    other = read_tooling(_body(tools=[_WEATHER, _BOOK], tool_choice={
        "type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [
            {"type": "function", "function": {"name": "get_weather"}}]}}))
    assert other is not None and other.openai() == {"tools": [_WEATHER], "tool_choice": "auto"}
    assert other != use  # another allowed set is another cache key


def test_no_tools_means_no_tool_use() -> None:
    for body in (_body(), _body(tools=[]), _body(tools=None), _body(tools=[], tool_choice="none"),
                 _body(parallel_tool_calls=False)):
        assert read_tooling(body) is None


def test_the_same_schema_written_in_another_key_order_is_the_same_offer() -> None:
    a = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "required": ["x"]}}}
    b = {"type": "function", "function": {"parameters": {"required": ["x"], "type": "object"}, "name": "f"}}
    assert read_tooling(_body(tools=[a])) == read_tooling(_body(tools=[b]))


@pytest.mark.parametrize(("extra", "param"), [
    ({"tools": {"type": "function"}}, "tools"),
    ({"tools": [{"type": "retrieval"}]}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "has space"}}]}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "x" * 65}}]}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "not a schema"}}]}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "f", "description": 3}}]}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "f", "strict": "yes"}}]}, "tools"),
    ({"tools": [_WEATHER, _WEATHER]}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": f"f{i}"}} for i in range(129)]}, "tools"),
    ({"tools": [_WEATHER], "tool_choice": "always"}, "tool_choice"),
    ({"tools": [_WEATHER], "tool_choice": {"type": "function", "function": {"name": "other"}}}, "tool_choice"),
    ({"tools": [_WEATHER], "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
    ({"tools": [_WEATHER], "tool_choice": {"type": "allowed_tools"}}, "tool_choice"),
    ({"tools": [_WEATHER], "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "none", "tools": [
        {"type": "function", "function": {"name": "get_weather"}}]}}}, "tool_choice"),
    ({"tools": [_WEATHER], "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}},
     "tool_choice"),
    ({"tools": [_WEATHER], "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [
        {"type": "function", "function": {"name": "other"}}]}}}, "tool_choice"),
    ({"tools": [_WEATHER], "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [
        "get_weather"]}}}, "tool_choice"),
    ({"tool_choice": "auto"}, "tool_choice"),
])
def test_a_malformed_offer_is_a_400_naming_the_field(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as exc:
        normalize_chat(_body(**extra), tenant="t", request_id="r")
    assert exc.value.param == param
    assert "Paris" not in exc.value.message and "get_weather" not in exc.value.message


def test_what_detection_reads_includes_every_tool_string_sent_upstream() -> None:
    """A call's arguments, a tool's answer and the functions' descriptions leave with the request."""
    req = normalize_chat({
        "messages": [{"role": "user", "content": "book it"},
                     {"role": "assistant", "content": None, "tool_calls": [
                         {"id": "c1", "type": "function",
                          "function": {"name": "book", "arguments": '{"email": "jane.doe@example.com"}'}}]},
                     {"role": "tool", "tool_call_id": "c1", "content": "booked for Jane Doe"}],
        "tools": [{"type": "function", "function": {"name": "book", "description": "Book for +33 6 12 34 56 78",
                                                    "parameters": {"type": "object"}}}]},
        tenant="t", request_id="r")
    text = req.forwarded_text
    for piece in ("jane.doe@example.com", "booked for Jane Doe", "+33 6 12 34 56 78", "type: object"):
        assert piece in text


def test_a_plain_turn_hashes_as_before_tool_calling_existed() -> None:
    turn = Message.model_validate({"role": "user", "parts": [{"modality": "text", "text": "hi"}]})
    assert turn.key_fields() == {"role": "user", "parts": [{"modality": "text", "text": "hi", "ref": None}]}
    called = turn.model_copy(update={"role": "assistant", "tool_calls": (ToolCall(id="c", name="f"),)})
    assert "tool_calls" in called.key_fields()


def test_prompt_text_is_unchanged_by_tool_fields() -> None:
    """Classification reads the turns' text only (what the router was trained on)."""
    plain = NormalizedRequest(request_id="r", tenant="t", messages=(
        Message.model_validate({"role": "user", "parts": [{"modality": "text", "text": "hi"}]}),))
    offered = normalize_chat({"messages": [{"role": "user", "content": "hi"}], "tools": [_WEATHER]},
                             tenant="t", request_id="r")
    assert offered.prompt_text == plain.prompt_text == "hi"


def test_upstream_calls_are_read_leniently() -> None:
    calls = upstream_calls({"tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
        {"function": {"name": "g", "arguments": {"y": 2}}},  # no id, arguments as an object
    ]})
    assert calls[0] == ToolCall(id="a", name="f", arguments='{"x": 1}')
    assert calls[1].name == "g" and calls[1].arguments == '{"y":2}' and calls[1].id.startswith("call_")
    assert upstream_calls({"content": "hi"}) == () and upstream_calls({"tool_calls": None}) == ()
    for bad in ({"tool_calls": "f"}, {"tool_calls": [{"id": "a"}]}, {"tool_calls": [{"function": {"name": ""}}]}):
        with pytest.raises((TypeError, KeyError)):
            upstream_calls(bad)


def test_stream_fragments_are_gathered_by_index() -> None:
    frags = ToolCallFragments()
    assert not frags.feed(None)
    assert frags.feed([{"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": ""}}])
    assert frags.feed([{"index": 1, "id": "b", "function": {"name": "g", "arguments": "{"}}])
    frags.feed([{"index": 0, "function": {"arguments": '{"x"'}}])
    frags.feed([{"index": 0, "function": {"arguments": ": 1}"}}, {"index": 1, "function": {"arguments": "}"}}])
    assert frags.calls() == (ToolCall(id="a", name="f", arguments='{"x": 1}'), ToolCall(id="b", name="g",
                                                                                        arguments="{}"))
    nameless = ToolCallFragments()
    nameless.feed([{"index": 0, "function": {"arguments": "{}"}}])
    with pytest.raises(TypeError):
        nameless.calls()
    with pytest.raises(TypeError):
        ToolCallFragments().feed([{"index": -1}])
