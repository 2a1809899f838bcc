from __future__ import annotations

import pytest

from sovrouter.catalog import Catalog
from sovrouter.report.reference import Facts, allowed, cheapest_deployment, fallback_route, reference_route


def _ref(catalog: Catalog, tenant: str, cls: str = "public", pii: bool = False) -> str:
    slot, dep = reference_route(catalog, Facts(tenant, cls, pii))
    return f"{slot}/{dep.id}"


@pytest.mark.parametrize(("tenant", "cls", "pii", "expected"), [
    ("acme-us", "restricted", True, "frontier/us"),
    ("research-open", "confidential", True, "frontier/us"),
    ("eurobank", "public", False, "frontier/us"),
    ("eurobank", "internal", False, "frontier/us"),
    ("eurobank", "confidential", False, "hosted-mini/eu-zone"),
    ("eurobank", "public", True, "hosted-mini/eu-zone"),
    ("ministry-airgap", "restricted", False, "sovereign-large/gov-onprem"),
    ("clinic-ca", "restricted", False, "frontier/us"),
    ("clinic-ca", "public", True, "local-small/edge"),
])
def test_reference_route_follows_readme_interpretation(catalog: Catalog, tenant: str, cls: str, pii: bool,
                                                       expected: str) -> None:
    assert _ref(catalog, tenant, cls, pii) == expected


def test_allowed_per_deployment(catalog: Catalog) -> None:
    bank = Facts("eurobank", "restricted", False)
    assert allowed(catalog, "sovereign-large", "eu-sov", bank)
    assert not allowed(catalog, "sovereign-large", "us-east", bank)
    assert not allowed(catalog, "sovereign-large", "gov-onprem", bank)  # available to the ministry only
    assert allowed(catalog, "local-small", "edge", bank)
    ministry = Facts("ministry-airgap", "restricted", False)
    assert allowed(catalog, "sovereign-large", "gov-onprem", ministry)
    assert not allowed(catalog, "sovereign-large", "eu-sov", ministry)
    assert not allowed(catalog, "frontier", "nowhere", Facts("acme-us", "public", False))
    # a tenant the README does not name: only the catalog's available_to applies
    assert allowed(catalog, "frontier", "us", Facts("newcomer", "restricted", True))
    assert not allowed(catalog, "sovereign-large", "gov-onprem", Facts("newcomer", "public", False))


def test_cheapest_and_fallback(catalog: Catalog) -> None:
    assert cheapest_deployment(catalog, "hosted-mini", None).id == "us"  # type: ignore[union-attr]
    assert cheapest_deployment(catalog, "frontier", Facts("ministry-airgap", "restricted", False)) is None
    slot, dep = fallback_route(catalog, "hosted-mini", Facts("clinic-ca", "public", True))
    assert (slot, dep.id) == ("local-small", "edge")
