"""Answer extraction and answer-side features (the evidence a cascade reads from an answer itself).

Extraction is generic, per output kind, and knows no benchmark template:

- a JSON ``"answer"`` field (``{"answer": "42"}``, also inside a fenced block),
- a stated choice: "the answer is (C)", "Answer: C",
- a LaTeX ``\\boxed{...}``,
- a bare short answer (a letter, a number, a word on its own),
- the final number of a worked answer,
- the first fenced code block (for code answers, compared by token overlap rather than equality).

Normalisation makes two answers comparable ("$1,200.00" == "1200", "(b)" == "b").
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from sovrouter.routing.codecheck import CodeAnswer, behaviour_agreement, example_runs, parse_code_answer

_JSON_ANSWER = re.compile(r'"answer"\s*:\s*"((?:[^"\\]|\\.)*)"', re.IGNORECASE)
_JSON_ANSWER_BARE = re.compile(r'"answer"\s*:\s*([^,}\n"]+)', re.IGNORECASE)
_STATED_CHOICE = re.compile(r"answer\s*(?:is|:)\s*:?\s*\(?\*{0,2}([A-Ja-j])\b\)?", re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*)\}")
_BARE_SHORT = re.compile(r"^\(?([A-Za-z]|-?\d+(?:\.\d+)?)\)?(?:[.):]|\s|$)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_CODE_BLOCK = re.compile(r"```[a-zA-Z0-9_+-]*\n(.*?)```", re.DOTALL)
_WORD = re.compile(r"\w+", re.UNICODE)
_HEDGES = ("i'm sorry", "i am sorry", "i apologize", "i cannot", "i can't", "as an ai", "not sure",
           "unable to", "cannot be determined", "insufficient information", "i don't know")
_TEX_WRAPPERS = re.compile(r"\\(?:text|mathrm|textbf|mathbf)\{([^{}]*)\}")


def normalise(answer: str) -> str:
    """Canonical form used to compare two extracted answers."""
    a = answer.strip().strip(".").strip()
    inner = _BOXED.search(a)
    if inner:
        a = inner.group(1)
    a = _TEX_WRAPPERS.sub(r"\1", a)
    a = a.lower().replace("$", "").replace("\\!", "").replace("\\,", "").replace(" ", "")
    a = re.sub(r"^\(([a-z0-9])\)$", r"\1", a)
    if re.fullmatch(r"-?[\d,]+(\.\d+)?", a):
        a = a.replace(",", "")
    try:
        value = float(a)
    except ValueError:
        return a
    if math.isfinite(value):
        return f"{value:g}"
    return a


def extract_answer(text: str) -> str | None:
    """The final answer stated in ``text``, normalised; ``None`` when no answer can be found."""
    found = _JSON_ANSWER.findall(text)
    if found:
        return normalise(found[-1])
    found = _JSON_ANSWER_BARE.findall(text)
    if found:
        return normalise(found[-1])
    choices: list[str] = _STATED_CHOICE.findall(text)
    if choices:
        return choices[-1].lower()
    boxed = _BOXED.findall(text)
    if boxed:
        return normalise(boxed[-1])
    stripped = text.strip()
    if len(stripped) <= 40:
        m = _BARE_SHORT.match(stripped)
        if m:
            return normalise(m.group(1))
    return None


def final_number(text: str) -> str | None:
    nums = _NUMBER.findall(text[-400:])
    return normalise(nums[-1]) if nums else None


def code_block(text: str) -> str | None:
    m = _CODE_BLOCK.search(text)
    return m.group(1) if m else None


def _tokens(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()[:4000]))


def jaccard(a: str, b: str) -> float:
    ta, tb = _tokens(a), _tokens(b)
    if not ta and not tb:
        return 1.0
    return len(ta & tb) / max(1, len(ta | tb))


def _json_valid(text: str) -> float:
    block = code_block(text)
    candidate = block if block is not None else text
    start, end = candidate.find("{"), candidate.rfind("}")
    if start < 0 or end <= start:
        return 0.0
    try:
        json.loads(candidate[start : end + 1])
    except (ValueError, RecursionError):  # nested past the parser's depth: an answer no client could read either
        return 0.0
    return 1.0


def _compressibility(text: str) -> float:
    """Degenerate repetition shows as a very compressible answer."""
    raw = text[:4000].encode("utf-8", "replace")
    if len(raw) < 64:
        return 0.0
    return 1.0 - len(zlib.compress(raw, 1)) / len(raw)


ANSWER_FEATURES: tuple[str, ...] = (
    "extracted", "is_letter", "is_number", "answer_len", "resp_log_len", "has_code", "json_valid",
    "hedge", "compress", "ends_clean", "n_numbers", "example_runs",
)


@dataclass(frozen=True)
class AnswerView:
    """One answer, read once: its extracted final answer and its features (in ``ANSWER_FEATURES`` order)."""

    text: str
    answer: str | None
    features: tuple[float, ...]
    code: CodeAnswer | None = None  # a code answer's function and example, for differential execution


def read_answer(text: str) -> AnswerView:
    answer = extract_answer(text)
    code = parse_code_answer(text) if "def " in text and "```" in text else None
    low = text[:2000].lower()
    stripped = text.rstrip()
    feats = (
        1.0 if answer is not None else 0.0,
        1.0 if answer is not None and len(answer) == 1 and answer.isalpha() else 0.0,
        1.0 if answer is not None and re.fullmatch(r"-?\d+(\.\d+)?", answer) else 0.0,
        math.log1p(len(answer)) if answer is not None else 0.0,
        math.log1p(len(text)),
        1.0 if "```" in text or "def " in text else 0.0,
        _json_valid(text),
        1.0 if any(h in low for h in _HEDGES) else 0.0,
        _compressibility(text),
        1.0 if stripped.endswith((".", "}", "```", ")", "!", "?")) or len(stripped) < 40 else 0.0,
        math.log1p(len(_NUMBER.findall(text[:4000]))),
        example_runs(code),
    )
    return AnswerView(text=text, answer=answer, features=feats, code=code)


PAIR_FEATURES: tuple[str, ...] = ("both_extracted", "agree", "jaccard", "len_ratio", "final_num_agree",
                                  "behaviour_agree")


def pair_features(a: AnswerView, b: AnswerView) -> tuple[float, ...]:
    both = a.answer is not None and b.answer is not None
    fa, fb = final_number(a.text), final_number(b.text)
    la, lb = len(a.text) + 1, len(b.text) + 1
    return (
        1.0 if both else 0.0,
        1.0 if both and a.answer == b.answer else 0.0,
        jaccard(code_block(a.text) or a.text, code_block(b.text) or b.text),
        math.log(la / lb),
        1.0 if fa is not None and fa == fb else 0.0,
        behaviour_agreement(a.code, b.code),
    )


def majority(views: Sequence[AnswerView]) -> str | None:
    """The extracted answer given by a strict majority of ``views`` (None when there is none)."""
    counts: dict[str, int] = {}
    for v in views:
        if v.answer is not None:
            counts[v.answer] = counts.get(v.answer, 0) + 1
    if not counts:
        return None
    best, n = max(counts.items(), key=lambda kv: kv[1])
    return best if n * 2 > len(views) else None


def raw_answer(text: str) -> str | None:
    """The stated final answer as written (JSON ``answer`` field unescaped, else a boxed or stated answer)."""
    found = _JSON_ANSWER.findall(text)
    if found:
        try:
            return str(json.loads('"' + found[-1] + '"'))
        except ValueError:
            return str(found[-1])
    bare = _JSON_ANSWER_BARE.findall(text)
    if bare:
        return str(bare[-1]).strip()
    boxed = _BOXED.findall(text)
    return str(boxed[-1]) if boxed else None
