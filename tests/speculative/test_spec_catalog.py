from __future__ import annotations

import json
from pathlib import Path

import pytest

from sovrouter.catalog import Catalog
from sovrouter.errors import ConfigError
from sovrouter.speculative.latency import expected_latency_ms, expected_speedup

DEMO = Path(__file__).resolve().parents[2] / "src" / "sovrouter" / "data" / "demo" / "models.json"


def _with_spec(tmp_path: Path, spec: object) -> Path:
    data = json.loads(DEMO.read_text())
    data["slots"][1]["deployments"][0]["speculative"] = spec
    path = tmp_path / "models.json"
    path.write_text(json.dumps(data))
    return path


def test_catalog_without_speculative_fields_loads_unchanged() -> None:
    catalog = Catalog.load(DEMO)
    for _, dep in catalog.pairs():
        assert dep.speculative is None
        assert expected_latency_ms(dep, 100, copy_fraction=1.0) == dep.latency.total_ms(100)


def test_declared_draft_target_pair_speeds_up_the_latency_estimate(tmp_path: Path) -> None:
    path = _with_spec(tmp_path, {"kind": "draft-model", "draft": "Llama-3.2-1B-Instruct",
                                 "expected_speedup": 2.0, "base_speedup": 1.2})
    dep = Catalog.load(path).slots[1].deployments[0]
    assert dep.speculative is not None and dep.speculative.draft == "Llama-3.2-1B-Instruct"
    assert expected_speedup(dep, 0.0) == pytest.approx(1.2)
    assert expected_speedup(dep, 1.0) == pytest.approx(2.0)
    assert expected_speedup(dep, 0.5) == pytest.approx(1.6)
    assert expected_speedup(dep, 7.0) == pytest.approx(2.0)  # clamped
    decode_ms = dep.latency.total_ms(200) - dep.latency.ttft_ms
    assert expected_latency_ms(dep, 200, 1.0) == pytest.approx(dep.latency.ttft_ms + decode_ms / 2.0)
    assert expected_latency_ms(dep, 200, 1.0) < expected_latency_ms(dep, 200, 0.0) < dep.latency.total_ms(200)


def test_prompt_lookup_kind_defaults(tmp_path: Path) -> None:
    dep = Catalog.load(_with_spec(tmp_path, {"kind": "prompt-lookup", "expected_speedup": 1.8})).slots[1].deployments[0]
    assert dep.speculative is not None and dep.speculative.base_speedup == 1.0 and dep.speculative.draft is None


def test_speculation_is_off_at_or_above_the_declared_batch(tmp_path: Path) -> None:
    spec = {"kind": "prompt-lookup", "expected_speedup": 3.0, "base_speedup": 1.0, "max_batch": 16}
    dep = Catalog.load(_with_spec(tmp_path, spec)).slots[1].deployments[0]
    assert expected_speedup(dep, 1.0) == pytest.approx(3.0)  # load unknown: the low-load figure
    assert expected_speedup(dep, 1.0, in_flight=15) == pytest.approx(3.0)  # the 16th concurrent request
    assert expected_speedup(dep, 1.0, in_flight=16) == 1.0
    assert expected_speedup(dep, 0.5, in_flight=400) == 1.0
    unbounded = Catalog.load(_with_spec(tmp_path, {"kind": "prompt-lookup", "expected_speedup": 3.0}))
    assert expected_speedup(unbounded.slots[1].deployments[0], 1.0, in_flight=400) == pytest.approx(3.0)


@pytest.mark.parametrize("spec", [{"kind": "medusa"}, {"kind": "draft-model", "expected_speedup": 0},
                                  {"expected_speedup": 2.0}, {"kind": "prompt-lookup", "max_batch": 0},
                                  # the draft must match the kind (unchecked until 2026-11-28)
                                  {"kind": "draft-model", "expected_speedup": 2.0},
                                  {"kind": "draft-model", "draft": " ", "expected_speedup": 2.0},
                                  {"kind": "prompt-lookup", "draft": "Llama-3.2-1B-Instruct"}])
def test_invalid_speculative_block_is_a_config_error(tmp_path: Path, spec: object) -> None:
    with pytest.raises(ConfigError):
        Catalog.load(_with_spec(tmp_path, spec))


def test_tuning_speculation_keeps_the_cache_scope() -> None:
    """The catalog's fingerprint scopes every cache key; it left out latency and prices but not the speculative
    tuning figures, so retuning max_batch (as bench/speculative_gpu_batch.py suggests) dropped every cached
    answer, the shared Redis ones included. What the deployment is (kind, draft) still counts."""
    from sovrouter.testing_workload import DEMO_DATA

    raw = Catalog.load(DEMO_DATA / "models.json").model_dump(mode="json")
    dep = raw["slots"][1]["deployments"][0]
    dep["speculative"] = {"kind": "draft-model", "draft": "small", "expected_speedup": 2.0, "max_batch": 8}
    base = Catalog.model_validate(raw).policy_fingerprint()
    dep["speculative"] = {**dep["speculative"], "expected_speedup": 2.6, "base_speedup": 0.9, "max_batch": 16}
    assert Catalog.model_validate(raw).policy_fingerprint() == base
    dep["speculative"] = {**dep["speculative"], "draft": "other-draft"}
    assert Catalog.model_validate(raw).policy_fingerprint() != base


@pytest.mark.parametrize("field", ["expected_speedup", "base_speedup"])
def test_an_infinite_speedup_is_a_config_error(tmp_path: Path, field: str) -> None:
    raw = ('{"slots":[{"id":"s","price_usd_per_mtok":{"input":1,"output":1},"deployments":[{"id":"d",'
           '"region":"eu","compute":"gpu","latency":{"ttft_ms":100,"tokens_per_s":50},'
           f'"speculative":{{"kind":"draft-model","draft":"x","{field}":Infinity}}}}]}}]}}')
    path = tmp_path / "models.json"
    path.write_text(raw)
    with pytest.raises(ConfigError):
        Catalog.load(path)
