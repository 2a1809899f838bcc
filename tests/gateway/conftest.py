"""The ``live`` fixture: two test upstreams on loopback (``primary`` serves sovereign-large, ``backup`` every
other deployment) and the gateway built by ``build_live_pipeline``, served by uvicorn in a thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_harness import Live, live_gateway


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with live_gateway(tmp_path / "state") as gateway:
        yield gateway
