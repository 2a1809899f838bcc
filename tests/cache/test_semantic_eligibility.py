"""Which requests the semantic cache may serve or store."""

from __future__ import annotations

import pytest

from sovrouter.cache.eligibility import request_ineligible_reason, text_ineligible_reason
from sovrouter.contracts import ContentPart, Detection, Message, NormalizedRequest
from sovrouter.intake import normalize_chat


@pytest.mark.parametrize(("text", "reason"), [
    ("What is the capital of France?", None),
    ("How do I improve my English speaking skills?", None),
    ("What is the weather like today in Paris?", "time_sensitive"),
    ("Who is the current president of Brazil?", "time_sensitive"),
    ("What are the latest iPhone models?", "time_sensitive"),
    ("What happened in 2016 in India?", "time_sensitive"),
    ("Write a function to find the maximum of two numbers.", "generative"),
    ("Translate 'good morning' into German.", "generative"),
    ("Summarize the plot of Hamlet.", "generative"),
    ("What does `x == y` return for lists?", "code"),
    ("Why does def f(): pass fail?", "code"),
    ("Python function to remove all whitespaces from a string.", "code"),  # a task without the imperative
    ("A program that prints the first ten primes?", "code"),
    ("What is the best program for editing videos?", None),
    ("Context: a bank customer.\n\nQuestion: What is an IBAN?", "multi_part"),
    ("word " * 60, "long"),
    ("Q: " + "a" * 400, "long"),
    ("   ", "empty"),
    ("🙂🙂", "no_words"),
    ("?!…", "no_words"),
    ("Как выучить английский язык?", None),  # letters in any script are words
    ("2+2?", None),
])
def test_text_rules(text: str, reason: str | None) -> None:
    assert text_ineligible_reason(text) == reason


def test_templated_benchmark_prompt_is_not_eligible() -> None:
    shots = "\n".join(f"Question: example {i}?\nAnswer: ({i})" for i in range(5))
    assert text_ineligible_reason(shots + "\nQuestion: Which gas do plants absorb?\nAnswer:") is not None


def _req(*messages: tuple[str, str]) -> NormalizedRequest:
    return NormalizedRequest(
        request_id="r", tenant="t",
        messages=tuple(Message(role=r, parts=(ContentPart(modality="text", text=t),)) for r, t in messages),  # type: ignore[arg-type]
    )


def test_request_rules() -> None:
    ok = _req(("user", "What is the capital of France?"))
    assert request_ineligible_reason(ok, Detection()) is None
    assert request_ineligible_reason(ok, Detection(pii_types=["EMAIL"])) == "personal_data"
    assert request_ineligible_reason(ok, Detection(failed=True)) == "personal_data"
    chat = _req(("user", "What is the capital of France?"), ("assistant", "Paris."), ("user", "And of Spain?"))
    assert request_ineligible_reason(chat, Detection()) == "conversation"
    with_system = _req(("system", "Be brief."), ("user", "What is the capital of France?"))
    assert request_ineligible_reason(with_system, Detection()) is None


def test_non_text_request_is_not_eligible() -> None:
    r = NormalizedRequest(request_id="r", tenant="t", messages=(Message(role="user", parts=(
        ContentPart(modality="text", text="What is in this picture?"),
        ContentPart(modality="image", ref="https://example.org/a.png"))),))
    assert request_ineligible_reason(r, Detection()) == "non_text"


def test_a_request_offering_tools_is_not_eligible() -> None:
    body = {"messages": [{"role": "user", "content": "What is the capital of France?"}]}
    plain = normalize_chat(body, tenant="t", request_id="r")
    offered = normalize_chat({**body, "tools": [{"type": "function", "function": {"name": "lookup"}}]},
                             tenant="t", request_id="r")
    assert request_ineligible_reason(plain, Detection()) is None
    assert request_ineligible_reason(offered, Detection()) == "tools"


@pytest.mark.parametrize(("system", "reason"), [
    ("Translate the user's message into French.", "generative_system"),
    ("You are a translator. Rewrite the text in plain English.", "generative_system"),
    ("You are a news assistant. Answer with today's headlines.", "time_sensitive_system"),
    ("You are a helpful assistant.", None),
    ("You are a concise assistant. Answer in one sentence.", None),
])
def test_a_task_in_the_system_prompt_makes_the_request_ineligible(system: str, reason: str | None) -> None:
    """Only the user turn was read: under "Translate the user's message into French." a paraphrased user turn
    got another text's translation from the cache."""
    req = normalize_chat({"messages": [{"role": "system", "content": system},
                                       {"role": "user", "content": "I really like green apples."}]},
                         tenant="t", request_id="r")
    assert request_ineligible_reason(req, Detection()) == reason
