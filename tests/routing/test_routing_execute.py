from __future__ import annotations

import pytest

from sovrouter.routing.execute import find_question, matches, run_question, screen

PROMPT = """Complete the assertion with the output.

[PYTHON]
def f(xs):
    return [x * 2 for x in xs if x % 2]
assert f([1, 2, 3]) == ??
[/PYTHON]
"""


def test_finds_and_runs_an_output_question() -> None:
    assert find_question(PROMPT) == ("def f(xs):\n    return [x * 2 for x in xs if x % 2]", "f([1, 2, 3])")
    out = run_question(PROMPT)
    assert out == "[2, 6]"
    assert matches("[2, 6]", out) and not matches("[2, 4]", out)
    assert not matches("[2,6]", out) and not matches("[ 2, 6 ]", out)  # not how Python prints it


@pytest.mark.parametrize(("stated", "executed", "expected"), [
    ("mJklbn", "'mJklbn'", True),  # a string stated without quotes
    ("'mJklbn'", "'mJklbn'", True),  # ... or as its literal
    ('"mJklbn"', "'mJklbn'", True),
    ("mjklbn", "'mJklbn'", False),  # case counts
    ("2io 12 tfiqr.-", "'2io 12 tfiqr.-'", True),  # inner spaces count
    ("faqo osax", "'faqo osax '", False),  # so do trailing ones
    ("   ", "'   '", True),
    ("5", "5", True),
    ('"5"', "5", False),  # the string '5' is not the number 5
    ('{"a": 1}', "{'a': 1}", True),  # quote style aside
    ("{'b': 2, 'a': 1}", "{'a': 1, 'b': 2}", False),  # printed order is part of the answer
    (None, "1", False),
    ("1", None, False),
])
def test_stated_answer_matches_the_printed_value(stated: str | None, executed: str | None, expected: bool) -> None:
    assert matches(stated, executed) is expected


@pytest.mark.parametrize("code", [
    "import os\ndef f():\n    return 1",
    "def f():\n    return open('/etc/passwd').read()",
    "def f():\n    return ().__class__.__bases__",
    "def f():\n    return getattr(1, 'real')",
])
def test_unsafe_snippets_are_refused_before_running(code: str) -> None:
    assert not screen(code, "f()")
    assert run_question(f"[PYTHON]\n{code}\nassert f() == ??\n[/PYTHON]") is None


def test_runaway_code_times_out_to_none() -> None:
    text = "[PYTHON]\ndef f():\n    while True:\n        pass\nassert f() == ??\n[/PYTHON]"
    assert run_question(text, timeout_s=1.0) is None


def test_no_question_no_run() -> None:
    assert run_question("What is 2 + 2?") is None
