"""Differential execution of code answers: parsing, the sandbox screen, and behaviour agreement."""

from __future__ import annotations

import pytest

from sovrouter.routing.answers import PAIR_FEATURES, pair_features, read_answer
from sovrouter.routing.codecheck import behaviour_agreement, example_runs, parse_code_answer, run, screen

REVERSE = "Here is one:\n```python\ndef rev(xs):\n    return xs[::-1]\n\nprint(rev([1, 2, 3]))\n```\nDone."
REVERSE_TOO = "```python\ndef reverse_list(lst):\n    return list(reversed(lst))\n\nprint(reverse_list([4, 5]))\n```"
IDENTITY = "```python\ndef same(x):\n    return x\n\nprint(same([7, 8]))\n```"


def test_parses_definitions_function_and_example() -> None:
    code = parse_code_answer(REVERSE)
    assert code is not None and code.safe
    assert code.function == "rev"
    assert "def rev" in code.definitions and code.example == "print(rev([1, 2, 3]))"
    assert parse_code_answer("No code here.") is None
    assert parse_code_answer("```python\nx = 1\n```") is None  # no function: nothing to compare


def test_functions_that_behave_alike_agree_on_each_others_examples() -> None:
    a, b, c = (parse_code_answer(t) for t in (REVERSE, REVERSE_TOO, IDENTITY))
    assert behaviour_agreement(a, b) == 1.0  # different names and code, same behaviour on both examples
    assert behaviour_agreement(a, c) == 0.0  # the identity function changes both examples' output
    assert behaviour_agreement(a, None) == 0.5  # no second answer: no evidence


def test_example_that_fails_is_evidence_and_unsafe_code_is_not() -> None:
    failing = parse_code_answer("```python\ndef f(x):\n    return 1 / 0\n\nprint(f(1))\n```")
    unsafe = parse_code_answer("```python\nimport os\ndef f(x):\n    return os.listdir('/')\n\nprint(f(1))\n```")
    assert example_runs(failing) == 0.0
    assert unsafe is not None and not unsafe.safe
    assert example_runs(unsafe) == 0.5  # never run: no evidence either way
    assert behaviour_agreement(parse_code_answer(REVERSE), unsafe) == 0.5
    assert example_runs(parse_code_answer(REVERSE)) == 1.0


@pytest.mark.parametrize("code", [
    "import os\nos.system('true')",
    "import subprocess",
    "from . import x",
    "def f():\n    return ().__class__.__bases__",
    "def f():\n    return open('/etc/passwd').read()",
    "def f():\n    return eval('1')",
])
def test_screen_refuses_what_reaches_outside(code: str) -> None:
    assert not screen(code)
    assert run(code) is None


def test_allowed_modules_run_and_runaway_code_times_out() -> None:
    assert run("import math\nfrom collections import Counter\nprint(math.sqrt(16), Counter('aab')['a'])") == \
        "4.0 2\n"
    assert run("while True:\n    pass", timeout_s=1.5) is None


def test_answer_features_carry_the_evidence() -> None:
    a, b = read_answer(REVERSE), read_answer(REVERSE_TOO)
    assert a.code is not None and a.features[-1] == 1.0
    feats = dict(zip(PAIR_FEATURES, pair_features(a, b), strict=True))
    assert feats["behaviour_agree"] == 1.0
    plain = read_answer("The answer is 42.")
    assert plain.code is None and plain.features[-1] == 0.5
    assert dict(zip(PAIR_FEATURES, pair_features(plain, a), strict=True))["behaviour_agree"] == 0.5


def test_one_sandbox_process_runs_many_snippets_each_on_its_own_budget() -> None:
    from sovrouter.routing.codecheck import run_many

    out = run_many(["print(1)", "while True:\n    pass", "import os", "print(sum(range(10)))", "x = y"])
    assert out == ["1\n", None, None, "45\n", None]  # a runaway or failing snippet does not take the others down
