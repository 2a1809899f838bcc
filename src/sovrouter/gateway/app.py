"""The HTTP gateway: an OpenAI-compatible front door onto :class:`Pipeline` (FastAPI + uvicorn).

``create_app(pipeline, settings)`` builds one app; all its state lives on the :class:`Gateway` instance it
creates (no module-level state). Endpoints:

- ``POST /v1/chat/completions``: JSON or SSE (``stream: true``), OpenAI format plus a ``sovrouter`` metadata
  object; headers ``x-sovrouter-route``, ``x-sovrouter-request-id``, ``x-sovrouter-cache``.
- ``GET /v1/models``: ``auto`` plus the catalog slots the caller's tenant may use.
- ``GET /health`` (process up) and ``GET /ready`` (at least one deployment wired).
- with a :class:`~sovrouter.batch.service.BatchService`: ``/v1/files`` and ``/v1/batches`` (``gateway/batches.py``).

The tenant comes from the API key only; the declared data class from the ``X-Data-Class`` header. This module
is the error boundary: every error leaves as OpenAI-style JSON (see ``gateway/errors.py``), and a stream that
fails after its first byte ends with an explicit ``data: {"error": ...}`` event, never silently truncated.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from sovrouter.batch.service import BatchService
from sovrouter.config import Settings
from sovrouter.contracts import (
    CacheOutcome,
    Candidate,
    DataClass,
    NormalizedRequest,
    RequestRecord,
    StreamChunk,
)
from sovrouter.errors import (
    InvalidRequestError,
    NotFoundError,
    SovrouterError,
    TooManyRequestsError,
    UpstreamError,
)
from sovrouter.gateway.auth import KeyRing
from sovrouter.gateway.batches import mount_batches
from sovrouter.gateway.errors import error_response, install_handlers, internal_error_response, log
from sovrouter.gateway.headers import data_class_header, read_limited
from sovrouter.gateway.request_id import RequestIdMiddleware
from sovrouter.gateway.shared_slots import make_tenant_slots
from sovrouter.gateway.sse import ChatFormatter
from sovrouter.intake import normalize_chat
from sovrouter.pipeline import Outcome, Pipeline
from sovrouter.protocols import TenantLimit

_JSON = "application/json"
_Item = StreamChunk | Outcome | BaseException


class Gateway:
    """The state and handlers of one app instance."""

    def __init__(self, pipeline: Pipeline, settings: Settings,
                 request_ids: Callable[[], str] | None = None, keys: KeyRing | None = None) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self.keys = keys if keys is not None else KeyRing.from_settings(settings)
        # this instance's count per tenant, or every instance's in Redis with shared_in_flight (shared_slots.py)
        self.slots: TenantLimit = make_tenant_slots(settings)
        self.request_ids = request_ids or (lambda: uuid.uuid4().hex)
        self.background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ request checks
    @staticmethod
    def _data_class(value: str | None) -> DataClass:
        return data_class_header(value)

    async def _read_json(self, request: Request) -> dict[str, Any]:
        raw = await read_limited(request, self.settings.max_body_bytes)
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested past the parser's depth
            raise InvalidRequestError("the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise InvalidRequestError("the request body must be a JSON object")
        return body

    def _normalize(self, body: dict[str, Any], tenant: str, rid: str, data_class: DataClass) -> NormalizedRequest:
        try:
            return normalize_chat(body, tenant=tenant, request_id=rid, data_class=data_class,
                                  arrived_ms=self.pipeline.clock.now_ms())
        except ValidationError:
            raise InvalidRequestError("invalid request body", param="messages") from None

    def _record_rejection(self, request_id: str, tenant: str, data_class: DataClass, code: str) -> None:
        """An authenticated request refused at the door still gets its one record."""
        self.pipeline.records.write(RequestRecord(
            request_id=request_id, tenant=tenant, data_class=data_class, effective_class=data_class,
            modalities=[], arrived_ms=self.pipeline.clock.now_ms(), status="error", error_code=code,
            cache=CacheOutcome(kind="bypass"),
        ))

    # ------------------------------------------------------------------ endpoints
    async def chat(self, request: Request) -> Response:
        rid = self.request_ids()
        headers = {"x-sovrouter-request-id": rid}
        data_class: DataClass = "public"
        release: Callable[[], None] = _nothing
        try:
            tenant = self.keys.tenant_for(request.headers.get("authorization"))
            try:
                data_class = self._data_class(request.headers.get("x-data-class"))
                release = await self.slots.take(tenant)  # a tenant's burst never takes every other tenant's share
                body = await self._read_json(request)
                self.pipeline.check_requested_model(body.get("model"), tenant)
                req = self._normalize(body, tenant, rid, data_class)
            except SovrouterError as exc:
                self._record_rejection(rid, tenant, data_class, exc.code)
                raise
            except Exception:  # a bug at the door: the request still gets its record, the boundary below answers
                self._record_rejection(rid, tenant, data_class, SovrouterError.code)
                raise
            if req.stream:
                opts = body.get("stream_options")
                include_usage = isinstance(opts, dict) and opts.get("include_usage") is True
                held, release = release, _nothing  # the stream's producer task holds the slot now
                return await self._stream(req.request_id, self.pipeline.handle_stream(req), include_usage,
                                          headers, held)
            outcome = await self.pipeline.handle(req)
        except TooManyRequestsError as exc:
            headers["retry-after"] = "1"
            return error_response(exc, headers)
        except SovrouterError as exc:
            return error_response(exc, headers)
        except Exception as exc:  # the gateway boundary: nothing unexpected leaves as a stack trace
            return internal_error_response(exc, headers)
        finally:
            release()  # a stream's producer task frees it when the stream ends (the second call does nothing)
        if outcome.error is not None or outcome.result is None:
            return error_response(outcome.error or UpstreamError("no answer"), headers)
        record = outcome.record
        headers["x-sovrouter-route"] = outcome.result.candidate.key
        headers["x-sovrouter-cache"] = record.cache.kind
        fmt = ChatFormatter(rid, int(time.time()))
        return Response(fmt.completion(outcome.result, record), media_type=_JSON, headers=headers)

    async def _stream(self, rid: str, items: AsyncIterator[StreamChunk | Outcome], include_usage: bool,
                      headers: dict[str, str], release: Callable[[], None]) -> Response:
        """Run the pipeline's stream in its own task (so a client that disconnects cannot cut the request's
        record), wait for its first item, then answer: JSON error if it failed before any chunk, SSE otherwise.
        The task frees the tenant's slot (``release``) when the stream ends."""
        queue: asyncio.Queue[_Item] = asyncio.Queue()
        task = asyncio.create_task(_produce(items, queue))
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        task.add_done_callback(lambda _: release())
        first = await queue.get()
        while isinstance(first, StreamChunk) and not first.delta and first.final is None:
            first = await queue.get()  # shows nothing (a tool call being gathered): the answer has not begun
        if isinstance(first, BaseException):
            return internal_error_response(first, headers)
        if isinstance(first, Outcome) and first.error is not None:
            return error_response(first.error, headers)
        ready: list[_Item] = [first]
        while not isinstance(ready[-1], Outcome | BaseException) and not queue.empty():
            ready.append(queue.get_nowait())  # what is already there (all of it for a cache hit)
        if isinstance(ready[-1], Outcome):
            headers["x-sovrouter-cache"] = ready[-1].record.cache.kind
        else:
            cache = self.settings.cache
            headers["x-sovrouter-cache"] = "miss" if cache.exact_enabled or cache.semantic_enabled else "bypass"
        if isinstance(first, StreamChunk):
            headers["x-sovrouter-route"] = first.candidate.key
        elif first.result is not None:
            headers["x-sovrouter-route"] = first.result.candidate.key
        headers["cache-control"] = "no-cache"
        headers["x-accel-buffering"] = "no"
        events = _events(ChatFormatter(rid, int(time.time())), ready, queue, include_usage)
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)

    def _model_ids(self, request: Request) -> list[str]:
        """``auto`` and the slots the key's tenant may use with an upstream configured here (raises on a bad key)."""
        tenant = self.keys.tenant_for(request.headers.get("authorization"))
        wired = self.pipeline.executor.wired
        return ["auto", *(slot.id for slot in self.pipeline.catalog.slots
                          if any(d.available_for(tenant) and wired(Candidate(slot=slot.id, deployment=d.id))
                                 for d in slot.deployments))]

    async def models(self, request: Request) -> Response:
        try:
            ids = self._model_ids(request)
        except SovrouterError as exc:
            return error_response(exc)
        data = [_model_object(x) for x in ids]
        return Response(json.dumps({"object": "list", "data": data}).encode(), media_type=_JSON)

    async def model(self, request: Request) -> Response:
        """``GET /v1/models/{model}`` (``client.models.retrieve``): one of the listed models, else 404."""
        try:
            ids = self._model_ids(request)
            wanted = request.path_params["model"]
            if wanted not in ids:
                raise NotFoundError("the model does not exist or is not available to this key", param="model")
        except SovrouterError as exc:
            return error_response(exc)
        return Response(json.dumps(_model_object(wanted)).encode(), media_type=_JSON)

    async def health(self, request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type=_JSON)

    async def ready(self, request: Request) -> Response:
        n = len(self.pipeline.executor.adapters)
        if n == 0:
            return Response(b'{"status":"not_ready","deployments":0}', status_code=503, media_type=_JSON)
        return Response(json.dumps({"status": "ready", "deployments": n}).encode(), media_type=_JSON)

    async def drain(self, timeout_s: float) -> None:
        """Let in-flight streams finish (and write their records), then cancel what is left."""
        pending = set(self.background)
        if not pending:
            return
        _, still = await asyncio.wait(pending, timeout=timeout_s)
        for task in still:
            task.cancel()
        # let the cancelled ones unwind (each writes its request's record) before the stores and clients close,
        # for a bounded time (a cleanup that hangs must not hold the shutdown)
        if still:
            await asyncio.wait(still, timeout=5.0)


def _nothing() -> None:
    return None


async def _produce(items: AsyncIterator[StreamChunk | Outcome], queue: asyncio.Queue[_Item]) -> None:
    try:
        async for item in items:
            queue.put_nowait(item)
    except BaseException as exc:  # the boundary: hand anything unexpected to the consumer as an error event
        queue.put_nowait(exc)
        if not isinstance(exc, Exception):
            raise


async def _events(fmt: ChatFormatter, ready: list[_Item], queue: asyncio.Queue[_Item],
                  include_usage: bool) -> AsyncIterator[bytes]:
    """SSE bytes for the queued items. Events already waiting in the queue are sent in one write (fewer
    syscalls for fast upstreams); nothing is ever held back waiting for more."""
    first = True
    pending = ready
    while True:
        out = bytearray()
        for item in pending:
            if isinstance(item, StreamChunk):
                if item.final is None and item.delta:
                    out += fmt.delta(item.candidate.slot, item.delta, first)
                    first = False
                continue
            if isinstance(item, Outcome) and item.error is None and item.result is not None:
                if item.result.tool_calls:  # gathered upstream, sent whole before the finishing chunk
                    out += fmt.tool_calls(item.result, first)
                elif first:
                    out += fmt.delta(item.result.candidate.slot, "", True)
                out += fmt.final(item.result, item.record, include_usage)
            elif isinstance(item, Outcome) and item.error is not None:
                out += fmt.error_event(item.error)
            else:
                log.error("stream failed unexpectedly: %s", type(item).__name__)
                out += fmt.error_event(SovrouterError("internal server error"))
            yield bytes(out)
            return
        if out:
            yield bytes(out)
        pending = [await queue.get()]
        while not queue.empty():
            pending.append(queue.get_nowait())


def _model_object(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 0, "owned_by": "sovrouter"}


def create_app(
    pipeline: Pipeline,
    settings: Settings,
    *,
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
    request_ids: Callable[[], str] | None = None,
    on_startup: Sequence[Callable[[], Awaitable[None]]] = (),
    batches: BatchService | None = None,
    keys: KeyRing | None = None,
) -> FastAPI:
    """The gateway app for ``pipeline``. ``on_startup`` callbacks run in the serving loop before the first
    request (start background readers there); ``on_shutdown`` callbacks run after in-flight streams have drained
    (close HTTP clients there). ``request_ids`` overrides the request-id factory (tests). ``batches``: serve
    ``/v1/files`` and ``/v1/batches`` from it (started and closed with the app). ``keys``: the API keys (default:
    :meth:`KeyRing.from_settings`; give the batch service's ring, so both see a revocation at once)."""
    gateway = Gateway(pipeline, settings, request_ids, keys)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for start in on_startup:
            await start()
        if batches is not None:
            await batches.start()
        yield
        if batches is not None:
            await batches.aclose()  # a running batch stops here and resumes at the next start
        await gateway.drain(settings.reliability.timeout_s)
        await gateway.slots.aclose()  # the streams have ended: their leases are given back
        for close in on_shutdown:
            await close()

    app = FastAPI(title="sovrouter", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gateway = gateway
    install_handlers(app)
    app.add_middleware(RequestIdMiddleware, new_id=gateway.request_ids)
    # The hot path is a plain Starlette route (no FastAPI dependency solving: it reads the raw body itself).
    app.router.routes.append(Route("/v1/chat/completions", gateway.chat, methods=["POST"]))
    app.add_api_route("/v1/models", gateway.models, methods=["GET"], include_in_schema=False)
    app.router.routes.append(Route("/v1/models/{model:path}", gateway.model, methods=["GET"]))
    app.add_api_route("/health", gateway.health, methods=["GET"], include_in_schema=False)
    app.add_api_route("/ready", gateway.ready, methods=["GET"], include_in_schema=False)
    if batches is not None:
        mount_batches(app, batches, gateway.keys, settings.max_body_bytes)
    return app

