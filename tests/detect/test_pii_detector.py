"""The detector's contract: types only, fail closed on error or timeout, models loaded only when needed; and the
pipeline's fail-closed behaviour when detection or policy evaluation fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sovrouter.build import assemble
from sovrouter.catalog import Catalog, Tenants
from sovrouter.clock import WallClock
from sovrouter.config import Settings
from sovrouter.contracts import Candidate, Detection, NormalizedRequest
from sovrouter.detect.detector import FailClosedDetector, PiiDetector, segments
from sovrouter.errors import DetectionTimeoutError
from sovrouter.intake import normalize_chat
from sovrouter.policy.cedar import CedarPolicy
from sovrouter.testing import FakeAdapter, MemorySink


def _req(text: str, tenant: str = "clinic-ca", rid: str = "r1") -> NormalizedRequest:
    return normalize_chat({"messages": [{"role": "user", "content": text}]}, tenant=tenant, request_id=rid)


class _Broken:
    def detect(self, request: NormalizedRequest) -> Detection:
        raise RuntimeError("model crashed")


def test_fail_closed_wrapper_turns_errors_into_failed_detection() -> None:
    det = FailClosedDetector(_Broken()).detect(_req("hello"))
    assert det.failed and det.has_personal_data and det.pii_types == []


def test_timeout_fails_closed() -> None:
    clock = iter([0.0] + [10.0] * 50)
    detector = PiiDetector(timeout_ms=100.0, timer=lambda: next(clock))
    with pytest.raises(DetectionTimeoutError):
        detector.detect_text("line one\nline two")
    clock = iter([0.0] + [10.0] * 50)
    assert FailClosedDetector(detector).detect(_req("line one\nline two")).failed


def test_plain_text_needs_no_model() -> None:
    detector = PiiDetector()
    det = detector.detect_text("What is the capital of France? Answer in one word.")
    assert det.pii_types == [] and not det.failed
    assert not detector._models_loaded


def test_segments_split_long_lines() -> None:
    text = "short\n\n" + "A sentence. " * 60
    parts = list(segments(text, max_line=100))
    assert parts[0] == "short" and len(parts) > 10 and all(len(p) < 100 for p in parts)


def _pipeline(catalog: Catalog, tenants: Tenants, sink: MemorySink) -> tuple[Any, dict[Candidate, FakeAdapter]]:
    adapters = {Candidate(slot=s.id, deployment=d.id): FakeAdapter(Candidate(slot=s.id, deployment=d.id))
                for s, d in catalog.pairs()}
    cfg = Settings(catalog=Path("x"), tenants=Path("y"), policy="cedar", detector="none")
    return assemble(cfg, catalog, tenants, adapters, WallClock(), sink), adapters


@pytest.mark.parametrize(("tenant", "allowed"), [
    ("clinic-ca", {"local-small/edge"}),
    ("eurobank", {"local-small/edge", "sovereign-large/eu-sov", "hosted-mini/eu-zone"}),
])
async def test_detector_failure_is_treated_as_personal_and_restricted(catalog: Catalog, tenants: Tenants,
                                                                      tenant: str, allowed: set[str]) -> None:
    sink = MemorySink()
    pipe, adapters = _pipeline(catalog, tenants, sink)
    pipe.detector = FailClosedDetector(_Broken())
    out = await pipe.handle(_req("hello", tenant=tenant))
    rec = out.record
    assert rec.effective_class == "restricted"
    assert {v.candidate.key for v in rec.policy if v.allowed} == allowed
    assert all(c.key in allowed for c, a in adapters.items() if a.calls)


async def test_policy_engine_failure_refuses_with_no_call(catalog: Catalog, tenants: Tenants) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("engine down")

    sink = MemorySink()
    pipe, adapters = _pipeline(catalog, tenants, sink)
    pipe.policy = CedarPolicy(catalog, tenants, authorize=broken)
    out = await pipe.handle(_req("hello", tenant="acme-us"))
    assert out.error is not None and out.record.status == "refused"
    assert out.error.to_openai()["error"]["code"] == "no_allowed_deployment"
    assert out.error.status == 403
    assert {v.rule for v in out.record.policy} == {"policy.engine-failed"}
    assert sum(a.calls for a in adapters.values()) == 0


@pytest.mark.slow
def test_types_only_on_workload_like_lines() -> None:
    detector = PiiDetector(timeout_ms=60_000)
    det = detector.detect_text("Customer: Jacques Arnaud, IBAN FR66 0070 0967 4842 6908 7807 427, phone 0495743919."
                               "\n\nWhat is 2+2?")
    assert det.pii_types == ["IBAN", "PERSON", "PHONE"]
    assert "Jacques" not in det.model_dump_json() and "0495743919" not in det.model_dump_json()
