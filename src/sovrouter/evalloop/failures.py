"""Failure-mode classification of a served request: from the record (status, error code, call outcomes), the
answer text when available, and the observed score. Order matters: the first matching mode wins."""

from __future__ import annotations

import json
import re

from sovrouter.contracts import RequestRecord
from sovrouter.evalloop.signals import FailureMode

_REFUSAL = re.compile(
    r"^\s*(i'?m sorry|i am sorry|sorry,|i can(?:not|'t) (?:help|assist|provide|answer|comply)|"
    r"i'?m (?:not able|unable) to|as an ai\b|i won'?t be able)",
    re.IGNORECASE,
)
_CHOICE = re.compile(r"(?:^|[\s(\[\"'*:])([A-J])(?:[\s).\]\"'*,:]|$)")
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)?")
_CODE = re.compile(r"```|\bdef |\breturn\b|\bfunction\b|=>|;\s*$", re.MULTILINE)
_JSON_OBJ = re.compile(r"\{.*\}", re.DOTALL)
WRONG_BELOW = 0.5


def wants_json(prompt_text: str) -> bool:
    return "json" in prompt_text.lower()


def format_ok(answer: str, output_kind: str | None, expect_json: bool = False) -> bool:
    """Does the answer have the shape the request asked for? (No opinion on correctness.)"""
    if not answer.strip():
        return False
    if expect_json:
        m = _JSON_OBJ.search(answer)
        if m is None:
            return False
        try:
            json.loads(m.group(0))
        except (ValueError, RecursionError):  # nested past the parser's depth
            return False
    if output_kind == "choice":
        return _CHOICE.search(answer) is not None
    if output_kind == "number":
        return _NUMBER.search(answer) is not None
    if output_kind == "code":
        return _CODE.search(answer) is not None
    return True


def classify_failure(record: RequestRecord, answer: str | None = None, score: float | None = None,
                     finish_reason: str | None = None, expect_json: bool = False) -> FailureMode | None:
    if record.status == "refused" or record.error_code in ("no_allowed_deployment", "policy_guard"):
        return "policy_refusal"
    if record.status == "error":
        if record.error_code == "upstream_timeout" or any(c.outcome == "timeout" for c in record.calls):
            return "timeout"
        return "wrong_answer" if score is not None and score < WRONG_BELOW else None
    if finish_reason == "length":
        return "truncated"
    if answer is not None:
        if _REFUSAL.search(answer[:200]):
            return "refusal"
        kind = record.signals.output_kind if record.signals is not None else None
        if not format_ok(answer, kind, expect_json):
            return "format_error"
    if score is not None and score < WRONG_BELOW:
        return "wrong_answer"
    return None
