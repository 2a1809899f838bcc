from __future__ import annotations

import pytest

from sovrouter.routing.answers import extract_answer, majority, normalise, pair_features, read_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('```json\n{"reasoning": "x", "answer": "1,200.00"}\n```', "1200"),
        ("Some reasoning. The answer is (C).", "c"),
        ("so we get $\\boxed{\\frac{1}{2}}$", "\\frac{1}{2}"),
        ("B\n", "b"),
        ("  42 ", "42"),
        ("An essay with no final answer at all, just discussion of the topic in prose.", None),
    ],
)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


def test_normalise_makes_equivalent_forms_equal() -> None:
    assert normalise("$12.0$") == normalise("12") == "12"
    assert normalise("(b)") == "b"


def test_agreement_feature_and_majority() -> None:
    a = read_answer('{"answer": "30"}')
    c = read_answer('{"answer": "31"}')
    assert pair_features(a, read_answer('{"answer": "30.0"}'))[1] == 1.0
    assert pair_features(a, c)[1] == 0.0
    assert majority([a, c, read_answer('{"answer": "30"}')]) == "30"
    assert majority([a, c]) is None


def test_an_answer_nested_past_the_parsers_depth_is_not_valid_json() -> None:
    """A model answer of deeply nested JSON raised RecursionError out of the answer features (the router's review
    and the eval loop's judge): a failed request or a lost shadow pair instead of a feature value."""
    from sovrouter.evalloop.failures import format_ok
    from sovrouter.routing.answers import _json_valid

    deep = '{"a":' + "[" * 5000 + "1" + "]" * 5000 + "}"
    assert _json_valid(deep) == 0.0
    assert format_ok(deep, "free", expect_json=True) is False
