"""Choosing the deployment of a chosen slot: cheapest, or cheapest fast enough (speculative decoding counted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sovrouter.adapters.inflight import InFlightBoard
from sovrouter.catalog import Catalog, Tenants
from sovrouter.contracts import Candidate, Signals
from sovrouter.intake import normalize_chat
from sovrouter.routing.baseline import BaselineRouter
from sovrouter.routing.deployments import CheapestDeployment, LatencyAwareDeployment

CODE = "```python\n" + "\n".join(f"def f{i}(x):\n    return x * {i} + offset_{i}\n" for i in range(8)) + "```"
EDIT = f"Refactor this code to use a loop and return the full code:\n{CODE}"
OPEN = "Why is the sky blue?"
SIGNALS = Signals()


def _catalog(tmp_path: Path, deployments: list[dict[str, Any]]) -> Catalog:
    data = {"slots": [
        {"id": "sovereign-large", "price_usd_per_mtok": {"input": 1.0, "output": 1.0}, "deployments": deployments},
        {"id": "frontier", "price_usd_per_mtok": {"input": 5.0, "output": 5.0}, "deployments": [
            {"id": "us", "region": "US", "compute": "frontier-accelerator",
             "latency": {"ttft_ms": 700, "tokens_per_s": 55}}]},
    ]}
    path = tmp_path / "models.json"
    path.write_text(json.dumps(data))
    return Catalog.load(path)


def _dep(dep_id: str, mult: float = 1.0, tps: float = 40.0, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"id": dep_id, "region": "EU", "compute": "gpu", "price_multiplier": mult,
                         "latency": {"ttft_ms": 400, "tokens_per_s": tps}}
    if spec is not None:
        d["speculative"] = spec
    return d


def _tenants(budget: float | None) -> Tenants:
    return Tenants.model_validate({"tenants": [{"id": "t", "latency_budget_ms": budget}]})


def _request(content: str, max_tokens: int | None = None):  # type: ignore[no-untyped-def]
    body: dict[str, Any] = {"messages": [{"role": "user", "content": content}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return normalize_chat(body, tenant="t", request_id="r")


def _all(catalog: Catalog) -> list[Candidate]:
    return [Candidate(slot=s.id, deployment=d.id) for s, d in catalog.pairs()]


SPEC = {"kind": "prompt-lookup", "expected_speedup": 2.8, "base_speedup": 0.9}


def test_speculative_deployment_for_copy_heavy_requests_plain_for_open_ones(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path, [_dep("plain"), _dep("spec", spec=SPEC)])
    chooser = LatencyAwareDeployment(catalog)
    first = {c.slot: c for c in reversed(chooser.order(_request(EDIT), SIGNALS, _all(catalog)))}
    assert first["sovereign-large"].deployment == "spec"
    first = {c.slot: c for c in reversed(chooser.order(_request(OPEN), SIGNALS, _all(catalog)))}
    assert first["sovereign-large"].deployment == "plain"  # speculation would slow an open answer (0.9x)
    # the plain chooser knows nothing of it: the id decides at equal price
    assert CheapestDeployment(catalog).order(_request(EDIT), SIGNALS, _all(catalog))[0].deployment == "plain"


def test_a_speculative_deployment_loaded_past_its_max_batch_is_estimated_at_plain_speed(tmp_path: Path) -> None:
    # "spec" decodes slower plainly (30 tok/s against 40) but 2.8x faster on copy-heavy answers, up to 2 requests
    spec = {**SPEC, "max_batch": 2}
    catalog = _catalog(tmp_path, [_dep("plain"), _dep("spec", tps=30.0, spec=spec)])
    board = InFlightBoard()
    chooser = LatencyAwareDeployment(catalog, load=board)
    spec_key = Candidate(slot="sovereign-large", deployment="spec")

    def first() -> str:
        return next(c.deployment for c in chooser.order(_request(EDIT), SIGNALS, _all(catalog))
                    if c.slot == "sovereign-large")

    assert first() == "spec"
    assert "in_flight" not in chooser.describe(_request(EDIT), SIGNALS, _all(catalog))  # idle: records unchanged
    board.enter(spec_key)
    assert first() == "spec"  # the second concurrent request still speculates
    board.enter(spec_key)
    assert first() == "plain"  # a third would decode plainly at 30 tok/s
    evidence = chooser.describe(_request(EDIT), SIGNALS, _all(catalog))
    assert evidence["in_flight"] == {spec_key.key: 2}
    board.leave(spec_key)
    assert first() == "spec"
    board.report(spec_key, 2)  # the engines run two requests of other gateways or clients (adapters/engine_load.py)
    assert first() == "plain"
    board.report(spec_key, None)
    assert first() == "spec"
    # without a board (or without max_batch) load is unknown: the low-load figure
    assert next(c.deployment for c in LatencyAwareDeployment(catalog).order(_request(EDIT), SIGNALS, _all(catalog))
                if c.slot == "sovereign-large") == "spec"


def test_order_holds_exactly_the_options_it_is_given(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path, [_dep("plain"), _dep("spec", spec=SPEC), _dep("fast", 2.0, 120.0)])
    options = [c for c in _all(catalog) if c.deployment != "fast"]
    out = LatencyAwareDeployment(catalog, _tenants(100.0)).order(_request(OPEN), SIGNALS, options)
    assert sorted(out, key=str) == sorted(options, key=str)  # never adds an option the policy left out


def test_cost_first_without_a_budget(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path, [_dep("fast", 2.0, 120.0), _dep("cheap", 1.0, 40.0)])
    out = LatencyAwareDeployment(catalog, _tenants(None)).order(_request(OPEN), SIGNALS, _all(catalog))
    assert out[0].deployment == "cheap"


@pytest.mark.parametrize("budget,max_tokens,expected", [
    (10_000.0, 256, "cheap"),   # 400 + 256/40 s = 6.8 s fits
    (5_000.0, 256, "fast"),     # cheap misses (6.8 s), fast fits (2.5 s)
    (5_000.0, 64, "cheap"),     # a short answer fits on the cheap one (2.0 s)
    (1_000.0, 256, "fast"),     # nothing fits: the fastest
])
def test_cheapest_deployment_that_meets_the_tenant_budget(tmp_path: Path, budget: float, max_tokens: int,
                                                          expected: str) -> None:
    catalog = _catalog(tmp_path, [_dep("fast", 2.0, 120.0), _dep("cheap", 1.0, 40.0)])
    chooser = LatencyAwareDeployment(catalog, _tenants(budget))
    out = chooser.order(_request(OPEN, max_tokens), SIGNALS, _all(catalog))
    assert next(c for c in out if c.slot == "sovereign-large").deployment == expected


def test_speculation_counts_towards_the_budget(tmp_path: Path) -> None:
    # a copy-heavy answer on the speculative deployment fits a budget the plain one misses, at equal price
    catalog = _catalog(tmp_path, [_dep("plain", 1.0, 40.0), _dep("spec", 1.2, 40.0, SPEC), _dep("fast", 3.0, 200.0)])
    chooser = LatencyAwareDeployment(catalog, _tenants(4_500.0))
    edit = chooser.order(_request(EDIT), SIGNALS, _all(catalog))
    assert edit[0].deployment == "spec"  # cheaper than "fast", fits where "plain" does not
    open_ = chooser.order(_request(OPEN), SIGNALS, _all(catalog))
    assert open_[0].deployment == "fast"  # an open answer gets no speed-up: only "fast" fits


def test_evidence_names_inputs_and_expected_latency(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path, [_dep("plain"), _dep("spec", spec=SPEC)])
    chooser = LatencyAwareDeployment(catalog, _tenants(9_000.0))
    plan = chooser.order(_request(EDIT, 100), SIGNALS, _all(catalog))
    ev = chooser.describe(_request(EDIT, 100), SIGNALS, plan)
    assert ev["task_kind"] == "edit" and ev["copy_fraction"] >= 0.35
    assert ev["output_tokens"] == 100 and ev["budget_ms"] == 9_000.0
    assert set(ev["expected_ms"]) == {c.key for c in plan}
    assert ev["expected_ms"]["sovereign-large/spec"] < ev["expected_ms"]["sovereign-large/plain"]
    assert CheapestDeployment(catalog).describe(_request(EDIT), SIGNALS, plan) == {}


def test_unknown_tenant_or_deployment_is_not_preferred(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path, [_dep("plain")])
    ghost = Candidate(slot="sovereign-large", deployment="ghost")
    chooser = LatencyAwareDeployment(catalog, _tenants(1.0))
    req = normalize_chat({"messages": [{"role": "user", "content": OPEN}]}, tenant="nobody", request_id="r")
    out = chooser.order(req, SIGNALS, [ghost, *_all(catalog)])
    assert [c.deployment for c in out if c.slot == "sovereign-large"] == ["plain", "ghost"]


def test_baseline_router_uses_the_chooser_within_each_slot(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path, [_dep("plain"), _dep("spec", spec=SPEC)])
    tenants = Tenants.model_validate({"tenants": [{"id": "t"}]})
    router = BaselineRouter(catalog, tenants, LatencyAwareDeployment(catalog, tenants))
    edit = router.decide(_request(EDIT), SIGNALS, _all(catalog))
    assert [c.key for c in edit.plan][:2] == ["sovereign-large/spec", "sovereign-large/plain"]
    assert edit.evidence["deployment"]["task_kind"] == "edit"
    open_ = router.decide(_request(OPEN), SIGNALS, _all(catalog))
    assert [c.key for c in open_.plan][:2] == ["sovereign-large/plain", "sovereign-large/spec"]
    plain = BaselineRouter(catalog, tenants).decide(_request(EDIT), SIGNALS, _all(catalog))
    assert plain.plan[0].deployment == "plain" and "deployment" not in plain.evidence


def test_budget_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Tenants.model_validate({"tenants": [{"id": "t", "latency_budget_ms": 0}]})
