"""The PII detector's spaCy pipelines do not keep every new word they read (found in review: ~8 strings and ~2 KB
per request of unseen names and ids stayed in the vocabulary for good, unbounded over a gateway's weeks)."""

from __future__ import annotations

import pytest

from sovrouter.detect.detector import PiiDetector


@pytest.fixture(scope="module")
def detector() -> PiiDetector:
    d = PiiDetector(timeout_ms=60_000)
    d.load_models()
    return d


def test_ner_does_not_grow_the_vocabulary(detector: PiiDetector) -> None:
    detector.detect_text("Patient: Warmup Person ref 1")
    before = {lang: len(nlp.vocab.strings) for lang, nlp in detector._nlp.items()}
    letters = "bcdfghjklmnpqrstvwz"
    for i in range(200):  # distinct names and ids, each line read by NER (a person cue opens it)
        first = "".join(letters[(i // 19 ** k) % 19] + "aeiou"[(i + k) % 5] for k in range(3)).capitalize()
        last = "".join(letters[(i * 7 // 19 ** k) % 19] + "aeiou"[(i + 2 * k) % 5] for k in range(4)).capitalize()
        detector.detect_text(f"Patient: {first} {last} ref {987654 + i * 7919}")
    after = {lang: len(nlp.vocab.strings) for lang, nlp in detector._nlp.items()}
    assert all(after[lang] - before[lang] < 50 for lang in before), (before, after)
