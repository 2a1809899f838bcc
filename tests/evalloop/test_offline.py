"""Records rebuilt from a replay's decisions: a route the workload's catalog lacks is a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from sovrouter.errors import ConfigError
from sovrouter.evalloop.offline import records_from_decisions
from sovrouter.replay.decisions import Decision, Route
from sovrouter.testing_workload import write_workload
from sovrouter.workload import load_replay_inputs


def test_a_route_outside_the_catalog_is_a_clear_error(tmp_path: Path) -> None:
    """It was a KeyError traceback from ``weakness --decisions`` (``report`` validates the same file)."""
    wl = write_workload(tmp_path / "wl", n_requests=2, seed=3)
    inputs = load_replay_inputs(tmp_path / "wl")
    event = wl.stream[0]
    bad = Decision(seq=event["seq"], request_id=event["request_id"], calls=[Route(model="nope", deployment="x")],
                   final=Route(model="nope", deployment="x"))
    with pytest.raises(ConfigError, match="does not have"):
        records_from_decisions([bad], inputs)
