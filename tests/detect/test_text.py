"""What the detector reads: invisible variants of separators, spaces and line breaks no longer hide identifiers."""

from __future__ import annotations

import pytest

from sovrouter.detect.detector import PiiDetector
from sovrouter.detect.text import detection_text


def test_the_canonical_form() -> None:
    assert detection_text("a\u202fb\u00a0c\u2003d") == "a b c d"
    assert detection_text("x\u200by\u00adz\u2060") == "xyz"
    assert detection_text("1\r\n2\r3\u20284\u20295\x856") == "1\n2\n3\n4\n5\n6"
    assert detection_text("123\u201145\u20146789 \u2212 1") == "123-45-6789 - 1"
    assert detection_text("ＡＢＣ１２３＠ｘ") == "ABC123@x"
    plain = "Plain ASCII text, unchanged."
    assert detection_text(plain) == plain
    assert detection_text("Éléonore à Zürich, straße") == "Éléonore à Zürich, straße"


@pytest.mark.parametrize(("text", "kind"), [
    ("Client IBAN: FR76\u202f3000\u202f6000\u202f0112\u202f3456\u202f7890\u202f189", "IBAN"),
    ("Client IBAN: FR76-3000-6000-0112-3456-7890-189", "IBAN"),
    ("Card number 4111\u00a01111\u00a01111\u00a01111 please charge it", "CREDIT_CARD"),
    ("Write to jane.roe\u200b@gmail.com about it", "EMAIL"),
    ("Write to jane.roe\uff20gmail.com about it", "EMAIL"),
    ("SSN: 123\u201145\u20116789", "US_SSN"),
])
def test_identifiers_typed_with_unicode_separators_are_found(text: str, kind: str) -> None:
    """Each of these was missed (no personal data found, so it could go to any region)."""
    assert kind in PiiDetector().detect_text(text).pii_types
