"""``POST /v1/feedback``: a client's quality signal for a response it got.

Body: ``{"response_id": str, "score": 0..1}`` or ``{"response_id": str, "thumbs": "up"|"down"}`` (exactly one
of ``score`` / ``thumbs``), optional ``"comment"`` (stored, never displayed). ``response_id`` is the request id
the gateway returned (``id`` of the completion; a ``chatcmpl-`` prefix is accepted). It takes the gateway's API
key like chat does, and a key may score only its own tenant's answers: another tenant's id is a 404, as an unknown
one is (until 2026-11-28 the endpoint took no key, so anyone reaching the gateway could score, and so fix the
quality of, any tenant's answers, and learn which request ids exist). A request that got no answer (refused or
failed) is a 400; a body past 16 KB is a 413, refused before it is read. Errors are OpenAI-style and never echo
the input.
"""

from __future__ import annotations

import asyncio
import json
from typing import Literal, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sovrouter.contracts import RequestRecord
from sovrouter.errors import InvalidRequestError, NotFoundError, SovrouterError
from sovrouter.evalloop.failures import classify_failure
from sovrouter.evalloop.signals import QualitySignal, SignalStore
from sovrouter.gateway.auth import KeyRing
from sovrouter.gateway.headers import read_limited
from sovrouter.store.records import find_record

MAX_FEEDBACK_BYTES = 16_384


class RecordLookup(Protocol):
    def get(self, request_id: str) -> RequestRecord:
        """The record of a request; raises :class:`NotFoundError` when there is none."""
        ...


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    response_id: str = Field(min_length=1, max_length=200)
    score: float | None = Field(default=None, ge=0, le=1)
    thumbs: Literal["up", "down"] | None = None
    comment: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _one_of(self) -> FeedbackIn:
        if (self.score is None) == (self.thumbs is None):
            raise ValueError("give exactly one of 'score' (0..1) or 'thumbs' ('up' or 'down')")
        return self

    @property
    def value(self) -> float:
        if self.score is not None:
            return self.score
        return 1.0 if self.thumbs == "up" else 0.0


def parse_feedback(raw: bytes) -> FeedbackIn:
    if len(raw) > MAX_FEEDBACK_BYTES:
        raise InvalidRequestError("feedback body too large")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth (a 500 until 2026-11-28)
        raise InvalidRequestError("body is not valid JSON") from None
    try:
        return FeedbackIn.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = err.get("loc", ())
        # the field only, and only a known one: an unknown key is client data (it may be an e-mail address)
        field = str(loc[0]) if loc and loc[0] in FeedbackIn.model_fields else None
        msg = "unknown field" if err.get("type") == "extra_forbidden" else err.get("msg", "invalid value")
        raise InvalidRequestError(f"invalid feedback: {field + ': ' if field else ''}{msg}",
                                  param=field) from None


def record_feedback(fb: FeedbackIn, records: RecordLookup, store: SignalStore, tenant: str) -> QualitySignal:
    """Store ``tenant``'s feedback on one of its own answered requests."""
    return store_feedback(fb, find_answered(records, fb.response_id, tenant), store)


def find_answered(records: RecordLookup, rid: str, tenant: str) -> RequestRecord:
    """``tenant``'s answered request ``rid`` (or ``chatcmpl-`` + its id). Blocking: the lookup may reach the shared
    database."""
    unknown = NotFoundError("no response with that id", param="response_id")
    try:
        record = find_record(records.get, rid)
    except NotFoundError:
        raise unknown from None
    if record.tenant != tenant:
        raise unknown  # another tenant's request: the same answer as an unknown id
    if record.status != "ok":
        raise InvalidRequestError("that request got no answer to give feedback on", param="response_id")
    return record


def store_feedback(fb: FeedbackIn, record: RequestRecord, store: SignalStore) -> QualitySignal:
    score = fb.value
    signal = QualitySignal(
        request_id=record.request_id, source="feedback", score=score,
        failure_mode=classify_failure(record, None, score), comment=fb.comment,
        slot=record.final.slot if record.final else None,
        deployment=record.final.deployment if record.final else None,
    )
    store.add(signal)
    return signal


def feedback_router(store: SignalStore, records: RecordLookup, keys: KeyRing) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/feedback")
    async def feedback(request: Request) -> JSONResponse:
        try:
            tenant = keys.tenant_for(request.headers.get("authorization"))
            fb = parse_feedback(await read_limited(request, MAX_FEEDBACK_BYTES))
            # off the event loop: for an id this instance did not answer, the lookup goes to the shared database
            # through a blocking driver, and a silent database host held every other request for its connect
            # timeout (10 s; found in review, 2026-11-28). The store write stays on the loop (one shared connection)
            record = await asyncio.to_thread(find_answered, records, fb.response_id, tenant)
            signal = store_feedback(fb, record, store)
        except SovrouterError as exc:
            return JSONResponse(status_code=exc.status, content=exc.to_openai())
        return JSONResponse({"object": "feedback", "response_id": signal.request_id, "score": signal.score,
                             "failure_mode": signal.failure_mode})

    return router
