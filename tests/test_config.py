"""Configuration values the gateway would accept and then break on are refused at load, naming no secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from sovrouter.config import ApiKey, ReliabilitySettings, Settings, Upstream, hash_key
from sovrouter.errors import ConfigError

BASE: dict[str, Any] = {"catalog": Path("c.json"), "tenants": Path("t.json")}


@pytest.mark.parametrize("field", ["retry_backoff_s", "timeout_s", "first_token_timeout_s", "retry_budget_window_s"])
@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1e300])
def test_reliability_times_are_finite_and_bounded(field: str, value: float) -> None:
    """``retry_backoff_s: .inf`` was accepted, and every retried request then slept for ever."""
    with pytest.raises(ValidationError):
        ReliabilitySettings.model_validate({field: value})


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999", "http://[::1", "ftp://h:1", "localhost:8080", "http://:80"])
def test_base_urls_are_checked_at_load(url: str) -> None:
    """A port of 99999 started fine and made every request a 500 (no fallback); a broken URL crashed at wiring."""
    with pytest.raises(ValidationError):
        Upstream(base_urls=[url])
    assert Upstream(base_urls=["http://127.0.0.1:8080", "https://vllm.internal/v1", "http://[::1]:9000"])


def test_a_key_listed_twice_is_refused() -> None:
    digest = hash_key("sk-test")
    with pytest.raises(ValidationError):
        Settings(**BASE, api_keys=[ApiKey(tenant="acme-us", key_sha256=digest),
                                   ApiKey(tenant="acme-uss", key_sha256=digest)])


def test_env_fields_take_a_variable_name_and_errors_never_print_a_value(tmp_path: Path) -> None:
    secret = "sk-live-SECRETVALUE123"
    with pytest.raises(ValidationError):
        Upstream(base_urls=["http://h:1"], api_key_env=f"{secret} x")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"catalog: c.json\ntenants: t.json\nupstreams:\n  a/b: {{base_urls: [http://h:1], api_key_env: "
                   f"'{secret}-'}}\n")
    with pytest.raises(ConfigError) as exc:
        Settings.load(cfg)
    assert secret not in str(exc.value)
    cfg.write_text(f"catalog: c.json\ntenants: t.json\napi_keys: [{secret}\n")  # broken YAML around a secret
    with pytest.raises(ConfigError) as exc:
        Settings.load(cfg)
    assert secret not in str(exc.value) and "line" in str(exc.value)


@pytest.mark.parametrize("section", ["api_keys", "operator_keys"])
def test_a_key_pasted_as_a_field_name_is_not_echoed(tmp_path: Path, section: str) -> None:
    """``- sk-...: acme-us`` (a key mapped to its tenant) read as an unknown field named by the key: the message
    named it (found in review, 2026-11-28). Known field names and the path stay visible."""
    secret = "sk-live-SECRETVALUE123"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"catalog: c.json\ntenants: t.json\n{section}:\n  - {secret}: acme-us\n    label: x\n")
    with pytest.raises(ConfigError) as exc:
        Settings.load(cfg)
    assert secret not in str(exc.value) and exc.value.__cause__ is None
    assert f"{section}.0.(a field): Extra inputs are not permitted" in str(exc.value)
    assert f"{section}.0.key_sha256: Field required" in str(exc.value)


def test_a_key_for_an_unknown_tenant_is_refused_at_start(tmp_path: Path) -> None:
    from sovrouter.gateway.wiring import build_live_pipeline
    from sovrouter.testing_workload import DEMO_DATA

    settings = Settings(catalog=DEMO_DATA / "models.json", tenants=DEMO_DATA / "tenants.json",
                        state_dir=tmp_path, detector="none", router="baseline",
                        api_keys=[ApiKey(tenant="acme-uss", key_sha256=hash_key("k"))])
    with pytest.raises(ConfigError, match="tenant"):
        build_live_pipeline(settings)


def test_a_key_given_twice_in_yaml_is_refused_not_overwritten(tmp_path: Path) -> None:
    """PyYAML keeps the last duplicate silently: ``policy: cedar`` then ``policy: availability`` ran without the
    sovereignty engine. The TOML reader already refused this."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("catalog: c.json\ntenants: t.json\npolicy: cedar\ncache: {exact_enabled: false}\n"
                   "cache: {exact_enabled: true}\npolicy: availability\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'cache' at line 5"):
        Settings.load(cfg)
    cfg.write_text("catalog: c.json\ntenants: t.json\nupstreams:\n  a/b: {base_urls: [http://h:1], "
                   "base_urls: [http://h:2]}\n")
    with pytest.raises(ConfigError, match="duplicate key 'base_urls'"):
        Settings.load(cfg)
    cfg.write_text("catalog: c.json\ntenants: t.json\npolicy: cedar\n")
    assert Settings.load(cfg).policy == "cedar"


def test_yaml_merge_keys_still_load(tmp_path: Path) -> None:
    """The duplicate-key check read ``<<: *anchor`` as a key of its own and refused the file as "not valid
    YAML" (found in review)."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("catalog: c.json\ntenants: t.json\nupstreams:\n  a/b: &up {base_urls: ['http://h:1'], "
                   "model: m}\n  c/d:\n    <<: *up\n    model: other\n")
    loaded = Settings.load(cfg)
    assert loaded.upstreams["c/d"].base_urls == ["http://h:1"] and loaded.upstreams["c/d"].model == "other"


@pytest.mark.parametrize("value", ["0", "-1", "3601", ".nan", ".inf"])
def test_an_api_keys_reload_s_out_of_range_stops_the_start(tmp_path: Path, value: str) -> None:
    """0 would read the key file at every request; more than an hour leaves a revoked key valid that long."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"catalog: c.json\ntenants: t.json\napi_keys_reload_s: {value}\n")
    with pytest.raises(ConfigError, match="api_keys_reload_s"):
        Settings.load(cfg)
    cfg.write_text("catalog: c.json\ntenants: t.json\napi_keys_reload_s: 3600\n")
    assert Settings.load(cfg).api_keys_reload_s == 3600
