"""Assembling the pipeline from settings: the operator's own policy rules and retrained artifacts."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from sovrouter.build import make_cache, make_deployment_chooser, make_policy, make_router
from sovrouter.catalog import Catalog, Tenants
from sovrouter.clock import WallClock
from sovrouter.config import ApiKey, ArtifactSettings, CacheSettings, Settings, hash_key
from sovrouter.errors import ConfigError

DATA = Path(__file__).resolve().parents[1] / "src" / "sovrouter" / "data"


def _settings(**fields: object) -> Settings:
    return Settings(catalog=DATA / "demo" / "models.json", tenants=DATA / "demo" / "tenants.json",
                    **fields)  # type: ignore[arg-type]


def _with_newco(tenants: Tenants) -> Tenants:
    data = tenants.model_dump()
    data["tenants"].append({"id": "newco", "policy": "Anything goes."})
    return Tenants.model_validate(data)


def test_a_keyed_tenant_without_rules_stops_the_gateway_start(catalog: Catalog, tenants: Tenants,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """A tenant added with a key but no rules was refused every request, with no word at start-up (review,
    2026-11-28). With keys (a gateway) it is a ConfigError; without (replay) a warning."""
    keyed = _settings(api_keys=[ApiKey(tenant="newco", key_sha256=hash_key("sk-newco-0001"))])
    with pytest.raises(ConfigError, match="'newco' has no Cedar permit rule"):
        make_policy(keyed, catalog, _with_newco(tenants))
    with caplog.at_level(logging.WARNING, logger="sovrouter.build"):
        policy = make_policy(_settings(), catalog, _with_newco(tenants))
    assert policy is not None and "'newco' has no Cedar permit rule" in caplog.text
    ok = _settings(api_keys=[ApiKey(tenant="acme-us", key_sha256=hash_key("sk-acme-0001"))])
    assert make_policy(ok, catalog, _with_newco(tenants)) is not None  # only keyed tenants stop a gateway


def test_operator_rules_are_used(tmp_path: Path, catalog: Catalog, tenants: Tenants) -> None:
    rules = tmp_path / "own.cedar"
    rules.write_text('@id("newco.any")\n@reason("newco: \\"Anything goes.\\"")\n'
                     'permit (principal == Tenant::"newco", action == Action::"route", resource);\n',
                     encoding="utf-8")
    keyed = _settings(api_keys=[ApiKey(tenant="newco", key_sha256=hash_key("sk-newco-0001"))], policy_rules=[rules])
    policy = make_policy(keyed, catalog, _with_newco(tenants))
    assert "+rules-" in policy.version  # type: ignore[attr-defined]


def test_retrained_artifacts_are_loaded_from_the_settings(tmp_path: Path, catalog: Catalog,
                                                          tenants: Tenants) -> None:
    """serve and replay always loaded the shipped artifacts until 2026-11-28."""
    missing = tmp_path / "nothing-here"
    with pytest.raises(ConfigError):
        make_router(_settings(artifacts=ArtifactSettings(router=missing)), catalog, tenants)
    with pytest.raises(ConfigError):
        make_deployment_chooser(_settings(artifacts=ArtifactSettings(answer_shape=missing)), catalog, tenants)
    with pytest.raises(ConfigError):
        make_cache(_settings(cache=CacheSettings(semantic_enabled=True, semantic_persist=False),
                             artifacts=ArtifactSettings(semantic_verifier=missing)), WallClock(), ":memory:")
    copy = tmp_path / "router"
    shutil.copytree(DATA / "router", copy)
    router, _ = make_router(_settings(artifacts=ArtifactSettings(router=copy)), catalog, tenants)
    assert router is not None


def test_artifact_and_rule_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "conf" / "sovrouter.yaml"
    cfg.parent.mkdir()
    cfg.write_text("catalog: models.json\ntenants: tenants.json\npolicy_rules: [rules/own.cedar]\n"
                   "artifacts: {router: art/router, answer_shape: art/shape.json, semantic_verifier: v.json}\n",
                   encoding="utf-8")
    s = Settings.load(cfg)
    base = cfg.parent.resolve()
    assert s.policy_rules == [base / "rules" / "own.cedar"]
    assert (s.artifacts.router, s.artifacts.answer_shape, s.artifacts.semantic_verifier) == (
        base / "art" / "router", base / "art" / "shape.json", base / "v.json")
    cfg.write_text("artifacts: {routr: x}\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        Settings.load(cfg)  # a misspelt artifact key is refused, not ignored


def test_policy_rules_without_the_cedar_policy_are_refused(tmp_path: Path) -> None:
    """Rules named under the availability policy would silently not apply (review, 2026-11-28)."""
    cfg = tmp_path / "sovrouter.yaml"
    cfg.write_text("catalog: m.json\ntenants: t.json\npolicy: availability\npolicy_rules: [own.cedar]\n",
                   encoding="utf-8")
    with pytest.raises(ConfigError, match="policy_rules needs policy: cedar"):
        Settings.load(cfg)


def test_a_tenant_keyed_in_the_api_keys_file_is_checked_at_start_too(tmp_path: Path, catalog: Catalog,
                                                                     tenants: Tenants) -> None:
    """The keys in force are ``api_keys`` plus the file's: a tenant keyed in either without a permit rule stops
    the start (it would be refused every request)."""
    import json

    newco = ApiKey(tenant="newco", key_sha256=hash_key("sk-newco-0001"))
    path = tmp_path / "keys.json"
    path.write_text(json.dumps([newco.model_dump()]), encoding="utf-8")
    with pytest.raises(ConfigError, match="'newco' has no Cedar permit rule"):
        make_policy(_settings(api_keys_file=path), catalog, _with_newco(tenants))
    path.write_text(json.dumps([{"tenant": "acme-us", "key_sha256": hash_key("sk-acme-0002")}]), encoding="utf-8")
    with pytest.raises(ConfigError, match="'newco' has no Cedar permit rule"):  # the configuration's keys count
        make_policy(_settings(api_keys=[newco], api_keys_file=path), catalog, _with_newco(tenants))
    assert make_policy(_settings(api_keys_file=path), catalog, _with_newco(tenants)) is not None
