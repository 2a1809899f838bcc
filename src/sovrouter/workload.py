"""Loading a workload directory (the ``rep-v1`` format of ``shared/data/workload``).

Two layouts are accepted:

- flat: ``DIR/{models.json, tenants.json, requests.jsonl.gz, responses.jsonl.gz, stream.jsonl.gz, ...}``;
- shared: ``DIR/models.json`` and ``DIR/tenants.json`` with the split files under ``DIR/<split>/`` (``dev`` by
  default, with a warning when other splits stand beside it; any single sub-folder holding ``requests.jsonl.gz``
  is taken when there is no ``dev``). ``DIR/<split>`` itself may be given too: ``models.json`` and
  ``tenants.json`` are then read from its parent when it has none of its own.

Each data file may be gzip (``.jsonl.gz``; recognised by its magic bytes) or plain (``.jsonl``).
:func:`load_replay_inputs` reads only what the router may see at serving time (catalog, tenants, requests,
responses, stream); it never opens the score or label files. :func:`load_scores` and :func:`load_labels` are
for the offline evaluation only.

What another producer of the same format may write differently is read, not refused (every stream event must
get its decision): ids written as numbers (read as text, and written back in decisions as the file wrote
them), a declared data class in another case (``"Public"``; one missing, null or unknown is ``restricted``: fail
closed), stream lines without ``seq`` (numbered in file order after the highest given), an identical request line
twice, a null response (treated as missing) or missing token counts (estimated from the text). A stream event
naming a request the requests file lacks gets an error decision in replay.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from sovrouter.adapters.replay import RecordedResponse
from sovrouter.catalog import Catalog, Tenants, estimate_tokens
from sovrouter.contracts import DATA_CLASS_ORDER, DataClass
from sovrouter.errors import ConfigError
from sovrouter.fileio import open_text
from sovrouter.intake import PART_TYPES
from sovrouter.unicode import repair_strings

log = logging.getLogger(__name__)

REPLAY_FILES = ("requests", "responses", "stream")
EVAL_FILES = ("scores", "labels")


class WorkloadMessage(BaseModel):
    """A recorded turn, read as written: a role left out, null or not text is mended by ``chat_body`` (``user``),
    content left out is null (an empty turn), so one odd turn never stops the whole replay."""

    model_config = ConfigDict(extra="allow", frozen=True)
    role: Any = "user"
    content: Any = None


def _declared_class(value: Any) -> Any:
    """``"Public"`` is public; a missing, null or unknown class is ``restricted`` (the strictest: fail closed)."""
    text = value.strip().lower() if isinstance(value, str) else None
    return text if text in DATA_CLASS_ORDER else "restricted"


DeclaredClass = Annotated[DataClass, BeforeValidator(_declared_class)]
_LENIENT = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)  # ids written as numbers


def _keep_numeric_id(data: Any, field: str) -> Any:
    """``data`` with ``<field>_as_written`` set when its ``field`` is written as a number: the id is read as text
    (``coerce_numbers_to_str``) and written back in decisions as the file wrote it."""
    value = data.get(field) if isinstance(data, dict) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return {**data, f"{field}_as_written": value}
    return data


class WorkloadRequest(BaseModel):
    """A line of ``requests.jsonl.gz``: what the router sees."""

    model_config = _LENIENT
    id: str
    tenant: str
    data_class: DeclaredClass = "restricted"
    messages: list[WorkloadMessage] = Field(min_length=1)
    id_as_written: int | None = Field(default=None, exclude=True, description="the id, when written as a number")

    @model_validator(mode="before")
    @classmethod
    def _keep_a_numeric_id(cls, data: Any) -> Any:
        return _keep_numeric_id(data, "id")

    @property
    def written_id(self) -> str | int:
        """The id as the requests file wrote it (what decisions carry back)."""
        return self.id if self.id_as_written is None else self.id_as_written

    def chat_body(self) -> dict[str, Any]:
        """The chat body the gateway would get. Replay answers every event, so what the gateway would refuse in
        a recorded message is mended here instead: a broken escape (U+FFFD), a role written another way
        (``User``, ``function``, ``human``...), content as an object or as parts of a type intake does not know
        (their text kept)."""
        return {"messages": [_chat_message(repair_strings(m.model_dump())) for m in self.messages]}


_ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})
_ROLE_ALIASES = {"function": "tool", "ipython": "tool", "human": "user", "ai": "assistant", "bot": "assistant",
                 "model": "assistant"}


def _chat_message(raw: dict[str, Any]) -> dict[str, Any]:
    role = str(raw.get("role", "")).strip().lower()
    content = _chat_content(raw.get("content"))
    calls = _tool_call_text(raw.get("tool_calls"), raw.get("function_call"))
    if calls:  # the gateway refuses tool calls in a turn: kept as the turn's text, so policy and routing read them
        content = ([*content, {"type": "text", "text": calls}] if isinstance(content, list)
                   else "\n".join(x for x in (content, calls) if x))
    rest = {k: v for k, v in raw.items() if k not in ("tool_calls", "function_call")}
    return {**rest, "role": role if role in _ROLES else _ROLE_ALIASES.get(role, "user"), "content": content}


def _tool_call_text(tool_calls: Any, function_call: Any) -> str:
    """``name(arguments)`` per call of an assistant turn (OpenAI's ``tool_calls`` or the older ``function_call``)."""
    calls = [c.get("function") for c in tool_calls if isinstance(c, dict)] if isinstance(tool_calls, list) else []
    lines = []
    for call in [*calls, function_call]:
        if isinstance(call, dict):
            args = call.get("arguments")
            lines.append(f"{call.get('name', '')}({args if isinstance(args, str) else json.dumps(args)})")
    return "\n".join(lines)


def _chat_content(content: Any) -> Any:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[Any] = []
        for part in content:
            if isinstance(part, str):
                parts.append({"type": "text", "text": part})
            elif isinstance(part, dict) and part.get("type") in PART_TYPES:
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append({"type": "text", "text": part["text"]})
        return parts or ""
    if isinstance(content, dict) and isinstance(content.get("text"), str):
        return content["text"]
    return json.dumps(content, ensure_ascii=False)


class WorkloadResponse(BaseModel):
    """A line of ``responses.jsonl.gz``: what slot ``model`` answered to ``request_id`` (``None``: no answer
    recorded, as if the line were missing). Token counts left out are estimated from the text."""

    model_config = _LENIENT
    request_id: str
    model: str
    response: str | None
    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)


class StreamEvent(BaseModel):
    model_config = _LENIENT
    seq: int | None = Field(default=None, ge=0, description="None until load_stream numbers it")
    request_id: str
    t_ms: float | None = Field(default=None, description="None (left out, null or not a finite number): the "
                               "previous event's time; a negative time is 0")
    request_id_as_written: int | None = Field(default=None, exclude=True)

    @field_validator("t_ms", mode="before")
    @classmethod
    def _time_or_none(cls, value: Any) -> Any:
        try:  # "1250" is read as written; "soon", NaN or a list is no time (the previous event's is taken)
            t = float(value) if value is not None and not isinstance(value, bool) else None
        except (TypeError, ValueError):
            return None
        return t if t is not None and math.isfinite(t) else None

    @model_validator(mode="before")
    @classmethod
    def _keep_a_numeric_id(cls, data: Any) -> Any:
        return _keep_numeric_id(data, "request_id")

    @property
    def written_request_id(self) -> str | int:
        return self.request_id if self.request_id_as_written is None else self.request_id_as_written

    @property
    def order(self) -> int:
        assert self.seq is not None, "load_stream numbers every event"
        return self.seq

    @property
    def at_ms(self) -> float:
        assert self.t_ms is not None, "load_stream times every event"
        return self.t_ms


class Score(BaseModel):
    model_config = _LENIENT
    request_id: str
    model: str
    score: float = Field(ge=0, le=1)
    score_kind: str = ""


class Label(BaseModel):
    """Ground truth of ``labels.jsonl.gz`` (offline evaluation only, never routing)."""

    model_config = _LENIENT
    id: str
    source: str = ""
    source_item_id: str = ""
    domain: str = "unknown"
    subdomain: str = ""
    pii_types: list[str] = Field(default_factory=list)
    hard_negative: bool = False
    copy_of: str | None = None

    @property
    def has_personal_data(self) -> bool:
        return bool(self.pii_types)


_M = TypeVar("_M", bound=BaseModel)
DATA_FILES = ("requests", "responses", "stream", "scores", "labels")  # DATA/<name>.jsonl.gz (or .jsonl)


@dataclass(frozen=True)
class WorkloadPaths:
    """Where each file of a workload is (``data`` holds the split files)."""

    root: Path
    data: Path

    @property
    def catalog(self) -> Path:
        return _first_existing(self.root / "models.json", self.data / "models.json")

    @property
    def tenants(self) -> Path:
        return _first_existing(self.root / "tenants.json", self.data / "tenants.json")

    def file(self, name: str) -> Path | None:
        for candidate in (self.data / f"{name}.jsonl.gz", self.data / f"{name}.jsonl"):
            if candidate.is_file():
                return candidate
        return None

    def require(self, name: str) -> Path:
        path = self.file(name)
        if path is None:
            raise ConfigError(f"workload {self.data} has no {name}.jsonl.gz")
        return path

    def input_files(self) -> list[Path]:
        """Every path a command may read as part of this workload, present or not (``models.json``,
        ``tenants.json`` and each data file, gzip and plain): a command's output must be none of them, or it would
        replace the workload's file, or be read as one next time."""
        names = [self.root / "models.json", self.data / "models.json", self.root / "tenants.json",
                 self.data / "tenants.json"]
        return names + [self.data / f"{name}{ext}" for name in DATA_FILES for ext in (".jsonl.gz", ".jsonl")]


def _first_existing(*paths: Path) -> Path:
    for p in paths:
        if p.is_file():
            return p
    return paths[0]


def resolve(directory: str | Path | WorkloadPaths, split: str | None = None) -> WorkloadPaths:
    """Find the files of a workload in either layout (see module docstring); paths already resolved are
    returned as they are (a command that checked its inputs first resolves, and warns, once)."""
    if isinstance(directory, WorkloadPaths):
        return directory
    root = Path(directory)
    if not root.is_dir():
        raise ConfigError(f"workload directory {root} does not exist")
    if split is not None:
        data = root / split
        if not data.is_dir():
            raise ConfigError(f"workload {root} has no split folder {split!r}")
        return WorkloadPaths(root, data)
    flat = WorkloadPaths(root, root)
    if flat.file("requests") is not None:
        if not (root / "models.json").is_file() and (root.parent / "models.json").is_file():
            return WorkloadPaths(root.parent, root)  # a split folder of the shared layout, named directly
        return flat
    subs = sorted(d for d in root.iterdir() if d.is_dir() and WorkloadPaths(root, d).file("requests"))
    if (root / "dev").is_dir():
        others = [d.name for d in subs if d.name != "dev"]
        if others:  # the documented default, said aloud: another split beside dev is never replayed silently
            log.warning("workload %s has the splits dev, %s: replaying dev (name another with --split)", root,
                        ", ".join(others))
        return WorkloadPaths(root, root / "dev")
    if len(subs) == 1:
        return WorkloadPaths(root, subs[0])
    if not subs:
        raise ConfigError(f"workload {root} has no requests.jsonl.gz (flat or in a split folder)")
    raise ConfigError(f"workload {root} has several splits ({', '.join(d.name for d in subs)}): name one")


def iter_jsonl(path: Path, model: type[_M], skip_invalid: bool = False) -> Iterator[_M]:
    """Validated rows of a (gzip) JSONL file; a bad line is a :class:`ConfigError` naming file and line (with
    ``skip_invalid``: a warning, and the line is left out, unless no line of the file reads: that is an error)."""
    read, first_error = 0, ""
    try:
        with open_text(path) as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = model.model_validate(json.loads(line))
                except (ValueError, ValidationError) as exc:
                    msg = f"{path.name} line {lineno}: invalid {model.__name__}: {_short(exc)}"
                    if not skip_invalid:
                        raise ConfigError(msg) from None
                    log.warning("%s (line left out)", msg)
                    first_error = first_error or msg
                    continue
                read += 1
                yield row
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:  # zlib: a corrupt gzip
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if first_error and not read:
        raise ConfigError(f"no line of {path.name} reads (first: {first_error})")


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return f"{'.'.join(str(x) for x in err.get('loc', ()))}: {err.get('msg', '')}"
    return str(exc).splitlines()[0][:200]


@dataclass(frozen=True)
class ReplayInputs:
    """Everything replay may read: no scores, no labels."""

    paths: WorkloadPaths
    catalog: Catalog
    tenants: Tenants
    requests: dict[str, WorkloadRequest]
    responses: dict[tuple[str, str], RecordedResponse]  # (request id, slot) -> response
    stream: list[StreamEvent]


def load_requests(paths: WorkloadPaths) -> dict[str, WorkloadRequest]:
    """Requests by id. A line repeated as is counts once; two different requests under one id keep the first
    (with a warning); a line that does not read is left out (with a warning; its events get error decisions):
    every event still gets its decision."""
    out: dict[str, WorkloadRequest] = {}
    for r in iter_jsonl(paths.require("requests"), WorkloadRequest, skip_invalid=True):
        if r.id in out:
            if r != out[r.id]:
                log.warning("requests: two different requests share the id %s; the first is used", r.id)
            continue
        out[r.id] = r
    return out


def load_responses(paths: WorkloadPaths,
                   requests: dict[str, WorkloadRequest] | None = None) -> dict[tuple[str, str], RecordedResponse]:
    """Recorded answers by (request id, slot); a null answer is left out (as if not recorded). Token counts
    left out are estimated (~4 characters a token): the input's from the request's messages when ``requests`` has
    it (else 0), the output's from the answer."""
    out: dict[tuple[str, str], RecordedResponse] = {}
    for r in iter_jsonl(paths.require("responses"), WorkloadResponse):
        if r.response is None:
            continue
        tokens_in = r.input_tokens
        if tokens_in is None:
            req = (requests or {}).get(r.request_id)
            text = "\n".join(json.dumps(m.content, ensure_ascii=False) for m in req.messages) if req else ""
            tokens_in = estimate_tokens(text)
        tokens_out = r.output_tokens if r.output_tokens is not None else estimate_tokens(r.response)
        out[(r.request_id, r.model)] = RecordedResponse(response=r.response, input_tokens=tokens_in,
                                                        output_tokens=tokens_out)
    return out


def load_stream(paths: WorkloadPaths) -> list[StreamEvent]:
    """Stream events in arrival order (by ``seq``; ``seq`` values must be unique). Events written without a
    ``seq`` are numbered in file order after the highest one given."""
    events = list(iter_jsonl(paths.require("stream"), StreamEvent, skip_invalid=True))  # no request id: no event
    given = [e.seq for e in events if e.seq is not None]
    following = itertools.count(max(given, default=-1) + 1)
    events = [e if e.seq is not None else e.model_copy(update={"seq": next(following)}) for e in events]
    events.sort(key=lambda e: e.order)
    last = 0.0
    for i, e in enumerate(events):  # a time left out is the previous event's; a negative one is 0
        t = last if e.t_ms is None else max(0.0, e.t_ms)
        if t != e.t_ms:
            events[i] = e.model_copy(update={"t_ms": t})
        last = t
    for a, b in itertools.pairwise(events):
        if a.seq == b.seq:
            raise ConfigError(f"stream: duplicate seq {a.seq}")
    return events


def load_replay_inputs(directory: str | Path | WorkloadPaths, split: str | None = None) -> ReplayInputs:
    """What replay reads. Events naming a request the requests file lacks are kept: replay gives each an error
    decision (a warning says how many)."""
    paths = resolve(directory, split)
    requests = load_requests(paths)
    stream = load_stream(paths)
    unknown = [e.seq for e in stream if e.request_id not in requests]
    if unknown:
        log.warning("stream: %d events name request ids the requests file lacks (first seq %s): each gets an "
                    "error decision", len(unknown), unknown[0])
    return ReplayInputs(
        paths=paths,
        catalog=Catalog.load(paths.catalog),
        tenants=Tenants.load(paths.tenants),
        requests=requests,
        responses=load_responses(paths, requests),
        stream=stream,
    )


def load_scores(paths: WorkloadPaths) -> dict[tuple[str, str], float]:
    """``(request id, slot) -> score``. Offline evaluation only."""
    return {(s.request_id, s.model): s.score for s in iter_jsonl(paths.require("scores"), Score)}


def load_labels(paths: WorkloadPaths) -> dict[str, Label]:
    """``request id -> Label``. Offline evaluation only."""
    return {lab.id: lab for lab in iter_jsonl(paths.require("labels"), Label)}
