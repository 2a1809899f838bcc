"""Batch files in the OpenAI Batch shape.

Input line: ``{"custom_id": str, "method": "POST", "url": "/v1/chat/completions", "body": {...}}``.
Output line: ``{"id", "custom_id", "response": {"status_code", "request_id", "body"} | null, "error": {...} | null}``.

A line that cannot be read as a request (not JSON, wrong shape, unsupported URL, duplicate ``custom_id``) gets
an output line with ``response: null`` and ``error: {"code", "message", "line"}``; the rest of the batch runs.
Blank lines are not requests and are skipped. Error messages name the problem, never echo the line's content.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sovrouter.errors import InvalidRequestError
from sovrouter.fileio import json_line
from sovrouter.unicode import reject_lone_surrogates

CHAT_URL = "/v1/chat/completions"


class BatchInputLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    custom_id: str = Field(min_length=1, max_length=512)
    method: Literal["POST"]
    url: Literal["/v1/chat/completions", "/chat/completions"]
    body: dict[str, Any]


@dataclass(frozen=True)
class LineError:
    code: str
    message: str


@dataclass(frozen=True)
class ParsedLine:
    """One non-blank input line: a request (``body``) or why it is not one (``error``)."""

    line_no: int
    custom_id: str | None
    body: dict[str, Any] | None = None
    error: LineError | None = None


def _custom_id_of(raw: Any) -> str | None:
    if isinstance(raw, dict):
        cid = raw.get("custom_id")
        if isinstance(cid, str) and 0 < len(cid) <= 512:
            return cid
    return None


def parse_line(text: str, line_no: int) -> ParsedLine:
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
        return ParsedLine(line_no, None, error=LineError("invalid_json", "line is not valid JSON"))
    try:
        reject_lone_surrogates(raw)
    except InvalidRequestError:  # valid JSON, but a string no output line could carry back
        return ParsedLine(line_no, None, error=LineError("invalid_batch_line",
                                                         "invalid batch line: a string is not valid Unicode"))
    try:
        item = BatchInputLine.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first.get("loc", ())
        # the field only, and only a known one: an unknown key or a deeper path can be client data
        where = str(loc[0]) if loc and loc[0] in BatchInputLine.model_fields else "line"
        msg = "unknown field" if first.get("type") == "extra_forbidden" else first["msg"]
        return ParsedLine(line_no, _custom_id_of(raw),
                          error=LineError("invalid_batch_line", f"invalid batch line: {where}: {msg}"))
    return ParsedLine(line_no, item.custom_id, body=item.body)


def jsonl_lines(text: str) -> list[str]:
    """The lines of a JSONL text: split on ``\n`` only. (``str.splitlines`` also splits on U+2028, U+0085 and
    other separators that a JSON string may hold unescaped, which would cut a request in two.) A leading byte-order
    mark, as Windows tools write, is dropped (it failed the first request as invalid JSON)."""
    return text.removeprefix("\ufeff").split("\n")


def parse_lines(lines: Iterable[str]) -> list[ParsedLine]:
    """Every non-blank line, in order; a repeated ``custom_id`` makes the later lines errors."""
    out: list[ParsedLine] = []
    seen: set[str] = set()
    for i, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        parsed = parse_line(text, i)
        cid = parsed.custom_id
        if parsed.error is None and cid is not None:
            if cid in seen:
                parsed = ParsedLine(i, parsed.custom_id,
                                    error=LineError("duplicate_custom_id", "custom_id already used in this batch"))
            else:
                seen.add(cid)
        out.append(parsed)
    return out


def output_line(line_id: str, custom_id: str | None, *, status_code: int | None = None,
                request_id: str | None = None, body: dict[str, Any] | None = None,
                error: LineError | None = None, line_no: int | None = None) -> dict[str, Any]:
    response = None if status_code is None else {"status_code": status_code, "request_id": request_id,
                                                 "body": body}
    err = None if error is None else {"code": error.code, "message": error.message, "line": line_no}
    return {"id": line_id, "custom_id": custom_id, "response": response, "error": err}


def dumps_line(obj: dict[str, Any]) -> str:
    # a lone surrogate is written as an escape: still valid JSON, and the line is kept
    return json_line(obj, compact=True, allow_nan=True)
