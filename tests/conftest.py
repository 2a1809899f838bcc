from __future__ import annotations

from pathlib import Path

import pytest

from sovrouter.catalog import Catalog, Tenants

DATA = Path(__file__).resolve().parents[1] / "src" / "sovrouter" / "data" / "demo"


@pytest.fixture
def catalog() -> Catalog:
    return Catalog.load(DATA / "models.json")


@pytest.fixture
def tenants() -> Tenants:
    return Tenants.load(DATA / "tenants.json")
