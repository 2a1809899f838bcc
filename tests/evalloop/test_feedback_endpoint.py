"""POST /v1/feedback mounted on the real gateway app: validation, unknown ids, stored signals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sovrouter.build import assemble
from sovrouter.catalog import Catalog, Tenants
from sovrouter.clock import WallClock
from sovrouter.config import ApiKey, Settings, hash_key
from sovrouter.contracts import Candidate
from sovrouter.evalloop.loop import EvalSettings, build_observability
from sovrouter.gateway.app import create_app
from sovrouter.store.records import SQLiteRecordStore
from sovrouter.testing import FakeAdapter

KEY = "sk-feedback-test-0001"
DATA = Path(__file__).resolve().parents[2] / "src" / "sovrouter" / "data" / "demo"


@pytest.fixture
def client(catalog: Catalog, tenants: Tenants) -> Iterator[tuple[TestClient, object]]:
    settings = Settings(catalog=DATA / "models.json", tenants=DATA / "tenants.json", router="baseline",
                        api_keys=[ApiKey(tenant="acme-us", key_sha256=hash_key(KEY))])
    store = SQLiteRecordStore(":memory:")
    obs = build_observability(EvalSettings(), catalog)
    adapters = {Candidate(slot=s.id, deployment=d.id): FakeAdapter(Candidate(slot=s.id, deployment=d.id), text="42")
                for s, d in catalog.pairs()}
    pipeline = obs.observe(assemble(settings, catalog, tenants, adapters, WallClock(), store))
    app = create_app(pipeline, settings)
    obs.mount(app, store)
    with TestClient(app) as c:
        yield c, obs


def _chat(c: TestClient) -> str:
    r = c.post("/v1/chat/completions", headers={"authorization": f"Bearer {KEY}"},
               json={"model": "auto", "messages": [{"role": "user", "content": "what is 6*7?"}]})
    assert r.status_code == 200, r.text
    rid: str = r.json()["id"]
    return rid


def test_feedback_accepted_and_stored(client) -> None:  # type: ignore[no-untyped-def]
    c, obs = client
    rid = _chat(c)
    r = c.post("/v1/feedback", json={"response_id": rid, "thumbs": "down", "comment": "wrong"})
    assert r.status_code == 200, r.text
    assert r.json()["score"] == 0.0 and r.json()["failure_mode"] == "wrong_answer"
    r = c.post("/v1/feedback", json={"response_id": rid.removeprefix("chatcmpl-"), "score": 0.75})
    assert r.status_code == 200
    stored = list(obs.signals.signals("feedback"))
    assert [s.score for s in stored] == [0.0, 0.75]
    assert stored[0].slot is not None and stored[0].request_id == rid.removeprefix("chatcmpl-")
    # the metrics endpoint and the dashboard are mounted alongside; the observed pipeline fed them
    assert 'sovrouter_requests_total{deployment="eu-sov",slot="sovereign-large",status="ok",tenant="acme-us"} 1.0' \
        in c.get("/metrics").text
    assert c.get("/dashboard").status_code == 200


def test_feedback_unknown_id_is_404(client) -> None:  # type: ignore[no-untyped-def]
    c, obs = client
    r = c.post("/v1/feedback", json={"response_id": "chatcmpl-nope", "score": 1})
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["type"] == "not_found_error" and err["param"] == "response_id"
    assert list(obs.signals.signals()) == []


@pytest.mark.parametrize("body", [
    {"response_id": "x", "score": 1.5},
    {"response_id": "x", "score": -0.1},
    {"response_id": "x", "thumbs": "meh"},
    {"response_id": "x", "score": 1, "thumbs": "up"},
    {"response_id": "x"},
    {"score": 1},
    {"response_id": "x", "score": 1, "secret_field": "s3cr3t-personal"},
    ["not", "an", "object"],
])
def test_feedback_validation(client, body) -> None:  # type: ignore[no-untyped-def]
    c, _ = client
    r = c.post("/v1/feedback", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and "s3cr3t" not in r.text
    assert set(r.json()) == {"error"}


def test_feedback_not_json(client) -> None:  # type: ignore[no-untyped-def]
    c, _ = client
    r = c.post("/v1/feedback", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
