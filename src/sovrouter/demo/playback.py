"""Recorded-playback upstream: a real OpenAI-compatible HTTP server answering with recorded responses.

One server stands in for every recorded deployment; the request's ``model`` field selects it as
``slot/deployment`` (or just ``slot``, meaning its first deployment in the catalog). The answer is the slot's
recorded response to the prompt (matched on the text of the user messages, see :func:`sample.prompt_key`),
with the recorded token counts as ``usage``. Timing follows the catalog's latency profile of that deployment,
scaled down by ``latency_scale`` (``0.05``: a 5 s answer takes 250 ms) so the demo stays quick:
first token after ``ttft_ms * scale``, then chunks of ``chunk_tokens`` tokens at ``tokens_per_s / scale``.

A prompt with no recording gets ``404`` (``code: not_recorded``), an unknown model ``404`` (``model_not_found``),
a malformed body ``400``: OpenAI-style JSON, never an invented answer.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from sovrouter.adapters.replay import RecordedResponse
from sovrouter.catalog import Deployment
from sovrouter.demo.sample import DemoSample, prompt_key


class PlaybackBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None


class PlaybackError(Exception):
    """An error answer of the playback server (OpenAI-style body)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> JSONResponse:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return JSONResponse({"error": {"message": self.message, "type": kind, "param": None, "code": self.code}},
                            status_code=self.status)


def _chunk(cid: str, created: int, model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
           "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n\n"


class Playback:
    """The state of one playback server: the sample, its prompt index and the latency scaling."""

    def __init__(self, sample: DemoSample, latency_scale: float = 0.05, chunk_tokens: int = 8,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if latency_scale < 0:
            raise ValueError("latency_scale must be >= 0")
        self.sample = sample
        self.latency_scale = latency_scale
        self.chunk_tokens = max(1, chunk_tokens)
        self.sleep = sleep
        self.index = sample.by_prompt()
        self.slots = {slot for _, slot in sample.responses}
        self.calls = 0

    def models(self) -> list[str]:
        return [f"{s.id}/{d.id}" for s, d in self.sample.catalog.pairs() if s.id in self.slots]

    def resolve(self, model: str) -> tuple[str, Deployment]:
        slot_id, _, dep_id = model.partition("/")
        if slot_id in self.slots:
            slot = self.sample.catalog.slot(slot_id)
            for dep in slot.deployments:
                if not dep_id or dep.id == dep_id:
                    return slot_id, dep
        raise PlaybackError(404, "model_not_found", "no recorded deployment with that model id")

    def lookup(self, slot: str, messages: list[dict[str, Any]]) -> RecordedResponse:
        rid = self.index.get(prompt_key(messages))
        rec = self.sample.responses.get((rid, slot)) if rid is not None else None
        if rec is None:
            raise PlaybackError(404, "not_recorded", "no recorded response for this prompt")
        return rec

    # ------------------------------------------------------------------ HTTP
    async def chat(self, request: Request) -> Response:
        try:
            try:
                body = PlaybackBody.model_validate(json.loads(await request.body()))
            except (ValueError, ValidationError):
                raise PlaybackError(400, "invalid_request", "invalid chat-completions body") from None
            slot, dep = self.resolve(body.model)
            rec = self.lookup(slot, body.messages)
        except PlaybackError as exc:
            return exc.response()
        self.calls += 1
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        usage = {"prompt_tokens": rec.input_tokens, "completion_tokens": rec.output_tokens,
                 "total_tokens": rec.input_tokens + rec.output_tokens}
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.get("include_usage"))
            events = self._events(cid, created, body.model, dep, rec, usage if include_usage else None)
            return StreamingResponse(events, media_type="text/event-stream")
        await self.sleep(dep.latency.total_ms(rec.output_tokens) * self.latency_scale / 1000.0)
        return JSONResponse({
            "id": cid, "object": "chat.completion", "created": created, "model": body.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": rec.response},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": usage,
        })

    async def _events(self, cid: str, created: int, model: str, dep: Deployment, rec: RecordedResponse,
                      usage: dict[str, int] | None) -> AsyncIterator[bytes]:
        scale = self.latency_scale / 1000.0
        await self.sleep(dep.latency.ttft_ms * scale)
        text = rec.response
        step = 4 * self.chunk_tokens  # the workload's estimate: 4 characters a token
        first = True
        for i in range(0, len(text), step):
            piece = text[i : i + step]
            yield _chunk(cid, created, model, {"role": "assistant", "content": piece} if first else
                         {"content": piece})
            first = False
            await self.sleep(len(piece) / 4 / dep.latency.tokens_per_s * 1000.0 * scale)
        if first:
            yield _chunk(cid, created, model, {"role": "assistant", "content": ""})
        yield _chunk(cid, created, model, {}, "stop")
        if usage is not None:
            obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [], "usage": usage}
            yield b"data: " + json.dumps(obj).encode("utf-8") + b"\n\n"
        yield b"data: [DONE]\n\n"

    async def list_models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "sovrouter-playback"} for m in self.models()]})


def create_playback_app(playback: Playback) -> FastAPI:
    app = FastAPI(title="sovrouter playback", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.playback = playback
    app.add_api_route("/v1/chat/completions", playback.chat, methods=["POST"], include_in_schema=False)
    app.add_api_route("/v1/models", playback.list_models, methods=["GET"], include_in_schema=False)
    return app
