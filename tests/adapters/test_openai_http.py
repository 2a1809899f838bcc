"""The HTTP adapter against a real OpenAI-compatible upstream (the package's test upstream, on loopback)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence

import httpx
import pytest

from sovrouter.adapters.openai_http import OpenAIHTTPAdapter, chat_endpoint, request_body
from sovrouter.adapters.replicas import LeastOutstandingChooser, ReplicaChooser
from sovrouter.contracts import Candidate, ModelCall, ModelResult, NormalizedRequest
from sovrouter.errors import (
    UpstreamProtocolError,
    UpstreamRejectedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from sovrouter.gateway.server import ServerThread
from sovrouter.intake import normalize_chat
from sovrouter.testing_upstream import UpstreamBehaviour, closed_port_url, create_upstream_app

C = Candidate(slot="sovereign-large", deployment="eu-sov")


@pytest.fixture
def upstream() -> Iterator[tuple[str, UpstreamBehaviour]]:
    b = UpstreamBehaviour(reply="The answer is 42.", chunks=3)
    with ServerThread(create_upstream_app(b), log_level="critical") as server:
        yield server.url, b


def _call(text: str = "what is six times seven?", **body: object) -> ModelCall:
    req = normalize_chat({"messages": [{"role": "user", "content": text}], **body}, tenant="t", request_id="r")
    return ModelCall(request=req, allowed=[C])


async def _generate_and_stream(url: str) -> tuple[ModelResult, list[str], object]:
    """One plain call and one streamed call to ``url``: the answer, the stream's deltas and its final result."""
    ad = OpenAIHTTPAdapter(C, [url])
    try:
        out = await ad.generate(_call())
        deltas, final = await _collect(ad, _call())
    finally:
        await ad.aclose()
    return out, deltas, final


async def _collect(ad: OpenAIHTTPAdapter, call: ModelCall) -> tuple[list[str], object]:
    deltas: list[str] = []
    final = None
    async for chunk in ad.stream(call):
        if chunk.final is not None:
            final = chunk.final
        else:
            deltas.append(chunk.delta)
    return deltas, final


async def test_generate_maps_answer_usage_and_latency(upstream: tuple[str, UpstreamBehaviour]) -> None:
    url, b = upstream
    ad = OpenAIHTTPAdapter(C, [url], model="m1")
    try:
        out = await ad.generate(_call(temperature=0.2, max_tokens=50, stop="END", seed=7))
    finally:
        await ad.aclose()
    assert out.text == "The answer is 42." and out.candidate == C and out.finish_reason == "stop"
    assert out.output_tokens == len("The answer is 42.") // 4  # from the upstream's usage
    assert out.latency_ms > 0
    assert b.last_body is not None
    assert b.last_body["model"] == "m1" and b.last_body["temperature"] == 0.2
    assert b.last_body["max_tokens"] == 50 and b.last_body["stop"] == ["END"] and b.last_body["seed"] == 7
    assert "stream" not in b.last_body


async def test_without_usage_tokens_are_estimated(upstream: tuple[str, UpstreamBehaviour]) -> None:
    url, b = upstream
    b.usage = False
    ad = OpenAIHTTPAdapter(C, [url])
    try:
        out = await ad.generate(_call("abcdefgh"))
        _, final = await _collect(ad, _call("abcdefgh"))
    finally:
        await ad.aclose()
    assert out.input_tokens == 2 and out.output_tokens == 5  # ceil(8/4), ceil(17/4)
    assert final is not None and final.output_tokens == 5  # type: ignore[attr-defined]


async def test_stream_yields_deltas_then_final_with_ttft(upstream: tuple[str, UpstreamBehaviour]) -> None:
    url, b = upstream
    b.first_token_delay_s = 0.05
    ad = OpenAIHTTPAdapter(C, [url + "/v1"])  # a base URL with /v1 works too
    try:
        deltas, final = await _collect(ad, _call())
    finally:
        await ad.aclose()
    assert "".join(deltas) == "The answer is 42." and len(deltas) == 3
    assert final is not None
    assert final.text == "The answer is 42."  # type: ignore[attr-defined]
    assert final.ttft_ms >= 50 and final.latency_ms >= final.ttft_ms  # type: ignore[attr-defined]
    assert b.last_body is not None and b.last_body["stream"] is True
    assert b.last_body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("stream", [False, True])
async def test_calls_one_after_another_reuse_one_connection(upstream: tuple[str, UpstreamBehaviour],
                                                           stream: bool) -> None:
    """A streamed call stopped reading at ``[DONE]``, before the body's end, so the client could not put the
    connection back in its pool: every streamed call opened a new one (a TCP, and for an https upstream a TLS,
    handshake per call; found by profiling the gateway, 2026-11-28)."""
    url, b = upstream
    ad = OpenAIHTTPAdapter(C, [url])
    try:
        for _ in range(5):
            if stream:
                deltas, final = await _collect(ad, _call())
                assert "".join(deltas) == "The answer is 42." and final is not None
            else:
                assert (await ad.generate(_call())).text == "The answer is 42."
    finally:
        await ad.aclose()
    assert b.calls == 5 and len(b.peers) == 1


@pytest.mark.parametrize("after", [b"", b"data: {not json\n\n: a comment\n\n"])
async def test_a_body_kept_open_after_done_neither_delays_nor_spoils_the_answer(
        upstream: tuple[str, UpstreamBehaviour], after: bytes) -> None:
    """What follows [DONE] is read for at most DRAIN_S (to reuse the connection), never parsed: an upstream that
    holds the body open, or sends more, still gives its complete answer at once; its connection is closed."""
    import time

    from sovrouter.adapters.openai_http import DRAIN_S

    url, b = upstream
    b.linger_after_done_s, b.after_done = 2.0, after
    ad = OpenAIHTTPAdapter(C, [url])
    try:
        t0 = time.perf_counter()
        deltas, final = await _collect(ad, _call())
        took = time.perf_counter() - t0
    finally:
        await ad.aclose()
    assert "".join(deltas) == "The answer is 42." and final is not None
    assert final.text == "The answer is 42."  # type: ignore[attr-defined]
    assert took < DRAIN_S + 1.0  # not the 2 s the body stays open


def test_body_maps_media_parts_and_developer_role() -> None:
    req = normalize_chat({"messages": [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "what is this"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
    ]}, tenant="t", request_id="r")
    body = request_body(req, "vlm", stream=False)
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    assert body["messages"][1]["content"] == [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    assert chat_endpoint("http://h:1/") == "http://h:1/v1/chat/completions"
    assert "frequency_penalty" not in body and "presence_penalty" not in body


def test_body_carries_the_penalties() -> None:
    req = normalize_chat({"messages": [{"role": "user", "content": "hi"}], "frequency_penalty": 0.4,
                          "presence_penalty": -1}, tenant="t", request_id="r")
    body = request_body(req, "m", stream=False)
    assert (body["frequency_penalty"], body["presence_penalty"]) == (0.4, -1.0)
    assert chat_endpoint("http://h:1/v1") == "http://h:1/v1/chat/completions"


@pytest.mark.parametrize(("status", "error"), [(500, UpstreamUnavailableError), (503, UpstreamUnavailableError),
                                               (429, UpstreamUnavailableError), (400, UpstreamRejectedError)])
async def test_http_errors_map_without_leaking_the_body(upstream: tuple[str, UpstreamBehaviour], status: int,
                                                        error: type[Exception]) -> None:
    url, b = upstream
    b.mode, b.status = "error", status
    ad = OpenAIHTTPAdapter(C, [url], api_key="sk-upstream-secret")
    try:
        with pytest.raises(error) as gen_exc:
            await ad.generate(_call())
        with pytest.raises(error) as stream_exc:
            await _collect(ad, _call())
    finally:
        await ad.aclose()
    for exc in (gen_exc.value, stream_exc.value):
        assert "sk-test-leak" not in str(exc) and "sk-upstream-secret" not in str(exc)
        assert str(status) in str(exc)


async def test_upstream_down() -> None:
    ad = OpenAIHTTPAdapter(C, [closed_port_url()])
    try:
        with pytest.raises(UpstreamUnavailableError):
            await ad.generate(_call())
        with pytest.raises(UpstreamUnavailableError):
            await _collect(ad, _call())
    finally:
        await ad.aclose()


async def test_malformed_bodies(upstream: tuple[str, UpstreamBehaviour]) -> None:
    url, b = upstream
    b.mode = "malformed"
    ad = OpenAIHTTPAdapter(C, [url])
    try:
        with pytest.raises(UpstreamProtocolError):
            await ad.generate(_call())
        with pytest.raises(UpstreamProtocolError):
            await _collect(ad, _call())
    finally:
        await ad.aclose()


@pytest.mark.parametrize(("mode", "error"), [("die_mid_stream", UpstreamUnavailableError),
                                             ("truncate", UpstreamProtocolError),
                                             ("stream_error_event", UpstreamUnavailableError)])
async def test_broken_streams_raise_after_partial_output(upstream: tuple[str, UpstreamBehaviour], mode: str,
                                                         error: type[Exception]) -> None:
    url, b = upstream
    b.mode = mode  # type: ignore[assignment]
    ad = OpenAIHTTPAdapter(C, [url])
    got: list[str] = []
    try:
        with pytest.raises(error):
            async for chunk in ad.stream(_call()):
                assert chunk.final is None  # never a final result for a broken stream
                got.append(chunk.delta)
    finally:
        await ad.aclose()
    assert got  # part of the answer came before the failure


async def test_client_read_timeout_maps_to_timeout(upstream: tuple[str, UpstreamBehaviour]) -> None:
    url, b = upstream
    b.first_token_delay_s = 1.0
    client = httpx.AsyncClient(timeout=httpx.Timeout(0.1))
    ad = OpenAIHTTPAdapter(C, [url], client=client)
    try:
        with pytest.raises(UpstreamTimeoutError):
            await ad.generate(_call())
    finally:
        await client.aclose()


class _Recorder:
    """A chooser that always picks ``index`` and records what it is told."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.events: list[tuple[object, ...]] = []

    def choose(self, request: NormalizedRequest, replicas: Sequence[str]) -> int:
        return self.index

    def observe_start(self, request: NormalizedRequest, replicas: Sequence[str], index: int) -> None:
        self.events.append(("start", index))

    def observe_done(self, request: NormalizedRequest, replicas: Sequence[str], index: int, ok: bool,
                     latency_ms: float, *, rejected: bool = False, abandoned: bool = False) -> None:
        self.events.append(("done", index, ok, rejected))


async def test_replica_chooser_protocol_is_followed(upstream: tuple[str, UpstreamBehaviour]) -> None:
    url, b = upstream
    chooser = _Recorder(1)
    assert isinstance(chooser, ReplicaChooser)
    ad = OpenAIHTTPAdapter(C, [closed_port_url(), url], chooser=chooser)
    try:
        await ad.generate(_call())
        await _collect(ad, _call())
        chooser.index = 0  # the dead replica
        with pytest.raises(UpstreamUnavailableError):
            await ad.generate(_call())
    finally:
        await ad.aclose()
    assert b.calls == 2
    assert chooser.events == [("start", 1), ("done", 1, True, False), ("start", 1), ("done", 1, True, False),
                              ("start", 0), ("done", 0, False, False)]


async def test_a_refused_request_is_reported_as_rejected_not_as_a_replica_failure(
        upstream: tuple[str, UpstreamBehaviour]) -> None:
    """HTTP 400 (a prompt past the context...): the replica is healthy; health ejection and the affinity model
    must not treat it as a failure, so the chooser is told."""
    url, b = upstream
    b.mode, b.status = "error", 400
    chooser = _Recorder(0)
    ad = OpenAIHTTPAdapter(C, [url], chooser=chooser)
    try:
        with pytest.raises(UpstreamRejectedError):
            await ad.generate(_call())
        with pytest.raises(UpstreamRejectedError):
            await _collect(ad, _call())
        b.status = 404  # a wrong model name on this replica: its fault, a failure (it must get ejected)
        with pytest.raises(UpstreamRejectedError):
            await ad.generate(_call())
        b.status = 503
        with pytest.raises(UpstreamUnavailableError):
            await ad.generate(_call())
    finally:
        await ad.aclose()
    assert [e for e in chooser.events if e[0] == "done"] == [("done", 0, False, True), ("done", 0, False, True),
                                                             ("done", 0, False, False), ("done", 0, False, False)]


async def test_least_outstanding_spreads_concurrent_calls() -> None:
    b1 = UpstreamBehaviour(first_token_delay_s=0.1)
    b2 = UpstreamBehaviour(first_token_delay_s=0.1)
    with ServerThread(create_upstream_app(b1), log_level="critical") as s1, \
            ServerThread(create_upstream_app(b2), log_level="critical") as s2:
        chooser = LeastOutstandingChooser()
        ad = OpenAIHTTPAdapter(C, [s1.url, s2.url], chooser=chooser)
        try:
            await asyncio.gather(*[ad.generate(_call()) for _ in range(6)])
        finally:
            await ad.aclose()
    assert (b1.calls, b2.calls) == (3, 3)
    assert chooser.outstanding(s1.url) == 0 and chooser.outstanding(s2.url) == 0


def test_least_outstanding_prefers_the_idle_replica() -> None:
    chooser = LeastOutstandingChooser()
    req = normalize_chat({"messages": [{"role": "user", "content": "x"}]}, tenant="t", request_id="r")
    reps = ["a", "b", "c"]
    chooser.observe_start(req, reps, 0)
    chooser.observe_start(req, reps, 2)
    assert chooser.choose(req, reps) == 1
    chooser.observe_done(req, reps, 0, True, 1.0)
    assert chooser.choose(req, reps) in (0, 1)


VLLM_SPEC = {"mean_acceptance_length": 1.2325581395348837, "draft_acceptance_rate": 0.07751937984496124,
             "acceptance_histogram": [39, 1, 0, 3], "acceptance_histogram_by_draft_length": {"3": [39, 1, 0, 3]},
             "num_spec_steps": 43, "num_accepted_draft_tokens": 10, "num_draft_tokens": 129, "num_spec_tokens": 3}


async def test_vllm_per_request_acceptance_reaches_the_call_record(upstream: tuple[str, UpstreamBehaviour]) -> None:
    from sovrouter.adapters.instrumented import InstrumentedAdapter

    url, b = upstream
    ad = OpenAIHTTPAdapter(C, [url])
    try:
        assert (await ad.generate(_call())).spec_acceptance is None  # a server that reports nothing
        b.spec_metrics = VLLM_SPEC
        out = await ad.generate(_call())
        _, final = await _collect(ad, _call())
        call = _call()
        await InstrumentedAdapter(ad, timer=lambda: 0.0).generate(call)
    finally:
        await ad.aclose()
    assert out.spec_acceptance == pytest.approx(10 / 129)
    assert final is not None and final.spec_acceptance == pytest.approx(10 / 129)  # type: ignore[attr-defined]
    assert call.attempts[0].spec_acceptance == pytest.approx(10 / 129)
    assert out.spec_drafted_tokens == final.spec_drafted_tokens == call.attempts[0].spec_drafted_tokens == 129  # type: ignore[attr-defined]


@pytest.mark.parametrize(("spec", "expected", "drafted"), [
    ({"draft_acceptance_rate": 0.25}, 0.25, None),  # only the rate
    ({"num_draft_tokens": 0, "num_accepted_draft_tokens": 0, "draft_acceptance_rate": 0.0}, None, 0),  # nothing drafted
    ({"num_draft_tokens": 5, "num_accepted_draft_tokens": 9}, None, None),  # impossible counts: neither kept
    ({"num_draft_tokens": 7}, None, 7),  # drafted, acceptance not reported
    ({"draft_acceptance_rate": 1.5}, None, None),
    ({"draft_acceptance_rate": True}, None, None),
    ({"num_draft_tokens": "12", "num_accepted_draft_tokens": 3}, None, None),
    ("garbage", None, None),
])
async def test_odd_acceptance_metrics_never_fail_a_call(upstream: tuple[str, UpstreamBehaviour], spec: object,
                                                        expected: float | None, drafted: int | None) -> None:
    url, b = upstream
    b.spec_metrics = spec  # type: ignore[assignment]
    out, _, final = await _generate_and_stream(url)
    assert out.text == "The answer is 42."
    assert out.spec_acceptance == expected and final.spec_acceptance == expected  # type: ignore[attr-defined]
    assert out.spec_drafted_tokens == drafted and final.spec_drafted_tokens == drafted  # type: ignore[attr-defined]


def test_audio_data_goes_upstream_as_openai_input_audio() -> None:
    req = normalize_chat({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "transcribe"},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "audio_url", "audio_url": {"url": "https://example.com/a.mp3"}},
    ]}]}, tenant="t", request_id="r")
    body = request_body(req, "alm", stream=False)
    assert body["messages"][0]["content"][1:] == [
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "audio_url", "audio_url": {"url": "https://example.com/a.mp3"}},
    ]


async def test_a_lone_surrogate_from_upstream_is_repaired_not_fatal(upstream: tuple[str, UpstreamBehaviour]) -> None:
    """``"\\ud83d"`` is a valid JSON escape but no UTF-8: left in, it broke caching, the record and the stream."""
    url, b = upstream
    b.reply = "broken emoji \ud83d here"
    out, deltas, final = await _generate_and_stream(url)
    assert out.text == "broken emoji \ufffd here"
    assert final is not None
    for text in (out.text, "".join(deltas), final.text):  # type: ignore[attr-defined]
        text.encode("utf-8")


async def test_a_call_never_waits_in_the_gateway_for_a_free_connection() -> None:
    """The shared pool held 256 connections: the 257th call waited for one, its wait counted against its deadline,
    and it was recorded as the upstream's timeout (opening a healthy deployment's breaker)."""
    b = UpstreamBehaviour(first_token_delay_s=2.0)
    with ServerThread(create_upstream_app(b), log_level="critical") as server:
        ad = OpenAIHTTPAdapter(C, [server.url])
        try:
            calls = [asyncio.create_task(ad.generate(_call())) for _ in range(300)]
            for _ in range(150):  # until every call has reached the upstream (none queued in the gateway)
                if b.running == 300:
                    break
                await asyncio.sleep(0.01)
            assert b.running == 300
            await asyncio.gather(*calls)
        finally:
            await ad.aclose()


@pytest.mark.parametrize("stream", [False, True])
async def test_a_connection_never_made_is_unavailable_not_a_timeout(stream: bool) -> None:
    """A connect timeout was an upstream timeout, and timeouts are priced for their prompt: an outage dropping
    connection attempts billed every try for a prompt no upstream ever had."""
    def never_connects(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("no answer to SYN", request=request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(never_connects))
    ad = OpenAIHTTPAdapter(C, ["http://10.0.0.9:8000"], client=client)
    try:
        with pytest.raises(UpstreamUnavailableError):
            if stream:
                await _collect(ad, _call())
            else:
                await ad.generate(_call())
    finally:
        await client.aclose()
