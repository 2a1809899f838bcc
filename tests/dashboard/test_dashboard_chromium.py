"""The dashboard, served by uvicorn on loopback, rendered in a real headless Chromium (Debian's chromium driven by
Playwright) with figures from a replay of the demo workload and its offline scores."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from sovrouter.dashboard.data import DashboardData, build
from sovrouter.dashboard.routes import dashboard_router
from sovrouter.evalloop.offline import offline_signals
from sovrouter.evalloop.signals import Regeneration, SignalStore
from sovrouter.gateway.server import ServerThread
from sovrouter.replay.harness import replay_settings, run_replay
from sovrouter.workload import load_replay_inputs, load_scores

DEMO = Path(__file__).resolve().parents[2] / "src" / "sovrouter" / "data" / "demo"
CHROMIUM = os.environ.get("SOVROUTER_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture
def served() -> Iterator[tuple[str, DashboardData]]:
    inputs = load_replay_inputs(DEMO)
    result = run_replay(inputs, replay_settings(inputs), keep_records=True)
    assert result.records is not None
    records = result.records
    signals = SignalStore()
    signals.add_many(offline_signals(list(records), load_scores(inputs.paths), inputs.responses))
    first = next(iter(records))
    signals.add_regeneration(Regeneration(request_id="later", previous_request_id=first.request_id,
                                          tenant=first.tenant, slot=first.final.slot if first.final else None,
                                          deployment=first.final.deployment if first.final else None))
    app = FastAPI()
    app.include_router(dashboard_router(records, signals, inputs.catalog))
    expected = build(iter(records), signals.signals(), signals.regenerations(), inputs.catalog)
    with ServerThread(app, log_level="critical") as server:
        yield server.url, expected
    records.close()


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install -y chromium)")
def test_dashboard_renders_in_chromium(served: tuple[str, DashboardData], tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    url, data = served
    external: list[str] = []
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("request", lambda r: None if r.url.startswith(url) else external.append(r.url))
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        response = page.goto(url + "/dashboard")
        assert response is not None and response.status == 200
        assert page.title() == "sovrouter dashboard"
        # KPIs on the page are the figures computed from the records and signals
        assert data.quality is not None and data.gap is not None
        quality = page.locator('[data-kpi="quality"] b').inner_text()
        assert quality == f"{data.quality.estimate:.3f}"
        assert page.locator('[data-kpi="gap"] b').inner_text() == f"{data.gap.mean:+.3f}"
        exact = page.locator('[data-kpi="exact"] b').inner_text()
        assert exact == f"{100 * data.kpi['exact_cache_rate']:.1f}%" and data.kpi["exact_cache_rate"] > 0
        assert page.locator('[data-kpi="off_frontier"] b').inner_text().endswith("%")
        # one table row per route, charts drawn as SVG with one bar per route, recent decisions listed
        assert page.locator("#routes tr").count() == len(data.routes) + 1
        assert page.locator("#cost svg rect.bar").count() == len(data.routes) > 0
        assert page.locator("#domains svg circle").count() == len(data.domains) > 0
        assert page.locator("#recent tr").count() == min(20, data.requests) + 1
        box = page.locator("#cost svg").bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 20  # really laid out
        shot = Path(os.environ.get("SOVROUTER_DASHBOARD_PNG", tmp_path / "dashboard.png"))
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 20_000
    assert external == [] and errors == []  # no CDN, no script errors
