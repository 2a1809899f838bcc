"""Intake: normalize an OpenAI chat-completions body into a :class:`NormalizedRequest`.

Accepts string content and content-part arrays (``text``, ``image_url``, ``input_image``, ``video_url``,
``input_audio``). Media parts are kept with their modality so routing can match them to deployments that
serve that modality. The tenant is an argument (from the API key), never read from the body.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sovrouter.contracts import ContentPart, DataClass, Message, NormalizedRequest, Parameters
from sovrouter.errors import InvalidRequestError

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


class ChatBody(BaseModel):
    """The subset of the OpenAI chat-completions body sovrouter reads; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str = "auto"
    messages: list[dict[str, Any]] = Field(min_length=1, max_length=1000)
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    metadata: dict[str, Any] | None = None


def _part(raw: Any) -> ContentPart:
    if isinstance(raw, str):
        return ContentPart(modality="text", text=raw)
    if not isinstance(raw, dict) or "type" not in raw:
        raise InvalidRequestError("each content part must be an object with a 'type'", param="messages")
    kind = raw["type"]
    modality = _PART_MODALITY.get(kind)
    if modality is None:
        raise InvalidRequestError("unsupported content part type", param="messages")
    if modality == "text":
        text = raw.get("text")
        if not isinstance(text, str):
            raise InvalidRequestError("a text part needs a string 'text'", param="messages")
        return ContentPart(modality="text", text=text)
    payload = raw.get(kind)
    ref = payload.get("url") if isinstance(payload, dict) else payload if isinstance(payload, str) else None
    return ContentPart(modality=modality, ref=ref if isinstance(ref, str) else None)


def _message(raw: dict[str, Any]) -> Message:
    role = raw.get("role")
    if role not in ("system", "user", "assistant", "tool", "developer"):
        raise InvalidRequestError("each message needs a valid 'role'", param="messages")
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
    return Message(role=role, parts=parts)


def normalize_chat(
    body: dict[str, Any],
    *,
    tenant: str,
    request_id: str,
    data_class: DataClass = "public",
    arrived_ms: float = 0.0,
    external_id: str | None = None,
) -> NormalizedRequest:
    try:
        chat = ChatBody.model_validate(body)
        params = Parameters(
            temperature=chat.temperature,
            top_p=chat.top_p,
            max_tokens=chat.max_completion_tokens or chat.max_tokens,
            stop=(chat.stop,) if isinstance(chat.stop, str) else tuple(chat.stop or ()),
            seed=chat.seed,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or None
        raise InvalidRequestError(f"invalid request body: {first.get('msg', 'invalid value')}",
                                  param=where) from None
    return NormalizedRequest(
        request_id=request_id,
        tenant=tenant,
        data_class=data_class,
        messages=tuple(_message(m) for m in chat.messages),
        parameters=params,
        stream=chat.stream,
        requested_model=chat.model or "auto",
        arrived_ms=arrived_ms,
        external_id=external_id,
    )
