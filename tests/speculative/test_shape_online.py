"""Online correction of the answer-shape model from observed answers, and the adapter that reports them."""

from __future__ import annotations

import numpy as np
import pytest

from sovrouter.catalog import Catalog, Tenants
from sovrouter.contracts import Candidate, ModelCall, NormalizedRequest
from sovrouter.errors import UpstreamError
from sovrouter.intake import normalize_chat
from sovrouter.pipeline import Outcome
from sovrouter.speculative.answer_shape import AnswerShape
from sovrouter.speculative.shape_online import OnlineAnswerShape, ResidualWindow, ShapeObservingAdapter, template_key
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


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 512])
def test_window_statistics_equal_numpys_over_the_latest_rows(size: int) -> None:
    rng = np.random.default_rng(size)
    window = ResidualWindow(size)
    rows: list[tuple[float, float, float]] = []
    for i in range(3 * size + 5):
        # ties and repeated values too (answers of one length give equal residuals)
        a0, a1, a2 = (float(v) for v in np.round(rng.normal(size=3), 1 if i % 3 else 6))
        row = (a0, a1, a2)
        window.append(row)
        rows = [*rows, row][-size:]
        a = np.asarray(rows)
        mean, median, p90 = window.stats()
        assert len(window) == len(rows)
        assert mean == pytest.approx(float(a[:, 0].mean()), rel=1e-12, abs=1e-15)
        assert median == float(np.median(a[:, 1]))  # the same floats, not just close
        assert p90 == float(np.percentile(a[:, 2], 90))


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


async def test_learning_from_an_answer_leaves_the_event_loop_free() -> None:
    """Learning from an answer reads the whole prompt (the copy fraction: 0.5 s for a 1 MB prompt), and ran on the
    event loop after every upstream answer, holding every other request and /health meanwhile (found in review,
    2026-11-28). It runs in a worker thread now, unless prompt and answer are short enough that the hop to a thread
    costs more than the work: here a long prompt's report waits for an event only the event loop can set."""
    import asyncio
    import threading

    from sovrouter.speculative.shape_online import INLINE_CHARS

    freed = threading.Event()
    seen: list[bool] = []
    cand = Candidate(slot="s", deployment="d")
    adapter = ShapeObservingAdapter(FakeAdapter(cand, text="an answer"),
                                    lambda r, t: seen.append(freed.wait(timeout=2.0)))

    async def loop_side() -> None:
        await asyncio.sleep(0.05)
        freed.set()

    long = "word " * (INLINE_CHARS // 5)  # with the answer, just over the inline bound
    call = ModelCall(request=_req(long, "r1"), allowed=[cand])
    result, _ = await asyncio.gather(adapter.generate(call), loop_side())
    assert result.text == "an answer" and seen == [True]
    freed.clear()
    chunks, _ = await asyncio.gather(_collect(adapter.stream(call.model_copy(update={"request": _req(long, "r2")}))),
                                     loop_side())
    assert "".join(c.delta for c in chunks) == "an answer" and seen == [True, True]


async def test_a_short_answer_is_learned_from_without_a_thread_hop() -> None:
    import threading

    from sovrouter.speculative.shape_online import INLINE_CHARS

    where: list[bool] = []
    cand = Candidate(slot="s", deployment="d")
    adapter = ShapeObservingAdapter(FakeAdapter(cand, text="an answer"),
                                    lambda r, t: where.append(threading.current_thread() is threading.main_thread()))
    short = "x" * (INLINE_CHARS - len("an answer"))  # exactly at the bound
    for rid, text in (("a", short), ("b", short + "x")):
        await adapter.generate(ModelCall(request=_req(text, rid), allowed=[cand]))
        await _collect(adapter.stream(ModelCall(request=_req(text, rid + "s"), allowed=[cand])))
    assert where == [True, True, False, False]


async def _collect(stream: object) -> list:  # type: ignore[type-arg]
    return [c async for c in stream]  # type: ignore[attr-defined]


async def test_a_slow_observation_never_turns_an_answer_into_a_timeout(
        catalog: Catalog, tenants: Tenants, monkeypatch: pytest.MonkeyPatch) -> None:
    """Learning from an answer runs in a worker thread outside the reliability stack: its time is not the
    upstream's, so an answer that came back within the deadline is served (and its call logged ``ok``) even when
    learning from it takes longer than what was left of the deadline."""
    import time

    from sovrouter.build import assemble
    from sovrouter.clock import WallClock
    from sovrouter.config import ReliabilitySettings, Settings
    from sovrouter.testing import MemorySink

    learn = OnlineAnswerShape.observe

    def slow(self: OnlineAnswerShape, request: NormalizedRequest, answer: str) -> None:
        time.sleep(0.4)  # longer than the 0.2 s the call had left
        learn(self, request, answer)

    monkeypatch.setattr(OnlineAnswerShape, "observe", slow)
    settings = Settings(catalog="x", tenants="y", router="baseline",  # type: ignore[arg-type]
                        reliability=ReliabilitySettings(timeout_s=0.3, retries=0))
    adapters = {Candidate(slot=s.id, deployment=d.id): FakeAdapter(Candidate(slot=s.id, deployment=d.id), text="ok",
                                                                   delay_s=0.1)
                for s, d in catalog.pairs()}
    p = assemble(settings, catalog, tenants, adapters, WallClock(), MemorySink())
    for stream in (False, True):
        req = normalize_chat({"messages": [{"role": "user", "content": f"Tell me about Rome ({stream})."}],
                              "stream": stream},
                             tenant="acme-us", request_id=f"r{stream}")
        out = [x async for x in p.handle_stream(req)][-1] if stream else await p.handle(req)
        assert isinstance(out, Outcome) and out.record.status == "ok"
        assert [c.outcome for c in out.record.calls] == ["ok"]
