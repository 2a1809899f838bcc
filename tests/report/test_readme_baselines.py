from __future__ import annotations

from pathlib import Path

import pytest

from sovrouter.report.baselines import baselines
from sovrouter.report.data import load_eval_data

SHARED = Path("/work/shared/data/workload")

# The workload README's dev tables: (mean quality, total cost USD, on frontier-accelerator %, rerouted %)
UNDER_POLICY = {
    "always-local-small": (0.5383, 0.2285, 0.0, 0.0),
    "always-sovereign-large": (0.7214, 1.8707, 0.0, 1.6),
    "always-hosted-mini": (0.7348, 0.7785, 88.3, 11.7),
    "always-frontier": (0.8103, 9.1512, 88.3, 19.6),
    "oracle": (0.8767, 1.5814, 28.2, None),
}
IGNORING_POLICY = {
    "always-local-small": (0.5383, 0.2285, 0.0),
    "always-sovereign-large": (0.7239, 1.8398, 0.0),
    "always-hosted-mini": (0.7398, 0.6030, 100.0),
    "always-frontier": (0.8336, 10.9973, 100.0),
    "oracle": (0.9022, 1.8751, 32.6),
}
CHAT_HARD_UNDER_POLICY = {"always-frontier": 0.8391, "oracle": 0.8787}


@pytest.mark.slow
def test_readme_dev_baselines_reproduced_per_record() -> None:
    if not (SHARED / "dev" / "scores.jsonl.gz").is_file():
        pytest.skip("shared dev workload not present")
    data = load_eval_data(SHARED)
    ids = sorted(data.requests)
    assert len(ids) == 4898
    rows = {r.name: r for r in baselines(data, ids, under_policy=True)}
    for name, (q, cost, on_frontier, rerouted) in UNDER_POLICY.items():
        r = rows[name]
        assert round(r.quality, 4) == q and round(r.cost, 4) == cost
        assert round(100 * r.on_frontier_share, 1) == on_frontier
        if rerouted is not None:
            assert r.rerouted_share is not None and round(100 * r.rerouted_share, 1) == rerouted
    for name, q in CHAT_HARD_UNDER_POLICY.items():
        assert round(rows[name].per_domain["chat_hard"], 4) == q
    rows = {r.name: r for r in baselines(data, ids, under_policy=False)}
    for name, (q, cost, on_frontier) in IGNORING_POLICY.items():
        r = rows[name]
        assert (round(r.quality, 4), round(r.cost, 4), round(100 * r.on_frontier_share, 1)) == (q, cost, on_frontier)
