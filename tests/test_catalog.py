"""The catalog file: what a misspelt key must not silently do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sovrouter.catalog import Catalog
from sovrouter.errors import ConfigError

DATA = Path(__file__).resolve().parents[1] / "src" / "sovrouter" / "data" / "demo"


def _with(tmp_path: Path, key: str, extra: dict[str, object] | None = None) -> Path:
    models = json.loads((DATA / "models.json").read_text())
    dep = next(d for s in models["slots"] for d in s["deployments"] if d["id"] == "gov-onprem")
    dep[key] = dep.pop("available_to")
    dep.update(extra or {})
    path = tmp_path / "models.json"
    path.write_text(json.dumps(models))
    return path


@pytest.mark.parametrize("key", ["availabe_to", "availableTo", "available-to", "available_for", "avail_to"])
def test_a_misspelt_audience_is_refused_not_opened_to_every_tenant(tmp_path: Path, key: str) -> None:
    """gov-onprem (the ministry's own machines) became available to every tenant: ``available_to`` defaults to
    "all", and the misspelt key was kept as an unused extra."""
    with pytest.raises(ConfigError, match="did you mean 'available_to'"):
        Catalog.load(_with(tmp_path, key))


def test_other_unknown_keys_are_still_read(tmp_path: Path) -> None:
    """Catalogs carry notes of their own; only a key that reads like the audience is refused."""
    path = _with(tmp_path, "available_to", {"notes": "ministry racks", "gpu_type": "L40S"})
    dep = Catalog.load(path).deployment("sovereign-large", "gov-onprem")
    assert dep.available_to == ["ministry-airgap"]
