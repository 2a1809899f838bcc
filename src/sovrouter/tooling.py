"""Tool calling on the wire: reading the client's offer and turns (intake), and an upstream's calls (adapter).

Client side, as OpenAI's API validates them: ``tools`` is a list of at most 128 ``{"type": "function",
"function": {"name", "description"?, "parameters"?, "strict"?}}`` with distinct names of 1-64 letters, digits,
``_`` or ``-``; ``tool_choice`` is ``"none"``, ``"auto"``, ``"required"``, ``{"type": "function", "function":
{"name"}}`` naming an offered function, or ``{"type": "allowed_tools", "allowed_tools": {"mode": "auto" |
"required", "tools": [{"type": "function", "function": {"name"}}, ...]}}`` naming offered functions, and is refused
without ``tools``; ``parallel_tool_calls`` is a boolean.
An assistant turn's ``tool_calls`` items are ``{"id", "type": "function", "function": {"name", "arguments"}}``
with string arguments. Errors name the field only, never the client's values.

Upstream side, leniently (servers differ): a completion's ``message.tool_calls`` and a stream's
``delta.tool_calls`` fragments (by ``index``: the id and name once, the arguments in pieces). Arguments written as
an object are serialised; a call without an id gets a fresh one, since the client needs an id to answer it.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any, Literal

from sovrouter.contracts import ToolCall, ToolSpec, ToolUse
from sovrouter.errors import InvalidRequestError

MAX_TOOLS = 128
MAX_SCHEMA_DEPTH = 64  # nested objects/arrays in a function's parameters: a JSON Schema needs far fewer
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CHOICES = ("none", "auto", "required")


def _bad(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param)


def _spec(raw: Any) -> ToolSpec:
    if not isinstance(raw, dict) or raw.get("type") != "function" or not isinstance(raw.get("function"), dict):
        raise _bad("each tool must be {'type': 'function', 'function': {...}}", "tools")
    fn = raw["function"]
    name = fn.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _bad("a tool's function name must be 1-64 letters, digits, '_' or '-'", "tools")
    description = fn.get("description")
    if description is not None and not isinstance(description, str):
        raise _bad("a tool's function description must be a string", "tools")
    parameters = fn.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise _bad("a tool's function parameters must be a JSON Schema object", "tools")
    if parameters is not None and _depth(parameters) > MAX_SCHEMA_DEPTH:
        # parsed again (at a deeper stack) when the call is forwarded: near the parser's limit that was a
        # RecursionError in the adapter, a 500 without the request's record
        raise _bad(f"a tool's function parameters may nest at most {MAX_SCHEMA_DEPTH} levels", "tools")
    strict = fn.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise _bad("a tool's function 'strict' must be a boolean", "tools")
    return ToolSpec(
        name=name,
        description=description,
        parameters=None if parameters is None else json.dumps(parameters, sort_keys=True, ensure_ascii=False,
                                                              separators=(",", ":")),
        strict=strict,
    )


def _allowed_tools(raw: Any, offered: set[str]) -> tuple[Literal["auto", "required"], tuple[str, ...]]:
    """``tool_choice: {"type": "allowed_tools", ...}``: the mode and the names of the offered functions the model
    may call this turn (in the client's order, once each)."""
    if not isinstance(raw, dict) or raw.get("mode") not in ("auto", "required") or not isinstance(
            raw.get("tools"), list) or not raw["tools"]:
        raise _bad("'allowed_tools' needs a 'mode' ('auto' or 'required') and a non-empty 'tools' list",
                   "tool_choice")
    names: list[str] = []
    for item in raw["tools"]:
        fn = item.get("function") if isinstance(item, dict) and item.get("type") == "function" else None
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str):
            raise _bad("each allowed tool must be {'type': 'function', 'function': {'name': ...}}", "tool_choice")
        if name not in offered:
            raise _bad("'allowed_tools' names a function that is not in 'tools'", "tool_choice")
        if name not in names:
            names.append(name)
    mode: Literal["auto", "required"] = raw["mode"]
    return mode, tuple(names)


def _depth(value: Any) -> int:
    """How deeply ``value`` nests objects and arrays (iterative: a hostile value cannot exhaust the stack)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def read_tooling(body: dict[str, Any]) -> ToolUse | None:
    """The request's :class:`ToolUse`, or None when it offers no tools (``tools`` absent, null or empty)."""
    tools, choice, parallel = body.get("tools"), body.get("tool_choice"), body.get("parallel_tool_calls")
    if tools is not None and not isinstance(tools, list):
        raise _bad("'tools' must be a list", "tools")
    if not tools:
        if choice not in (None, "none"):
            raise _bad("'tool_choice' is only allowed when 'tools' are specified", "tool_choice")
        return None
    if len(tools) > MAX_TOOLS:
        raise _bad(f"at most {MAX_TOOLS} tools are allowed", "tools")
    specs = tuple(_spec(t) for t in tools)
    if len({s.name for s in specs}) != len(specs):
        raise _bad("tool function names must be distinct", "tools")
    if parallel is not None and not isinstance(parallel, bool):
        raise _bad("'parallel_tool_calls' must be a boolean", "parallel_tool_calls")
    if choice is None or choice in _CHOICES:
        return ToolUse(tools=specs, choice=choice, parallel=parallel)
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        mode, allowed = _allowed_tools(choice.get("allowed_tools"), {s.name for s in specs})
        return ToolUse(tools=specs, choice=mode, allowed=allowed, parallel=parallel)
    fn = choice.get("function") if isinstance(choice, dict) and choice.get("type") == "function" else None
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(name, str):
        raise _bad("'tool_choice' must be 'none', 'auto', 'required', a named function or 'allowed_tools'",
                   "tool_choice")
    if name not in {s.name for s in specs}:
        raise _bad("'tool_choice' names a function that is not in 'tools'", "tool_choice")
    return ToolUse(tools=specs, forced=name, parallel=parallel)


def read_tool_calls(raw: Any) -> tuple[ToolCall, ...]:
    """An assistant turn's ``tool_calls`` (client side: strict)."""
    if not isinstance(raw, list) or not raw:
        raise _bad("'tool_calls' must be a non-empty list", "messages")
    calls: list[ToolCall] = []
    for item in raw:
        fn = item.get("function") if isinstance(item, dict) else None
        if (not isinstance(item, dict) or item.get("type", "function") != "function" or not isinstance(fn, dict)
                or not isinstance(item.get("id"), str) or not item["id"] or not isinstance(fn.get("name"), str)
                or not isinstance(fn.get("arguments"), str)):
            raise _bad("each tool call needs an 'id' and a function 'name' and string 'arguments'", "messages")
        calls.append(ToolCall(id=item["id"], name=fn["name"], arguments=fn["arguments"]))
    if len({c.id for c in calls}) != len(calls):
        raise _bad("tool call ids must be distinct within a message", "messages")
    return tuple(calls)


def _arguments(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def upstream_calls(message: dict[str, Any]) -> tuple[ToolCall, ...]:
    """The calls of an upstream completion's message. Raises ``TypeError`` / ``KeyError`` on a malformed list
    (the adapter reports a protocol error)."""
    raw = message.get("tool_calls")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise TypeError("tool_calls")
    calls = []
    for item in raw:
        fn = item["function"]
        name = fn["name"]
        if not isinstance(name, str) or not name:
            raise TypeError("tool call name")
        call_id = item.get("id")
        calls.append(ToolCall(id=call_id if isinstance(call_id, str) and call_id else new_call_id(), name=name,
                              arguments=_arguments(fn.get("arguments"))))
    return tuple(calls)


class ToolCallFragments:
    """Accumulates a stream's ``delta.tool_calls`` fragments by their ``index``."""

    def __init__(self) -> None:
        self._ids: dict[int, str] = {}
        self._names: dict[int, str] = {}
        self._args: dict[int, list[str]] = {}

    def feed(self, fragments: Any) -> bool:
        """Read one delta's ``tool_calls``; True when it carried any part of a call. Raises ``TypeError`` on a
        malformed fragment."""
        if fragments is None:
            return False
        if not isinstance(fragments, list):
            raise TypeError("tool_calls")
        seen = False
        for position, frag in enumerate(fragments):
            if not isinstance(frag, dict):
                raise TypeError("tool call fragment")
            index = frag.get("index", position)
            if not isinstance(index, int) or isinstance(index, bool) or index < 0:
                raise TypeError("tool call index")
            fn = frag.get("function") or {}
            if not isinstance(fn, dict):
                raise TypeError("tool call function")
            if isinstance(frag.get("id"), str) and frag["id"]:
                self._ids.setdefault(index, frag["id"])
            if isinstance(fn.get("name"), str) and fn["name"]:
                self._names.setdefault(index, fn["name"])
            if fn.get("arguments") is not None:
                self._args.setdefault(index, []).append(_arguments(fn["arguments"]))
            seen = True
        return seen

    def calls(self) -> tuple[ToolCall, ...]:
        """The complete calls, in index order. Raises ``TypeError`` when a call never got its name."""
        out = []
        for index in sorted(set(self._ids) | set(self._names) | set(self._args)):
            name = self._names.get(index)
            if name is None:
                raise TypeError("tool call without a name")
            out.append(ToolCall(id=self._ids.get(index) or new_call_id(), name=name,
                                arguments="".join(self._args.get(index, []))))
        return tuple(out)
