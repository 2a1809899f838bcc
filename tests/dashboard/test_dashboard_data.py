"""The dashboard's figures over records that outlive catalog changes."""

from __future__ import annotations

from sovrouter.catalog import Catalog
from sovrouter.contracts import CallAttempt, Candidate, CandidateVerdict, RequestRecord
from sovrouter.dashboard.data import build
from sovrouter.testing_workload import DEMO_DATA


def _record(i: int, final: Candidate) -> RequestRecord:
    return RequestRecord(request_id=f"r{i}", tenant="acme-us", data_class="public", effective_class="public",
                         modalities=["text"], arrived_ms=float(i), status="ok", final=final,
                         calls=[CallAttempt(candidate=final, purpose="primary", outcome="ok", input_tokens=10,
                                            output_tokens=5)],
                         policy=[CandidateVerdict(candidate=final, allowed=True, rule="t")])


def test_a_record_naming_a_retired_deployment_does_not_break_the_page() -> None:
    """Records survive restarts; once a deployment is renamed or retired in models.json, every /dashboard was a
    500 (a KeyError from the catalog)."""
    catalog = Catalog.load(DEMO_DATA / "models.json")
    live = next(Candidate(slot=s.id, deployment=d.id) for s, d in catalog.pairs() if not d.on_frontier_accelerator)
    retired = Candidate(slot=live.slot, deployment="retired-dc")
    data = build([_record(0, live), _record(1, retired)], [], [], catalog)
    assert data.kpi["off_frontier_share"] == 1.0  # over the records this catalog can place


def test_cache_hits_have_their_own_route_rows() -> None:
    """Filed under the route that produced the cached answer (at ~0 ms and no cost), cache hits made a slow
    deployment look fast as the hit rate rose."""
    from sovrouter.contracts import CacheOutcome

    catalog = Catalog.load(DEMO_DATA / "models.json")
    route = next(Candidate(slot=s.id, deployment=d.id) for s, d in catalog.pairs())
    served = [_record(i, route).model_copy(update={"latency_ms": 800.0}) for i in range(2)]
    hits = [_record(i, route).model_copy(update={"latency_ms": 2.0, "calls": [],
                                                 "cache": CacheOutcome(kind="exact", source_request_id="r0")})
            for i in range(2, 10)]
    rows = {r.route: r for r in build([*served, *hits], [], [], catalog).routes}
    assert rows[route.key].requests == 2 and rows[route.key].latency_mean_ms == 800.0
    assert rows["cache: exact"].requests == 8 and rows["cache: exact"].latency_mean_ms == 2.0
