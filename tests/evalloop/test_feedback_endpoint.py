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
OTHER = "sk-feedback-test-0002"  # another tenant's key
AUTH = {"authorization": f"Bearer {KEY}"}
DATA = Path(__file__).resolve().parents[2] / "src" / "sovrouter" / "data" / "demo"


@pytest.fixture
def client(catalog: Catalog, tenants: Tenants) -> Iterator[tuple[TestClient, object]]:
    settings = Settings(catalog=DATA / "models.json", tenants=DATA / "tenants.json", router="baseline",
                        api_keys=[ApiKey(tenant="acme-us", key_sha256=hash_key(KEY)),
                                  ApiKey(tenant="eurobank", key_sha256=hash_key(OTHER))])
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
    r = c.post("/v1/feedback", json={"response_id": rid, "thumbs": "down", "comment": "wrong"}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["score"] == 0.0 and r.json()["failure_mode"] == "wrong_answer"
    r = c.post("/v1/feedback", json={"response_id": rid.removeprefix("chatcmpl-"), "score": 0.75}, headers=AUTH)
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
    r = c.post("/v1/feedback", json={"response_id": "chatcmpl-nope", "score": 1}, headers=AUTH)
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
    r = c.post("/v1/feedback", json=body, headers=AUTH)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and "s3cr3t" not in r.text
    assert set(r.json()) == {"error"}


def test_feedback_not_json(client) -> None:  # type: ignore[no-untyped-def]
    c, _ = client
    r = c.post("/v1/feedback", content=b"{nope", headers={"content-type": "application/json", **AUTH})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"


def test_feedback_takes_a_key_and_only_for_the_keys_own_answers(client) -> None:  # type: ignore[no-untyped-def]
    """The endpoint took no key: anyone reaching the gateway could score (and so fix the quality of) any tenant's
    answers, and learn which request ids exist (the dashboard lists them)."""
    c, obs = client
    rid = _chat(c)
    body = {"response_id": rid, "thumbs": "down"}
    assert c.post("/v1/feedback", json=body).status_code == 401
    assert c.post("/v1/feedback", json=body, headers={"authorization": "Bearer nonsense"}).status_code == 401
    other = c.post("/v1/feedback", json=body, headers={"authorization": f"Bearer {OTHER}"})
    unknown = c.post("/v1/feedback", json={"response_id": "chatcmpl-nope", "thumbs": "down"},
                     headers={"authorization": f"Bearer {OTHER}"})
    assert other.status_code == unknown.status_code == 404 and other.json() == unknown.json()
    assert list(obs.signals.signals()) == []
    assert c.post("/v1/feedback", json=body, headers=AUTH).status_code == 200


def test_feedback_on_an_unanswered_request_and_oversized_bodies_are_refused(client) -> None:  # type: ignore[no-untyped-def]
    c, obs = client
    refused = c.post("/v1/chat/completions", headers=AUTH, json={"model": "sovereign-large/gov-onprem",
                                                                 "messages": [{"role": "user", "content": "x"}]})
    assert refused.status_code == 404  # refused at the door: recorded, with no answer
    rid = refused.headers["x-sovrouter-request-id"]
    r = c.post("/v1/feedback", json={"response_id": rid, "thumbs": "down"}, headers=AUTH)
    assert r.status_code == 400 and r.json()["error"]["param"] == "response_id"
    big = c.post("/v1/feedback", content=b"{" + b" " * 200_000 + b"}", headers=AUTH)
    assert big.status_code == 413
    assert list(obs.signals.signals()) == []


def test_a_corrected_feedback_is_the_one_that_counts(client) -> None:  # type: ignore[no-untyped-def]
    from sovrouter.evalloop.signals import best_signal

    c, obs = client
    rid = _chat(c)
    c.post("/v1/feedback", json={"response_id": rid, "thumbs": "down"}, headers=AUTH)
    c.post("/v1/feedback", json={"response_id": rid, "thumbs": "up", "comment": "sorry, it was right"}, headers=AUTH)
    best = best_signal(obs.signals.signals())
    assert best is not None and best.score == 1.0


def test_feedback_nested_past_the_parsers_depth_is_a_400(client) -> None:  # type: ignore[no-untyped-def]
    c, _ = client
    r = c.post("/v1/feedback", content=b"[" * 10_000, headers=AUTH)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"


def test_the_operators_pages_take_an_operator_key_when_one_is_set(catalog: Catalog, tenants: Tenants) -> None:
    """/metrics and /dashboard show every tenant's request ids, routes and costs: with ``operator_keys`` set they
    need one (a tenant's API key is not one of them); without, they stay open as before (Prometheus defaults)."""
    from sovrouter.config import OperatorKey

    operator = "sk-operator-0001"
    settings = Settings(catalog=DATA / "models.json", tenants=DATA / "tenants.json", router="baseline",
                        api_keys=[ApiKey(tenant="acme-us", key_sha256=hash_key(KEY))],
                        operator_keys=[OperatorKey(key_sha256=hash_key(operator))])
    store = SQLiteRecordStore(":memory:")
    obs = build_observability(EvalSettings(), catalog)
    adapters = {Candidate(slot=s.id, deployment=d.id): FakeAdapter(Candidate(slot=s.id, deployment=d.id), text="42")
                for s, d in catalog.pairs()}
    app = create_app(obs.observe(assemble(settings, catalog, tenants, adapters, WallClock(), store)), settings)
    obs.mount(app, store)
    with TestClient(app) as c:
        for path in ("/metrics", "/dashboard"):
            assert c.get(path).status_code == 401
            assert c.get(path, headers=AUTH).status_code == 401  # a tenant's key is not an operator's
            r = c.get(path, headers={"authorization": f"Bearer {operator}"})
            assert r.status_code == 200 and "sovrouter" in r.text


def test_a_slow_record_lookup_does_not_hold_other_requests(catalog: Catalog, tenants: Tenants) -> None:
    """The lookup ran on the event loop: for an id this instance did not answer it reaches the shared database
    through a blocking driver, and a silent database host held /health (and every chat) for 10 s."""
    import threading
    import time

    import httpx

    from sovrouter.contracts import RequestRecord
    from sovrouter.gateway.server import ServerThread

    class SlowLookup:
        def __init__(self, inner: SQLiteRecordStore) -> None:
            self.inner = inner

        def get(self, request_id: str) -> RequestRecord:
            time.sleep(1.0)  # a database host that answers late
            return self.inner.get(request_id)

    settings = Settings(catalog=DATA / "models.json", tenants=DATA / "tenants.json", router="baseline",
                        api_keys=[ApiKey(tenant="acme-us", key_sha256=hash_key(KEY))])
    store = SQLiteRecordStore(":memory:")
    obs = build_observability(EvalSettings(), catalog)
    adapters = {Candidate(slot=s.id, deployment=d.id): FakeAdapter(Candidate(slot=s.id, deployment=d.id))
                for s, d in catalog.pairs()}
    app = create_app(obs.observe(assemble(settings, catalog, tenants, adapters, WallClock(), store)), settings)
    obs.mount(app, SlowLookup(store))  # type: ignore[arg-type]
    with ServerThread(app, log_level="critical") as server:
        status: list[int] = []
        feedback = threading.Thread(target=lambda: status.append(httpx.post(
            server.url + "/v1/feedback", json={"response_id": "chatcmpl-nobody", "thumbs": "up"}, headers=AUTH,
            timeout=10).status_code))
        feedback.start()
        time.sleep(0.2)
        t0 = time.perf_counter()
        assert httpx.get(server.url + "/health", timeout=10).status_code == 200
        waited = time.perf_counter() - t0
        feedback.join()
    assert status == [404] and waited < 0.5


def test_feedback_error_never_names_an_unknown_key(client) -> None:  # type: ignore[no-untyped-def]
    """An unknown key is client data (here an e-mail address): the error named it, in the message and ``param``."""
    c, _ = client
    r = c.post("/v1/feedback", json={"response_id": "x", "score": 1, "jane.doe@example.com": 1}, headers=AUTH)
    assert r.status_code == 400, r.text
    assert "jane.doe" not in r.text and r.json()["error"]["param"] is None
