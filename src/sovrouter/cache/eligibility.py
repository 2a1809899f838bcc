"""Which requests may be answered from (or stored into) the semantic cache at all.

A wrong semantic hit costs the whole answer, so eligibility is narrow on purpose. Not eligible:

- empty text, or text with no letter or digit in any script (punctuation, emoji): nothing to compare;
- personal data detected (or the detector failed): never embedded, stored or matched;
- anything but a single text user turn (an optional system message is part of the partition key instead):
  conversations depend on their history;
- tools offered: the answer may be a function call, and depends on the functions offered;
- time-sensitive prompts (today, now, latest, current, this year, a date or a year...): yesterday's answer is wrong;
- long prompts (over ``max_words`` words or ``max_chars`` characters): long prompts are generative or templated
  (few-shot preambles, benchmark headers) and a shared preamble makes different questions look alike;
- generative or code instructions (write / implement / translate / summarise ..., code fences or code syntax):
  the output is a new artefact each time and a one-word change in the spec changes it;
- the same in a system or developer prompt (a task such as "Translate the user's message into French." or a
  time-sensitive one such as "Answer with today's headlines."): the partition keeps one system prompt's entries
  together, but a paraphrased user turn then got another text's translation (found in review, 2026-11-28); a role
  prompt alone ("You are a helpful assistant.") stays eligible.

The rules are generic English surface patterns, not fitted to any data set.
"""

from __future__ import annotations

import re

from sovrouter.contracts import Detection, NormalizedRequest

MAX_WORDS = 40
MAX_CHARS = 300

_TIME = re.compile(
    r"\b(today|tonight|tomorrow|yesterday|now|nowadays|currently|current|latest|recent|recently|upcoming|"
    r"this (?:week|month|year|season|weekend|morning|evening)|next (?:week|month|year)|last (?:week|month|year)|"
    r"right now|at the moment|as of|news|live|weather|forecast|stock price|exchange rate|"
    r"january|february|march|april|june|july|august|september|october|november|december|"
    r"(?:19|20)\d\d)\b",
    re.IGNORECASE,
)
_IMPERATIVE = (
    r"^\s*(?:(?:please|kindly)\s+|(?:can|could|would|will)\s+you\s+(?:please\s+)?(?:help\s+me\s+)?|"
    r"i\s+(?:want|need|would like)\s+you\s+to\s+|help\s+me\s+(?:to\s+)?)?"
    r"(?:write|create|generate|compose|draft|implement|code|program|build|design|translate|provide|show me|"
    r"summari[sz]e|rewrite|rephrase|paraphrase|edit|fix|refactor|complete|continue|convert|make me|give me|"
    r"tell me a (?:story|joke|poem)|list|outline|plan|suggest|author|describe|solve|calculate)\b"
)
_GENERATIVE = re.compile(_IMPERATIVE + r"|^\s*(?:you are|act as|pretend|imagine you|as an? )", re.IGNORECASE)
_TASK = re.compile(_IMPERATIVE, re.IGNORECASE)  # a task stated in a system prompt (a role prompt alone is none)
_SENTENCES = re.compile(r"(?<=[.!?:;])\s+|\n")
_CODE = re.compile(r"```|\bdef |\bclass |\breturn\b|[{};]|==|=>|->|</?\w+>|\bimport\b|\(\)"
                   # a code task stated without an imperative ("Python function to ...", "A program that ..."):
                   # two such tasks with near-identical wording still have different tests
                   r"|(?i:\b(?:function|program|script|regex)\s+(?:to|that|which)\b)")


_WORDLIKE = re.compile(r"[^\W_]")  # a letter or digit in any script


def text_ineligible_reason(text: str, max_words: int = MAX_WORDS, max_chars: int = MAX_CHARS) -> str | None:
    """Why ``text`` may not use the semantic cache, or ``None`` if it may."""
    stripped = text.strip()
    if not stripped:
        return "empty"
    if not _WORDLIKE.search(stripped):
        return "no_words"  # punctuation or emoji only: nothing for the verifier to compare, both sides look alike
    if len(stripped) > max_chars or len(stripped.split()) > max_words:
        return "long"
    if "\n\n" in stripped or stripped.count("\n") > 2:
        return "multi_part"  # a context block and a task: the shape of templated and injected prompts
    if _TIME.search(stripped):
        return "time_sensitive"
    if _GENERATIVE.search(stripped):
        return "generative"
    if _CODE.search(stripped):
        return "code"
    return None


def request_ineligible_reason(request: NormalizedRequest, detection: Detection) -> str | None:
    if detection.has_personal_data:
        return "personal_data"
    if request.modalities - {"text"}:
        return "non_text"
    users = [m for m in request.messages if m.role == "user"]
    others = [m for m in request.messages if m.role not in ("user", "system", "developer")]
    if len(users) != 1 or others:
        return "conversation"
    if request.uses_tools:  # the answer may be a call, and depends on the functions offered
        return "tools"
    if request.parameters.temperature is not None and request.parameters.temperature > 1.0:
        return "high_temperature"
    for m in request.messages:  # the task may be stated in the system prompt: "Translate the user's message..."
        if m.role in ("system", "developer"):
            if _TIME.search(m.text):
                return "time_sensitive_system"
            if any(_TASK.search(s) for s in _SENTENCES.split(m.text)):
                return "generative_system"
    return text_ineligible_reason(users[0].text)
