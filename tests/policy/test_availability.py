"""AvailabilityPolicy (``policy: availability``): the catalog's ``available_to`` and nothing else."""

from __future__ import annotations

from sovrouter.catalog import Catalog
from sovrouter.contracts import Candidate, Detection
from sovrouter.intake import normalize_chat
from sovrouter.policy.availability import AvailabilityPolicy

GOV = Candidate(slot="sovereign-large", deployment="gov-onprem")


def test_a_deployment_serves_only_the_tenants_it_lists(catalog: Catalog) -> None:
    """The pipeline also leaves unlisted deployments out before policy; the policy must hold alone all the same."""
    every = [Candidate(slot=s.id, deployment=d.id) for s, d in catalog.pairs()]
    policy = AvailabilityPolicy(catalog)
    for tenant, gov_allowed in (("eurobank", False), ("stranger", False), ("ministry-airgap", True)):
        request = normalize_chat({"messages": [{"role": "user", "content": "hi"}]}, tenant=tenant, request_id="r")
        verdict = policy.evaluate(request, Detection(), every)
        assert verdict.allows(GOV) is gov_allowed
        assert set(verdict.allowed) == {c for c in every if c != GOV or gov_allowed}
        assert all(v.rule == ("default.allow" if v.allowed else "catalog.available_to") for v in verdict.verdicts)
