"""The gateway through the official ``openai`` client, against real upstreams on loopback."""

from __future__ import annotations

import json

import httpx
from gateway_harness import ACME_KEY, Live


def test_completion_through_openai_client(live: Live) -> None:
    raw = live.client().chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hello"}])
    completion = raw.parse()
    assert completion.choices[0].message.content == "primary answer"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "sovereign-large"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert raw.headers["x-sovrouter-route"] == "sovereign-large/eu-sov"
    assert raw.headers["x-sovrouter-cache"] == "miss"
    rid = raw.headers["x-sovrouter-request-id"]
    meta = completion.to_dict()["sovrouter"]  # type: ignore[typeddict-item]
    assert meta["route"] == {"slot": "sovereign-large", "deployment": "eu-sov"}
    assert meta["cache"] == "miss" and meta["cost_usd"] > 0 and meta["request_id"] == rid
    records = live.records()
    assert [r.request_id for r in records] == [rid]
    assert records[0].tenant == "acme-us" and records[0].status == "ok"


def test_repeat_is_served_from_the_exact_cache(live: Live) -> None:
    client = live.client()
    msgs = [{"role": "user", "content": "same question"}]
    client.chat.completions.create(model="auto", messages=msgs)  # type: ignore[arg-type]
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=msgs)  # type: ignore[arg-type]
    assert raw.headers["x-sovrouter-cache"] == "exact"
    assert raw.parse().choices[0].message.content == "primary answer"
    assert live.primary.calls == 1
    assert len(live.records()) == 2


def test_streaming_through_openai_client(live: Live) -> None:
    with live.client().chat.completions.with_streaming_response.create(
            model="auto", messages=[{"role": "user", "content": "stream please"}], stream=True,
            stream_options={"include_usage": True}) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["x-sovrouter-route"] == "sovereign-large/eu-sov"
        assert resp.headers["x-sovrouter-cache"] == "miss"
        chunks = list(resp.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "primary answer"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    finishing = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert finishing.to_dict()["sovrouter"]["route"]["deployment"] == "eu-sov"  # type: ignore[typeddict-item]
    assert len(live.records()) == 1 and live.records()[0].status == "ok"


def test_streamed_cache_hit_says_so_in_the_header(live: Live) -> None:
    client = live.client()
    msgs = [{"role": "user", "content": "cached stream"}]
    client.chat.completions.create(model="auto", messages=msgs)  # type: ignore[arg-type]
    with client.chat.completions.with_streaming_response.create(model="auto", messages=msgs,  # type: ignore[arg-type]
                                                                stream=True) as resp:
        assert resp.headers["x-sovrouter-cache"] == "exact"
        text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
    assert text == "primary answer" and live.primary.calls == 1


def test_sse_wire_format_ends_with_done(live: Live) -> None:
    body = {"model": "auto", "stream": True, "messages": [{"role": "user", "content": "wire"}]}
    r = httpx.post(live.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {ACME_KEY}"})
    events = [line[6:] for line in r.text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    first = json.loads(events[0])
    assert first["object"] == "chat.completion.chunk" and first["choices"][0]["delta"]["role"] == "assistant"


def test_explicit_slot_and_deployment_models(live: Live) -> None:
    client = live.client()
    raw = client.chat.completions.with_raw_response.create(
        model="frontier", messages=[{"role": "user", "content": "to the frontier"}])
    assert raw.headers["x-sovrouter-route"] == "frontier/us"
    raw = client.chat.completions.with_raw_response.create(
        model="hosted-mini/eu-zone", messages=[{"role": "user", "content": "to eu-zone"}])
    assert raw.headers["x-sovrouter-route"] == "hosted-mini/eu-zone"


def test_tenant_comes_from_the_key_never_the_body(live: Live) -> None:
    live.client().chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "who am i"}], user="eurobank",
        metadata={"tenant": "eurobank"}, extra_body={"tenant": "eurobank"})
    assert [r.tenant for r in live.records()] == ["acme-us"]


def test_data_class_header_reaches_the_record(live: Live) -> None:
    live.client().chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}],
                                          extra_headers={"X-Data-Class": "Confidential"})
    assert live.records()[0].data_class == "confidential"


def test_models_lists_auto_and_the_tenants_slots(live: Live) -> None:
    ids = [m.id for m in live.client().models.list()]
    assert ids[0] == "auto"
    assert set(ids[1:]) == {"local-small", "sovereign-large", "hosted-mini", "frontier"}


def test_health_and_ready(live: Live) -> None:
    assert httpx.get(live.url + "/health").json() == {"status": "ok"}
    ready = httpx.get(live.url + "/ready").json()
    assert ready["status"] == "ready" and ready["deployments"] == 6
