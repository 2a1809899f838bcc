"""Failure paths through the gateway: upstream down, 5xx, timeout, failure mid-stream, single-flight."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import openai
import pytest
from gateway_harness import ACME_KEY, Live, live_gateway

from sovrouter.config import BreakerSettings, ReliabilitySettings

AUTH = {"Authorization": f"Bearer {ACME_KEY}"}


def _ask(live: Live, text: str) -> openai.types.chat.ChatCompletion:
    raw = live.client().chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": text}])
    comp = raw.parse()
    comp.__dict__["_headers"] = raw.headers
    return comp


def test_5xx_is_retried_then_falls_back(live: Live) -> None:
    live.primary.mode = "error"
    comp = _ask(live, "q")
    assert comp.choices[0].message.content == "backup answer"
    assert comp.__dict__["_headers"]["x-sovrouter-route"] == "frontier/us"
    assert live.primary.calls == 4  # eu-sov and us-east, each tried twice (retry)
    (rec,) = live.records()
    assert rec.status == "ok" and rec.fallback_used
    assert [(c.candidate.key, c.outcome, c.purpose) for c in rec.calls] == [
        ("sovereign-large/eu-sov", "error", "primary"), ("sovereign-large/eu-sov", "error", "retry"),
        ("sovereign-large/us-east", "error", "fallback"), ("sovereign-large/us-east", "error", "retry"),
        ("frontier/us", "ok", "fallback")]


def test_transient_5xx_recovered_by_one_retry(live: Live) -> None:
    live.primary.fail_first, live.primary.status = 1, 503
    comp = _ask(live, "q")
    assert comp.choices[0].message.content == "primary answer"
    (rec,) = live.records()
    assert [c.outcome for c in rec.calls] == ["error", "ok"] and not rec.fallback_used


def test_timeout_falls_back(live: Live) -> None:
    live.primary.first_token_delay_s = 3.0  # past the 2 s total timeout
    comp = _ask(live, "slow")
    assert comp.choices[0].message.content == "backup answer"
    (rec,) = live.records()
    assert [c.outcome for c in rec.calls] == ["timeout", "timeout", "ok"]


def test_stream_first_token_timeout_falls_back_before_first_byte(live: Live) -> None:
    live.primary.first_token_delay_s = 2.5  # past the 1 s first-token timeout
    stream = live.client().chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "slow stream"}], stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "backup answer"


def test_stream_5xx_before_first_byte_falls_back(live: Live) -> None:
    live.primary.mode = "error"
    with live.client().chat.completions.with_streaming_response.create(
            model="auto", messages=[{"role": "user", "content": "s"}], stream=True) as resp:
        assert resp.headers["x-sovrouter-route"] == "frontier/us"
        text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
    assert text == "backup answer"
    assert live.records()[0].fallback_used


@pytest.mark.parametrize("mode", ["die_mid_stream", "truncate", "stream_error_event"])
def test_failure_mid_stream_ends_with_an_explicit_error_event(live: Live, mode: str) -> None:
    live.primary.mode = mode  # type: ignore[assignment]
    got: list[str] = []
    stream = live.client().chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "break"}], stream=True)
    with pytest.raises(openai.APIError) as exc:
        for chunk in stream:
            got.append(chunk.choices[0].delta.content or "")
    assert "".join(got) and "".join(got) != "primary answer"  # part came, then an explicit error
    assert "sk-test-leak" not in str(exc.value)
    (rec,) = live.records()
    assert rec.status == "error" and rec.calls[0].outcome == "stream_error"
    assert live.backup.calls == 0  # never a silent switch after the first byte


def test_mid_stream_error_event_on_the_wire(live: Live) -> None:
    live.primary.mode = "die_mid_stream"
    body = {"model": "auto", "stream": True, "messages": [{"role": "user", "content": "wire"}]}
    r = httpx.post(live.url + "/v1/chat/completions", json=body, headers=AUTH)
    assert r.status_code == 200
    events = [e[6:] for e in r.text.split("\n\n") if e.startswith("data: ")]
    assert "[DONE]" not in events
    last = json.loads(events[-1])
    assert set(last) == {"error"} and last["error"]["type"] == "upstream_error"


def test_everything_down_is_a_502_without_leaks(live: Live) -> None:
    live.primary.mode = live.backup.mode = "error"
    with pytest.raises(openai.APIStatusError) as exc:
        live.client().chat.completions.create(model="auto", messages=[{"role": "user", "content": "q"}])
    assert exc.value.status_code == 502
    body = exc.value.response.json()
    assert body["error"]["code"] == "all_candidates_failed"
    assert "sk-test-leak" not in exc.value.response.text
    (rec,) = live.records()
    assert rec.status == "error" and rec.error_code == "all_candidates_failed"


@pytest.mark.parametrize("stream", [False, True])
def test_a_request_every_model_refuses_is_a_400_the_client_does_not_retry(live: Live, stream: bool) -> None:
    """Every upstream answering 400 (a prompt past every context) was a 502: the SDK retried it twice, three
    times the plan's calls for a request the client has to change."""
    live.primary.mode = live.backup.mode = "error"
    live.primary.status = live.backup.status = 400
    client = openai.OpenAI(base_url=live.url + "/v1", api_key=ACME_KEY, max_retries=2)
    with pytest.raises(openai.BadRequestError) as exc:
        out = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "q"}],
                                             stream=stream)
        for _ in out if stream else ():
            pass
    assert exc.value.response.json()["error"]["code"] == "upstream_rejected"
    (rec,) = live.records()  # one request, not three
    assert rec.error_code == "upstream_rejected" and rec.calls
    assert all(c.error == "upstream_rejected" for c in rec.calls)


def test_everything_down_in_a_stream_is_a_502_before_the_first_byte(live: Live) -> None:
    live.primary.mode = live.backup.mode = "error"
    with pytest.raises(openai.APIStatusError) as exc:
        for _ in live.client().chat.completions.create(
                model="auto", messages=[{"role": "user", "content": "q"}], stream=True):
            pass
    assert exc.value.status_code == 502
    assert len(live.records()) == 1


def test_upstream_down_falls_back(tmp_path: Path) -> None:
    with live_gateway(tmp_path / "state", primary_down=True) as live:
        assert _ask(live, "q").choices[0].message.content == "backup answer"
        with live.client().chat.completions.with_streaming_response.create(
                model="auto", messages=[{"role": "user", "content": "s"}], stream=True) as resp:
            assert resp.headers["x-sovrouter-route"] == "frontier/us"
            assert "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices) == "backup answer"
        records = live.records()
    assert len(records) == 2 and all(r.fallback_used for r in records)
    assert records[0].calls[0].outcome == "error" and records[0].calls[0].error == "upstream_unavailable"


def test_breaker_opens_on_a_dead_deployment(tmp_path: Path) -> None:
    rel = ReliabilitySettings(retries=0, breaker=BreakerSettings(consecutive_failures=2, cooldown_s=60))
    with live_gateway(tmp_path / "state", primary_down=True, reliability=rel) as live:
        for i in range(3):
            assert _ask(live, f"q{i}").choices[0].message.content == "backup answer"
        last = live.records()[-1]
    assert [c.outcome for c in last.calls] == ["circuit_open", "circuit_open", "ok"]


async def test_single_flight_under_concurrency(live: Live) -> None:
    live.primary.first_token_delay_s = 0.3
    body = {"model": "auto", "messages": [{"role": "user", "content": "popular question"}]}
    async with httpx.AsyncClient(base_url=live.url, headers=AUTH, timeout=10) as client:
        responses = await asyncio.gather(*[client.post("/v1/chat/completions", json=body) for _ in range(8)])
    assert all(r.status_code == 200 for r in responses)
    assert {r.json()["choices"][0]["message"]["content"] for r in responses} == {"primary answer"}
    assert live.primary.calls == 1
    assert sorted(r.headers["x-sovrouter-cache"] for r in responses) == ["exact"] * 7 + ["miss"]
    assert len(live.records()) == 8


def test_client_disconnect_mid_stream_still_records_the_request(live: Live) -> None:
    live.primary.chunk_delay_s = 0.1
    body = {"model": "auto", "stream": True, "messages": [{"role": "user", "content": "leaving early"}]}
    with httpx.stream("POST", live.url + "/v1/chat/completions", json=body, headers=AUTH) as r:
        assert r.status_code == 200
        next(r.iter_bytes())  # first event, then hang up
    deadline = time.monotonic() + 5
    while not live.records() and time.monotonic() < deadline:
        time.sleep(0.05)
    (rec,) = live.records()
    assert rec.status == "ok" and rec.response_text_chars == len("primary answer")


class _BrokenRouter:
    """A bug in a component: an exception outside the error hierarchy, its message quoting the prompt."""

    def decide(self, *args: object, **kwargs: object) -> object:
        raise RuntimeError("bug: secret prompt text")

    def review(self, *args: object, **kwargs: object) -> object:
        return None


@pytest.mark.parametrize("stream", [False, True])
def test_a_bug_in_a_component_is_a_500_and_still_recorded(live: Live, stream: bool) -> None:
    live.pipeline.router = _BrokenRouter()
    with httpx.Client(base_url=live.url, timeout=20) as client:
        resp = client.post("/v1/chat/completions", headers=AUTH, json={
            "model": "auto", "stream": stream, "messages": [{"role": "user", "content": "secret prompt text"}]})
    assert resp.status_code == 500
    assert resp.json()["error"]["code"] == "internal_error" and "secret" not in resp.text
    rid = resp.headers["x-sovrouter-request-id"]
    (rec,) = live.records()  # until 2026-11-28 such a request left no record
    assert (rec.request_id, rec.status, rec.error_code, rec.tenant) == (rid, "error", "internal_error", "acme-us")
    assert "secret" not in rec.model_dump_json()
