"""The demo's configuration: the shipped template ``data/demo/demo.yaml`` made concrete for one run.

The template names the upstreams as ``${LOCAL_URL}`` (llama.cpp) and ``${PLAYBACK_URL}`` (recorded playback);
:func:`render_config` substitutes the loopback addresses of this run, makes the catalog and tenants paths
absolute, points ``state_dir`` into the run folder and writes ``sovrouter-demo.yaml`` there, a file that
``sovrouter serve --config`` accepts as well (while the upstreams run).
"""

from __future__ import annotations

from pathlib import Path
from string import Template
from typing import Any

import yaml

from sovrouter.config import Settings, hash_key
from sovrouter.demo.sample import demo_data_dir
from sovrouter.errors import ConfigError

# Demo-only API keys, printed by the demo; demo.yaml stores their sha256 only. Never use them elsewhere.
DEMO_KEYS: tuple[tuple[str, str], ...] = (
    ("acme-us", "sk-demo-acme-us"),
    ("eurobank", "sk-demo-eurobank"),
    ("ministry-airgap", "sk-demo-ministry-airgap"),
    ("clinic-ca", "sk-demo-clinic-ca"),
    ("research-open", "sk-demo-research-open"),
)


def demo_key(tenant: str) -> str:
    for name, key in DEMO_KEYS:
        if name == tenant:
            return key
    raise ConfigError(f"no demo API key for tenant {tenant!r}")


def template_path() -> Path:
    return demo_data_dir() / "demo.yaml"


def render_config(run_dir: Path, local_url: str, playback_url: str, template: Path | None = None) -> Path:
    """Write the concrete configuration of one run to ``run_dir/sovrouter-demo.yaml`` and return its path."""
    src = template or template_path()
    try:
        text = Template(src.read_text(encoding="utf-8")).substitute(LOCAL_URL=local_url, PLAYBACK_URL=playback_url)
        raw: dict[str, Any] = yaml.safe_load(text)
    except (OSError, KeyError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"invalid demo configuration template {src}: {exc}") from exc
    raw["catalog"] = str((src.parent / raw["catalog"]).resolve())
    raw["tenants"] = str((src.parent / raw["tenants"]).resolve())
    raw["state_dir"] = "var"
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / "sovrouter-demo.yaml"
    out.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    settings = Settings.load(out)  # validate now: a broken template fails here, not at the first request
    known = {k.key_sha256 for k in settings.api_keys}
    missing = [tenant for tenant, key in DEMO_KEYS if hash_key(key) not in known]
    if missing:
        raise ConfigError(f"demo configuration has no API key for {', '.join(missing)}")
    return out
