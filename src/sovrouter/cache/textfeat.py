"""Text analysis for the semantic cache: tokens, content stems, numbers, and the pair features the verifier reads.

Everything here is language-generic English surface analysis (stop words, question words, negations, a light
suffix stemmer); nothing is fitted to any data set. The pair features compare what *differs* between two texts
(the "question core" left once the shared words are set aside), because a shared template or preamble makes
different questions look alike to an embedding.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")

_STOP_TEXT = """a an the and or but if then so than that this these those there here of in on at to for from by with
    about into onto over under as is are was were be been being am do does did doing done have has had having
    i me my mine myself we us our ours you your yours he him his she her hers it its they them their theirs
    what which who whom whose why how when where can could should would will shall may might must
    some any all each every much many more most very really just also too only own same other such
    get got make made one ones thing things way ways someone something anyone anything people person
    s t d ll m re ve"""
STOP_WORDS = frozenset(_STOP_TEXT.split())
QUESTION_WORDS = ("what", "which", "who", "whom", "whose", "why", "how", "when", "where", "whether")
NEGATIONS = frozenset({"not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "without", "cannot"})
# Words whose presence flips or narrows the meaning even when everything else is shared.
POLARITY = (
    frozenset({"best", "good", "better", "top", "great"}),
    frozenset({"worst", "bad", "worse", "poor"}),
    frozenset({"advantages", "advantage", "pros", "benefits", "benefit"}),
    frozenset({"disadvantages", "disadvantage", "cons", "drawbacks", "drawback"}),
    frozenset({"increase", "increases", "raise", "gain", "more", "maximum", "max", "largest", "biggest"}),
    frozenset({"decrease", "decreases", "reduce", "lose", "less", "fewer", "minimum", "min", "smallest"}),
)


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def numbers(text: str) -> tuple[str, ...]:
    """Numbers as written (digits only, separators kept), sorted: two texts must agree on these exactly."""
    return tuple(sorted(_NUMBER.findall(text)))


def stem(word: str) -> str:
    """A light, deterministic suffix stemmer (enough to match plural/tense variants)."""
    w = word.replace("'", "")
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ness", ""), ("ment", ""), ("ed", ""), ("es", ""),
                         ("ly", ""), ("s", "")):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: len(w) - len(suffix)] + keep
    return w


@dataclass(frozen=True)
class TextInfo:
    """What the verifier needs from one text, computed once per text."""

    text: str
    words: tuple[str, ...]
    content: frozenset[str]
    numbers: tuple[str, ...]
    capitalised: frozenset[str]
    question_word: str
    negated: bool
    polarity: tuple[bool, ...]
    sequence: tuple[str, ...]  # content stems in text order


def analyse(text: str) -> TextInfo:
    ws = words(text)
    content = frozenset(stem(w) for w in ws if w not in STOP_WORDS and w not in NEGATIONS and not w.isdigit())
    raw = _WORD.findall(text)
    capitalised = frozenset(stem(w.lower()) for i, w in enumerate(raw)
                            if (i > 0 and w[:1].isupper()) or not w.isascii())  # names, non-Latin terms
    qword = next((w for w in ws if w in QUESTION_WORDS), ws[0] if ws else "")
    negated = (sum(w in NEGATIONS or w.endswith("n't") for w in ws) % 2) == 1
    polarity = tuple(bool(group.intersection(ws)) for group in POLARITY)
    sequence = tuple(stem(w) for w in ws if w not in STOP_WORDS and w not in NEGATIONS and not w.isdigit())
    return TextInfo(text, tuple(ws), content, numbers(text), capitalised, qword, negated, polarity, sequence)


def _order_agreement(a: Sequence[str], b: Sequence[str], shared: frozenset[str]) -> float:
    """Longest common subsequence of the shared content stems / their count: 1.0 when the shared words appear in
    the same order ("dollars to rupees" vs "rupees to dollars" scores lower)."""
    x = [w for w in dict.fromkeys(a) if w in shared]
    y = [w for w in dict.fromkeys(b) if w in shared]
    if len(x) < 2:
        return 1.0
    prev = [0] * (len(y) + 1)
    for xi in x:
        cur = [0] * (len(y) + 1)
        for j, yj in enumerate(y):
            cur[j + 1] = prev[j] + 1 if xi == yj else max(prev[j + 1], cur[j])
        prev = cur
    return prev[-1] / len(x)


def _core(a: Sequence[str], b: Sequence[str]) -> tuple[Sequence[str], Sequence[str], int]:
    """Strip the longest shared word prefix and suffix; return the two differing cores and the shared length."""
    p = 0
    while p < len(a) and p < len(b) and a[p] == b[p]:
        p += 1
    s = 0
    while s < len(a) - p and s < len(b) - p and a[len(a) - 1 - s] == b[len(b) - 1 - s]:
        s += 1
    return a[p: len(a) - s], b[p: len(b) - s], p + s


FEATURE_NAMES: tuple[str, ...] = (
    "cos", "cos_gap_to_best", "best_minus_second", "n_close",
    "jaccard_content", "unmatched_min", "unmatched_max", "unmatched_frac",
    "jaccard_words", "char_ratio", "core_frac", "core_len_max",
    "cap_mismatch", "qword_mismatch", "negation_mismatch", "polarity_mismatch",
    "len_ratio", "log_len", "order_agreement",
)


def pair_features(a: TextInfo, b: TextInfo, cos: float, best_cos: float, second_cos: float,
                  n_close: int) -> list[float]:
    """Features of the pair (query ``a``, cached ``b``) in the order of :data:`FEATURE_NAMES`.

    ``best_cos`` / ``second_cos`` / ``n_close`` describe the query's neighbourhood (set-based, so independent of
    the order in which entries were cached)."""
    ca, cb = a.content, b.content
    union = ca | cb
    inter = ca & cb
    only_a, only_b = len(ca - cb), len(cb - ca)
    wa, wb = set(a.words), set(b.words)
    wunion = wa | wb
    core_a, core_b, shared = _core(a.words, b.words)
    longest = max(len(a.words), len(b.words), 1)
    cap_mismatch = len((a.capitalised - cb) | (b.capitalised - ca))
    return [
        cos,
        best_cos - cos,
        best_cos - second_cos,
        float(n_close),
        len(inter) / len(union) if union else 1.0,
        float(min(only_a, only_b)),
        float(max(only_a, only_b)),
        (only_a + only_b) / max(len(union), 1),
        len(wa & wb) / len(wunion) if wunion else 1.0,
        difflib.SequenceMatcher(None, a.text.lower(), b.text.lower(), autojunk=False).ratio(),
        1.0 - shared / longest,
        float(max(len(core_a), len(core_b))),
        float(cap_mismatch),
        float(a.question_word != b.question_word),
        float(a.negated != b.negated),
        float(sum(x != y for x, y in zip(a.polarity, b.polarity, strict=True))),
        min(len(a.words), len(b.words)) / longest,
        math.log1p(longest),
        _order_agreement(a.sequence, b.sequence, inter),
    ]


ALT_FEATURE_NAMES: tuple[str, ...] = ("alt_cos", "alt_gap_to_best_other", "alt_rank")


def alt_features(sims: Sequence[float]) -> list[list[float]]:
    """Features from a second embedding model for one query's candidates (those that passed the cosine floor and
    the hard gates), in candidate order: the second model's cosine, its margin over the best other candidate, and
    how many candidates it ranks strictly higher. Set-based, so independent of the order entries were cached."""
    out = []
    for i, me in enumerate(sims):
        others = [x for j, x in enumerate(sims) if j != i]
        out.append([me, me - max(others) if others else me, float(sum(x > me for x in others))])
    return out


MAX_VERIFIED_WORDS = 40  # the verifier was fitted on short questions; longer texts are out of its domain


def hard_mismatch(a: TextInfo, b: TextInfo) -> bool:
    """Never a match: different numbers, one side negated and not the other, or a text outside the verifier's
    domain (no words at all, over :data:`MAX_VERIFIED_WORDS` words or in several blank-line separated parts, the
    shape of templated and few-shot prompts, whose shared preamble makes different questions look alike). The
    last rules repeat the eligibility rules on purpose: the index is safe even when used without them."""
    if a.numbers != b.numbers or a.negated != b.negated:
        return True
    return any(not x.words or len(x.words) > MAX_VERIFIED_WORDS or "\n\n" in x.text.strip() for x in (a, b))
