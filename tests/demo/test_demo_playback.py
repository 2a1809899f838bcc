"""The recorded-playback upstream, over real HTTP on loopback with the official openai client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from sovrouter.demo.playback import Playback, create_playback_app
from sovrouter.demo.sample import DemoSample, load_sample
from sovrouter.gateway.server import ServerThread


@pytest.fixture(scope="module")
def sample() -> DemoSample:
    return load_sample()


class SleepLog:
    def __init__(self) -> None:
        self.total = 0.0

    async def __call__(self, seconds: float) -> None:
        self.total += seconds


@pytest.fixture
def served(sample: DemoSample) -> Iterator[tuple[Playback, SleepLog, str]]:
    log = SleepLog()
    playback = Playback(sample, latency_scale=0.05, sleep=log)
    with ServerThread(create_playback_app(playback)) as server:
        yield playback, log, server.url + "/v1"


def _first(sample: DemoSample) -> tuple[str, Any]:
    rid = sample.stream[0].request_id
    return rid, sample.requests[rid].chat_body()["messages"]


def test_answers_with_the_recorded_response_and_tokens(
    sample: DemoSample, served: tuple[Playback, SleepLog, str]
) -> None:
    playback, log, url = served
    rid, messages = _first(sample)
    rec = sample.responses[(rid, "frontier")]
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
    out = client.chat.completions.create(model="frontier/us", messages=messages)
    assert out.choices[0].message.content == rec.response
    assert out.usage is not None
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (rec.input_tokens, rec.output_tokens)
    # latency: the deployment's profile, scaled
    expected = sample.catalog.deployment("frontier", "us").latency.total_ms(rec.output_tokens) * 0.05 / 1000
    assert log.total == pytest.approx(expected)
    assert playback.calls == 1


def test_the_model_field_selects_slot_and_deployment(
    sample: DemoSample, served: tuple[Playback, SleepLog, str]
) -> None:
    _, log, url = served
    rid, messages = _first(sample)
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
    for model, slot, dep in (("sovereign-large/gov-onprem", "sovereign-large", "gov-onprem"),
                             ("hosted-mini", "hosted-mini", "us")):
        log.total = 0.0
        out = client.chat.completions.create(model=model, messages=messages)
        rec = sample.responses[(rid, slot)]
        assert out.choices[0].message.content == rec.response
        lat = sample.catalog.deployment(slot, dep).latency.total_ms(rec.output_tokens)
        assert log.total == pytest.approx(lat * 0.05 / 1000)


def test_streams_the_whole_recording_with_usage(sample: DemoSample, served: tuple[Playback, SleepLog, str]) -> None:
    _, log, url = served
    rid, messages = _first(sample)
    rec = sample.responses[(rid, "sovereign-large")]
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
    chunks = list(client.chat.completions.create(
        model="sovereign-large/eu-sov", messages=messages, stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == rec.response
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == rec.output_tokens
    lat = sample.catalog.deployment("sovereign-large", "eu-sov").latency
    assert log.total == pytest.approx((lat.ttft_ms + len(rec.response) / 4 / lat.tokens_per_s * 1000) * 0.05 / 1000)


def test_lists_every_recorded_deployment(served: tuple[Playback, SleepLog, str]) -> None:
    _, _, url = served
    ids = {m["id"] for m in httpx.get(url + "/models").json()["data"]}
    assert {"local-small/edge", "frontier/us", "sovereign-large/gov-onprem", "hosted-mini/eu-zone"} <= ids


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": "nope/x", "messages": [{"role": "user", "content": "hi"}]}, 404, "model_not_found"),
        ({"model": "frontier/eu", "messages": [{"role": "user", "content": "hi"}]}, 404, "model_not_found"),
        ({"model": "frontier/us", "messages": [{"role": "user", "content": "not in the sample"}]}, 404,
         "not_recorded"),
        ({"model": "frontier/us", "messages": []}, 400, "invalid_request"),
        ({"messages": [{"role": "user", "content": "hi"}]}, 400, "invalid_request"),
    ],
)
def test_errors_are_openai_style(served: tuple[Playback, SleepLog, str], body: dict[str, object], status: int,
                                 code: str) -> None:
    playback, _, url = served
    resp = httpx.post(url + "/chat/completions", json=body)
    assert resp.status_code == status
    assert resp.json()["error"]["code"] == code
    assert playback.calls == 0


def test_malformed_json_is_400(served: tuple[Playback, SleepLog, str]) -> None:
    _, _, url = served
    resp = httpx.post(url + "/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid_request"


def test_negative_latency_scale_is_refused(sample: DemoSample) -> None:
    with pytest.raises(ValueError):
        Playback(sample, latency_scale=-1)
