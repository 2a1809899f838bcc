"""Property-based: over random tenants, classes, detections and catalogs, and with injected faults (a router that
proposes forbidden deployments, failing deployments -> fallback chains, breakers opening, retries, cache
entries produced on forbidden deployments), no forbidden deployment is ever called or served from the cache.

The oracle is an independent reading of the README's "Policy interpretation" (plus the demo example tenant).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sovrouter.build import assemble
from sovrouter.catalog import Catalog, Deployment, Slot, Tenants
from sovrouter.clock import WallClock
from sovrouter.config import BreakerSettings, ReliabilitySettings, Settings
from sovrouter.contracts import (
    DATA_CLASS_ORDER,
    Candidate,
    DataClass,
    Detection,
    ModelResult,
    NormalizedRequest,
    RouteDecision,
    Signals,
)
from sovrouter.intake import normalize_chat
from sovrouter.policy.cedar import CedarPolicy
from sovrouter.testing import FailingAdapter, FakeAdapter, MemorySink

DATA = Path(__file__).resolve().parents[2] / "src" / "sovrouter" / "data" / "demo"
TENANTS = Tenants.load(DATA / "tenants.json")
TENANT_IDS = [t.id for t in TENANTS.tenants]
PII_TYPES = ["PERSON", "EMAIL", "PHONE", "IBAN", "US_SSN", "CA_SIN", "CA_HEALTH_CARD", "PASSPORT", "ADDRESS",
             "DATE_OF_BIRTH", "CREDIT_CARD", "BR_CPF", "NL_BSN", "ES_NIF", "ES_NIE", "IT_FISCAL_CODE", "FR_NIR",
             "PL_PESEL", "DE_TAX_ID", "BE_NRN", "UK_NINO", "PT_NIF", "CH_AHV", "AT_SVNR"]
LANGS = ["en", "de", "fr", "nl"]


def oracle(tenant: str, cls: DataClass, det: Detection, slot: Slot, dep: Deployment) -> bool:
    if not dep.available_for(tenant):
        return False
    pd = det.failed or bool(det.pii_types) or bool(det.unscanned)
    floor = 3 if det.failed or det.unscanned else 2 if det.pii_types else 0
    rank = max(DATA_CLASS_ORDER.index(cls), floor)
    eu_or_prem = dep.region == "EU" or dep.on_premises
    if tenant in ("acme-us", "research-open"):
        return True
    if tenant == "eurobank":
        return eu_or_prem if (rank >= 2 or pd) else True
    if tenant == "ministry-airgap":
        return dep.on_premises
    if tenant == "clinic-ca":
        return dep.on_premises if pd else True
    if tenant == "heritage-archive":
        lang_ok = det.request_language is None or det.request_language in slot.languages
        return slot.licence.startswith("Open weights") and lang_ok and (eu_or_prem or not pd)
    return False  # unknown tenant: default deny


@st.composite
def deployments(draw: Any, i: int) -> dict[str, Any]:
    to = draw(st.one_of(st.just("all"), st.lists(st.sampled_from([*TENANT_IDS, "stranger"]), max_size=3)))
    return {"id": f"d{i}", "region": draw(st.sampled_from(["EU", "US", "CA", "tenant-local"])),
            "compute": draw(st.sampled_from(["cpu", "gpu", "frontier-accelerator"])),
            "on_premises": draw(st.booleans()), "latency": {"ttft_ms": 10, "tokens_per_s": 100},
            "available_to": to}


@st.composite
def catalogs(draw: Any) -> Catalog:
    slots = []
    for s in range(draw(st.integers(1, 3))):
        n = draw(st.integers(1, 3))
        slots.append({
            "id": f"s{s}",
            "licence": draw(st.sampled_from(["Open weights. Apache-2.0.", "Proprietary, API only."])),
            "languages": draw(st.lists(st.sampled_from(LANGS), unique=True, max_size=4)),
            "price_usd_per_mtok": {"input": 1.0, "output": 1.0},
            "deployments": [draw(deployments(i)) for i in range(n)],
        })
    return Catalog.model_validate({"slots": slots})


detections = st.builds(
    Detection,
    pii_types=st.lists(st.sampled_from(PII_TYPES), unique=True, max_size=3),
    language=st.one_of(st.none(), st.sampled_from(LANGS)),
    failed=st.booleans(),
    unscanned=st.lists(st.sampled_from(["image", "audio", "video"]), unique=True, max_size=2),
    request_language=st.one_of(st.none(), st.sampled_from(LANGS)),
)
tenant_ids = st.sampled_from([*TENANT_IDS, "stranger"])
classes = st.sampled_from(list(DATA_CLASS_ORDER))


def _request(tenant: str, cls: DataClass, rid: str) -> NormalizedRequest:
    r = normalize_chat({"messages": [{"role": "user", "content": "same question"}]}, tenant=tenant, request_id=rid)
    return r.model_copy(update={"data_class": cls})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(catalog=catalogs(), tenant=tenant_ids, cls=classes, det=detections)
def test_cedar_matches_the_written_policies(catalog: Catalog, tenant: str, cls: DataClass, det: Detection) -> None:
    policy = CedarPolicy(catalog, TENANTS)
    cands = [Candidate(slot=s.id, deployment=d.id) for s, d in catalog.pairs()]
    verdict = policy.evaluate(_request(tenant, cls, "r"), det, cands)
    assert not verdict.failed
    for v in verdict.verdicts:
        slot = catalog.slot(v.candidate.slot)
        assert v.allowed == oracle(tenant, cls, det, slot, catalog.deployment(slot.id, v.candidate.deployment))


class _EvilRouter:
    """Ignores the allowed set: proposes every deployment of the catalog, forbidden ones first."""

    name = "evil"

    def __init__(self, plan: list[Candidate]) -> None:
        self.plan = plan

    def decide(self, request: NormalizedRequest, signals: Signals, allowed: Sequence[Candidate]) -> RouteDecision:
        return RouteDecision(plan=list(self.plan), router=self.name, evidence={"review": True})

    def review(self, request: NormalizedRequest, signals: Signals, decision: RouteDecision,
               results: Sequence[ModelResult]) -> Candidate | None:
        # escalate to any later candidate, forbidden or not: the guard must stop the forbidden ones
        done = {r.candidate for r in results}
        return next((c for c in decision.plan if c not in done), None)


class _FixedDetector:
    def __init__(self, det: Detection) -> None:
        self.det = det

    def detect(self, request: NormalizedRequest) -> Detection:
        return self.det


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(catalog=catalogs(), tenant=tenant_ids, cls=classes, det=detections, seed=st.integers(0, 2**16),
       failing=st.sets(st.integers(0, 8), max_size=4), stream=st.booleans())
def test_no_forbidden_call_whatever_the_faults(catalog: Catalog, tenant: str, cls: DataClass, det: Detection,
                                               seed: int, failing: set[int], stream: bool) -> None:
    rng = random.Random(seed)
    pairs = list(catalog.pairs())
    allowed = {Candidate(slot=s.id, deployment=d.id) for s, d in pairs if oracle(tenant, cls, det, s, d)}
    every = [Candidate(slot=s.id, deployment=d.id) for s, d in pairs]
    adapters: dict[Candidate, Any] = {}
    for i, c in enumerate(every):
        adapters[c] = FailingAdapter(c) if i in failing else FakeAdapter(c, text=c.key)
    cfg = Settings(catalog=Path("x"), tenants=Path("y"), policy="cedar", detector="none",
                   reliability=ReliabilitySettings(retries=1, retry_backoff_s=0.0,
                                                   breaker=BreakerSettings(consecutive_failures=1)))
    sink = MemorySink()
    pipe = assemble(cfg, catalog, TENANTS, adapters, WallClock(), sink)
    pipe.detector = _FixedDetector(det)
    forbidden_first = sorted(every, key=lambda c: (c in allowed, rng.random()))
    pipe.router = _EvilRouter(forbidden_first)

    async def run() -> None:
        # a cache entry for this very request, produced on a forbidden deployment
        bad = next((c for c in every if c not in allowed), None)
        if bad is not None:
            await pipe.cache.store(_request(tenant, cls, "seed"), det, ModelResult(candidate=bad, text="leak"))
        # and one from another tenant, produced on a deployment this request may use: still never served
        other = next(t for t in TENANT_IDS if t != tenant)
        for c in allowed:
            await pipe.cache.store(_request(other, cls, "other-tenant-seed"), det, ModelResult(candidate=c, text="x"))
        for i in range(3):  # repeated: breakers open, retries run, the cache fills
            req = _request(tenant, cls, f"r{i}").model_copy(update={"stream": stream})
            if stream:
                _ = [x async for x in pipe.handle_stream(req)]
            else:
                await pipe.handle(req)

    asyncio.run(run())
    for c, a in adapters.items():
        if a.calls:
            assert c in allowed, f"forbidden deployment {c.key} was called"
    for rec in sink.records:
        assert all(call.candidate in allowed for call in rec.calls if call.outcome != "guard_refused")
        if rec.final is not None:
            assert rec.final in allowed
        if rec.cache.kind == "exact":
            assert rec.cache.source_candidate in allowed
            assert rec.cache.source_request_id not in ("seed", "other-tenant-seed")
        if not allowed:  # refused by policy (or nothing servable at all): no call, no cache hit
            assert rec.status in ("refused", "error") and rec.calls == [] and rec.cache.kind != "exact"
