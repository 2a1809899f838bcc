"""``/v1/files`` and ``/v1/batches``: the OpenAI Files and Batch endpoints over :class:`BatchService`.

What the official client calls: ``files.create`` (multipart ``file`` + ``purpose=batch``, optional
``expires_after``), ``files.retrieve``, ``files.content``, ``files.list`` (``purpose``, ``limit``, ``order``,
``after``), ``files.delete``; ``batches.create`` (optional ``output_expires_after``), ``batches.retrieve``,
``batches.cancel``, ``batches.list`` (``limit``, ``after``). The tenant is the key's, as for chat: files and
batches are the tenant's, whichever of its keys asks; a batch also keeps its key's digest and fails once that key
is revoked (:mod:`~sovrouter.batch.revocation`). ``X-Data-Class`` on ``POST /v1/batches`` declares the class of
every line. Errors leave as OpenAI-style JSON (this module is part of the gateway boundary); a failed upload
stores nothing.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sovrouter.batch.objects import CreateBatch, ExpiresAfter
from sovrouter.batch.service import BatchService
from sovrouter.errors import InvalidRequestError, RequestTooLargeError, SovrouterError, StoreUnavailableError
from sovrouter.gateway.auth import KeyRing
from sovrouter.gateway.errors import error_response, internal_error_response
from sovrouter.gateway.headers import data_class_header, limited, read_limited

_JSON = "application/json"
_FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the purpose field around the file
_Handler = Callable[[Request], Awaitable[Response]]


def _boundary(handler: _Handler) -> _Handler:
    @functools.wraps(handler)
    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except SovrouterError as exc:
            return error_response(exc)
        except SQLAlchemyError:  # the store's database is down or refusing: say so, never its details
            return error_response(StoreUnavailableError("the batch store is unavailable; try again later"))
        except Exception as exc:  # the gateway boundary: nothing unexpected leaves as a stack trace
            return internal_error_response(exc)

    return guarded


def _json(body: str) -> Response:
    return Response(body.encode("utf-8"), media_type=_JSON)


class BatchRoutes:
    def __init__(self, service: BatchService, keys: KeyRing, max_body_bytes: int) -> None:
        self.service = service
        self.keys = keys
        self.max_body_bytes = max_body_bytes

    def _tenant(self, request: Request) -> str:
        return self.keys.tenant_for(request.headers.get("authorization"))

    async def upload(self, request: Request) -> Response:
        tenant = self._tenant(request)
        limit = self.service.max_file_bytes + _FORM_OVERHEAD
        declared = request.headers.get("content-length")
        if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise RequestTooLargeError(f"file exceeds {self.service.max_file_bytes} bytes")
        if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            raise InvalidRequestError("upload a file as multipart/form-data with fields 'file' and 'purpose'")
        request = limited(request, limit, "upload")
        try:
            async with request.form(max_files=1, max_fields=8) as form:
                upload, purpose = form.get("file"), form.get("purpose")
                if not isinstance(upload, UploadFile):
                    raise InvalidRequestError("missing 'file' part", param="file")
                if not isinstance(purpose, str):
                    raise InvalidRequestError("missing 'purpose' field", param="purpose")
                expires = _expires_after(form.get("expires_after[anchor]"), form.get("expires_after[seconds]"))
                data = await upload.read(self.service.max_file_bytes + 1)
                filename = upload.filename or "upload.jsonl"
        except (MultiPartException, HTTPException):  # inside an app Starlette reports parse errors as HTTP 400
            raise InvalidRequestError("malformed multipart body") from None
        obj = await asyncio.to_thread(self.service.upload, tenant, filename, purpose, data,  # database off the loop
                                      expires)
        return _json(obj.model_dump_json())

    async def get_file(self, request: Request) -> Response:
        obj = await asyncio.to_thread(self.service.file, self._tenant(request), request.path_params["file_id"])
        return _json(obj.model_dump_json())

    async def file_content(self, request: Request) -> Response:
        data = await asyncio.to_thread(self.service.content, self._tenant(request), request.path_params["file_id"])
        return Response(data, media_type="application/jsonl")

    async def delete_file(self, request: Request) -> Response:
        done = await asyncio.to_thread(self.service.delete_file, self._tenant(request),
                                       request.path_params["file_id"])
        return _json(json.dumps(done))

    async def list_files(self, request: Request) -> Response:
        tenant, query = self._tenant(request), request.query_params
        limit = _limit(query.get("limit", "10000"), 10_000)
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise InvalidRequestError("order must be 'asc' or 'desc'", param="order")
        files, more = await asyncio.to_thread(functools.partial(
            self.service.list_files, tenant, purpose=query.get("purpose"), limit=limit, order=order,
            after=query.get("after")))
        return _list([f.model_dump(mode="json") for f in files], more)

    async def create_batch(self, request: Request) -> Response:
        caller = self.keys.caller(request.headers.get("authorization"))  # the batch remembers its key's digest
        data_class = data_class_header(request.headers.get("x-data-class"))
        raw = await read_limited(request, self.max_body_bytes)
        try:
            body = CreateBatch.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = first.get("loc", ())
            param = str(loc[0]) if loc else None  # the field only: a deeper path can hold client data (keys)
            raise InvalidRequestError(f"invalid batch request: {param or 'body'}: {first['msg']}",
                                      param=param) from None
        batch = await asyncio.to_thread(self.service.create, caller.tenant, body, data_class,  # parses the file
                                        caller.key_sha256)
        return _json(batch.model_dump_json())

    async def get_batch(self, request: Request) -> Response:
        batch = await asyncio.to_thread(self.service.get, self._tenant(request), request.path_params["batch_id"])
        return _json(batch.model_dump_json())

    async def cancel_batch(self, request: Request) -> Response:
        batch = await asyncio.to_thread(self.service.cancel, self._tenant(request), request.path_params["batch_id"])
        return _json(batch.model_dump_json())

    async def list_batches(self, request: Request) -> Response:
        tenant = self._tenant(request)
        limit = _limit(request.query_params.get("limit", "20"), 100)
        items, more = await asyncio.to_thread(self.service.list_batches, tenant, limit,
                                              request.query_params.get("after"))
        return _list([b.model_dump(mode="json") for b in items], more)


def _expires_after(anchor: object, seconds: object) -> ExpiresAfter | None:
    """The multipart form of ``expires_after`` (``expires_after[anchor]``, ``expires_after[seconds]``)."""
    if anchor is None and seconds is None:
        return None
    try:
        return ExpiresAfter.model_validate({"anchor": anchor, "seconds": seconds})
    except ValidationError:
        raise InvalidRequestError("expires_after needs anchor 'created_at' and seconds from 3600 to 2592000",
                                  param="expires_after") from None


def _limit(raw: str, most: int) -> int:
    # the length first: int() refuses more than 4,300 digits with a ValueError (a 500)
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9 or not 1 <= int(raw) <= most:
        raise InvalidRequestError(f"limit must be an integer from 1 to {most}", param="limit")
    return int(raw)


def _list(data: list[dict[str, Any]], more: bool) -> Response:
    """An OpenAI cursor page (the client follows ``has_more`` with ``after=last_id``)."""
    return _json(json.dumps({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                             "last_id": data[-1]["id"] if data else None, "has_more": more}))


def mount_batches(app: FastAPI, service: BatchService, keys: KeyRing, max_body_bytes: int = 1_000_000) -> None:
    """Add the Files and Batch endpoints to a gateway app (start and close ``service`` with the app)."""
    r = BatchRoutes(service, keys, max_body_bytes)
    routes = [
        ("/v1/files", r.upload, "POST"), ("/v1/files", r.list_files, "GET"),
        ("/v1/files/{file_id}", r.get_file, "GET"), ("/v1/files/{file_id}", r.delete_file, "DELETE"),
        ("/v1/files/{file_id}/content", r.file_content, "GET"),
        ("/v1/batches", r.create_batch, "POST"), ("/v1/batches", r.list_batches, "GET"),
        ("/v1/batches/{batch_id}", r.get_batch, "GET"), ("/v1/batches/{batch_id}/cancel", r.cancel_batch, "POST"),
    ]
    for path, handler, method in routes:
        app.router.routes.append(Route(path, _boundary(handler), methods=[method]))
