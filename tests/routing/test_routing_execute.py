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
    assert matches("[2, 6]", out) and matches("[2,6]", out) and not matches("[2, 4]", out)


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
