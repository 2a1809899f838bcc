"""The after-pipeline hook: regeneration tracking, shadow sampling through the policy guard, format scorer."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from sovrouter.build import assemble
from sovrouter.catalog import Catalog, Tenants
from sovrouter.clock import SimClock
from sovrouter.config import Settings
from sovrouter.contracts import (
    Candidate,
    CandidateVerdict,
    Detection,
    ModelCall,
    ModelResult,
    NormalizedRequest,
    PolicyVerdict,
)
from sovrouter.evalloop.loop import EvalLoop
from sovrouter.evalloop.regeneration import RegenerationIndex, normalize
from sovrouter.evalloop.scorers import FakeJudge, FormatScorer
from sovrouter.evalloop.shadow import ShadowSampler, reference_candidate, sampled
from sovrouter.evalloop.signals import SignalStore
from sovrouter.intake import normalize_chat
from sovrouter.telemetry.metrics import RequestMetrics
from sovrouter.testing import FakeAdapter, MemorySink


class Recording(FakeAdapter):
    purposes: list[str]

    async def generate(self, call: ModelCall) -> ModelResult:
        self.purposes = [*getattr(self, "purposes", []), call.purpose]
        return await super().generate(call)


class OnPremisesOnly:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def evaluate(self, request: NormalizedRequest, detection: Detection,
                 candidates: Sequence[Candidate]) -> PolicyVerdict:
        return PolicyVerdict(verdicts=[
            CandidateVerdict(candidate=c, rule="test.premises",
                             allowed=self.catalog.deployment(c.slot, c.deployment).on_premises
                             and self.catalog.deployment(c.slot, c.deployment).available_for(request.tenant))
            for c in candidates])


def _req(text: str, rid: str, t_ms: float, tenant: str = "acme-us") -> NormalizedRequest:
    return normalize_chat({"messages": [{"role": "user", "content": text}]}, tenant=tenant, request_id=rid,
                          arrived_ms=t_ms)


def _pipeline(catalog: Catalog, tenants: Tenants, clock: SimClock):  # type: ignore[no-untyped-def]
    adapters = {Candidate(slot=s.id, deployment=d.id): Recording(Candidate(slot=s.id, deployment=d.id),
                                                                 text=f"The answer is {s.id}")
                for s, d in catalog.pairs()}
    settings = Settings(catalog="x", tenants="y", router="baseline")  # type: ignore[arg-type]
    settings = settings.model_copy(update={"cache": settings.cache.model_copy(update={"exact_enabled": False})})
    return assemble(settings, catalog, tenants, adapters, clock, MemorySink()), adapters


async def test_regeneration_and_shadow(catalog: Catalog, tenants: Tenants) -> None:
    clock = SimClock()
    pipeline, adapters = _pipeline(catalog, tenants, clock)
    store = SignalStore()
    metrics = RequestMetrics()
    judge = FakeJudge(rule=lambda a, r: 1.0 if r is not None and a == r else 0.25)
    shadow = ShadowSampler(pipeline.executor.adapters, judge, store, fraction=1.0, catalog=catalog, metrics=metrics)
    loop = EvalLoop(store, RegenerationIndex(window_ms=60_000, store=store, metrics=metrics), shadow,
                    [FormatScorer()])
    script = [("What is 2+2?", "a", 0.0, "acme-us"), ("what is 2 + 2", "b", 5_000.0, "acme-us"),
              ("What is 2+2?", "c", 6_000.0, "eurobank"), ("What is 2+2?", "d", 200_000.0, "acme-us")]
    for text, rid, t, tenant in script:
        clock.set(t)
        req = _req(text, rid, t, tenant)
        await loop.after(req, await pipeline.handle(req))
    await loop.drain()
    regens = store.regenerations()
    # b re-asks a (normalised match) within the window; c is another tenant; d is outside the window
    assert [(g.request_id, g.previous_request_id, g.match) for g in regens] == [("b", "a", "normalized")]
    assert regens[0].slot == "sovereign-large"
    shadows = list(store.signals("shadow"))
    assert len(shadows) == 4 and all(s.reference_slot == "frontier" for s in shadows)
    assert all(s.score == 0.25 and s.reference_score == 1.0 and s.cost_usd > 0 for s in shadows)
    frontier = adapters[Candidate(slot="frontier", deployment="us")]
    assert frontier.purposes == ["shadow"] * 4  # through the adapter chain with purpose "shadow"
    # shadow spend is where spend is read: calls (purpose shadow), cost and tokens (it was in the signals only)
    reg = metrics.registry
    assert reg.get_sample_value("sovrouter_upstream_calls_total", {"slot": "frontier", "deployment": "us",
                                                                   "purpose": "shadow", "outcome": "ok"}) == 4
    spent = sum(reg.get_sample_value("sovrouter_cost_usd_total", {"tenant": t, "slot": "frontier",
                                                                  "deployment": "us"}) or 0.0
                for t in ("acme-us", "eurobank"))
    assert abs(spent - sum(s.cost_usd for s in shadows)) < 1e-12


async def test_shadow_respects_policy(catalog: Catalog, tenants: Tenants) -> None:
    clock = SimClock()
    pipeline, adapters = _pipeline(catalog, tenants, clock)
    pipeline.policy = OnPremisesOnly(catalog)
    req = _req("hello", "m1", 0.0, "ministry-airgap")
    out = await pipeline.handle(req)
    ref = reference_candidate(out.record, catalog=catalog)
    assert ref == Candidate(slot="sovereign-large", deployment="gov-onprem")  # frontier-first *under policy*
    store = SignalStore()
    signal = await ShadowSampler(pipeline.executor.adapters, FakeJudge(), store, fraction=1.0).after(
        req, out.record, out.result.text if out.result else "")
    assert signal is not None and signal.reference_slot == "sovereign-large"
    assert all(getattr(adapters[c], "purposes", []) == [] for c in adapters if c.slot in ("frontier", "hosted-mini"))


def test_sampling_is_deterministic_and_proportional() -> None:
    ids = [f"req-{i}" for i in range(20_000)]
    picked = [sampled(i, 0.1) for i in ids]
    assert picked == [sampled(i, 0.1) for i in ids]
    assert 0.09 < sum(picked) / len(ids) < 0.11
    assert not any(sampled(i, 0.0) for i in ids[:100])


def test_normalize() -> None:
    assert normalize("  What IS 2+2 ?") == normalize("what is 2 + 2")


async def test_observed_pipeline_stream_and_background_shadow(catalog: Catalog, tenants: Tenants) -> None:
    from sovrouter.evalloop.loop import EvalSettings, build_observability

    clock = SimClock()
    pipeline, adapters = _pipeline(catalog, tenants, clock)
    obs = build_observability(EvalSettings(shadow_fraction=1.0), catalog, judge=FakeJudge())
    observed = obs.observe(pipeline)
    items = [x async for x in observed.handle_stream(_req("stream me", "s1", 0.0))]
    await observed.handle(_req("stream me", "s2", 10.0))
    await obs.loop.drain()
    assert items[-1].record.status == "ok"  # type: ignore[union-attr]
    assert {s.request_id for s in obs.signals.signals("shadow")} == {"s1", "s2"}
    assert [g.request_id for g in obs.signals.regenerations()] == ["s2"]
    assert adapters[Candidate(slot="frontier", deployment="us")].purposes == ["shadow", "shadow"]


async def test_agreement_judge() -> None:
    from sovrouter.evalloop.scorers import AgreementJudge

    j = AgreementJudge()
    req = _req("q", "j1", 0.0)
    assert await j.judge(req, '{"answer": "42"}', "42") == 1.0
    assert await j.judge(req, '{"answer": "41"}', '{"answer": "42"}') == 0.0
    assert await j.judge(req, "anything", None) == 0.5


async def test_eval_loop_errors_never_fail_the_request(catalog: Catalog, tenants: Tenants) -> None:
    from sovrouter.errors import UpstreamError
    from sovrouter.evalloop.loop import EvalSettings, build_observability

    class BrokenJudge:
        async def judge(self, request: NormalizedRequest, answer: str, reference: str | None = None) -> float:
            raise UpstreamError("judge model down")

    pipeline, _ = _pipeline(catalog, tenants, SimClock())
    obs = build_observability(EvalSettings(shadow_fraction=1.0), catalog, judge=BrokenJudge())
    obs.loop.background = False
    out = await obs.observe(pipeline).handle(_req("hello", "e1", 0.0))
    assert out.record.status == "ok" and out.result is not None
    assert list(obs.signals.signals("shadow")) == []


async def test_a_retry_after_a_failure_is_not_a_regeneration(catalog: Catalog, tenants: Tenants) -> None:
    """Clients retry a 502 on their own: counted as re-asking, every outage raised the regeneration rate."""
    from sovrouter.errors import UpstreamUnavailableError
    from sovrouter.testing import FailingAdapter

    clock = SimClock()
    pipeline, _ = _pipeline(catalog, tenants, clock)
    store = SignalStore()
    index = RegenerationIndex(window_ms=60_000, store=store)
    working = pipeline.executor.adapters
    pipeline.executor.adapters = {c: FailingAdapter(c, error=UpstreamUnavailableError("down")) for c in working}
    for rid, t in (("a", 0.0), ("b", 1_000.0)):  # two failures: the second is a retry
        clock.set(t)
        req = _req("What is 2+2?", rid, t)
        out = await pipeline.handle(req)
        assert out.record.status == "error"
        index.observe(req, out.record)
    pipeline.executor.adapters = working
    for rid, t in (("c", 2_000.0), ("d", 3_000.0)):  # answered, then asked again: a regeneration
        clock.set(t)
        req = _req("What is 2+2?", rid, t)
        index.observe(req, (await pipeline.handle(req)).record)
    assert [(g.request_id, g.previous_request_id) for g in store.regenerations()] == [("d", "c")]


async def test_an_answer_that_calls_functions_gets_no_text_score() -> None:
    """A call-only answer has no text: the format scorer stored 0.0 / format_error against the deployment that
    answered it correctly, and the shadow judge would have paid a reference call to compare with ""."""
    from sovrouter.contracts import RequestRecord, ToolCall
    from sovrouter.pipeline import Outcome

    store = SignalStore()
    loop = EvalLoop(store, None, None, [FormatScorer()])
    tool = {"type": "function", "function": {"name": "get_weather"}}
    req = normalize_chat({"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [tool]},
                         tenant="acme-us", request_id="t1")
    us = Candidate(slot="frontier", deployment="us")
    record = RequestRecord(request_id="t1", tenant="acme-us", data_class="public", effective_class="public",
                           modalities=["text"], arrived_ms=0.0, status="ok", final=us)
    result = ModelResult(candidate=us, text="", finish_reason="tool_calls",
                         tool_calls=(ToolCall(id="c", name="get_weather", arguments="{}"),))
    await loop.after(req, Outcome(record=record, result=result))
    assert list(store.signals("scorer")) == []


async def test_an_agents_next_step_is_not_a_regeneration() -> None:
    """The index keys on the user's turns: an agent's follow-up (same user turn, plus the call and its result)
    matched the step before as an exact regeneration, counted against the deployment that answered it right."""
    store = SignalStore()
    loop = EvalLoop(store, RegenerationIndex(window_ms=60_000, store=store, metrics=RequestMetrics()), None, [])
    us = Candidate(slot="frontier", deployment="us")
    tool = {"type": "function", "function": {"name": "get_weather"}}
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    steps = [ask, [*ask, {"role": "assistant", "content": None, "tool_calls": [call]},
                   {"role": "tool", "tool_call_id": "c1", "content": "21C"}]]
    from sovrouter.contracts import RequestRecord
    from sovrouter.pipeline import Outcome

    for i, messages in enumerate(steps):
        req = normalize_chat({"messages": messages, "tools": [tool]}, tenant="acme-us", request_id=f"s{i}",
                             arrived_ms=1000.0 * i)
        record = RequestRecord(request_id=f"s{i}", tenant="acme-us", data_class="public", effective_class="public",
                               modalities=["text"], arrived_ms=1000.0 * i, status="ok", final=us)
        await loop.after(req, Outcome(record=record, result=ModelResult(candidate=us, text="x")))
    assert store.regenerations() == []


async def test_a_shadow_reference_outside_the_allowed_set_is_refused_by_the_guard(
        catalog: Catalog, tenants: Tenants, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth, as on the live path: whatever picks the reference route, the shadow call goes through the
    policy guard with the request's own allowed set, so a wrong pick is refused before it leaves."""
    from sovrouter.evalloop import shadow

    clock = SimClock()
    pipeline, adapters = _pipeline(catalog, tenants, clock)
    pipeline.policy = OnPremisesOnly(catalog)
    req = _req("hello", "m1", 0.0, "ministry-airgap")
    out = await pipeline.handle(req)
    frontier = Candidate(slot="frontier", deployment="us")
    assert out.record.status == "ok" and not any(v.allowed for v in out.record.policy if v.candidate == frontier)
    monkeypatch.setattr(shadow, "reference_candidate", lambda *args, **kwargs: frontier)  # a wrong pick
    signal = await ShadowSampler(pipeline.executor.adapters, FakeJudge(), SignalStore(), fraction=1.0).after(
        req, out.record, out.result.text if out.result else "")
    assert signal is None
    assert getattr(adapters[frontier], "purposes", []) == []


async def test_an_observed_stream_closed_early_is_recorded_at_once(catalog: Catalog, tenants: Tenants) -> None:
    """The observed pipeline did not close the pipeline's stream it wrapped: a reader that stopped early got its
    request_cancelled record only when the inner stream was finalised later (review, 2026-11-28)."""
    from sovrouter.evalloop.loop import EvalSettings, build_observability
    from sovrouter.pipeline import Outcome

    pipeline, _ = _pipeline(catalog, tenants, SimClock())
    sink = pipeline.records
    obs = build_observability(EvalSettings(shadow_fraction=0.0), catalog, judge=FakeJudge())
    stream = obs.observe(pipeline).handle_stream(_req("a longer answer please", "early-1", 0.0))
    first = await anext(stream)
    assert not isinstance(first, Outcome)
    await stream.aclose()
    assert [(r.request_id, r.error_code) for r in sink.records] == [("early-1", "request_cancelled")]


async def test_a_shadow_call_s_tries_are_counted_and_priced_like_any_call(catalog: Catalog, tenants: Tenants) -> None:
    """The shadow call goes through the reliability stack: a retried try and a timed-out try reached the
    upstream (a timeout is billed its prompt, as the pipeline prices it), but the metrics counted one call per
    shadow call and no cost for a timeout (found in review, 2026-11-28)."""
    from sovrouter.catalog import estimate_tokens
    from sovrouter.config import ReliabilitySettings
    from sovrouter.errors import UpstreamUnavailableError

    class FlakyThenSlow(Recording):
        """Fails its first call (retried), answers its second, never answers in time after that."""

        async def generate(self, call: ModelCall) -> ModelResult:
            self.calls += 1
            if self.calls == 1:
                raise UpstreamUnavailableError("upstream answered HTTP 503")
            if self.calls > 2:
                self.delay_s = 5.0
            return await super().generate(call)

    adapters = {Candidate(slot=s.id, deployment=d.id): Recording(Candidate(slot=s.id, deployment=d.id),
                                                                 text=f"The answer is {s.id}")
                for s, d in catalog.pairs()}
    frontier = Candidate(slot="frontier", deployment="us")
    adapters[frontier] = FlakyThenSlow(frontier, text="The answer is frontier")
    settings = Settings(catalog="x", tenants="y", router="baseline",  # type: ignore[arg-type]
                        reliability=ReliabilitySettings(timeout_s=0.2, retry_backoff_s=0.0))
    settings = settings.model_copy(update={"cache": settings.cache.model_copy(update={"exact_enabled": False})})
    pipeline = assemble(settings, catalog, tenants, adapters, SimClock(), MemorySink())
    metrics = RequestMetrics()
    shadow = ShadowSampler(pipeline.executor.adapters, FakeJudge(), SignalStore(), fraction=1.0, catalog=catalog,
                           metrics=metrics)
    for rid in ("ok-after-retry", "timed-out"):
        req = _req("What is 2+2?", rid, 0.0)
        out = await pipeline.handle(req)
        assert out.record.final is not None and out.record.final.slot != "frontier"
        await shadow.after(req, out.record, out.result.text if out.result else "")
    reg = metrics.registry

    def calls(outcome: str) -> float | None:
        return reg.get_sample_value("sovrouter_upstream_calls_total", {
            "slot": "frontier", "deployment": "us", "purpose": "shadow", "outcome": outcome})

    assert (calls("error"), calls("ok"), calls("timeout")) == (1, 1, 1)  # every try that was made, as made
    assert reg.get_sample_value("sovrouter_shadow_calls_total", {"slot": "frontier", "deployment": "us",
                                                                 "outcome": "ok"}) == 1
    spent = reg.get_sample_value("sovrouter_cost_usd_total", {"tenant": "acme-us", "slot": "frontier",
                                                              "deployment": "us"})
    answered = catalog.cost_usd("frontier", "us", 5, len("The answer is frontier") // 4)
    prompt = catalog.cost_usd("frontier", "us", estimate_tokens(_req("What is 2+2?", "x", 0.0).forwarded_text), 0)
    assert spent == pytest.approx(answered + prompt)  # the timed-out try's prompt is billed too


async def test_a_shadow_call_failing_unexpectedly_does_not_cut_the_shutdown_short(
        catalog: Catalog, tenants: Tenants, caplog: pytest.LogCaptureFixture) -> None:
    """``drain`` gathered the shadow tasks without ``return_exceptions``: one failing with an error outside the
    hierarchy (a judge's bug) raised out of ``drain``, and the gateway's shutdown skipped every later step: the HTTP
    client and the shared stores (their last rows unshipped) were never closed (found in review, 2026-11-28)."""
    from sovrouter.cli.serve import shutdown_order

    def buggy(answer: str, reference: str | None) -> float:
        raise RuntimeError("bug in a judge")

    clock = SimClock()
    pipeline, _ = _pipeline(catalog, tenants, clock)
    store = SignalStore()
    loop = EvalLoop(store, None, ShadowSampler(pipeline.executor.adapters, FakeJudge(rule=buggy), store,
                                               fraction=1.0, catalog=catalog))
    for rid in ("a", "b"):
        req = _req(f"question {rid}", rid, 0.0)
        await loop.after(req, await pipeline.handle(req))
    closed: list[str] = []

    async def close(name: str) -> None:
        closed.append(name)

    hooks = shutdown_order(None, loop.drain, lambda: close("client"), [lambda: close("records"),
                                                                     lambda: close("signals")])
    with caplog.at_level("ERROR", logger="sovrouter.evalloop"):
        for hook in hooks:  # as the gateway's lifespan runs them
            await hook()
    assert closed == ["client", "records", "signals"] and not loop._tasks
    failed = [r for r in caplog.records if "shadow" in r.getMessage()]
    assert len(failed) == 2 and all("RuntimeError" in r.getMessage() for r in failed)
    assert all("bug in a judge" not in r.getMessage() for r in caplog.records)  # type only, never the text
