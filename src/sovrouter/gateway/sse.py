"""OpenAI chat-completions wire format: the JSON completion, the SSE chunks, the final events.

Every response carries a ``sovrouter`` metadata object (request id, route, cache outcome, cost) next to the
OpenAI fields; clients that do not know it ignore it.
"""

from __future__ import annotations

import json
from typing import Any

from sovrouter.contracts import ModelResult, RequestRecord
from sovrouter.errors import SovrouterError
from sovrouter.store.records import completion_id

DONE = b"data: [DONE]\n\n"


def _dumps(obj: Any) -> bytes:
    # "replace": a lone surrogate that got this far becomes "?" instead of ending the stream mid-flight
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")


def metadata(record: RequestRecord) -> dict[str, Any]:
    final = record.final
    return {
        "request_id": record.request_id,
        "route": {"slot": final.slot, "deployment": final.deployment} if final is not None else None,
        "cache": record.cache.kind,
        "cost_usd": record.cost_usd,
        "fallback_used": record.fallback_used,
        "calls": len(record.calls),
    }


def usage(result: ModelResult) -> dict[str, int]:
    return {"prompt_tokens": result.input_tokens, "completion_tokens": result.output_tokens,
            "total_tokens": result.input_tokens + result.output_tokens}


class ChatFormatter:
    """Formats one response; ``completion_id`` and ``created`` are shared by all its chunks."""

    def __init__(self, request_id: str, created: int) -> None:
        self.id = completion_id(request_id)
        self.created = created

    def completion(self, result: ModelResult, record: RequestRecord) -> bytes:
        message: dict[str, Any] = {"role": "assistant", "content": result.text}
        if result.tool_calls:
            message["content"] = result.text or None  # OpenAI: null content when the turn only calls functions
            message["tool_calls"] = [c.openai() for c in result.tool_calls]
        return _dumps({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": result.candidate.slot,
            "choices": [{"index": 0, "message": message,
                         "logprobs": None, "finish_reason": result.finish_reason}],
            "usage": usage(result),
            "sovrouter": metadata(record),
        })

    def _chunk(self, model: str, delta: dict[str, Any], finish: str | None = None,
               extra: dict[str, Any] | None = None) -> bytes:
        obj: dict[str, Any] = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                               "model": model,
                               "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if extra:
            obj.update(extra)
        return b"data: " + _dumps(obj) + b"\n\n"

    def delta(self, model: str, text: str, first: bool) -> bytes:
        return self._chunk(model, {"role": "assistant", "content": text} if first else {"content": text})

    def tool_calls(self, result: ModelResult, first: bool) -> bytes:
        """The answer's function calls, one chunk each (id, name and whole arguments), as OpenAI streams them."""
        out = b""
        for i, call in enumerate(result.tool_calls):
            delta: dict[str, Any] = {"tool_calls": [{"index": i, **call.openai()}]}
            if first and i == 0:
                delta = {"role": "assistant", "content": None, **delta}
            out += self._chunk(result.candidate.slot, delta)
        return out

    def final(self, result: ModelResult, record: RequestRecord, include_usage: bool) -> bytes:
        """The finishing chunk (with the ``sovrouter`` metadata), the usage chunk if asked, then ``[DONE]``."""
        model = result.candidate.slot
        out = self._chunk(model, {}, result.finish_reason, {"sovrouter": metadata(record)})
        if include_usage:
            out += b"data: " + _dumps({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                                       "model": model, "choices": [], "usage": usage(result)}) + b"\n\n"
        return out + DONE

    @staticmethod
    def error_event(exc: SovrouterError) -> bytes:
        """An explicit error event ending a stream that already started (no ``[DONE]`` follows)."""
        return b"data: " + _dumps(exc.to_openai()) + b"\n\n"
