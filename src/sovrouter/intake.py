"""Intake: normalize an OpenAI chat-completions body into a :class:`NormalizedRequest`.

Accepts string content and content-part arrays (``text``, ``image_url``, ``input_image``, ``video_url``,
``input_audio``). Media parts are kept with their modality and their reference (a URL or a data URL; OpenAI's
``input_audio`` ``{data, format}`` becomes ``data:audio/FORMAT;base64,DATA``) so routing can match them to
deployments that serve that modality, and so two different media never share a cache key. A media part with no
usable reference is refused, as is any string (value or key) holding a lone UTF-16 surrogate escape
(``"\\ud800"``): valid JSON, but not text that can be encoded, hashed or forwarded. The tenant is an argument
(from the API key), never read from the body.

Tool calling (``tools``, ``tool_choice``, ``parallel_tool_calls``; assistant turns with ``tool_calls``, ``tool``
turns answering them by ``tool_call_id``) is read into :class:`ToolUse` and the turns' fields, validated as
OpenAI's API does, and served only by deployments that declare ``tools`` (``docs/gateway.md``, "Tool calling").
The older ``functions`` / ``function_call`` are refused with a 400 that names them.

Fields that change what an answer must be and that sovrouter cannot carry to every deployment
(``response_format`` other than text, log-probabilities, ``logit_bias``) are refused with a 400 naming the field,
never dropped: a client that asked for JSON must not get prose it takes for an answer, nor share a cache entry
with a request that did not ask.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from sovrouter.contracts import ContentPart, DataClass, Message, NormalizedRequest, Parameters, ToolCall, ToolUse
from sovrouter.errors import InvalidRequestError
from sovrouter.tooling import read_tool_calls, read_tooling
from sovrouter.unicode import reject_lone_surrogates

_PART_MODALITY = {
    "text": "text",
    "input_text": "text",
    "image_url": "image",
    "input_image": "image",
    "video_url": "video",
    "input_video": "video",
    "input_audio": "audio",
    "audio_url": "audio",
}


_AUDIO_FORMAT = re.compile(r"[A-Za-z0-9.+-]{1,16}")


PART_TYPES = frozenset(_PART_MODALITY)


def _whole(value: Any) -> Any:
    """``100.0`` is 100 (clients that compute a token budget send floats); ``100.5`` or ``true`` stay errors."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


WholeNumber = Annotated[int, BeforeValidator(_whole)]


class ChatBody(BaseModel):
    """The subset of the OpenAI chat-completions body sovrouter reads; unknown fields are ignored. Strict types,
    as OpenAI's API: ``"stream": "yes"`` or ``"max_tokens": true`` is a 400, not silently coerced (an integer is
    still a valid float, and a whole float a valid integer)."""

    model_config = ConfigDict(extra="ignore", strict=True)
    model: str = "auto"
    messages: list[dict[str, Any]] = Field(min_length=1, max_length=1000)
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: WholeNumber | None = None
    max_completion_tokens: WholeNumber | None = None
    stop: str | list[str] | None = None
    seed: WholeNumber | None = None
    n: WholeNumber | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    stream_options: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


def _unsupported(body: dict[str, Any]) -> str | None:
    """The first field of ``body`` asking for what the gateway cannot honour (see the module docstring), or None.
    Their empty or default forms (``tools: []``, ``tool_choice: "none"``, ``response_format: {"type": "text"}``,
    ``logprobs: false``) are accepted: they ask for nothing more than a plain answer."""
    for name in ("functions", "logit_bias"):
        if body.get(name):
            return name
    if body.get("function_call") not in (None, "none"):
        return "function_call"
    response_format = body.get("response_format")
    if response_format is not None and response_format != {"type": "text"}:
        return "response_format"
    if body.get("logprobs") not in (None, False):
        return "logprobs"
    if body.get("top_logprobs") not in (None, 0):
        return "top_logprobs"
    return None


def _check_combinations(chat: ChatBody) -> None:
    """What OpenAI's API also refuses: more than 4 stop sequences, ``stream_options`` on a request that does not
    stream, several choices (one answer per request: silently returning one of ``n`` would mislead)."""
    if chat.n not in (None, 1):
        raise InvalidRequestError("only n=1 is supported", param="n")
    if isinstance(chat.stop, list) and len(chat.stop) > 4:
        raise InvalidRequestError("at most 4 stop sequences are allowed", param="stop")
    if chat.stream_options is not None and not chat.stream:
        raise InvalidRequestError("stream_options is only allowed when stream is true", param="stream_options")


def _part(raw: Any) -> ContentPart:
    if isinstance(raw, str):
        return ContentPart(modality="text", text=raw)
    if not isinstance(raw, dict) or "type" not in raw:
        raise InvalidRequestError("each content part must be an object with a 'type'", param="messages")
    kind = raw["type"]
    modality = _PART_MODALITY.get(kind) if isinstance(kind, str) else None
    if modality is None:
        raise InvalidRequestError("unsupported content part type", param="messages")
    if modality == "text":
        text = raw.get("text")
        if not isinstance(text, str):
            raise InvalidRequestError("a text part needs a string 'text'", param="messages")
        return ContentPart(modality="text", text=text)
    return ContentPart(modality=modality, ref=_media_ref(kind, modality, raw))


def _media_ref(kind: str, modality: str, raw: dict[str, Any]) -> str:
    """The part's reference: its URL (or data URL), or OpenAI's ``input_audio`` data as a data URL."""
    if kind == "input_audio":
        payload = raw.get(kind)
        data = payload.get("data") if isinstance(payload, dict) else None
        fmt = payload.get("format") if isinstance(payload, dict) else None
        if isinstance(data, str) and data and isinstance(fmt, str) and _AUDIO_FORMAT.fullmatch(fmt):
            return f"data:audio/{fmt.lower()};base64,{data}"
        raise InvalidRequestError("an input_audio part needs 'data' (base64) and a 'format'", param="messages")
    # chat-completions shape {"type": "image_url", "image_url": {"url": ...}} (or a bare string), and the
    # Responses shape {"type": "input_image", "image_url": "..."}
    for payload in (raw.get(kind), raw.get(f"{modality}_url")):
        url = payload.get("url") if isinstance(payload, dict) else payload
        if isinstance(url, str) and url.strip():
            return url
    raise InvalidRequestError(f"an {kind} part needs a non-empty URL or data URL", param="messages")


def _message(raw: dict[str, Any], recorded: bool = False) -> Message:
    role = raw.get("role")
    if role not in ("system", "user", "assistant", "tool", "developer"):
        raise InvalidRequestError("each message needs a valid 'role'", param="messages")
    if raw.get("function_call"):
        raise InvalidRequestError("'function_call' in messages is not supported: use 'tool_calls'", param="messages")
    calls: tuple[ToolCall, ...] = ()
    if raw.get("tool_calls") is not None and not (role == "assistant" and raw.get("tool_calls") == []):
        if role != "assistant":
            raise InvalidRequestError("only assistant messages may carry 'tool_calls'", param="messages")
        calls = read_tool_calls(raw["tool_calls"])
    call_id = raw.get("tool_call_id")
    if role == "tool" and recorded:
        call_id = None  # a recorded turn: its calls were kept as text (``Workload.chat_body``), so is the answer
    elif role == "tool":
        if not isinstance(call_id, str) or not call_id:
            raise InvalidRequestError("a tool message needs the 'tool_call_id' it answers", param="messages")
    else:
        call_id = None
    content = raw.get("content")
    if content is None:
        parts: tuple[ContentPart, ...] = (ContentPart(modality="text", text=""),)
    elif isinstance(content, str):
        parts = (ContentPart(modality="text", text=content),)
    elif isinstance(content, list) and content:
        parts = tuple(_part(p) for p in content)
    else:
        raise InvalidRequestError("message content must be a string or a non-empty list of parts",
                                  param="messages")
    return Message(role=role, parts=parts, tool_calls=calls, tool_call_id=call_id)


def _answered_calls_only(messages: tuple[Message, ...]) -> None:
    """As OpenAI's API: a ``tool`` turn answers a call an earlier assistant turn made."""
    made: set[str] = set()
    for m in messages:
        made.update(c.id for c in m.tool_calls)
        if m.role == "tool" and m.tool_call_id not in made:
            raise InvalidRequestError("a tool message must answer a tool call made by an earlier assistant message",
                                      param="messages")


def normalize_chat(
    body: dict[str, Any],
    *,
    tenant: str,
    request_id: str,
    data_class: DataClass = "public",
    arrived_ms: float = 0.0,
    external_id: str | None = None,
    recorded: bool = False,
) -> NormalizedRequest:
    """``recorded``: a conversation from a workload file (replay and the tools that read one), whose turns'
    tool calls were kept as text: a ``tool`` turn is read as text too, without naming the call it answers."""
    reject_lone_surrogates(body)
    if (field := _unsupported(body)) is not None:
        raise InvalidRequestError(f"'{field}' is not supported by this gateway", param=field)
    try:
        chat = ChatBody.model_validate(body)
        _check_combinations(chat)
        params = Parameters(
            temperature=chat.temperature,
            top_p=chat.top_p,
            max_tokens=chat.max_tokens if chat.max_completion_tokens is None else chat.max_completion_tokens,
            stop=(chat.stop,) if isinstance(chat.stop, str) else tuple(chat.stop or ()),
            seed=chat.seed,
            frequency_penalty=chat.frequency_penalty,
            presence_penalty=chat.presence_penalty,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first.get("loc", ())
        where = str(loc[0]) if loc else None  # the field only: deeper parts of a path can be client data
        if where == "max_tokens" and body.get("max_completion_tokens") is not None:
            where = "max_completion_tokens"
        raise InvalidRequestError(f"invalid request body: {first.get('msg', 'invalid value')}",
                                  param=where) from None
    messages = tuple(_message(m, recorded) for m in chat.messages)
    if not recorded:
        _answered_calls_only(messages)
    tooling: ToolUse | None = read_tooling(body)
    return NormalizedRequest(
        request_id=request_id,
        tenant=tenant,
        data_class=data_class,
        messages=messages,
        tooling=tooling,
        parameters=params,
        stream=chat.stream,
        requested_model=chat.model or "auto",
        arrived_ms=arrived_ms,
        external_id=external_id,
    )
