"""The routing features read a prompt's words, not its layout (found in review, 2026-11-28: CRLF line ends moved
2% of dev routing decisions, extra blank lines or indentation 6-7%, one "Answer:" line 8%)."""

from __future__ import annotations

import numpy as np

from sovrouter.contracts import Detection
from sovrouter.intake import normalize_chat
from sovrouter.routing.features import PROMPT_FEATURES, canonical, cheap_features, make_vectorizer, prompt_matrix
from sovrouter.routing.learned import LearnedClassifier
from sovrouter.routing.model import Bundle

PROMPT = ("The following are multiple choice questions.\n\n  Which gas do plants take in?\n"
          "A. Oxygen\nB. Carbon dioxide\nC. Helium\nD. Neon\n\nAnswer with the letter.")
LAYOUTS = [
    PROMPT.replace("\n", "\r\n"),
    PROMPT.replace("\n\n", "\n"),
    PROMPT.replace("\n", "\n\n"),
    "   " + PROMPT.replace(" ", "  ") + "  \n\n",
    PROMPT.replace("\n", " \t\n"),
]


def test_canonical_text_keeps_words_and_line_breaks_only() -> None:
    assert canonical("a \t b\r\n\r\n  c\rd  ") == "a b\nc\nd"
    assert all(canonical(t) == canonical(PROMPT) for t in LAYOUTS)


def test_the_features_do_not_change_with_layout() -> None:
    dense = np.asarray([cheap_features(PROMPT, "en")])
    x = prompt_matrix(make_vectorizer(), [PROMPT], dense)
    for text in LAYOUTS:
        other = np.asarray([cheap_features(text, "en")])
        assert np.array_equal(dense, other)
        assert (prompt_matrix(make_vectorizer(), [text], other) != x).nnz == 0


def test_no_feature_counts_a_literal_answer_marker() -> None:
    assert not any("answer" in name for name in PROMPT_FEATURES)
    assert cheap_features(PROMPT + "\nAnswer:", "en")[1:] == cheap_features(PROMPT + "\nReply:", "en")[1:]


def test_the_shipped_classifier_gives_the_same_signals_whatever_the_layout() -> None:
    classifier = LearnedClassifier(Bundle.load())

    def signals(text: str) -> object:
        req = normalize_chat({"messages": [{"role": "user", "content": text}]}, tenant="acme-us", request_id="r")
        return classifier.classify(req, Detection()).model_dump()

    first = signals(PROMPT)
    assert all(signals(text) == first for text in LAYOUTS)
