"""OpenAI-compatible HTTP adapter: llama.cpp's server, ``llama_cpp.server``, vLLM (async httpx, SSE streaming).

- ``generate``: ``POST {base}/v1/chat/completions``; ``stream``: the same with ``stream: true`` and
  ``stream_options.include_usage``, parsing the ``data:`` lines of the SSE body until ``data: [DONE]``.
- A base URL may end with ``/v1`` or not; both name the same server.
- Text-only messages are sent as a string; messages with media are sent as OpenAI content parts
  (``image_url`` / ``video_url`` / ``audio_url`` with the part's URL or data URL). ``developer`` becomes
  ``system`` (llama.cpp and most chat templates do not know it).
- Tool calling: the request's offer (``tools``, ``tool_choice``, ``parallel_tool_calls``), assistant turns'
  ``tool_calls`` and tool turns' ``tool_call_id`` are sent as OpenAI writes them; the answer's calls (a
  completion's ``message.tool_calls``, a stream's ``delta.tool_calls`` fragments, gathered until the end) become
  ``ModelResult.tool_calls``, with ``finish_reason`` ``tool_calls`` when the server said ``stop``.
- Tokens come from the upstream's ``usage``; without it they are estimated as ``ceil(characters / 4)`` of every
  string sent (``forwarded_text``: the tool offer and calls included) and of the text and calls generated.
- Speculative decoding: a vLLM server started with ``--per-request-spec-decode-metrics`` reports each request's
  drafted and accepted tokens (``metrics.speculative_decoding``, on the completion or on a stream's usage chunk);
  their ratio becomes ``ModelResult.spec_acceptance`` and the drafted count ``spec_drafted_tokens``, and so the
  call's record. Absent, malformed or with nothing drafted: no ratio (``None``; the metrics are optional and
  experimental upstream; they never fail a call).
- Failures become :class:`UpstreamError` subclasses whose messages never carry the upstream body, the URL's
  credentials or the API key: connect/reset/429/5xx -> :class:`UpstreamUnavailableError` (retryable),
  other 4xx -> :class:`UpstreamRejectedError`, malformed body or a stream that ends before ``[DONE]`` or a
  ``finish_reason`` -> :class:`UpstreamProtocolError`, httpx timeouts -> :class:`UpstreamTimeoutError`.
  A stream always ends with ``StreamChunk(final=ModelResult(...))`` or raises: never a silent truncation.
- Several replicas of one deployment: a :class:`ReplicaChooser` picks one per call (default here: least
  outstanding; the gateway's wiring passes the one the upstream configures, prefix/KV affinity by default).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx

from sovrouter.adapters.replicas import LeastOutstandingChooser, ReplicaChooser
from sovrouter.contracts import (
    Candidate,
    Message,
    ModelCall,
    ModelResult,
    NormalizedRequest,
    StreamChunk,
    ToolCall,
)
from sovrouter.errors import (
    UpstreamProtocolError,
    UpstreamRejectedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from sovrouter.protocols import closing_stream
from sovrouter.tooling import ToolCallFragments, upstream_calls
from sovrouter.unicode import valid_text

_MEDIA_PART = {"image": "image_url", "video": "video_url", "audio": "audio_url"}


def chat_endpoint(base_url: str) -> str:
    base = base_url.rstrip("/")
    return base + "/chat/completions" if base.endswith("/v1") else base + "/v1/chat/completions"


def _audio_data(ref: str) -> tuple[str, str] | None:
    """``(format, base64 data)`` of an audio data URL (OpenAI's ``input_audio`` shape upstream), else None."""
    head, sep, data = ref.partition(";base64,")
    if not sep or not head.startswith("data:audio/"):
        return None
    return head.removeprefix("data:audio/"), data


def _message_body(message: Message) -> dict[str, Any]:
    out = _content_body(message)
    if message.tool_calls:
        out["tool_calls"] = [c.openai() for c in message.tool_calls]
        if out["content"] == "":
            out["content"] = None  # a turn that only calls functions, as OpenAI writes it
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


def _content_body(message: Message) -> dict[str, Any]:
    role = "system" if message.role == "developer" else message.role
    parts = message.parts
    if all(p.modality == "text" for p in parts):
        return {"role": role, "content": "\n".join(p.text or "" for p in parts) if len(parts) > 1
                else (parts[0].text or "")}
    content: list[dict[str, Any]] = []
    for p in parts:
        if p.modality == "text":
            content.append({"type": "text", "text": p.text or ""})
        elif p.modality == "audio" and (inline := _audio_data(p.ref or "")) is not None:
            content.append({"type": "input_audio", "input_audio": {"data": inline[1], "format": inline[0]}})
        else:
            kind = _MEDIA_PART[p.modality]
            content.append({"type": kind, kind: {"url": p.ref or ""}})
    return {"role": role, "content": content}


def request_body(request: NormalizedRequest, model: str, stream: bool) -> dict[str, Any]:
    """The upstream body for a normalized request (parameters only when set)."""
    body: dict[str, Any] = {"model": model, "messages": [_message_body(m) for m in request.messages]}
    params = request.parameters
    if params.temperature is not None:
        body["temperature"] = params.temperature
    if params.top_p is not None:
        body["top_p"] = params.top_p
    if params.max_tokens is not None:
        body["max_tokens"] = params.max_tokens
    if params.stop:
        body["stop"] = list(params.stop)
    if params.seed is not None:
        body["seed"] = params.seed
    if params.frequency_penalty is not None:
        body["frequency_penalty"] = params.frequency_penalty
    if params.presence_penalty is not None:
        body["presence_penalty"] = params.presence_penalty
    if request.tooling is not None:
        body.update(request.tooling.openai())
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _estimate(text: str) -> int:
    return math.ceil(len(text) / 4)


def _spec_draft(obj: dict[str, Any]) -> tuple[float | None, int | None]:
    """Accepted / drafted tokens and the drafted count from vLLM's per-request ``metrics.speculative_decoding``;
    ``None`` for what is absent, malformed or impossible (more accepted than drafted: neither is kept)."""
    metrics = obj.get("metrics")
    spec = metrics.get("speculative_decoding") if isinstance(metrics, dict) else None
    if not isinstance(spec, dict):
        return None, None
    drafted, accepted = _int(spec.get("num_draft_tokens")), _int(spec.get("num_accepted_draft_tokens"))
    if drafted is not None and accepted is not None:
        if accepted > drafted:
            return None, None
        return (accepted / drafted if drafted > 0 else None), drafted
    rate = spec.get("draft_acceptance_rate")
    if drafted is None and isinstance(rate, int | float) and not isinstance(rate, bool) and 0.0 <= rate <= 1.0:
        return float(rate), None
    return None, drafted


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class OpenAIHTTPAdapter:
    """One deployment (``candidate``) served by one or more OpenAI-compatible replicas (``base_urls``).

    Pass a shared ``client`` to pool connections across adapters (then its owner closes it); otherwise the
    adapter owns one and :meth:`aclose` closes it. ``timer`` returns seconds (``time.perf_counter``).
    Total and first-token timeouts are the job of the :mod:`sovrouter.reliability.timeout` wrapper; the
    client here only bounds connecting.
    """

    def __init__(
        self,
        candidate: Candidate,
        base_urls: Sequence[str],
        *,
        model: str = "default",
        api_key: str | None = None,
        client: httpx.AsyncClient | None = None,
        chooser: ReplicaChooser | None = None,
        timer: Callable[[], float] = time.perf_counter,
        connect_timeout_s: float = 5.0,
    ) -> None:
        if not base_urls:
            raise ValueError("OpenAIHTTPAdapter needs at least one base URL")
        self.candidate = candidate
        self.replicas = list(base_urls)
        self._endpoints = [httpx.URL(chat_endpoint(u)) for u in self.replicas]
        self.model = model
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._owns_client = client is None
        self.client = client or new_client(connect_timeout_s)
        self.chooser: ReplicaChooser = chooser or LeastOutstandingChooser()
        self.timer = timer

    @property
    def target(self) -> Candidate:
        return self.candidate

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    # ------------------------------------------------------------------ non-streaming
    async def generate(self, call: ModelCall) -> ModelResult:
        request = call.request
        body = _encode(request_body(request, self.model, stream=False))
        index = self.chooser.choose(request, self.replicas)
        self.chooser.observe_start(request, self.replicas, index)
        started = self.timer()
        ok = rejected = abandoned = False
        try:
            try:
                resp = await self.client.post(self._endpoints[index], content=body, headers=self._headers)
            except httpx.ConnectTimeout as exc:  # never connected: the upstream had nothing (not billed)
                raise UpstreamUnavailableError(f"cannot reach upstream {self.candidate.key} (ConnectTimeout)") from exc
            except httpx.TimeoutException as exc:
                raise UpstreamTimeoutError(f"upstream {self.candidate.key} timed out") from exc
            except httpx.HTTPError as exc:
                raise UpstreamUnavailableError(
                    f"cannot reach upstream {self.candidate.key} ({type(exc).__name__})") from exc
            self._check_status(resp.status_code)
            result = self._parse_completion(resp.content, request, (self.timer() - started) * 1000.0)
            ok = True
            return result
        except UpstreamRejectedError as exc:
            rejected = exc.request_specific  # a 401/404 from one replica is that replica's fault: a failure
            raise
        except (asyncio.CancelledError, GeneratorExit):
            abandoned = _abandoned(call)
            raise
        finally:
            self.chooser.observe_done(request, self.replicas, index, ok, (self.timer() - started) * 1000.0,
                                      rejected=rejected, abandoned=abandoned)

    def _parse_completion(self, raw: bytes, request: NormalizedRequest, latency_ms: float) -> ModelResult:
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            message = choice["message"]
            content = message.get("content")
            if content is None:
                content = ""
            if not isinstance(content, str):
                raise TypeError("content")
            calls = upstream_calls(message)
            finish = _finish(choice.get("finish_reason"), bool(calls))
            usage = data.get("usage") or {}
            if not isinstance(usage, dict):
                usage = {}
            acceptance, drafted = _spec_draft(data)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise UpstreamProtocolError(f"upstream {self.candidate.key} returned a malformed completion") from exc
        return ModelResult(
            candidate=self.candidate,
            text=valid_text(content),
            finish_reason=finish,
            tool_calls=calls,
            input_tokens=_int(usage.get("prompt_tokens")) or _estimate(request.forwarded_text),
            output_tokens=_int(usage.get("completion_tokens")) or _estimate(_said(content, calls)),
            latency_ms=latency_ms,
            spec_acceptance=acceptance,
            spec_drafted_tokens=drafted,
        )

    def _check_status(self, status: int) -> None:
        if status < 400:
            return
        if status == 429 or status >= 500:
            raise UpstreamUnavailableError(f"upstream {self.candidate.key} answered HTTP {status}")
        raise UpstreamRejectedError(f"upstream {self.candidate.key} refused the call (HTTP {status})",
                                    upstream_status=status)

    # ------------------------------------------------------------------ streaming
    async def stream(self, call: ModelCall) -> AsyncIterator[StreamChunk]:
        request = call.request
        body = _encode(request_body(request, self.model, stream=True))
        index = self.chooser.choose(request, self.replicas)
        self.chooser.observe_start(request, self.replicas, index)
        started = self.timer()
        ok = rejected = abandoned = False
        try:
            async with closing_stream(self._stream(index, body, call, started)) as chunks:  # the response
                async for chunk in chunks:  # closes when the reader stops, not at garbage collection
                    yield chunk
            ok = True
        except UpstreamRejectedError as exc:
            rejected = exc.request_specific  # a 401/404 from one replica is that replica's fault: a failure
            raise
        except (asyncio.CancelledError, GeneratorExit):
            abandoned = _abandoned(call)
            raise
        finally:
            self.chooser.observe_done(request, self.replicas, index, ok, (self.timer() - started) * 1000.0,
                                      rejected=rejected, abandoned=abandoned)

    async def _stream(self, index: int, body: bytes, call: ModelCall,
                      started: float) -> AsyncIterator[StreamChunk]:
        request = call.request
        parser = _SSEParser(self.candidate.key)
        ttft: float | None = None
        try:
            async with self.client.stream("POST", self._endpoints[index], content=body,
                                          headers=self._headers) as resp:
                if resp.status_code >= 400:
                    self._check_status(resp.status_code)  # the error body is never read into a message
                lines = resp.aiter_lines()
                async for line in lines:
                    delta = parser.feed(line)
                    if delta or parser.calling:
                        if ttft is None:
                            ttft = (self.timer() - started) * 1000.0
                        # a call's fragments are gathered, not shown: an empty chunk still says the answer began
                        yield StreamChunk(candidate=self.candidate, delta=delta)
                        parser.calling = False
                    if parser.done:
                        await _read_to_end(lines, call.deadline_at)
                        break
        except httpx.ConnectTimeout as exc:  # never connected: the upstream had nothing (not billed)
            raise UpstreamUnavailableError(f"cannot reach upstream ({self.candidate.key}, ConnectTimeout)") from exc
        except httpx.TimeoutException as exc:
            raise UpstreamTimeoutError(f"upstream {self.candidate.key} timed out") from exc
        except httpx.HTTPError as exc:
            what = "connection dropped mid-stream" if parser.started else "cannot reach upstream"
            raise UpstreamUnavailableError(f"{what} ({self.candidate.key}, {type(exc).__name__})") from exc
        if not parser.complete:
            raise UpstreamProtocolError(f"upstream {self.candidate.key} stream ended before completing")
        text = "".join(parser.parts)
        try:
            calls = parser.tool_calls.calls()
        except TypeError as exc:
            raise UpstreamProtocolError(f"upstream {self.candidate.key} streamed a malformed tool call") from exc
        result = ModelResult(
            candidate=self.candidate,
            text=text,
            finish_reason=_finish(parser.finish_reason, bool(calls)),
            tool_calls=calls,
            input_tokens=parser.prompt_tokens or _estimate(request.forwarded_text),
            output_tokens=parser.completion_tokens or _estimate(_said(text, calls)),
            latency_ms=(self.timer() - started) * 1000.0,
            ttft_ms=ttft,
            spec_acceptance=parser.spec_acceptance,
            spec_drafted_tokens=parser.spec_drafted_tokens,
        )
        yield StreamChunk(candidate=self.candidate, final=result)


DRAIN_S = 0.05  # how long a stream's end after [DONE] is waited for before the connection is given up


async def _read_to_end(lines: AsyncIterator[str], deadline_at: float | None = None) -> None:
    """Read what follows ``[DONE]``: normally nothing but the end of the body, which must be read for the client to
    put the connection back in its pool (stopping at ``[DONE]`` cost every streamed call a new connection until
    2026-11-28). An upstream that sends more, or keeps the body open, gets ``DRAIN_S``; then the connection is
    closed, as before, and the answer, complete at ``[DONE]``, stands. No drain when the call's deadline (the
    timeout wrapper's ``deadline_at``) is less than two ``DRAIN_S`` away: its cancellation would go through the
    drain and turn the complete answer into a timeout (review, 2026-11-28)."""
    if deadline_at is not None and asyncio.get_running_loop().time() + 2 * DRAIN_S >= deadline_at:
        return
    try:
        async with asyncio.timeout(DRAIN_S):
            async for _ in lines:
                pass
    except (TimeoutError, httpx.HTTPError):
        pass


class _SSEParser:
    """Reads the ``data:`` lines of an OpenAI chat-completions SSE body (one JSON object per event)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.parts: list[str] = []
        self.done = False
        self.started = False
        self.finish_reason: str | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.spec_acceptance: float | None = None
        self.spec_drafted_tokens: int | None = None
        self.tool_calls = ToolCallFragments()
        self.calling = False  # the last event carried part of a tool call

    @property
    def complete(self) -> bool:
        return self.done or self.finish_reason is not None

    def feed(self, line: str) -> str:
        if not line.startswith("data:"):
            return ""  # blank separators, comments (":"), event:/id:/retry: fields
        payload = line[5:].strip()
        if payload == "[DONE]":
            self.done = True
            return ""
        try:
            obj = json.loads(payload)
        except ValueError as exc:
            raise UpstreamProtocolError(f"upstream {self.key} sent a malformed stream event") from exc
        if not isinstance(obj, dict):
            raise UpstreamProtocolError(f"upstream {self.key} sent a malformed stream event")
        if obj.get("error"):
            raise UpstreamUnavailableError(f"upstream {self.key} reported an error mid-stream")
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.prompt_tokens = _int(usage.get("prompt_tokens")) or self.prompt_tokens
            self.completion_tokens = _int(usage.get("completion_tokens")) or self.completion_tokens
        acceptance, drafted = _spec_draft(obj)
        if acceptance is not None:
            self.spec_acceptance = acceptance
        if drafted is not None:
            self.spec_drafted_tokens = drafted
        out = ""
        choices = obj.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta")
                content = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(content, str) and content:
                    out += valid_text(content)
                if isinstance(delta, dict) and self._tool_fragments(delta.get("tool_calls")):
                    self.calling = self.started = True
                if choice.get("finish_reason"):
                    self.finish_reason = str(choice["finish_reason"])
        if out:
            self.started = True
            self.parts.append(out)
        return out

    def _tool_fragments(self, fragments: Any) -> bool:
        try:
            return self.tool_calls.feed(fragments)
        except TypeError as exc:
            raise UpstreamProtocolError(f"upstream {self.key} streamed a malformed tool call") from exc


def _said(text: str, calls: Sequence[ToolCall]) -> str:
    """What the model generated, for a token estimate: its text and its calls (a call-only answer was 0 tokens)."""
    return text + "".join(c.name + c.arguments for c in calls)


def _abandoned(call: ModelCall) -> bool:
    """A cancelled call was abandoned by its caller (a batch cancelled, a shutdown) unless the timeout wrapper's
    deadline had passed: then the upstream was too slow, a failure of that replica."""
    return call.deadline_at is None or asyncio.get_running_loop().time() < call.deadline_at


def _finish(reason: Any, called: bool) -> str:
    """The upstream's finish reason; ``tool_calls`` when it called functions but said ``stop`` (or nothing), as
    OpenAI clients read the reason to know they must run the calls."""
    finish = str(reason) if reason else "stop"
    return "tool_calls" if called and finish == "stop" else finish


def new_client(connect_timeout_s: float = 5.0, max_keepalive: int = 256) -> httpx.AsyncClient:
    """A pooled client for upstream calls: no read timeout here (the timeout wrapper owns it), and no bound on the
    connections in use, so a call never waits for a free one. With the bound (256, shared by every deployment,
    until 2026-11-28) a call waiting for a connection spent its first-token deadline in the gateway, was recorded
    as the upstream's timeout and counted against its breaker: one slow deployment, or more than 256 streams in
    flight, opened the breakers of healthy ones (found in review). Connections now follow the calls in flight;
    ``max_keepalive`` idle ones are kept for reuse."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(None, connect=connect_timeout_s),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=max_keepalive),
    )

