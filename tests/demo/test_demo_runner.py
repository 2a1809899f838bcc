"""The demo's request plan. The whole demo runs end to end in ``tests/cli/test_cli_demo.py``."""

from __future__ import annotations

from sovrouter.demo.runner import DemoOptions, plan
from sovrouter.demo.sample import load_sample


def test_plan_mixes_streaming_pinned_and_auto_requests() -> None:
    sample = load_sample()
    planned = plan(sample, DemoOptions())
    assert [p.seq for p in planned] == [e.seq for e in sample.stream]
    assert 0 < sum(p.stream for p in planned) < len(planned)
    local = [p for p in planned if p.model == "local-small"]
    frontier = [p for p in planned if p.model == "frontier"]
    assert len(local) == len(frontier) == len(planned) // 8
    assert all(p.model in ("auto", "local-small", "frontier") for p in planned)
    assert any(p.stream for p in local) and any(not p.stream for p in local)
    # the air-gapped tenant asks for frontier at least once: its policy must refuse it
    assert any(p.tenant == "ministry-airgap" for p in frontier)
    assert len(plan(sample, DemoOptions(limit=5))) == 5
    assert {p.model for p in plan(sample, DemoOptions(pin_every=0))} == {"auto"}
