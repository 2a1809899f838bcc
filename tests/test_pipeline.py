from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from sovrouter.build import assemble
from sovrouter.catalog import Catalog, Tenants
from sovrouter.clock import WallClock
from sovrouter.config import Settings
from sovrouter.contracts import Candidate, Detection, ModelCall, StreamChunk
from sovrouter.intake import normalize_chat
from sovrouter.testing import FailingAdapter, FakeAdapter, MemorySink, MidStreamFailingAdapter


def _settings(catalog_path: str = "x", tenants_path: str = "y") -> Settings:
    return Settings(catalog=catalog_path, tenants=tenants_path, router="baseline")  # type: ignore[arg-type]


def _req(text: str = "hello", tenant: str = "acme-us", rid: str = "r1", stream: bool = False):
    return normalize_chat({"messages": [{"role": "user", "content": text}], "stream": stream},
                          tenant=tenant, request_id=rid)


def _all_fake(catalog: Catalog) -> dict[Candidate, FakeAdapter]:
    return {Candidate(slot=s.id, deployment=d.id): FakeAdapter(Candidate(slot=s.id, deployment=d.id), text=f"{s.id}")
            for s, d in catalog.pairs()}


async def test_one_record_per_request_and_route(catalog: Catalog, tenants: Tenants) -> None:
    sink = MemorySink()
    adapters = _all_fake(catalog)
    p = assemble(_settings(), catalog, tenants, adapters, WallClock(), sink)
    out = await p.handle(_req())
    assert out.result is not None and out.record.status == "ok"
    assert len(sink.records) == 1
    assert out.record.final == Candidate(slot="sovereign-large", deployment="eu-sov")
    assert out.record.calls[0].cost_usd > 0


async def test_fallback_on_failure(catalog: Catalog, tenants: Tenants) -> None:
    sink = MemorySink()
    adapters: dict = _all_fake(catalog)
    for c in list(adapters):
        if c.slot == "sovereign-large":
            adapters[c] = FailingAdapter(c)
    p = assemble(_settings(), catalog, tenants, adapters, WallClock(), sink)
    out = await p.handle(_req())
    assert out.record.fallback_used
    assert out.record.final is not None and out.record.final.slot == "frontier"


async def test_gov_onprem_never_candidate_for_other_tenants(catalog: Catalog, tenants: Tenants) -> None:
    sink = MemorySink()
    p = assemble(_settings(), catalog, tenants, _all_fake(catalog), WallClock(), sink)
    out = await p.handle(_req())
    assert all(v.candidate.deployment != "gov-onprem" for v in out.record.policy if v.allowed)


async def test_exact_cache_and_single_flight(catalog: Catalog, tenants: Tenants) -> None:
    sink = MemorySink()
    adapters = _all_fake(catalog)
    for a in adapters.values():
        a.delay_s = 0.05
    p = assemble(_settings(), catalog, tenants, adapters, WallClock(), sink)
    outs = await asyncio.gather(*[p.handle(_req(rid=f"r{i}")) for i in range(5)])
    assert sum(a.calls for a in adapters.values()) == 1
    assert sum(o.record.cache.kind == "exact" for o in outs) == 4
    other = await p.handle(_req(rid="t2", tenant="eurobank"))
    assert other.record.cache.kind == "miss"


async def test_mid_stream_failure_ends_with_error(catalog: Catalog, tenants: Tenants) -> None:
    sink = MemorySink()
    adapters: dict = _all_fake(catalog)
    for c in list(adapters):
        if c.slot == "sovereign-large":
            adapters[c] = MidStreamFailingAdapter(c)
    p = assemble(_settings(), catalog, tenants, adapters, WallClock(), sink)
    items = [x async for x in p.handle_stream(_req(stream=True))]
    last = items[-1]
    assert last.error is not None and last.record.status == "error"
    assert len(sink.records) == 1


@pytest.mark.parametrize("tenant", ["acme-us"])
async def test_image_request_without_image_deployment_is_clear_error(catalog: Catalog, tenants: Tenants,
                                                                     tenant: str) -> None:
    sink = MemorySink()
    p = assemble(_settings(), catalog, tenants, _all_fake(catalog), WallClock(), sink)
    req = normalize_chat({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]},
        tenant=tenant, request_id="img")
    out = await p.handle(req)
    assert out.error is not None and out.error.code == "unsupported_modality"


async def test_latency_aware_deployment_choice_end_to_end(catalog: Catalog, tenants: Tenants) -> None:
    """Default settings: the speculative deployment of a slot serves the request whose answer is expected to copy
    its prompt (options restated), the plain one an open question; the record says why. ``cheapest`` ignores it."""
    data = catalog.model_dump()
    sov = next(s for s in data["slots"] if s["id"] == "sovereign-large")
    sov["deployments"].append({**sov["deployments"][0], "id": "eu-sov-spec",
                               "speculative": {"kind": "prompt-lookup", "expected_speedup": 2.8, "base_speedup": 0.9}})
    spec_catalog = Catalog.model_validate(data)
    options = "\n".join(f"{c}. option number {i} about the topic" for i, c in enumerate("ABCDEFGHIJ"))
    mc = f"Think step by step, then finish with 'the answer is (X)'.\nQuestion: Which is right?\n{options}"
    for choice, text, expected in (("latency-aware", mc, "eu-sov-spec"), ("latency-aware", "Tell me about Rome.",
                                                                            "eu-sov"), ("cheapest", mc, "eu-sov")):
        sink = MemorySink()
        settings = _settings().model_copy(update={"deployment_choice": choice})
        p = assemble(settings, spec_catalog, tenants, _all_fake(spec_catalog), WallClock(), sink)
        out = await p.handle(_req(text))
        assert out.record.final == Candidate(slot="sovereign-large", deployment=expected)
        assert out.record.decision is not None
        evidence = out.record.decision.evidence.get("deployment")
        if choice == "cheapest":
            assert evidence is None
        else:
            assert evidence is not None and set(evidence["expected_ms"]) >= {"sovereign-large/eu-sov",
                                                                             "sovereign-large/eu-sov-spec"}


async def test_answers_reach_the_online_answer_shape_correction(catalog: Catalog, tenants: Tenants) -> None:
    from sovrouter.build import shape_observer
    from sovrouter.routing.deployments import LatencyAwareDeployment
    from sovrouter.speculative.shape_online import OnlineAnswerShape

    p = assemble(_settings(), catalog, tenants, _all_fake(catalog), WallClock(), MemorySink())
    chooser = p.router.deployments  # type: ignore[attr-defined]
    assert isinstance(chooser, LatencyAwareDeployment) and isinstance(chooser.shapes, OnlineAnswerShape)
    await p.handle(_req("first question"))
    chunks = [c async for c in p.handle_stream(_req("second question", rid="r2", stream=True))]
    assert chunks
    assert len(chooser.shapes._global["acme-us"]) == 2  # one answer each, streamed or not
    cheapest = _settings().model_copy(update={"deployment_choice": "cheapest"})
    q = assemble(cheapest, catalog, tenants, _all_fake(catalog), WallClock(), MemorySink())
    assert shape_observer(q.router.deployments) is None  # type: ignore[attr-defined]


async def test_the_latency_aware_chooser_sees_the_calls_in_flight(catalog: Catalog, tenants: Tenants) -> None:
    from sovrouter.routing.deployments import LatencyAwareDeployment

    adapters = {c: FakeAdapter(c, text=c.slot, delay_s=0.1) for c in _all_fake(catalog)}
    p = assemble(_settings(), catalog, tenants, adapters, WallClock(), MemorySink())
    chooser = p.router.deployments  # type: ignore[attr-defined]
    assert isinstance(chooser, LatencyAwareDeployment) and chooser.load is not None
    chosen = Candidate(slot="sovereign-large", deployment="eu-sov")
    running = [asyncio.create_task(p.handle(_req(f"question {i}", rid=f"r{i}"))) for i in range(3)]
    await asyncio.sleep(0.05)
    assert chooser.load.count(chosen) == 3  # each upstream call counted while it runs
    outs = await asyncio.gather(*running)
    assert all(o.record.final == chosen for o in outs)
    assert chooser.load.count(chosen) == 0


@pytest.mark.parametrize("step", ["classifier", "router"])
async def test_a_failure_after_the_cache_miss_never_leaves_identical_requests_waiting(
        catalog: Catalog, tenants: Tenants, step: str) -> None:
    """The miss made the request its key's single-flight leader; a classifier or router error (a full /tmp for
    the code sandbox...) skipped the release, and every later identical request waited forever."""
    p = assemble(_settings(), catalog, tenants, _all_fake(catalog), WallClock(), MemorySink())
    target = p.classifier if step == "classifier" else p.router
    name = "classify" if step == "classifier" else "decide"
    real = getattr(target, name)
    failures = [OSError("no space left on device")]

    def flaky(*args: object) -> object:
        if failures:
            raise failures.pop()
        return real(*args)

    setattr(target, name, flaky)
    with pytest.raises(OSError):
        await p.handle(_req(rid="r1"))
    out = await asyncio.wait_for(p.handle(_req(rid="r2")), 5)
    assert out.record.status == "ok" and out.record.cache.kind == "miss"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_request_cancelled_mid_call_still_gets_its_record(catalog: Catalog, tenants: Tenants,
                                                                 stream: bool) -> None:
    """Cancelled at shutdown (the gateway's drain past its grace period, or the server's own), a request left no
    record at all: its spend vanished from billing, metrics and the eval loop."""
    sink = MemorySink()
    adapters = _all_fake(catalog)
    for a in adapters.values():
        a.delay_s = 5.0
    p = assemble(_settings(), catalog, tenants, adapters, WallClock(), sink)

    async def run() -> None:
        if stream:
            async for _ in p.handle_stream(_req(rid="r1", stream=True)):
                pass
        else:
            await p.handle(_req(rid="r1"))

    task = asyncio.create_task(run())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [(r.request_id, r.status, r.error_code) for r in sink.records] == [("r1", "error", "request_cancelled")]
    # the call in flight is in the record, priced for the prompt the upstream had (it was missing, and its cost)
    (record,) = sink.records
    assert [c.outcome for c in record.calls] == ["cancelled"]
    call = record.calls[0]
    expected = catalog.cost_usd(call.candidate.slot, call.candidate.deployment, call.input_tokens, 0)
    assert call.input_tokens > 0 and call.cost_usd == expected > 0 and record.cost_usd == expected


def _moved(catalog: Catalog, slot: str, deployment: str, **facts: object) -> Catalog:
    moved = catalog.model_copy(deep=True)
    dep = moved.deployment(slot, deployment)
    for name, value in facts.items():
        setattr(dep, name, value)
    return moved


def test_the_catalog_fingerprint_reads_what_the_policy_reads_not_prices(catalog: Catalog) -> None:
    fp = catalog.policy_fingerprint()
    assert fp == catalog.model_copy(deep=True).policy_fingerprint()
    assert _moved(catalog, "sovereign-large", "us-east", region="EU").policy_fingerprint() != fp
    assert _moved(catalog, "sovereign-large", "us-east", on_premises=True).policy_fingerprint() != fp
    assert _moved(catalog, "sovereign-large", "us-east", available_to=["eurobank"]).policy_fingerprint() != fp
    assert _moved(catalog, "sovereign-large", "us-east", price_multiplier=3.0).policy_fingerprint() == fp


async def test_an_answer_stored_under_another_catalog_is_never_served(catalog: Catalog, tenants: Tenants,
                                                                     tmp_path: object) -> None:
    """A hit was checked by the deployment's name only, under the current catalog: once ``us-east`` was declared
    in the EU, the answer it computed while in the US was served to a confidential eurobank request."""
    path = str(tmp_path / "cache.sqlite")  # type: ignore[operator]
    body = {"model": "sovereign-large/us-east", "messages": [{"role": "user", "content": "Summarise our Q3 memo."}]}
    us_east = Candidate(slot="sovereign-large", deployment="us-east")

    def run(cat: Catalog, rid: str, data_class: str) -> object:
        pipe = assemble(_settings(), cat, tenants, _all_fake(cat), WallClock(), MemorySink(), cache_path=path)
        return pipe.handle(normalize_chat(body, tenant="eurobank", request_id=rid, data_class=data_class))

    first = await run(catalog, "r1", "public")  # type: ignore[misc]
    assert first.record.status == "ok" and first.record.final == us_east
    moved = _moved(catalog, "sovereign-large", "us-east", region="EU")
    second = await run(moved, "r2", "confidential")  # type: ignore[misc]
    assert second.record.status == "ok" and second.record.cache.kind == "miss" and second.record.calls
    third = await run(moved, "r3", "confidential")  # type: ignore[misc]
    assert third.record.cache.kind == "exact"  # the same catalog still finds its own entries


async def test_a_timed_out_call_is_priced_for_its_prompt(catalog: Catalog, tenants: Tenants) -> None:
    """A timeout cost nothing in the record, while the upstream had the prompt and may have generated (a
    cancelled call was already priced so): slow outages were under-counted."""
    from sovrouter.errors import UpstreamTimeoutError

    sink = MemorySink()
    adapters = {c: FailingAdapter(c, error=UpstreamTimeoutError("no first token in time")) for c in _all_fake(catalog)}
    p = assemble(_settings(), catalog, tenants, adapters, WallClock(), sink)
    out = await p.handle(_req(rid="r1"))
    assert out.record.status == "error" and out.record.calls
    assert all(c.outcome == "timeout" and c.input_tokens > 0 for c in out.record.calls)
    paid = [c for c in out.record.calls if c.cost_usd > 0]
    assert paid and out.record.cost_usd == sum(c.cost_usd for c in out.record.calls)


@pytest.mark.parametrize("step", ["detector", "classifier", "router"])
async def test_a_long_detection_or_classification_leaves_the_event_loop_free(
        catalog: Catalog, tenants: Tenants, step: str) -> None:
    """Detection (spaCy) and classification (a sandboxed run of a shown snippet, up to 2 s of CPU) ran on the
    event loop: one tenant's long request held every other request and /health (found in review). They run in a
    worker thread now: here the step waits for an event only the event loop can set. So does the routing decision
    (since 2026-11-28): the latency-aware chooser's answer-shape features read the whole prompt, 0.5 s on the
    loop for a 1 MB prompt (found in review)."""
    import threading

    p = assemble(_settings(), catalog, tenants, _all_fake(catalog), WallClock(), MemorySink())
    target = {"detector": p.detector, "classifier": p.classifier, "router": p.router}[step]
    name = {"detector": "detect", "classifier": "classify", "router": "decide"}[step]
    real = getattr(target, name)
    freed = threading.Event()
    seen: list[bool] = []

    def slow(*args: object) -> object:
        seen.append(freed.wait(timeout=2.0))  # on the loop's thread this waits out its 2 s: nobody sets it
        return real(*args)

    async def loop_side() -> None:
        await asyncio.sleep(0.05)
        freed.set()

    setattr(target, name, slow)
    out, _ = await asyncio.gather(p.handle(_req()), loop_side())
    assert out.record.status == "ok" and seen == [True]


class _BrokenRouter:
    """A router with a bug: ``decide`` raises something outside the error hierarchy."""

    def decide(self, *args: object, **kwargs: object) -> object:
        raise RuntimeError("bug in a component, quoting the prompt: hello")

    def review(self, *args: object, **kwargs: object) -> object:
        return None


async def test_unexpected_failure_still_records_the_request(catalog: Catalog, tenants: Tenants) -> None:
    sink = MemorySink()
    p = assemble(_settings(), catalog, tenants, _all_fake(catalog), WallClock(), sink)
    p.router = _BrokenRouter()  # type: ignore[assignment]
    with pytest.raises(RuntimeError):  # not swallowed: the gateway's boundary answers it (a 500)
        await p.handle(_req(rid="bug-1"))
    [record] = sink.records
    assert (record.request_id, record.status, record.error_code) == ("bug-1", "error", "internal_error")
    assert record.tenant == "acme-us" and "hello" not in record.model_dump_json()
    # the next request is recorded normally, once
    p.router = assemble(_settings(), catalog, tenants, _all_fake(catalog), WallClock(), MemorySink()).router
    out = await p.handle(_req(rid="ok-1", text="another"))
    assert out.record.status == "ok" and [r.request_id for r in sink.records] == ["bug-1", "ok-1"]


async def test_unexpected_failure_in_a_stream_still_records_it(catalog: Catalog, tenants: Tenants) -> None:
    sink = MemorySink()
    p = assemble(_settings(), catalog, tenants, _all_fake(catalog), WallClock(), sink)
    p.router = _BrokenRouter()  # type: ignore[assignment]
    with pytest.raises(RuntimeError):
        [x async for x in p.handle_stream(_req(rid="bug-2", stream=True))]
    assert [(r.request_id, r.error_code) for r in sink.records] == [("bug-2", "internal_error")]


async def test_a_stream_abandoned_before_its_outcome_is_recorded_once(catalog: Catalog, tenants: Tenants) -> None:
    sink = MemorySink()
    adapters = _all_fake(catalog)
    p = assemble(_settings(), catalog, tenants, adapters, WallClock(), sink)
    stream = p.handle_stream(_req(rid="gone-1", text="a longer answer please", stream=True))
    first = await anext(stream)
    assert not hasattr(first, "record")  # a chunk, not the outcome
    await stream.aclose()  # the consumer stops reading
    assert [(r.request_id, r.error_code) for r in sink.records] == [("gone-1", "request_cancelled")]
    # a stream read to its end is recorded once, as before
    items = [x async for x in p.handle_stream(_req(rid="full-1", text="other text", stream=True))]
    assert items[-1].record.status == "ok"  # type: ignore[union-attr]
    assert [r.request_id for r in sink.records] == ["gone-1", "full-1"]


class _Watched(FakeAdapter):
    """Streams as FakeAdapter does, and notes when its stream is closed."""

    closed: bool = False

    async def stream(self, call: ModelCall) -> AsyncIterator[StreamChunk]:
        try:
            async for chunk in super().stream(call):
                yield chunk
        finally:
            self.closed = True


async def test_a_reader_that_stops_early_closes_the_upstream_call_at_once_and_records_it(
        catalog: Catalog, tenants: Tenants) -> None:
    """A library caller that stopped reading (``aclose``) got a ``request_cancelled`` record with no calls and no
    cost, though the upstream had the prompt and was answering: the executor's and the fallback's streams did not
    close the ones inside them, so the call was logged, its HTTP response closed and its in-flight count given
    back only when the garbage collector got to them, after the record (found in review, 2026-11-28). The
    gateway's path (a cancelled task) records that call as ``cancelled``, priced; so does this one now."""
    sink = MemorySink()
    adapters = {c: _Watched(c, text="a fairly long answer, in several chunks", chunks=5) for c in _all_fake(catalog)}
    p = assemble(_settings(), catalog, tenants, adapters, WallClock(), sink)
    stream = p.handle_stream(_req(rid="lib-1", text="a longer answer please", stream=True))
    first = await anext(stream)
    assert isinstance(first, StreamChunk) and first.delta
    await stream.aclose()  # the reader stops here
    [record] = sink.records
    assert (record.request_id, record.error_code) == ("lib-1", "request_cancelled")
    assert [(c.candidate, c.outcome) for c in record.calls] == [(first.candidate, "cancelled")]
    call = record.calls[0]
    assert call.input_tokens > 0 and call.output_tokens > 0 and record.cost_usd == call.cost_usd > 0
    assert adapters[first.candidate].closed  # at once, not when the garbage collector finalises it
    assert p.load is not None and p.load.count(first.candidate) == 0


async def test_a_deployment_with_no_upstream_leaves_its_attempt_and_falls_back(catalog: Catalog,
                                                                               tenants: Tenants) -> None:
    """An unwired deployment of the plan failed without a trace: the record showed a fallback with no failed first
    try (review, 2026-11-28)."""
    sink = MemorySink()
    adapters = {c: a for c, a in _all_fake(catalog).items() if c != Candidate(slot="sovereign-large",
                                                                               deployment="eu-sov")}
    p = assemble(_settings(), catalog, tenants, adapters, WallClock(), sink)
    out = await p.handle(_req())
    assert out.record.status == "ok" and out.record.fallback_used
    first = out.record.calls[0]
    assert (first.candidate.key, first.outcome, first.error, first.cost_usd) == (
        "sovereign-large/eu-sov", "error", "upstream_not_configured", 0.0)
    p.check_requested_model("sovereign-large", "acme-us")  # us-east still serves it
    from sovrouter.errors import NotFoundError

    with pytest.raises(NotFoundError):
        p.check_requested_model("sovereign-large/eu-sov", "acme-us")
    p.check_requested_model("auto", "acme-us")


class _FixedDetection:
    def __init__(self, detection: Detection) -> None:
        self.detection = detection

    def detect(self, request: object) -> Detection:
        return self.detection


EU_OR_PREMISES = {"local-small/edge", "sovereign-large/eu-sov", "hosted-mini/eu-zone"}


@pytest.mark.parametrize("stream", [False, True])
async def test_the_router_is_given_the_allowed_set_not_the_servable_one(catalog: Catalog, tenants: Tenants,
                                                                       stream: bool) -> None:
    """Policy comes before any scoring: the router chooses among the allowed deployments only. Given the servable
    set, its plan held forbidden deployments and only the guard (the last barrier, not the filter) kept the calls
    from leaving: first tries refused, fallbacks taken, a plan in the record naming US deployments."""
    sink = MemorySink()
    p = assemble(_settings(), catalog, tenants, _all_fake(catalog), WallClock(), sink)
    p.detector = _FixedDetection(Detection())
    req = normalize_chat({"messages": [{"role": "user", "content": "Summarise our Q3 memo."}], "stream": stream},
                         tenant="eurobank", request_id="r1", data_class="confidential")
    if stream:
        _ = [x async for x in p.handle_stream(req)]
    else:
        await p.handle(req)
    (record,) = sink.records
    assert record.status == "ok" and record.decision is not None
    assert {c.key for c in record.decision.plan} <= EU_OR_PREMISES
    assert all(c.outcome != "guard_refused" for c in record.calls) and not record.fallback_used


async def test_a_deployment_not_listed_for_the_tenant_is_not_even_a_candidate(catalog: Catalog,
                                                                             tenants: Tenants) -> None:
    """The catalog's ``available_to`` is applied before policy (a capability), and again by the policy's
    ``catalog.available_to`` rule: each layer holds alone."""
    sink = MemorySink()
    p = assemble(_settings(), catalog, tenants, _all_fake(catalog), WallClock(), sink)
    p.detector = _FixedDetection(Detection())
    out = await p.handle(_req(tenant="eurobank"))
    assert out.record.status == "ok"
    assert all(v.candidate.deployment != "gov-onprem" for v in out.record.policy)  # not evaluated at all
    own = await p.handle(_req(tenant="ministry-airgap", rid="r2"))
    assert any(v.candidate.deployment == "gov-onprem" and v.allowed for v in own.record.policy)


@pytest.mark.parametrize("stream", [False, True])
async def test_an_answer_to_personal_data_is_stored_with_its_detection(catalog: Catalog, tenants: Tenants,
                                                                      stream: bool) -> None:
    """The cache's store is told what detection found: stored as if nothing had been found, a question holding
    personal data went into the semantic cache and, for a tenant in the shared scope, out to every other
    instance through the shared feed."""
    from sovrouter.cache.exact import ExactCache
    from sovrouter.cache.layered import LayeredCache
    from sovrouter.cache.semantic import SemanticCache
    from sovrouter.cache.semantic_share import MemoryEntryFeed, SharedSemanticCache
    from sovrouter.cache.split import SharedScope
    from sovrouter.cache.verifier import PairVerifier
    from sovrouter.clock import SimClock
    from sovrouter.embed import HashingEmbedder

    clock = SimClock()
    semantic = SemanticCache(clock, HashingEmbedder(384), PairVerifier.cosine_only(0.7))
    hub = MemoryEntryFeed()
    shared = SharedSemanticCache(semantic, hub.view("one"), SharedScope.of(["acme-us"]))
    received: list[object] = []
    hub.view("two").subscribe(received.append)
    p = assemble(_settings(), catalog, tenants, _all_fake(catalog), clock, MemorySink())
    p.cache = LayeredCache(ExactCache(clock), shared)
    p.detector = _FixedDetection(Detection(pii_types=["PERSON"]))
    req = _req("Who is Jane Roe?", tenant="acme-us", stream=stream)
    if stream:
        items = [x async for x in p.handle_stream(req)]
        assert items[-1].record.status == "ok"
    else:
        assert (await p.handle(req)).record.status == "ok"
    assert semantic.entry_count() == 0 and shared.stats["published"] == 0 and received == []
