"""Shared helpers of the batch tests: a pipeline over fake adapters, a batch input file."""

from __future__ import annotations

import json

from sovrouter.build import assemble
from sovrouter.catalog import Catalog, Tenants
from sovrouter.clock import WallClock
from sovrouter.config import CacheSettings, Settings
from sovrouter.contracts import Candidate
from sovrouter.pipeline import Pipeline
from sovrouter.testing import FakeAdapter, MemorySink


def make_pipeline(catalog: Catalog, tenants: Tenants, delay_s: float = 0.0) -> tuple[Pipeline, list[FakeAdapter]]:
    adapters = {Candidate(slot=s.id, deployment=d.id): FakeAdapter(Candidate(slot=s.id, deployment=d.id),
                                                                     text="answer", delay_s=delay_s)
                for s, d in catalog.pairs()}
    settings = Settings(catalog="x", tenants="y", detector="none", router="baseline",  # type: ignore[arg-type]
                        cache=CacheSettings(exact_enabled=False))
    return assemble(settings, catalog, tenants, adapters, WallClock(), MemorySink()), list(adapters.values())


def batch_file(n: int) -> bytes:
    return "".join(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                               "body": {"messages": [{"role": "user", "content": f"q {i}"}]}}) + "\n"
                   for i in range(n)).encode()


CHAT = {"endpoint": "/v1/chat/completions", "completion_window": "24h"}
