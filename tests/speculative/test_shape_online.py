"""Online correction of the answer-shape model from observed answers, and the adapter that reports them."""

from __future__ import annotations

import pytest

from sovrouter.contracts import Candidate, ModelCall, NormalizedRequest
from sovrouter.errors import UpstreamError
from sovrouter.intake import normalize_chat
from sovrouter.speculative.answer_shape import AnswerShape
from sovrouter.speculative.shape_online import OnlineAnswerShape, ShapeObservingAdapter, template_key
from sovrouter.testing import FailingAdapter, FakeAdapter

PROMPT = "Here is the list of items: apples, pears, plums, cherries, grapes and figs. Repeat the list back to me."
COPY_ANSWER = "the list of items: apples, pears, plums, cherries, grapes and figs. " * 3


class Fixed:
    def __init__(self) -> None:
        self.calls = 0

    def shape(self, request: NormalizedRequest) -> AnswerShape:
        self.calls += 1
        return AnswerShape(copy_fraction=0.05, tokens_p50=20, tokens_p90=40, kind="open")


def _req(text: str, rid: str) -> NormalizedRequest:
    return normalize_chat({"messages": [{"role": "user", "content": text}]}, tenant="t", request_id=rid)


def test_a_template_learns_its_answers_and_others_get_only_a_shrunk_global_shift() -> None:
    online = OnlineAnswerShape(Fixed(), prior=3.0, global_prior=50.0)
    first = online.shape(_req(PROMPT, "r0"))
    assert first == AnswerShape(0.05, 20, 40, "open")  # nothing seen yet: the base model
    for i in range(20):
        online.observe(_req(PROMPT, f"r{i}"), COPY_ANSWER)
    learned = online.shape(_req(PROMPT, "new"))
    assert learned.copy_fraction > 0.6  # the template's answers copy the prompt
    assert learned.tokens_p50 > 40 and learned.tokens_p90 >= learned.tokens_p50
    other = online.shape(_req("What is the capital of Peru?", "x"))
    assert 0.05 < other.copy_fraction < learned.copy_fraction  # some global drift, shrunk
    assert other.tokens_p50 < learned.tokens_p50


def test_templates_are_keyed_on_the_fixed_start_and_end_of_the_prompt() -> None:
    a = _req("Question: how many legs does a spider have? Answer with a number.", "a")
    b = _req("Question: how many wings does a beetle have? Answer with a number.", "b")
    c = _req("Tell me a story about the sea and the wind and the boats.", "c")
    assert template_key(a) != template_key(b)  # one-line prompts: the question itself is the first line
    same_frame = [_req("## Question:\n\n" + q + "\n\nPresent your answer in the `answer` field as JSON.", q)
                  for q in ("What is 2 + 2?", "Name a prime number larger than ten, please.")]
    assert template_key(same_frame[0]) == template_key(same_frame[1])
    assert template_key(c) != template_key(same_frame[0])


def test_memory_is_bounded() -> None:
    online = OnlineAnswerShape(Fixed(), window=4, max_templates=8, global_window=16)
    for i in range(50):
        online.observe(_req(f"prompt number {i:03d} that is unique " * 3, str(i)), "x y z")
    assert len(online._by_template) == 8 and len(online._global["t"]) == 16
    assert all(len(rows) <= 4 for rows in online._by_template.values())


def test_the_base_model_runs_once_per_request() -> None:
    base = Fixed()
    online = OnlineAnswerShape(base)
    req = _req(PROMPT, "r")
    online.shape(req)
    online.observe(req, COPY_ANSWER)
    online.shape(req)
    assert base.calls == 1


async def test_the_observing_adapter_reports_each_answer_once() -> None:
    seen: list[tuple[str, str]] = []
    cand = Candidate(slot="s", deployment="d")
    adapter = ShapeObservingAdapter(FakeAdapter(cand, text="an answer"), lambda r, t: seen.append((r.request_id, t)))
    call = ModelCall(request=_req("hi", "r1"), allowed=[cand])
    assert adapter.target == cand
    assert (await adapter.generate(call)).text == "an answer"
    chunks = [c async for c in adapter.stream(call.model_copy(update={"request": _req("hi", "r2")}))]
    assert "".join(c.delta for c in chunks) == "an answer"
    assert seen == [("r1", "an answer"), ("r2", "an answer")]
    failing = ShapeObservingAdapter(FailingAdapter(cand), lambda r, t: seen.append((r.request_id, t)))
    with pytest.raises(UpstreamError):
        await failing.generate(call)
    assert len(seen) == 2



def test_one_tenants_answers_never_shift_anothers_estimate() -> None:
    """The correction was pooled across tenants: 40 long answers of tenant A on a template moved tenant B's
    estimate, and with it B's deployment and cost (a side channel on what A sends)."""
    online = OnlineAnswerShape(Fixed())

    def req(tenant: str, rid: str) -> NormalizedRequest:
        return normalize_chat({"messages": [{"role": "user", "content": PROMPT}]}, tenant=tenant, request_id=rid)

    before = online.shape(req("b", "b0"))
    for i in range(40):
        online.observe(req("a", f"a{i}"), "word " * 3000)
    assert online.shape(req("b", "b1")) == before
    assert online.shape(req("a", "a99")).tokens_p90 > before.tokens_p90


def test_answers_cut_short_or_that_only_call_functions_teach_nothing() -> None:
    """An answer cut by max_tokens ("length") or a call-only turn (empty text) was learned as the template's
    natural length: its estimate collapsed to a few tokens and full answers went to a deployment far over budget."""
    import asyncio

    from sovrouter.contracts import ModelResult, ToolCall

    local = Candidate(slot="local-small", deployment="edge")

    class Cut(FakeAdapter):
        async def generate(self, call: ModelCall) -> ModelResult:
            result = await super().generate(call)
            if call.request.request_id.endswith("t"):
                return result.model_copy(update={"finish_reason": "tool_calls", "text": "",
                                                 "tool_calls": (ToolCall(id="c", name="f", arguments="{}"),)})
            return result.model_copy(update={"finish_reason": "length"})

    online = OnlineAnswerShape(Fixed())
    adapter = ShapeObservingAdapter(Cut(local, text="two"), online.observe)
    before = online.shape(_req(PROMPT, "r0"))
    for i in range(30):
        req = _req(PROMPT, f"r{i}{'t' if i % 2 else ''}")
        asyncio.run(adapter.generate(ModelCall(request=req, allowed=[local])))
    assert online.shape(_req(PROMPT, "r99")) == before
