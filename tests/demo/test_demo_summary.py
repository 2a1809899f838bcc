"""The demo's totals: cost vs always-frontier, share off frontier accelerators, latency percentiles."""

from __future__ import annotations

import pytest

from sovrouter.catalog import Catalog
from sovrouter.demo.summary import DemoRow, format_table, format_totals, frontier_cost, totals


def _row(seq: int, route: str | None, cache: str = "miss", ms: float = 100.0, cost: float = 0.001,
         error: str | None = None) -> DemoRow:
    return DemoRow(seq=seq, request_id=f"rq-{seq}", tenant="acme-us", data_class="public", asked="auto",
                   stream=False, route=route, cache=cache, latency_ms=ms, cost_usd=cost, frontier_cost_usd=0.01,
                   error=error)


def test_frontier_cost_uses_catalog_prices(catalog: Catalog) -> None:
    # frontier: 2.50 in / 10.00 out per Mtok, multiplier 1.0
    assert frontier_cost(catalog, 1000, 500) == pytest.approx((1000 * 2.5 + 500 * 10.0) / 1e6)


def test_totals(catalog: Catalog) -> None:
    rows = [
        _row(0, "frontier/us", ms=300, cost=0.004),
        _row(1, "sovereign-large/eu-sov", ms=200, cost=0.001),
        _row(2, "frontier/us", cache="exact", ms=10, cost=0.0),
        _row(3, "local-small/edge", ms=1000, cost=0.00001),
        _row(4, None, cache="-", ms=5, cost=0.0, error="no_allowed_deployment"),
    ]
    t = totals(rows, catalog)
    assert (t.requests, t.answered, t.refused, t.errors, t.cache_hits, t.local_model_calls) == (5, 4, 1, 0, 1, 1)
    assert t.cost_usd == pytest.approx(0.00501)
    assert t.frontier_cost_usd == pytest.approx(0.05)
    assert t.cost_ratio == pytest.approx(0.00501 / 0.05)
    # off frontier: the sovereign-large, local and cached answers; the live frontier one is on it
    assert t.off_frontier_share == pytest.approx(3 / 4)
    assert t.p50_ms == pytest.approx(250.0)
    assert 300 < t.p95_ms <= 1000
    table = format_table(rows)
    assert "REFUSED by policy" in table and "local-small/edge" in table
    failed = totals([*rows, _row(5, None, cache="-", error="upstream_failed")], catalog)
    assert (failed.refused, failed.errors) == (1, 1)
    assert "ERROR upstream_failed" in format_table([_row(5, None, cache="-", error="upstream_failed")])
    assert "always-frontier" in format_totals(t)


def test_totals_of_nothing(catalog: Catalog) -> None:
    t = totals([], catalog)
    assert (t.requests, t.answered, t.off_frontier_share, t.p50_ms, t.cost_ratio) == (0, 0, 0.0, 0.0, 0.0)
