"""A minimal OpenAI-compatible upstream for tests and benchmarks (a test double shipped in the package).

It answers ``POST /v1/chat/completions`` (JSON or SSE) like llama.cpp's / vLLM's server, and can fail on
demand through a mutable :class:`UpstreamBehaviour`: HTTP errors, slowness before the first token or between
chunks, a connection that dies mid-stream, a stream that ends without ``[DONE]``, a malformed body. "Down" is
simply a server that is not running (see :func:`closed_port_url`). Serve it with
:class:`sovrouter.gateway.server.ServerThread`::

    behaviour = UpstreamBehaviour(reply="hi")
    with ServerThread(create_upstream_app(behaviour)) as up:
        ...  # up.url is the base URL
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

Mode = Literal["ok", "error", "die_mid_stream", "truncate", "malformed", "stream_error_event"]
Engine = Literal["vllm", "sglang", "llamacpp"]
_GAUGES: dict[Engine, tuple[str, str, str]] = {  # each engine's running and waiting gauges, and their labels
    "vllm": ("vllm:num_requests_running", "vllm:num_requests_waiting", '{{engine="0",model_name="{model}"}}'),
    "sglang": ("sglang:num_running_reqs", "sglang:num_queue_reqs", '{{model_name="{model}"}}'),
    "llamacpp": ("llamacpp:requests_processing", "llamacpp:requests_deferred", ""),
}


class UpstreamDied(Exception):
    """Raised inside the response body to make the server drop the connection mid-stream."""


@dataclass
class UpstreamBehaviour:
    """How the test upstream answers; change it between (or during) calls. Counts what it received."""

    mode: Mode = "ok"
    status: int = 500  # for mode "error" and for the first ``fail_first`` calls
    fail_first: int = 0  # fail the first N calls with ``status``, then behave per ``mode``
    reply: str = "Hello from the test upstream."
    echo: bool = False  # answer with the last user message instead of ``reply``
    chunks: int = 4
    first_token_delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    # after a stream's [DONE]: keep the body open this long, sending ``after_done`` (bytes) first, then end it
    linger_after_done_s: float = 0.0
    after_done: bytes = b""
    usage: bool = True
    # vLLM's per-request speculative-decoding metrics (``--per-request-spec-decode-metrics``): sent as
    # ``metrics.speculative_decoding`` with the completion, or on the usage chunk of a stream
    spec_metrics: dict[str, Any] | None = None
    model: str = "test-upstream"
    # answer a request that offers tools with these calls (``[{"name", "arguments"}]``; ids are made here) instead
    # of ``reply``; a stream sends each call's id and name first and its arguments in pieces, as OpenAI does
    tool_calls: list[dict[str, str]] | None = None
    # ``GET /metrics`` as this engine publishes it (``None``: 404, like llama.cpp's server without --metrics):
    # the requests it is answering now, plus ``other_running`` (other clients' load), and ``other_waiting``
    engine_metrics: Engine | None = None
    other_running: int = 0
    other_waiting: int = 0
    scrapes: int = 0  # GET /metrics answered
    running: int = 0  # requests being answered now (a stream until its body ends)
    calls: int = 0
    # the client connections calls came on (host, port): a client that reuses its connections shows few
    peers: set[tuple[str, int]] = field(default_factory=set, repr=False)
    last_body: dict[str, Any] | None = field(default=None, repr=False)


def _last_user_text(body: dict[str, Any]) -> str:
    for m in reversed(body.get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c
            if isinstance(c, list):
                return " ".join(p.get("text", "") for p in c if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _pieces(text: str, n: int) -> list[str]:
    step = max(1, -(-len(text) // max(1, n)))
    return [text[i : i + step] for i in range(0, len(text), step)] or [""]


def create_upstream_app(behaviour: UpstreamBehaviour) -> Starlette:
    b = behaviour

    async def chat(request: Request) -> Response:
        b.running += 1
        streaming = False
        try:
            response = await answer(request)
            if isinstance(response, StreamingResponse):
                streaming = True
                response.body_iterator = _released(b, response.body_iterator)
            return response
        finally:
            if not streaming:
                b.running -= 1

    async def answer(request: Request) -> Response:
        b.calls += 1
        if request.client is not None:
            b.peers.add((request.client.host, request.client.port))
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"error": {"message": "bad json", "type": "invalid_request_error"}}, 400)
        b.last_body = body
        if b.calls <= b.fail_first or b.mode == "error":
            return JSONResponse({"error": {"message": "upstream secret detail sk-test-leak", "type": "server_error"}},
                                b.status)
        text = _last_user_text(body) if b.echo else b.reply
        n_in = sum(len(json.dumps(m.get("content", ""))) for m in body.get("messages", [])) // 4 + 1
        n_out = max(1, len(text) // 4)
        cid = f"chatcmpl-up{b.calls}"
        if b.first_token_delay_s:
            await asyncio.sleep(b.first_token_delay_s)
        calls = _calls(b, cid) if b.tool_calls is not None and body.get("tools") else None
        if not body.get("stream"):
            if b.mode == "malformed":
                return Response(b'{"choices": [', media_type="application/json")
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if calls is not None:
                message = {"role": "assistant", "content": None, "tool_calls": calls}
            out: dict[str, Any] = {
                "id": cid, "object": "chat.completion", "created": int(time.time()), "model": b.model,
                "choices": [{"index": 0, "message": message,
                             "finish_reason": "stop" if calls is None else "tool_calls"}],
            }
            if b.usage:
                out["usage"] = {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}
            if b.spec_metrics is not None:
                out["metrics"] = {"speculative_decoding": b.spec_metrics}
            return Response(json.dumps(out).encode(), media_type="application/json")
        return StreamingResponse(_sse(b, cid, text, n_in, n_out, calls), media_type="text/event-stream")

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": b.model, "object": "model", "owned_by": "test"}]})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        if b.engine_metrics is None:
            return Response(status_code=404)
        b.scrapes += 1
        running, waiting, labels = _GAUGES[b.engine_metrics]
        tags = labels.format(model=b.model)
        text = (f"# HELP {running} Number of requests running.\n# TYPE {running} gauge\n"
                f"{running}{tags} {float(b.running + b.other_running)}\n"
                f"# HELP {waiting} Number of requests waiting.\n# TYPE {waiting} gauge\n"
                f"{waiting}{tags} {float(b.other_waiting)}\n")
        return Response(text, media_type="text/plain; version=0.0.4")

    return Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ])


async def _released(b: UpstreamBehaviour, body: AsyncIterable[Any]) -> AsyncIterator[Any]:
    try:
        async for part in body:
            yield part
    finally:
        b.running -= 1


def _calls(b: UpstreamBehaviour, cid: str) -> list[dict[str, Any]]:
    return [{"id": f"call_{cid}_{i}", "type": "function",
             "function": {"name": c["name"], "arguments": c.get("arguments", "")}}
            for i, c in enumerate(b.tool_calls or [])]


async def _sse_calls(b: UpstreamBehaviour, calls: list[dict[str, Any]], chunk: Any) -> AsyncIterator[bytes]:
    for i, call in enumerate(calls):
        fn = call["function"]
        yield chunk({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                     "function": {"name": fn["name"], "arguments": ""}}]})
        if b.mode == "die_mid_stream":  # after the call's first fragment: nothing visible sent yet
            raise UpstreamDied("dropping the connection on purpose")
        for piece in _pieces(fn["arguments"], b.chunks):
            if b.chunk_delay_s:
                await asyncio.sleep(b.chunk_delay_s)
            yield chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})


async def _sse(b: UpstreamBehaviour, cid: str, text: str, n_in: int, n_out: int,
               calls: list[dict[str, Any]] | None = None) -> AsyncIterator[bytes]:
    def event(obj: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return event({"id": cid, "object": "chat.completion.chunk", "created": 0, "model": b.model,
                      "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    yield chunk({"role": "assistant", "content": None if calls is not None else ""})
    pieces = [] if calls is not None else _pieces(text, b.chunks)
    if calls is not None:
        async for event_bytes in _sse_calls(b, calls, chunk):
            yield event_bytes
    for i, piece in enumerate(pieces):
        if i and b.chunk_delay_s:
            await asyncio.sleep(b.chunk_delay_s)
        if b.mode == "malformed" and i == 1:
            yield b"data: {not json\n\n"
            return
        if b.mode == "stream_error_event" and i == 1:
            yield event({"error": {"message": "upstream overloaded", "type": "server_error"}})
            return
        if b.mode == "die_mid_stream" and i == 1:
            raise UpstreamDied("dropping the connection on purpose")
        if b.mode == "truncate" and i == 1:
            return  # clean end of body, without finish_reason nor [DONE]
        yield chunk({"content": piece})
    yield chunk({}, "stop" if calls is None else "tool_calls")
    if b.usage:
        last: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": 0, "model": b.model,
                                "choices": [], "usage": {"prompt_tokens": n_in, "completion_tokens": n_out,
                                                         "total_tokens": n_in + n_out}}
        if b.spec_metrics is not None:
            last["metrics"] = {"speculative_decoding": b.spec_metrics}
        yield event(last)
    yield b"data: [DONE]\n\n"
    if b.after_done:
        yield b.after_done
    if b.linger_after_done_s:
        await asyncio.sleep(b.linger_after_done_s)


def closed_port_url(host: str = "127.0.0.1") -> str:
    """A base URL nobody listens on (an upstream that is down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
    return f"http://{host}:{port}"
