"""The demo configuration: hashed demo keys, every catalog deployment wired, a loadable concrete file."""

from __future__ import annotations

from pathlib import Path

import pytest

from sovrouter.catalog import Catalog
from sovrouter.config import Settings, hash_key
from sovrouter.demo.config import DEMO_KEYS, demo_key, render_config, template_path
from sovrouter.errors import ConfigError


def test_rendered_config_wires_every_deployment(tmp_path: Path) -> None:
    path = render_config(tmp_path, "http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1")
    settings = Settings.load(path)
    catalog = Catalog.load(settings.catalog)
    assert set(settings.upstreams) == {f"{s.id}/{d.id}" for s, d in catalog.pairs()}
    assert settings.upstreams["local-small/edge"].base_urls == ["http://127.0.0.1:1/v1"]
    for key, upstream in settings.upstreams.items():
        if key != "local-small/edge":
            assert upstream.base_urls == ["http://127.0.0.1:2/v1"]
            assert upstream.model == key  # the playback server picks the recording by it
    assert settings.state_dir == (tmp_path / "var").resolve()


def test_keys_are_stored_hashed_only() -> None:
    text = template_path().read_text()
    settings_keys = {k.tenant: k.key_sha256 for k in Settings.model_validate(
        {"catalog": "x", "tenants": "y", "api_keys": [
            {"tenant": t, "key_sha256": hash_key(k)} for t, k in DEMO_KEYS]}).api_keys}
    for tenant, key in DEMO_KEYS:
        assert settings_keys[tenant] in text
        assert f"key_sha256: {key}" not in text
    assert demo_key("eurobank") == "sk-demo-eurobank"
    with pytest.raises(ConfigError):
        demo_key("nobody")


def test_broken_template_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "demo.yaml"
    bad.write_text("catalog: models.json\nupstreams: {x: ${NOT_A_PLACEHOLDER}}\n")
    with pytest.raises(ConfigError, match="invalid demo configuration template"):
        render_config(tmp_path / "run", "http://a", "http://b", template=bad)
