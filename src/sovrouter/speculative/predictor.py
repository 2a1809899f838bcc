"""Predict, from the prompt alone, how much of the answer will be copied from the prompt.

Prompt-lookup decoding drafts the next tokens by finding the last generated n-gram in the prompt and proposing
what followed it there. It pays off only when the answer re-uses long spans of the prompt (code edits and
refactors, extraction, rewriting/proofreading); on open questions or math every draft is rejected and the
verification work is wasted. The predictor is generic (no dev templates, no fitted weights):

1. **Task kind** from instruction cues in the last user message (edit / extract / rewrite / summarize / open),
   each with a prior copy fraction: the share of output tokens an answer of that kind typically takes from its
   input.
2. **Source material**: a copy needs something to copy. The payload is the part of the prompt that is not the
   instruction (fenced or indented code, quoted text, text after an ``instruction:`` line). The prior is scaled
   by ``min(1, payload_tokens / min_payload_tokens)``.
3. **N-gram overlap expectation**: prompt lookup also hits on repetitive material (the same identifiers and
   phrases recurring), so the payload's repeated word 3-gram share adds a small bonus.

``speculate`` is true when the expected copy fraction reaches ``threshold``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from sovrouter.catalog import estimate_tokens
from sovrouter.contracts import NormalizedRequest

TaskKind = str  # "edit" | "extract" | "rewrite" | "summarize" | "open"

# Cues are whole words/phrases, matched case-insensitively at word boundaries (English, German, French, Spanish).
_CUES: dict[str, tuple[str, ...]] = {
    "edit": (
        "refactor", "rename", "fix the", "fix this", "fix bug", "fix the bug", "modify", "edit", "change the",
        "update the", "replace", "add type hints", "add comments", "add docstrings", "add a parameter",
        "remove the", "delete the", "insert", "patch", "convert this code", "port this", "return the full",
        "return the complete", "return the whole", "the full code", "the complete code", "the updated code",
        "umbenennen", "ändere", "ändern", "renomme", "modifie", "corrige le code", "renombra", "modifica",
    ),
    "extract": (
        "extract", "pull out", "list all", "list every", "find all", "which lines", "quote", "copy the",
        "as json", "into json", "to json", "as csv", "into csv", "to csv", "as a table", "into a table", "parse",
        "fill in the", "fill the", "identify the names", "entities", "extrahiere", "extrais", "extrae",
    ),
    "rewrite": (
        "rewrite", "rephrase", "paraphrase", "proofread", "correct the", "correct this", "fix the grammar",
        "fix grammar", "fix typos", "fix the typos", "fix spelling", "reformat", "format this", "polish",
        "make it more", "make this more", "simplify this", "shorten this", "redact", "anonymize", "anonymise",
        "umschreiben", "korrigiere", "reformule", "corrige", "reescribe", "corrige el",
    ),
    "summarize": ("summarize", "summarise", "summary", "tl;dr", "key points", "zusammenfass", "résume", "resume"),
}
_PRIOR: dict[str, float] = {"edit": 0.75, "extract": 0.6, "rewrite": 0.6, "summarize": 0.25, "open": 0.05}
_PATTERNS = {kind: re.compile(r"\b(?:" + "|".join(re.escape(c) for c in cues) + r")", re.IGNORECASE)
             for kind, cues in _CUES.items()}
_FENCE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_QUOTED = re.compile(r"\"[^\"\n]{40,}\"|«[^»]{40,}»|“[^”]{40,}”")
_WORD = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class CopyPrediction:
    kind: TaskKind
    copy_fraction: float
    payload_tokens: int
    speculate: bool


def _payload(text: str) -> str:
    """The material an answer could copy: code blocks, indented or quoted text, text after a colon line."""
    parts = [m.group(0) for m in _FENCE.finditer(text)]
    rest = _FENCE.sub(" ", text)
    parts += [m.group(0) for m in _QUOTED.finditer(rest)]
    lines = rest.splitlines()
    indented = [ln for ln in lines if ln.startswith(("    ", "\t", "> "))]
    parts += indented
    if not parts:
        # "Instruction:\n<material>" or a long message whose first sentence is the instruction.
        head, sep, tail = rest.partition(":\n")
        if sep and len(tail) > len(head):
            parts.append(tail)
        else:
            first_break = re.search(r"[.?!]\s|\n", rest)
            if first_break is not None and len(rest) - first_break.end() > 200:
                parts.append(rest[first_break.end():])
    return "\n".join(parts)


def payload_text(text: str) -> str:
    """The part of a prompt an answer could copy (code blocks, quoted or indented text, the text after an
    instruction line)."""
    return _payload(text)


def code_chars(text: str) -> int:
    """Characters inside fenced code blocks."""
    return sum(len(m.group(0)) for m in _FENCE.finditer(text))


def _repeated_ngram_share(text: str, n: int = 3) -> float:
    words = _WORD.findall(text.lower())
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if len(grams) < 8:
        return 0.0
    counts = Counter(grams)
    return sum(c for c in counts.values() if c > 1) / len(grams)


class CopyPredictor:
    """Heuristic copy-fraction predictor (see the module docstring)."""

    def __init__(self, threshold: float = 0.35, min_payload_tokens: int = 48, repetition_weight: float = 0.2,
                 priors: dict[str, float] | None = None) -> None:
        self.threshold = threshold
        self.min_payload_tokens = max(1, min_payload_tokens)
        self.repetition_weight = repetition_weight
        self.priors = dict(_PRIOR if priors is None else priors)

    def kind(self, instruction: str) -> TaskKind:
        # Look for cues in the instruction part only (material being edited may contain any word).
        window = _FENCE.sub(" ", instruction)[:600]
        best, best_pos = "open", len(window) + 1
        for kind, pattern in _PATTERNS.items():
            m = pattern.search(window)
            if m is not None and m.start() < best_pos:
                best, best_pos = kind, m.start()
        return best

    def predict(self, request: NormalizedRequest) -> CopyPrediction:
        users = [m.text for m in request.messages if m.role == "user"]
        last = users[-1] if users else request.prompt_text
        system = "\n".join(m.text for m in request.messages if m.role in ("system", "developer"))
        kind = self.kind(last)
        if kind == "open" and system:
            kind = self.kind(system)
        payload = _payload(request.prompt_text)
        payload_tokens = estimate_tokens(payload)
        prior = self.priors.get(kind, 0.0)
        enough = min(1.0, payload_tokens / self.min_payload_tokens)
        fraction = prior * enough
        if kind != "open":
            fraction += self.repetition_weight * _repeated_ngram_share(payload) * enough
        fraction = round(min(1.0, fraction), 4)
        return CopyPrediction(kind=kind, copy_fraction=fraction, payload_tokens=payload_tokens,
                              speculate=fraction >= self.threshold)


def observed_copy_fraction(prompt: str, answer: str, n: int = 2) -> float:
    """What a prompt-lookup draft could have guessed of ``answer``, measured after the fact: the share of the
    answer's words (after its first ``n``) that follow their preceding ``n`` words somewhere in ``prompt``, as
    prompt lookup proposes them. A label for checking :class:`CopyPredictor` on recorded answers, never an
    input to it (it needs the answer)."""
    source = _WORD.findall(prompt.lower())
    words = _WORD.findall(answer.lower())
    if len(words) <= n:
        return 0.0
    follows: dict[tuple[str, ...], set[str]] = {}
    for i in range(len(source) - n):
        follows.setdefault(tuple(source[i : i + n]), set()).add(source[i + n])
    hits = sum(1 for i in range(n, len(words)) if words[i] in follows.get(tuple(words[i - n : i]), ()))
    return hits / (len(words) - n)
