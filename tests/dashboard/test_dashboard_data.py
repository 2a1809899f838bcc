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
