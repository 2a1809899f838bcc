"""Lone UTF-16 surrogates: ``"\\ud800"`` is a valid JSON escape, but the string it decodes to cannot be encoded
as UTF-8, so it cannot be hashed into a cache key, stored, forwarded or streamed. Client input holding one is
refused (:func:`reject_lone_surrogates`, a 400); text from upstreams and recorded workloads is repaired instead
(:func:`valid_text`, :func:`repair_strings`: U+FFFD in its place), since refusing it would lose a paid answer or
a replay event."""

from __future__ import annotations

from typing import Any

from sovrouter.errors import InvalidRequestError


def valid_text(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (unchanged, and not copied, when there is none)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def repair_strings(value: Any) -> Any:
    """A copy of a JSON-like value with :func:`valid_text` applied to every string, keys included."""
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, dict):
        return {repair_strings(k): repair_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [repair_strings(v) for v in value]
    return value


def reject_lone_surrogates(value: Any, param: str | None = None) -> None:
    """Raise :class:`InvalidRequestError` when any string in ``value`` (nested lists and dict keys included)
    cannot be encoded as UTF-8. Iterative, so a deeply nested body cannot exhaust the stack; the message never
    quotes the offending text."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidRequestError("the request holds a string that is not valid Unicode "
                                          "(a lone surrogate escape)", param=param) from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
