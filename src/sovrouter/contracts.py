"""The data contracts of the request path (pydantic v2). Documented in ``docs/contracts.md``.

A request flows through these shapes::

    OpenAI chat body --intake--> NormalizedRequest
        --detect--> Detection --policy--> PolicyVerdict (allowed candidates, per-candidate evidence)
        --classify--> Signals --route--> RouteDecision --execute--> ModelCall -> ModelResult (+ CallAttempt*)
        --record--> RequestRecord
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sovrouter.catalog import Modality

DataClass = Literal["public", "internal", "confidential", "restricted"]
DATA_CLASS_ORDER: tuple[DataClass, ...] = ("public", "internal", "confidential", "restricted")


class ContentPart(BaseModel):
    """One part of a message. Text parts carry ``text``; media parts carry a reference (URL or data URL)."""

    model_config = ConfigDict(frozen=True)
    modality: Modality
    text: str | None = None
    ref: str | None = Field(default=None, description="URL or data URL of a media part (never logged)")


_LITERAL_MARKS = re.compile(r"[\"'`{}\[\]]")


def json_as_text(text: str, _depth: int = 0) -> str:
    """Tool-calling text as detection reads it. A quoted string next to braces reads as a code literal, which the
    detector's e-mail rule leaves alone, so JSON is read as one ``key: value`` line per value (keys joined by
    ``.``; a key with a null or empty value as its path alone, since a key may itself be personal data), a string
    value that holds JSON is read the same way (a few levels deep), and text that is not JSON (a Python repr, a
    trailing comma) is read with its quotes and brackets blanked. Walked without recursion over the structure."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return _LITERAL_MARKS.sub(" ", text)
    lines: list[str] = []
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict | list) and not node:
            if path:
                lines.append(path)
        elif isinstance(node, dict):
            stack.extend((f"{path}.{k}" if path else str(k), v) for k, v in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((path, v) for v in reversed(node))
        elif isinstance(node, str) and node.lstrip()[:1] in ("{", "[") and _depth < 3:
            inner = json_as_text(node, _depth + 1)
            lines.append(f"{path}: {inner}" if path else inner)
        elif node is None:
            if path:
                lines.append(path)
        else:
            lines.append(f"{path}: {node}" if path else str(node))
    return "\n".join(lines)


class ToolCall(BaseModel):
    """A function call an assistant turn made (OpenAI's ``tool_calls`` item). ``arguments`` is the JSON text as
    the model wrote it: it is passed on, never parsed or repaired (the client's agent runs the function)."""

    model_config = ConfigDict(frozen=True)
    id: str
    name: str
    arguments: str = ""

    def openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


class ToolSpec(BaseModel):
    """A function the client offers the model. ``parameters`` is its JSON Schema as canonical JSON text (sorted
    keys), so two requests offering the same function hash alike."""

    model_config = ConfigDict(frozen=True)
    name: str
    description: str | None = None
    parameters: str | None = None
    strict: bool | None = None

    def openai(self) -> dict[str, Any]:
        function: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            function["description"] = self.description
        if self.parameters is not None:
            function["parameters"] = json.loads(self.parameters)
        if self.strict is not None:
            function["strict"] = self.strict
        return {"type": "function", "function": function}


class ToolUse(BaseModel):
    """The request's tool calling: the functions offered, ``tool_choice`` (``choice``, or ``forced``: the one
    function the model must call; ``allowed``: the names an ``allowed_tools`` choice restricts this turn to, with
    ``choice`` its mode) and ``parallel_tool_calls``. Only deployments declaring ``tools`` serve it."""

    model_config = ConfigDict(frozen=True)
    tools: tuple[ToolSpec, ...]
    choice: Literal["none", "auto", "required"] | None = None
    forced: str | None = None
    allowed: tuple[str, ...] | None = None
    parallel: bool | None = None

    def openai(self) -> dict[str, Any]:
        """The body fields an OpenAI-compatible upstream reads. An ``allowed_tools`` choice is sent as the offer cut
        to the allowed functions with its mode as ``tool_choice``: what every OpenAI-compatible server reads
        (llama.cpp and vLLM do not know ``allowed_tools``), with the same effect on what the model may call."""
        offered = self.tools if self.allowed is None else tuple(t for t in self.tools if t.name in self.allowed)
        out: dict[str, Any] = {"tools": [t.openai() for t in offered]}
        if self.forced is not None:
            out["tool_choice"] = {"type": "function", "function": {"name": self.forced}}
        elif self.choice is not None:
            out["tool_choice"] = self.choice
        if self.parallel is not None:
            out["parallel_tool_calls"] = self.parallel
        return out

    @property
    def text(self) -> str:
        """What the offer sends upstream as text: names, descriptions and schemas (read by detection)."""
        return "\n".join("\n".join(x for x in (t.name, t.description, t.parameters and json_as_text(t.parameters))
                                    if x) for t in self.tools)


class Message(BaseModel):
    model_config = ConfigDict(frozen=True)
    role: Literal["system", "user", "assistant", "tool", "developer"]
    parts: tuple[ContentPart, ...]
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant turn's function calls
    tool_call_id: str | None = None  # a tool turn: the call it answers

    @property
    def text(self) -> str:
        return "\n".join(p.text for p in self.parts if p.text is not None)

    @property
    def in_tool_loop(self) -> bool:
        """The turn calls a function or answers a call."""
        return bool(self.tool_calls) or self.tool_call_id is not None

    @property
    def tool_text(self) -> str:
        """The tool-calling strings the turn forwards (call ids, names, arguments read as text; the answered
        call's id)."""
        pieces = [x for c in self.tool_calls for x in (c.id, c.name, json_as_text(c.arguments))]
        if self.tool_call_id is not None:
            pieces.append(self.tool_call_id)
            if (result := json_as_text(self.text)) != self.text:  # a function's JSON result, read as text too
                pieces.append(result)
        return "\n".join(pieces)

    def key_fields(self) -> dict[str, Any]:
        """The turn as cache keys hash it: the tool-calling fields only when set, so a plain turn hashes as it
        did before they existed."""
        dumped = self.model_dump(mode="json")
        if not self.tool_calls:
            del dumped["tool_calls"]
        if self.tool_call_id is None:
            del dumped["tool_call_id"]
        return dumped


class Parameters(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    stop: tuple[str, ...] = ()
    # a 64-bit integer, as upstreams read it: a larger one is the caller's 400 here, not an upstream's error
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)

    def key_fields(self) -> dict[str, Any]:
        """The parameters as cache keys hash them. Fields added later (the penalties) are left out while unset, so
        a request that does not use them hashes as it did before they existed."""
        dumped = self.model_dump(mode="json")
        for later in ("frequency_penalty", "presence_penalty"):
            if dumped[later] is None:
                del dumped[later]
        return dumped


class NormalizedRequest(BaseModel):
    """What every later step sees. The tenant comes from the API key, never from the body."""

    model_config = ConfigDict(frozen=True)
    request_id: str
    tenant: str
    data_class: DataClass = "public"
    messages: tuple[Message, ...]
    parameters: Parameters = Parameters()
    stream: bool = False
    requested_model: str = "auto"
    arrived_ms: float = 0.0
    external_id: str | None = Field(default=None, description="id of the workload record in replay")
    tooling: ToolUse | None = Field(default=None, description="tool calling asked for (tools offered), else None")

    @property
    def uses_tools(self) -> bool:
        """Tools offered, or a turn that calls one or answers a call: only deployments declaring ``tools`` may
        serve it (a follow-up that left ``tools`` out still carries the calls upstream)."""
        return self.tooling is not None or any(m.in_tool_loop for m in self.messages)

    @property
    def modalities(self) -> frozenset[str]:
        return frozenset(p.modality for m in self.messages for p in m.parts)

    @property
    def prompt_text(self) -> str:
        """All text of the messages, in order (what classification reads)."""
        return "\n".join(m.text for m in self.messages)

    @property
    def forwarded_text(self) -> str:
        """Every string the request sends upstream: the messages' text, then the stop sequences, one per line, then
        the tool-calling strings (earlier calls' names and arguments, the functions offered). What personal-data
        detection reads: a stop sequence or a call's arguments leave with the request like a message does."""
        tool_texts = [m.tool_text for m in self.messages if m.in_tool_loop]
        offered = [self.tooling.text] if self.tooling is not None else []
        return "\n".join([self.prompt_text, *self.parameters.stop, *tool_texts, *offered])

    @property
    def user_text(self) -> str:
        return "\n".join(m.text for m in self.messages if m.role == "user")


class Candidate(BaseModel):
    """A slot on one of its deployments: the unit routing chooses between."""

    model_config = ConfigDict(frozen=True)
    slot: str
    deployment: str

    @property
    def key(self) -> str:
        return f"{self.slot}/{self.deployment}"


class Detection(BaseModel):
    """Personal-data detection outcome: types only, never the values."""

    pii_types: list[str] = Field(default_factory=list)
    language: str | None = None  # a language the NER reads when the detector may (en/de/fr first): a routing feature
    failed: bool = Field(default=False, description="detector errored or timed out: treated as personal data")
    elapsed_ms: float = 0.0
    unscanned: list[str] = Field(default_factory=list, description=(
        "modalities present that the detector cannot read (image, audio, video): treated as personal data"))
    request_language: str | None = Field(default=None, description=(
        "the language of the last user turn identified with confidence (the turn being answered), else unknown"))
    request_languages: list[str] = Field(default_factory=list, description=(
        "every language identified with confidence in the user's turns, one per turn read, each once"))

    @property
    def has_personal_data(self) -> bool:
        return self.failed or bool(self.pii_types) or bool(self.unscanned)


class CandidateVerdict(BaseModel):
    candidate: Candidate
    allowed: bool
    rule: str = Field(description="id of the rule that allowed or excluded it")
    policy_version: str | None = Field(default=None, description="version of the policy set that decided")


class PolicyVerdict(BaseModel):
    """The allowed set, computed once per request before routing, with evidence per candidate."""

    verdicts: list[CandidateVerdict]
    effective_class: DataClass = "public"
    failed: bool = False
    elapsed_ms: float = 0.0

    @property
    def allowed(self) -> list[Candidate]:
        return [v.candidate for v in self.verdicts if v.allowed]

    def allows(self, candidate: Candidate) -> bool:
        return any(v.allowed and v.candidate == candidate for v in self.verdicts)


class Signals(BaseModel):
    """Classification signals (filled by the classifier; the baseline leaves most of them unset)."""

    model_config = ConfigDict(extra="allow")
    domain: str | None = None
    language: str | None = None
    output_kind: Literal["free_text", "choice", "number", "code"] | None = None
    difficulty: float | None = None
    sensitive: bool = False


class RouteDecision(BaseModel):
    """Ordered plan: try ``plan[0]`` first; later entries are cascade / fallback steps."""

    plan: list[Candidate]
    router: str
    evidence: dict[str, Any] = Field(default_factory=dict)


class CallAttempt(BaseModel):
    """One upstream call actually made (or refused by the guard before leaving)."""

    candidate: Candidate
    outcome: Literal["ok", "error", "timeout", "circuit_open", "guard_refused", "stream_error", "rejected",
                     "cancelled"]
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    error: str | None = None
    purpose: Literal["primary", "fallback", "retry", "cascade", "shadow"] = "primary"
    spec_acceptance: float | None = Field(default=None, description="speculative decoding: accepted / drafted")
    spec_drafted_tokens: int | None = Field(default=None, ge=0, description="speculative decoding: tokens drafted "
                                            "(0: on, nothing proposed, and no acceptance; None: off or not reported)")


class ModelCall(BaseModel):
    """What an adapter receives. ``attempts`` is the per-request call log every adapter layer appends to."""

    request: NormalizedRequest
    allowed: list[Candidate] = Field(description="the request's allowed set; the policy guard enforces it")
    purpose: Literal["primary", "fallback", "retry", "cascade", "shadow"] = "primary"
    attempts: list[CallAttempt] = Field(default_factory=list, exclude=True)
    # set by the executor when it serves an answer the router's review wanted to replace (the escalation failed
    # everywhere): served, but never cached, so the request gets its escalation again once the upstream is back
    degraded: bool = Field(default=False, exclude=True)
    # event-loop time (``loop.time()``) at which the timeout wrapper gives up on the call now running: a call
    # cancelled before it was abandoned by its caller, not failed by the upstream (the replica choosers' view)
    deadline_at: float | None = Field(default=None, exclude=True)


class ModelResult(BaseModel):
    candidate: Candidate
    text: str
    finish_reason: str = "stop"
    tool_calls: tuple[ToolCall, ...] = ()  # the functions the model asks the client to call
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    spec_acceptance: float | None = Field(default=None, description="speculative decoding: accepted / drafted")
    spec_drafted_tokens: int | None = Field(default=None, ge=0, description="speculative decoding: tokens drafted "
                                            "(0: on, nothing proposed, and no acceptance; None: off or not reported)")


class StreamChunk(BaseModel):
    """A piece of a streamed answer; the last one has ``final`` set with the totals."""

    candidate: Candidate
    delta: str = ""
    final: ModelResult | None = None


class CacheOutcome(BaseModel):
    kind: Literal["miss", "exact", "semantic", "bypass"] = "miss"
    source_request_id: str | None = None
    source_candidate: Candidate | None = None


class RequestRecord(BaseModel):
    """Exactly one per request: what happened and why, with costs from catalog prices."""

    request_id: str
    external_id: str | None = None
    tenant: str
    data_class: DataClass
    effective_class: DataClass
    modalities: list[str]
    arrived_ms: float
    status: Literal["ok", "refused", "error"]
    error_code: str | None = None
    final: Candidate | None = None
    calls: list[CallAttempt] = Field(default_factory=list)
    cache: CacheOutcome = CacheOutcome()
    fallback_used: bool = False
    escalated: bool = False
    latency_ms: float = 0.0
    decision_ms: float = 0.0
    cost_usd: float = 0.0
    detected_pii_types: list[str] = Field(default_factory=list)
    policy: list[CandidateVerdict] = Field(default_factory=list)
    decision: RouteDecision | None = None
    signals: Signals | None = None
    response_text_chars: int = 0
