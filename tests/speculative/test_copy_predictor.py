from __future__ import annotations

import pytest

from sovrouter.intake import normalize_chat
from sovrouter.speculative.predictor import CopyPredictor

CODE = "```python\n" + "\n".join(f"def f{i}(x):\n    return x * {i} + offset_{i}\n" for i in range(8)) + "```"
TEXT = ("The committee approved the new budget on Thursday after a long debate about transport spending, "
        "school repairs and the cost of the new library. The vote was seven to two, and the mayor said the "
        "city would publish the full figures next week together with a plan for the coming year.")


def _predict(content: str, system: str | None = None, predictor: CopyPredictor | None = None):
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
    return (predictor or CopyPredictor()).predict(normalize_chat({"messages": msgs}, tenant="t", request_id="r"))


@pytest.mark.parametrize("content,kind", [
    (f"Refactor this code to use a loop and return the full code:\n{CODE}", "edit"),
    (f"Please rename the variable offset to bias:\n{CODE}", "edit"),
    (f"Extract all dates and numbers from the following text:\n{TEXT}", "extract"),
    (f"Rewrite the following paragraph in plain English:\n{TEXT}", "rewrite"),
    (f"Proofread this:\n\n> {TEXT}", "rewrite"),
])
def test_copy_heavy_tasks_turn_prompt_lookup_on(content: str, kind: str) -> None:
    p = _predict(content)
    assert p.kind == kind
    assert p.speculate and p.copy_fraction >= 0.35


@pytest.mark.parametrize("content", [
    "Why is the sky blue?",
    "What is 17 * 23? Explain step by step.",
    "Write a short poem about the sea.",
    f"What do you think about this?\n{TEXT}",
    "Tell me about the history of Rome, the empire, its emperors and its fall, in as much detail as you can.",
])
def test_open_questions_and_math_keep_it_off(content: str) -> None:
    p = _predict(content)
    assert not p.speculate
    assert p.copy_fraction < 0.35


def test_a_copy_task_without_material_to_copy_stays_off() -> None:
    p = _predict("Rewrite it more formally.")
    assert p.kind == "rewrite" and p.payload_tokens < 10 and not p.speculate


def test_cue_words_inside_the_material_do_not_count() -> None:
    code = "```python\n# refactor later: extract this and rewrite it\n" + CODE[10:]
    p = _predict(f"What does this code compute?\n{code}")
    assert p.kind == "open" and not p.speculate


def test_system_instruction_can_set_the_task() -> None:
    p = _predict(TEXT, system="You correct the grammar of every text the user sends. Proofread it.")
    assert p.kind == "rewrite" and p.speculate


def test_threshold_is_a_setting() -> None:
    content = f"Summarize this:\n{TEXT}"
    assert not _predict(content).speculate
    assert _predict(content, predictor=CopyPredictor(threshold=0.2)).speculate


def test_observed_copy_fraction_counts_what_prompt_lookup_could_guess() -> None:
    from sovrouter.speculative.predictor import observed_copy_fraction

    assert observed_copy_fraction(TEXT, TEXT) == pytest.approx(1.0)
    assert observed_copy_fraction(TEXT, "Blue light scatters more than red light in the air.") == 0.0
    half = "The vote was seven to two, and the mayor said so. Nobody here expected any other outcome at all."
    assert 0.2 < observed_copy_fraction(TEXT, half) < 0.6
    assert observed_copy_fraction(TEXT, "too short") == 0.0
    assert observed_copy_fraction("", TEXT) == 0.0
