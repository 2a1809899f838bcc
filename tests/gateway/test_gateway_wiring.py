from __future__ import annotations

from pathlib import Path

import pytest
from gateway_harness import make_settings

from sovrouter.config import Upstream
from sovrouter.contracts import Candidate
from sovrouter.errors import ConfigError
from sovrouter.gateway.wiring import build_live_pipeline


def test_wires_one_http_adapter_per_upstream_and_sqlite_state(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "state", "http://127.0.0.1:9", "http://127.0.0.1:10")
    pipeline = build_live_pipeline(settings)
    assert set(pipeline.executor.adapters) == {Candidate(slot=k.split("/")[0], deployment=k.split("/")[1])
                                               for k in settings.upstreams}
    assert (tmp_path / "state" / "records.sqlite").is_file()
    assert (tmp_path / "state" / "cache.sqlite").is_file()


def test_unknown_deployment_in_upstreams_is_a_config_error(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "http://a", "http://b")
    settings.upstreams["frontier/mars"] = Upstream(base_urls=["http://c"])
    with pytest.raises(ConfigError, match="frontier/mars"):
        build_live_pipeline(settings)


def test_missing_api_key_env_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOVROUTER_TEST_UPSTREAM_KEY", raising=False)
    settings = make_settings(tmp_path, "http://a", "http://b")
    settings.upstreams["frontier/us"] = Upstream(base_urls=["http://c"], api_key_env="SOVROUTER_TEST_UPSTREAM_KEY")
    with pytest.raises(ConfigError, match="SOVROUTER_TEST_UPSTREAM_KEY"):
        build_live_pipeline(settings)
