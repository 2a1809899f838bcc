"""Intake: media references, refused input, strict types."""

from __future__ import annotations

from typing import Any

import pytest

from sovrouter.cache.exact import cache_key
from sovrouter.errors import InvalidRequestError
from sovrouter.intake import normalize_chat


def _user(*parts: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": list(parts)}]}


def _refs(body: dict[str, Any]) -> list[tuple[str, str | None]]:
    req = normalize_chat(body, tenant="t", request_id="r")
    return [(p.modality, p.ref) for m in req.messages for p in m.parts if p.modality != "text"]


def test_every_media_shape_keeps_its_reference() -> None:
    assert _refs(_user({"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": "low"}},
                       {"type": "image_url", "image_url": "https://x/b.png"},
                       {"type": "input_image", "image_url": "https://x/c.png"},  # the Responses API shape
                       {"type": "video_url", "video_url": {"url": "https://x/v.mp4"}},
                       {"type": "audio_url", "audio_url": {"url": "https://x/s.mp3"}},
                       {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "WAV"}})) == [
        ("image", "https://x/a.png"), ("image", "https://x/b.png"), ("image", "https://x/c.png"),
        ("video", "https://x/v.mp4"), ("audio", "https://x/s.mp3"), ("audio", "data:audio/wav;base64,UklGRg=="),
    ]


def test_two_recordings_never_share_a_cache_key() -> None:
    """The data of an ``input_audio`` part was dropped: two users' different recordings with the same text got
    the same exact-cache key, so the second was answered with the first one's answer."""
    keys = {cache_key(normalize_chat(_user({"type": "text", "text": "what is said here?"},
                                           {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}),
                                     tenant="t", request_id="r"))
            for data in ("QUxJQ0U=", "Qk9C")}
    assert len(keys) == 2


@pytest.mark.parametrize("part", [
    {"type": "image_url"},
    {"type": "image_url", "image_url": {"url": 5}},
    {"type": "image_url", "image_url": {"url": "  "}},
    {"type": "input_image", "file_id": "file-1"},
    {"type": "input_audio", "input_audio": {"data": "AAAA"}},
    {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}},
    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav; rm -rf"}},
    {"type": ["text"], "text": "hi"},
    {"type": None},
])
def test_media_without_a_usable_reference_or_odd_types_are_refused(part: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError) as exc:
        normalize_chat(_user(part), tenant="t", request_id="r")
    assert exc.value.param == "messages"


@pytest.mark.parametrize("body", [
    {"messages": [{"role": "user", "content": "hi \ud800"}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "\udc00"}]}]},
    {"messages": [{"role": "user", "content": "hi"}], "stop": ["ok", "\ud800"]},
    {"messages": [{"role": "user", "content": "hi"}], "metadata": {"\ud800": 1}},
])
def test_lone_surrogates_are_refused_without_quoting_them(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError) as exc:
        normalize_chat(body, tenant="t", request_id="r")
    exc.value.message.encode("utf-8")


@pytest.mark.parametrize(("extra", "param"), [
    ({"stream": "yes"}, "stream"), ({"stream": 1}, "stream"), ({"max_tokens": True}, "max_tokens"),
    ({"temperature": "0.5"}, "temperature"), ({"seed": "12"}, "seed"),
    ({"max_completion_tokens": 0}, "max_completion_tokens"), ({"max_completion_tokens": -1}, "max_completion_tokens"),
    ({"seed": 2**63}, "seed"), ({"seed": -(2**63) - 1}, "seed"), ({"seed": 1e30}, "seed"),  # 64-bit, as upstreams
])
def test_types_are_strict_and_the_param_is_the_field_sent(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as exc:
        normalize_chat({"messages": [{"role": "user", "content": "hi"}], **extra}, tenant="t", request_id="r")
    assert exc.value.param == param


def test_integers_are_still_valid_floats_and_max_completion_tokens_wins() -> None:
    req = normalize_chat({"messages": [{"role": "user", "content": "hi"}], "temperature": 1, "max_tokens": 50,
                          "max_completion_tokens": 20, "seed": 2**63 - 1}, tenant="t", request_id="r")
    assert req.parameters.temperature == 1.0 and req.parameters.max_tokens == 20 and req.parameters.seed == 2**63 - 1


def test_several_choices_are_refused_not_silently_cut_to_one() -> None:
    for n in (2, 0, -1):
        with pytest.raises(InvalidRequestError) as exc:
            normalize_chat({"messages": [{"role": "user", "content": "hi"}], "n": n}, tenant="t", request_id="r")
        assert exc.value.param == "n"
    assert normalize_chat({"messages": [{"role": "user", "content": "hi"}], "n": 1}, tenant="t", request_id="r")


def test_whole_floats_are_valid_integers() -> None:
    """Clients that compute a token budget send ``100.0``: accepted before strict types, and still accepted."""
    req = normalize_chat({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100.0, "seed": 42.0,
                          "n": 1.0}, tenant="t", request_id="r")
    assert req.parameters.max_tokens == 100 and req.parameters.seed == 42
    for bad in (100.5, True, "100"):
        with pytest.raises(InvalidRequestError):
            normalize_chat({"messages": [{"role": "user", "content": "hi"}], "max_tokens": bad}, tenant="t",
                           request_id="r")


_TOOL = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}}}


@pytest.mark.parametrize(("extra", "param"), [
    ({"tool_choice": "required"}, "tool_choice"),  # without tools: as OpenAI's API
    ({"tool_choice": {"type": "function", "function": {"name": "weather"}}}, "tool_choice"),
    ({"functions": [_TOOL["function"]]}, "functions"), ({"function_call": "auto"}, "function_call"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, "response_format"),
    ({"logprobs": True}, "logprobs"), ({"top_logprobs": 3}, "top_logprobs"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"), ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"frequency_penalty": 2.5}, "frequency_penalty"), ({"presence_penalty": -3}, "presence_penalty"),
])
def test_what_cannot_be_honoured_is_refused_not_dropped(extra: dict[str, Any], param: str) -> None:
    """Tools, JSON mode and log-probabilities were silently dropped: an agent got finish_reason "tool_calls" with no
    calls, a JSON-mode client got prose, and both shared a cache entry with a plain request."""
    with pytest.raises(InvalidRequestError) as exc:
        normalize_chat({"messages": [{"role": "user", "content": "hi"}], **extra}, tenant="t", request_id="r")
    assert exc.value.param == param


def test_the_plain_forms_of_those_fields_are_accepted() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "tools": [], "tool_choice": "none",
            "response_format": {"type": "text"}, "logprobs": False, "top_logprobs": 0, "logit_bias": {},
            "parallel_tool_calls": True, "stop": ["a", "b", "c", "d"], "stream": True,
            "stream_options": {"include_usage": True}, "frequency_penalty": 0.5, "presence_penalty": -0.5}
    params = normalize_chat(body, tenant="t", request_id="r").parameters
    assert (params.frequency_penalty, params.presence_penalty, len(params.stop)) == (0.5, -0.5, 4)


def test_tool_calling_is_read_not_refused() -> None:
    """Tools were refused with a 400 until 2026-11-28; now they are read and carried (docs/gateway.md)."""
    turn = {"role": "assistant", "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]}
    req = normalize_chat({"messages": [{"role": "user", "content": "hi"}, turn,
                                       {"role": "tool", "tool_call_id": "c1", "content": "21C"}],
                          "tools": [_TOOL], "tool_choice": "auto", "parallel_tool_calls": False},
                         tenant="t", request_id="r")
    assert req.tooling is not None and [t.name for t in req.tooling.tools] == ["weather"]
    assert (req.tooling.choice, req.tooling.parallel) == ("auto", False)
    assert req.messages[1].tool_calls[0].name == "weather" and req.messages[2].tool_call_id == "c1"
    assert req.messages[2].text == "21C"


@pytest.mark.parametrize("messages", [
    [{"role": "tool", "content": "21C"}],  # no tool_call_id
    [{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "c9", "content": "21C"}],  # no such call
    [{"role": "user", "content": "hi", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]}],  # not an assistant
    [{"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "function": {"name": "w"}}]}],  # no args
    [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "w", "arguments": {"a": 1}}}]}],  # not a string
    [{"role": "assistant", "content": None, "function_call": {"name": "w", "arguments": "{}"}}],  # the older form
])
def test_malformed_tool_turns_are_400_on_messages(messages: list[dict[str, Any]]) -> None:
    with pytest.raises(InvalidRequestError) as exc:
        normalize_chat({"messages": messages}, tenant="t", request_id="r")
    assert exc.value.param == "messages"


def test_cache_keys_of_earlier_versions_stay_valid() -> None:
    """The penalties came later: unset, they are not in the hashed parameters, so stored keys still match."""
    plain = normalize_chat({"messages": [{"role": "user", "content": "hi"}], "seed": 3}, tenant="t", request_id="r")
    assert plain.parameters.key_fields() == {"temperature": None, "top_p": None, "max_tokens": None, "stop": [],
                                             "seed": 3}
    set_ = normalize_chat({"messages": [{"role": "user", "content": "hi"}], "presence_penalty": 1},
                          tenant="t", request_id="r")
    assert set_.parameters.key_fields()["presence_penalty"] == 1.0
    assert "frequency_penalty" not in set_.parameters.key_fields()
