"""One /dashboard view reads a bounded window of the latest records, not the whole history (found in review:
~21 KB of memory and ~0.6 ms per record ever stored, for every page view of a gateway meant to run for weeks)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import sovrouter.dashboard.routes as routes
from sovrouter.contracts import CacheOutcome, RequestRecord
from sovrouter.dashboard.routes import dashboard_router
from sovrouter.evalloop.signals import SignalStore
from sovrouter.store.records import SQLiteRecordStore


def _record(i: int) -> RequestRecord:
    return RequestRecord(request_id=f"r{i}", tenant="acme", data_class="public", effective_class="public",
                         modalities=["text"], arrived_ms=float(i), status="error", error_code="upstream_failed",
                         cache=CacheOutcome(kind="bypass"))


def test_dashboard_reads_only_the_latest_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SQLiteRecordStore(tmp_path / "records.sqlite")
    for i in range(300):
        store.write(_record(i))
    seen: list[list[str]] = []
    real_build = routes.build

    def spy(records, *args, **kwargs):  # type: ignore[no-untyped-def]
        recs = list(records)
        seen.append([r.request_id for r in recs])
        return real_build(recs, *args, **kwargs)

    monkeypatch.setattr(routes, "build", spy)
    app = FastAPI()
    app.include_router(dashboard_router(store, SignalStore(":memory:"), max_records=50))
    assert TestClient(app).get("/dashboard").status_code == 200
    assert seen == [[f"r{i}" for i in range(250, 300)]]  # the latest 50, oldest first


def test_recent_is_the_tail_in_order(tmp_path: Path) -> None:
    store = SQLiteRecordStore(tmp_path / "records.sqlite")
    for i in range(10):
        store.write(_record(i))
    assert [r.request_id for r in store.recent(3)] == ["r7", "r8", "r9"]
    assert len(list(store.recent(100))) == 10
