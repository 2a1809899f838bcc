"""Prompt-side features: a short informative text window, hashed n-grams, and generic cheap features.

Nothing here names a benchmark or a template: the features are things any request can have (lettered options,
a request for a JSON answer, code in the prompt, LaTeX, digits, the language), all read from the prompt's
:func:`canonical` text (its layout carries no routing signal). The window keeps the start and the end of the prompt
(the instruction and the actual question of a few-shot prompt) so the cost of featurising does not grow with the
prompt.
"""

from __future__ import annotations

import math
import re

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from sklearn.feature_extraction.text import HashingVectorizer

HEAD_CHARS = 600
TAIL_CHARS = 900
HASH_FEATURES = 2**16

_OPTION_LINE = re.compile(r"^\s*\(?([A-Ja-j])[).:]\s+\S", re.MULTILINE)
_LATEX = re.compile(r"\$[^$]+\$|\\frac|\\sqrt|\\boxed|\^\{")
_CODE_HINT = re.compile(r"```|\bdef \w+\(|\bassert\b|\[PYTHON\]|\bclass \w+[:(]|#include|\bfunction\s*\(|=>")
_CODE_ASK = re.compile(r"\b(write|implement|create|complete|fix)\b[^.\n]{0,60}\b(function|program|script|code|"
                       r"class|method)\b", re.IGNORECASE)
_JSON_ASK = re.compile(r"\bjson\b", re.IGNORECASE)
_STEPWISE = re.compile(r"step[- ]by[- ]step|show your (work|reasoning)|reasoning", re.IGNORECASE)
_CHOICE_ASK = re.compile(r"\b(choose|select|pick|which of the following|single choice|options?)\b", re.IGNORECASE)
_DIGIT = re.compile(r"\d")

_SPACES = re.compile(r"[^\S\n]+")  # runs of whitespace within a line

PROMPT_FEATURES: tuple[str, ...] = (
    "log_chars", "log_lines", "has_options", "n_options", "asks_json", "has_code", "asks_code", "has_latex",
    "digit_ratio", "stepwise", "choice_ask", "question_marks", "non_english",
)


def canonical(text: str) -> str:
    """The prompt as the routing features read it: line breaks as ``\n``, each line's runs of whitespace as one
    space and its ends stripped, blank lines dropped. Layout carries no routing signal that generalises: a prompt
    sent with CRLF line ends or other line breaks moved 106 and 366 of 6,122 dev routing decisions (a review,
    2026-11-28), and now moves 2 and 1. Only for features: a shown snippet is executed as written."""
    lines = (_SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return "\n".join(line for line in lines if line)


def text_window(text: str) -> str:
    """First ``HEAD_CHARS`` and last ``TAIL_CHARS`` characters (the whole text when it is short)."""
    if len(text) <= HEAD_CHARS + TAIL_CHARS:
        return text
    return text[:HEAD_CHARS] + "\n...\n" + text[-TAIL_CHARS:]


def cheap_features(text: str, language: str | None) -> list[float]:
    """The generic prompt features of ``text`` (read as :func:`canonical`). No count of a literal marker such as
    "Answer:" lines: one such line (a template wrapping the prompt) moved the domain model's choice from
    commonsense or chat_hard to knowledge on most dev prompts in that review (its weight was a few-shot prompt's)."""
    text = canonical(text)
    window = text_window(text)
    options = _OPTION_LINE.findall(text[-3000:])
    n_opt = len(set(o.upper() for o in options))
    return [
        math.log1p(len(text)),
        math.log1p(text.count("\n")),
        1.0 if n_opt >= 2 else 0.0,
        float(min(n_opt, 10)) / 10.0,
        1.0 if _JSON_ASK.search(window) else 0.0,
        1.0 if _CODE_HINT.search(window) else 0.0,
        1.0 if _CODE_ASK.search(window) else 0.0,
        1.0 if _LATEX.search(window) else 0.0,
        len(_DIGIT.findall(window)) / max(1, len(window)),
        1.0 if _STEPWISE.search(window) else 0.0,
        1.0 if _CHOICE_ASK.search(window) else 0.0,
        math.log1p(window.count("?")),
        0.0 if language in (None, "en") else 1.0,
    ]


def make_vectorizer() -> HashingVectorizer:
    """Stateless: the same parameters give the same features in training and serving."""
    return HashingVectorizer(n_features=HASH_FEATURES, ngram_range=(1, 2), alternate_sign=False,
                             norm="l2", lowercase=True, token_pattern=r"(?u)\b\w+\b|[^\w\s]")


def prompt_matrix(vectorizer: HashingVectorizer, texts: list[str], dense: NDArray[np.float64]) -> sparse.csr_matrix:
    """Hashed n-grams of each text window next to the cheap features (what the prompt models read)."""
    hashed = vectorizer.transform([text_window(canonical(t)) for t in texts])
    return sparse.hstack([hashed, sparse.csr_matrix(dense)], format="csr")
