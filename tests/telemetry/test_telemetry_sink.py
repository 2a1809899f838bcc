"""Metrics and traces agree with the records for a scripted request mix (ok, fallback, cache hit, refusal)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sovrouter.build import assemble
from sovrouter.catalog import Catalog, Tenants
from sovrouter.clock import WallClock
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
from sovrouter.errors import UpstreamError
from sovrouter.intake import normalize_chat
from sovrouter.policy.availability import AvailabilityPolicy
from sovrouter.telemetry.metrics import RequestMetrics, TenantLabels
from sovrouter.telemetry.sink import TelemetrySink
from sovrouter.telemetry.traces import RecordTracer, make_tracer_provider
from sovrouter.testing import FakeAdapter, MemorySink


class FailOnMarker(FakeAdapter):
    """Answers like FakeAdapter, but fails when the prompt contains FAIL (a scripted fallback)."""

    async def generate(self, call: ModelCall) -> ModelResult:
        if "FAIL" in call.request.user_text:
            self.calls += 1
            raise UpstreamError("upstream returned 500")
        return await super().generate(call)


class RefuseTenant:
    """Policy double: allows nothing for tenant ``blocked`` (a policy refusal), defers otherwise."""

    def __init__(self, inner: AvailabilityPolicy) -> None:
        self.inner = inner

    def evaluate(self, request: NormalizedRequest, detection: Detection,
                 candidates: Sequence[Candidate]) -> PolicyVerdict:
        if request.tenant == "research-open":
            return PolicyVerdict(verdicts=[CandidateVerdict(candidate=c, allowed=False, rule="test.deny")
                                           for c in candidates])
        return self.inner.evaluate(request, detection, candidates)


def _req(text: str, rid: str, tenant: str = "acme-us") -> NormalizedRequest:
    return normalize_chat({"messages": [{"role": "user", "content": text}]}, tenant=tenant, request_id=rid,
                          arrived_ms=1_700_000_000_000.0)


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _sum(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(v for (n, lab), v in samples.items()
               if n == name and all(dict(lab).get(k) == val for k, val in labels.items()))


@pytest.fixture
def scripted(catalog: Catalog, tenants: Tenants):  # type: ignore[no-untyped-def]
    memory = MemorySink()
    exporter = InMemorySpanExporter()
    metrics = RequestMetrics(tenants=TenantLabels(["acme-us", "eurobank"]))
    sink = TelemetrySink(memory, metrics, RecordTracer(make_tracer_provider(exporter, batch=False)))
    adapters = {Candidate(slot=s.id, deployment=d.id): FailOnMarker(Candidate(slot=s.id, deployment=d.id),
                                                                    text=f"answer from {s.id}")
                for s, d in catalog.pairs()}
    pipeline = assemble(Settings(catalog="x", tenants="y"), catalog, tenants, adapters,  # type: ignore[arg-type]
                        WallClock(), sink)
    pipeline.policy = RefuseTenant(AvailabilityPolicy(catalog))
    return pipeline, memory, metrics, exporter


async def test_metrics_and_traces_agree_with_records(scripted) -> None:  # type: ignore[no-untyped-def]
    pipeline, memory, metrics, exporter = scripted
    script = [("hello", "acme-us"), ("hello", "acme-us"), ("please FAIL now", "eurobank"),
              ("other question", "clinic-ca"), ("anything", "research-open"), ("hello", "acme-us")]
    for i, (text, tenant) in enumerate(script):
        await pipeline.handle(_req(text, f"r{i}", tenant))
    records = memory.records
    assert len(records) == len(script)
    kinds = [r.cache.kind for r in records]
    assert kinds.count("exact") == 2 and any(r.fallback_used for r in records)
    assert sum(r.status == "refused" for r in records) == 1

    s = _samples(metrics.registry)
    assert _sum(s, "sovrouter_requests_total") == len(records)
    for r in records:  # per route and status
        slot = r.final.slot if r.final else "none"
        expected = sum(1 for x in records if (x.final.slot if x.final else "none") == slot and x.status == r.status)
        assert _sum(s, "sovrouter_requests_total", slot=slot, status=r.status) == expected
    assert _sum(s, "sovrouter_cost_usd_total") == pytest.approx(sum(r.cost_usd for r in records))
    assert _sum(s, "sovrouter_cache_hits_total", kind="exact") == 2
    assert _sum(s, "sovrouter_fallbacks_total") == sum(r.fallback_used for r in records)
    assert _sum(s, "sovrouter_refusals_total", reason="no_allowed_deployment") == 1
    assert _sum(s, "sovrouter_upstream_calls_total") == sum(len(r.calls) for r in records)
    assert _sum(s, "sovrouter_request_latency_seconds_count") == sum(r.status == "ok" for r in records)
    # bounded tenant labels: only the configured tenants get their own label
    tenants_seen = {dict(lab).get("tenant") for (n, lab) in s if n == "sovrouter_requests_total"}
    assert tenants_seen == {"acme-us", "eurobank", "other"}

    spans = exporter.get_finished_spans()
    roots = [sp for sp in spans if sp.parent is None]
    assert len(roots) == len(records)
    assert len(spans) - len(roots) == sum(len(r.calls) for r in records)
    by_rid = {sp.attributes["gen_ai.response.id"]: sp for sp in roots}
    for r in records:
        root = by_rid[r.request_id]
        assert root.attributes["gen_ai.operation.name"] == "chat"
        assert root.attributes["gen_ai.usage.input_tokens"] == sum(c.input_tokens for c in r.calls)
        assert root.attributes["gen_ai.usage.output_tokens"] == sum(c.output_tokens for c in r.calls)
        assert root.start_time == round(r.arrived_ms * 1_000_000)
        children = [sp for sp in spans if sp.parent is not None and sp.parent.span_id == root.context.span_id]
        assert [c.attributes["gen_ai.request.model"] for c in children] == [c.candidate.slot for c in r.calls]
        assert [c.attributes["sovrouter.outcome"] for c in children] == [c.outcome for c in r.calls]
        assert root.status.is_ok == (r.status == "ok")


def test_tenant_labels_capped_without_configuration() -> None:
    labels = TenantLabels(max_tenants=2)
    assert [labels.label(t) for t in ("a", "b", "c", "a")] == ["a", "b", "other", "a"]


def test_metrics_router_serves_exposition() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from sovrouter.telemetry.routes import metrics_router

    metrics = RequestMetrics()
    app = FastAPI()
    app.include_router(metrics_router(metrics.registry))
    body = TestClient(app).get("/metrics")
    assert body.status_code == 200 and "sovrouter_requests_total" in body.text


async def test_cache_sizes_and_purges_are_read_at_each_scrape() -> None:
    from sovrouter.cache.exact import ExactCache
    from sovrouter.cache.layered import LayeredCache
    from sovrouter.cache.semantic import SemanticCache
    from sovrouter.cache.verifier import PairVerifier
    from sovrouter.clock import SimClock
    from sovrouter.contracts import ContentPart, Message
    from sovrouter.embed import HashingEmbedder
    from sovrouter.telemetry.metrics import CacheCollector

    clock = SimClock()
    cache = LayeredCache(ExactCache(clock, ttl_s=10, max_entries=3, purge_every_s=60),
                         SemanticCache(clock, HashingEmbedder(384), PairVerifier.cosine_only(0.9), ttl_s=10,
                                       max_entries=3, purge_every_s=60))
    registry = CollectorRegistry()
    registry.register(CacheCollector(cache))

    def scrape() -> dict[str, float]:
        return {s.name: s.value for f in text_string_to_metric_families(generate_latest(registry).decode())
                for s in f.samples if s.name.startswith("sovrouter_cache_")}

    assert scrape()["sovrouter_cache_exact_entries"] == 0
    for i in range(4):  # the fourth store passes both bounds: down to 2 entries each (90% of 3)
        r = NormalizedRequest(request_id=f"r{i}", tenant="acme", messages=(
            Message(role="user", parts=(ContentPart(modality="text", text=f"Question {i}: why is {i} odd?"),)),))
        await cache.lookup(r, Detection(), [Candidate(slot="s", deployment="d")])
        await cache.store(r, Detection(), ModelResult(candidate=Candidate(slot="s", deployment="d"), text="x"))
        await cache.release(r)
    seen = scrape()
    assert seen["sovrouter_cache_exact_entries"] == 2 and seen["sovrouter_cache_semantic_entries"] == 2
    assert seen["sovrouter_cache_exact_evicted_total"] == 2 and seen["sovrouter_cache_semantic_evicted_total"] == 2
    clock.set(61_000)  # everything expired; the next lookup purges
    r = NormalizedRequest(request_id="late", tenant="acme", messages=(
        Message(role="user", parts=(ContentPart(modality="text", text="Why is the sky blue?"),)),))
    await cache.lookup(r, Detection(), [Candidate(slot="s", deployment="d")])
    await cache.release(r)
    seen = scrape()
    assert seen["sovrouter_cache_exact_entries"] == 0 and seen["sovrouter_cache_semantic_partitions"] == 0
    assert seen["sovrouter_cache_exact_purged_total"] == 2 and seen["sovrouter_cache_semantic_purged_total"] == 2


def test_observing_a_pipeline_twice_registers_the_cache_once(catalog: Catalog, tenants: Tenants) -> None:
    from sovrouter.evalloop.loop import EvalSettings, build_observability

    pipeline = assemble(Settings(catalog="x", tenants="y"), catalog, tenants, {},  # type: ignore[arg-type]
                        WallClock(), MemorySink())
    obs = build_observability(EvalSettings())
    obs.observe(pipeline)
    obs.observe(pipeline)
    text = generate_latest(obs.metrics.registry).decode()
    assert text.count("# TYPE sovrouter_cache_exact_entries gauge") == 1
    assert text.count("# TYPE sovrouter_upstream_in_flight gauge") == 1


async def test_calls_in_flight_per_deployment_are_scraped(catalog: Catalog, tenants: Tenants) -> None:
    import asyncio

    from sovrouter.evalloop.loop import EvalSettings, build_observability

    adapters = {Candidate(slot=s.id, deployment=d.id): FakeAdapter(Candidate(slot=s.id, deployment=d.id),
                                                                   delay_s=0.1) for s, d in catalog.pairs()}
    pipeline = assemble(Settings(catalog="x", tenants="y", router="baseline"), catalog, tenants,  # type: ignore[arg-type]
                        adapters, WallClock(), MemorySink())
    obs = build_observability(EvalSettings())
    observed = obs.observe(pipeline)

    def in_flight(name: str = "sovrouter_upstream_in_flight") -> dict[tuple[str, str], float]:
        return {(x.labels["slot"], x.labels["deployment"]): x.value
                for f in text_string_to_metric_families(generate_latest(obs.metrics.registry).decode())
                for x in f.samples if x.name == name}

    assert in_flight() == {}
    running = [asyncio.create_task(observed.handle(normalize_chat(
        {"messages": [{"role": "user", "content": f"question {i}"}]}, tenant="acme-us", request_id=f"r{i}")))
        for i in range(2)]
    await asyncio.sleep(0.05)
    assert in_flight() == {("sovereign-large", "eu-sov"): 2.0}
    await asyncio.gather(*running)
    assert in_flight() == {}
    assert pipeline.load is not None  # what the engines report (adapters/engine_load.py) is a gauge of its own
    assert in_flight("sovrouter_upstream_engine_requests") == {}
    pipeline.load.report(Candidate(slot="sovereign-large", deployment="eu-sov"), 7)
    assert in_flight("sovrouter_upstream_engine_requests") == {("sovereign-large", "eu-sov"): 7.0}
    assert in_flight() == {}


async def test_cache_hits_are_not_in_the_latency_of_the_route_that_made_the_answer(
        catalog: Catalog, tenants: Tenants) -> None:
    """A cache hit's record names the route that produced the cached answer: filed there in
    ``request_latency_seconds`` at ~0 ms, hits made a slow deployment look fast as the hit rate rose (the
    dashboard's route table was fixed for this on 2026-11-28, the histogram was not; found in review)."""
    memory = MemorySink()
    metrics = RequestMetrics()
    adapters = {Candidate(slot=s.id, deployment=d.id): FakeAdapter(Candidate(slot=s.id, deployment=d.id),
                                                                   delay_s=0.3) for s, d in catalog.pairs()}
    pipeline = assemble(Settings(catalog="x", tenants="y", router="baseline"), catalog, tenants,  # type: ignore[arg-type]
                        adapters, WallClock(), TelemetrySink(memory, metrics))
    for i in range(4):
        await pipeline.handle(_req("the same question", f"c{i}"))
    first, *hits = memory.records
    assert first.cache.kind == "miss" and [r.cache.kind for r in hits] == ["exact"] * 3
    assert first.final is not None and all(r.final == first.final for r in hits)
    s = _samples(metrics.registry)
    route = {"slot": first.final.slot, "deployment": first.final.deployment}
    assert _sum(s, "sovrouter_request_latency_seconds_count", **route) == 1  # the upstream's answer only
    assert _sum(s, "sovrouter_request_latency_seconds_sum", **route) >= 0.3
    assert _sum(s, "sovrouter_request_latency_seconds_count", slot="cache", deployment="exact") == 3
    assert _sum(s, "sovrouter_requests_total", **route) == 4  # served answers of the route: unchanged


def test_semantic_and_exact_hits_each_have_their_latency_series_and_a_bypass_keeps_its_route() -> None:
    """Both kinds of cache hit leave the latency of the route that made the cached answer (a semantic hit is as
    fast as an exact one); a cache bypass is an upstream answer and stays in its route's latency (found in
    review)."""
    from sovrouter.contracts import CacheOutcome, RequestRecord

    metrics = RequestMetrics()
    route = Candidate(slot="sovereign-large", deployment="eu-sov")
    for kind, latency_ms in (("miss", 900.0), ("bypass", 800.0), ("exact", 2.0), ("semantic", 40.0)):
        metrics.observe(RequestRecord(request_id=kind, tenant="acme-us", data_class="public",
                                      effective_class="public", modalities=["text"], arrived_ms=0.0, status="ok",
                                      final=route, cache=CacheOutcome(kind=kind), latency_ms=latency_ms))
    s = _samples(metrics.registry)
    labels = {"slot": "sovereign-large", "deployment": "eu-sov"}
    assert _sum(s, "sovrouter_request_latency_seconds_count", **labels) == 2
    assert _sum(s, "sovrouter_request_latency_seconds_sum", **labels) == pytest.approx(1.7)
    assert _sum(s, "sovrouter_request_latency_seconds_count", slot="cache", deployment="semantic") == 1
    assert _sum(s, "sovrouter_request_latency_seconds_count", slot="cache", deployment="exact") == 1
