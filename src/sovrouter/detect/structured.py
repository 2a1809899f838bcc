"""Structured text a user pastes (JSON, CSV/TSV, markdown tables, ``key="value"`` in code), read as ``field: value``
lines.

A value in a record stands after its field name, not after a cue word on its own line: ``{"email": "x@y.org"}``
is a quoted literal next to braces, a CSV row ``Michael Turner,078-05-1120`` has its cue (``ssn``) in the
header line. :func:`structured_views` returns extra lines that put each value after its field name (snake_case /
camelCase / kebab-case field names split into words so that cue words match); the detector reads them in
addition to the text itself, so they can only add detections.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from typing import Any

from sovrouter.detect.formats import FIXTURE

_MAX_JSON_TRIES = 200
_MAX_LINES = 2000
_SPLIT_KEY = re.compile(r"(?<=[a-z])(?=[A-Z])|[_\-.]+")
_MD_RULE = re.compile(r"\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?\s*")
_HEADER_CELL = re.compile(r"[^\W\d][\w .#()/'’\-]{0,39}")


def field_words(key: str) -> str:
    return _SPLIT_KEY.sub(" ", key).strip().lower()


def _json_lines(value: Any) -> list[str]:
    lines: list[str] = []
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        key, node = stack.pop()
        if isinstance(node, dict):
            scalars = [(field_words(str(k)), v) for k, v in node.items()
                       if not isinstance(v, (dict, list)) and v is not None]
            if scalars:  # one record per line: a name and its identifiers stand together
                lines.append("; ".join(f"{k}: {v}" for k, v in scalars))
            stack.extend((str(k), v) for k, v in reversed(node.items()) if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            items = [v for v in node if not isinstance(v, (dict, list)) and v is not None]
            if items:
                joined = "; ".join(map(str, items))
                lines.append(f"{field_words(key)}: {joined}" if key else joined)
            stack.extend((key, v) for v in reversed(node) if isinstance(v, (dict, list)))
    return lines


def _json_views(text: str, expired: Callable[[], bool]) -> list[str]:
    dec = json.JSONDecoder()
    out: list[str] = []
    i, tries = 0, 0
    while tries < _MAX_JSON_TRIES and not expired():
        i = min((j for j in (text.find("{", i), text.find("[", i)) if j >= 0), default=-1)
        if i < 0:
            break
        tries += 1
        try:
            value, end = dec.raw_decode(text, i)
        except (ValueError, RecursionError):
            i += 1
            continue
        if isinstance(value, (dict, list)) and value:
            out += _json_lines(value)
            i = end
        else:
            i += 1
    return out


# ``key="value"`` / ``key: 'value'`` in code, config and logs (a keyword argument, an attribute, a YAML or logfmt
# field, a Python dict's ``'key': 'value'``): the value stands after its field name. Not in a comparison (``==``),
# nor on a test fixture's line (an assertion), which the e-mail rule reads as a code literal.
_ASSIGNMENT = re.compile(
    r"(?<![\w.\-])([\"']?)([A-Za-z_][\w.\-]{0,63})\1\s{0,3}[=:](?!=)\s{0,3}([\"'`])([^\"'`\n]{1,200})\3")


def _assignment_views(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if ("=" not in line and ":" not in line) or FIXTURE.search(line):
            continue
        pairs = [f"{field_words(m.group(2))}: {m.group(4).strip()}" for m in _ASSIGNMENT.finditer(line)
                 if m.group(4).strip()]
        if pairs:
            out.append("; ".join(pairs))
    return out


def _cells(line: str, delim: str) -> list[str]:
    if delim == "|":
        s = line.strip()
        s = s[1:] if s.startswith("|") else s
        s = s[:-1] if s.endswith("|") else s
        return [c.strip() for c in s.split("|")]
    return [c.strip() for c in next(csv.reader([line], delimiter=delim))]


def _table_views(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        done = False
        for delim in ("|", "\t", ";", ","):
            if line.count(delim) < 1:
                continue
            header = _cells(line, delim)
            if len(header) < 2 or not all(_HEADER_CELL.fullmatch(h) for h in header):
                continue
            j = i + 1
            if delim == "|" and j < len(lines) and _MD_RULE.fullmatch(lines[j]):
                j += 1
            rows = []
            while j < len(lines) and lines[j].strip():
                try:
                    cells = _cells(lines[j], delim)
                except csv.Error:
                    break
                if len(cells) != len(header):
                    break
                rows.append(cells)
                j += 1
            if rows:
                names = [field_words(h) for h in header]
                out += ["; ".join(f"{h}: {c}" for h, c in zip(names, row, strict=True) if c) for row in rows]
                i, done = j, True
                break
        if not done:
            i += 1
    return out


def structured_views(text: str, expired: Callable[[], bool] = lambda: False) -> str:
    """Extra ``field: value`` lines for the JSON values and table rows in ``text`` ("" when none). ``expired``: the
    detection budget has run out (each parse attempt may read to the end of a long text): stop trying."""
    lines = text.split("\n")[:_MAX_LINES]
    views = _json_views(text, expired) if ("{" in text or "[" in text) else []
    views += _table_views(lines)
    seen = set(views)
    views += [v for v in _assignment_views(lines) if v not in seen]  # JSON already read is not read twice
    return "\n".join(views)
