"""The engines' own running batch, read from their /metrics into the in-flight board."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from sovrouter.adapters.engine_load import (
    EngineLoadPoller,
    EngineProbe,
    EngineReports,
    held_requests,
    metrics_url,
    running_requests,
)
from sovrouter.adapters.inflight import InFlightBoard
from sovrouter.contracts import Candidate
from sovrouter.gateway.server import ServerThread
from sovrouter.testing_upstream import UpstreamBehaviour, closed_port_url, create_upstream_app

TARGET = Candidate(slot="sovereign-large", deployment="eu-sov")

VLLM = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 7.0
vllm:num_requests_running{engine="1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 5.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 40.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.001",model_name="m"} 0.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="m"} 3.0
vllm:time_to_first_token_seconds_count{model_name="m"} 3.0
vllm:time_to_first_token_seconds_sum{model_name="m"} 0.42
"""
SGLANG = """\
# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="Qwen/Qwen2.5-7B-Instruct"} 3.0
# HELP sglang:token_usage The token usage
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="Qwen/Qwen2.5-7B-Instruct"} 0.28
"""
LLAMACPP = """\
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 2
# HELP llamacpp:requests_deferred Number of requests deferred.
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 9
"""


@pytest.mark.parametrize("text,expected", [
    (VLLM, 12),  # summed over the engine's samples; waiting requests are not running
    (SGLANG, 3),
    (LLAMACPP, 2),
    ("# HELP up x\n# TYPE up gauge\nup 1\n", None),  # no known gauge: no report
    ("", None),
    ("vllm:num_requests_running{model_name= 3\n", None),  # unreadable
    ("vllm:num_requests_running NaN\n", None),
    ("vllm:num_requests_running -1\n", None),
    ("\x00\xff garbage {{{", None),
])
def test_running_requests_reads_each_engines_gauge(text: str, expected: int | None) -> None:
    assert running_requests(text) == expected


@pytest.mark.parametrize("text,expected", [
    (VLLM, 52),  # running 12 and waiting 40 (a waiting request means the batch is full)
    (SGLANG, 3),  # no waiting gauge published: none waiting
    (SGLANG + "sglang:num_queue_reqs 6\n", 9),
    (LLAMACPP, 11),
    ("vllm:num_requests_waiting 3\n", None),  # waiting alone says nothing of the engine's batch
    ("vllm:num_requests_running 2\nvllm:num_requests_waiting NaN\n", None),
    ("vllm:num_requests_running 2\nvllm:num_requests_waiting -4\n", None),
    ("llamacpp:requests_processing 1\nvllm:num_requests_waiting 7\n", 1),  # another engine's gauge is not paired
])
def test_held_requests_adds_the_engines_waiting_requests(text: str, expected: int | None) -> None:
    assert held_requests(text) == expected


def test_only_the_known_gauges_lines_are_parsed_in_a_long_exposition() -> None:
    families = [f"# HELP vllm:h{i}_seconds x\n# TYPE vllm:h{i}_seconds histogram\n"
                + "".join(f'vllm:h{i}_seconds_bucket{{le="{b}",model_name="m"}} {b}.0\n' for b in range(30))
                for i in range(20)]
    text = "".join(families[:10]) + VLLM + "".join(families[10:]) + "vllm:num_requests_running_extra 99\n"
    assert running_requests(text) == 12


@pytest.mark.parametrize("base,path,expected", [
    ("http://10.0.0.5:8000/v1", None, "http://10.0.0.5:8000/metrics"),
    ("http://10.0.0.5:8000/v1/", None, "http://10.0.0.5:8000/metrics"),
    ("http://10.0.0.5:8000", None, "http://10.0.0.5:8000/metrics"),
    ("https://gw.example/engine-a/v1?x=1", None, "https://gw.example/engine-a/metrics"),
    ("http://10.0.0.5:8000/v1", "/prom", "http://10.0.0.5:8000/prom"),
])
def test_metrics_url(base: str, path: str | None, expected: str) -> None:
    assert metrics_url(base, path) == expected


def test_the_board_carries_the_engines_report_forward_with_its_own_calls() -> None:
    board = InFlightBoard()
    board.enter(TARGET)
    assert board.count(TARGET) == 1
    board.report(TARGET, 5)  # our call and 4 of other gateways or clients
    assert (board.count(TARGET), board.local(TARGET), board.snapshot(), board.reported()) == (5, 1, {TARGET: 1},
                                                                                              {TARGET: 5})
    board.enter(TARGET)
    board.enter(TARGET)
    assert board.count(TARGET) == 7  # two more since the report: the engines run them too
    for _ in range(3):
        board.leave(TARGET)
    assert board.count(TARGET) == 4  # ours ended; the others' 4 are still assumed until the next report
    board.report(TARGET, 0)
    board.enter(TARGET)
    assert board.count(TARGET) == 1
    board.report(TARGET, 0)  # a report that has not seen our running call yet: our own count stands
    assert board.count(TARGET) == 1
    board.report(TARGET, None)
    board.leave(TARGET)
    assert (board.count(TARGET), board.reported()) == (0, {})


def _poll(poller: EngineLoadPoller) -> None:
    async def go() -> None:
        async with httpx.AsyncClient() as client:
            poller.client = client
            await poller.poll_once()
    asyncio.run(go())


def test_poller_sums_the_replicas_that_answer_and_clears_when_none_does() -> None:
    a = UpstreamBehaviour(engine_metrics="vllm", other_running=4)
    b = UpstreamBehaviour(engine_metrics="sglang", other_running=2)
    with ServerThread(create_upstream_app(a)) as ua, ServerThread(create_upstream_app(b)) as ub:
        board = InFlightBoard()
        down = closed_port_url()
        urls = (metrics_url(ua.url + "/v1"), metrics_url(ub.url + "/v1"), metrics_url(down + "/v1"))
        poller = EngineLoadPoller(board, {TARGET: EngineProbe(urls, timeout_s=2.0)}, httpx.AsyncClient())
        _poll(poller)
        assert board.count(TARGET) == 6  # 4 + 2; the replica that is down says nothing
        assert poller.stats["failed"] == 1
        a.engine_metrics = None  # /metrics answers 404 (llama.cpp's server without --metrics)
        b.other_running = 0
        _poll(poller)
        assert board.reported() == {TARGET: 0}
        b.engine_metrics = None
        board.enter(TARGET)
        _poll(poller)
        assert board.reported() == {} and board.count(TARGET) == 1  # nobody answers: this instance's own count
        a.engine_metrics = "vllm"
        _poll(poller)
        assert board.reported() == {TARGET: 4}
        poller.max_bytes = 64  # an answer larger than the bound is not read on
        _poll(poller)
        assert board.reported() == {}


def test_each_replicas_count_goes_to_its_deployments_stream_and_is_withdrawn_at_close() -> None:
    a = UpstreamBehaviour(engine_metrics="vllm", other_running=2, other_waiting=5)
    b = UpstreamBehaviour(engine_metrics="llamacpp", other_running=1)
    with ServerThread(create_upstream_app(a)) as ua, ServerThread(create_upstream_app(b)) as ub:
        down = closed_port_url()
        bases = (ua.url + "/v1", ub.url + "/v1", down + "/v1")
        probe = EngineProbe(tuple(metrics_url(u) for u in bases), timeout_s=2.0, replicas=bases)
        reports = EngineReports()
        seen: list[tuple[str, int | None]] = []
        reports.subscribe(TARGET.key, lambda replica, held: seen.append((replica, held)))
        reports.subscribe("frontier/us", lambda replica, held: seen.append(("wrong stream", held)))
        poller = EngineLoadPoller(None, {TARGET: probe}, httpx.AsyncClient(), reports=reports)  # no board: fine
        _poll(poller)
        assert seen == [(bases[0], 7), (bases[1], 1), (bases[2], None)]  # held = running + waiting, by base URL
        seen.clear()
        asyncio.run(poller.aclose())
        assert seen == [(u, None) for u in bases]
    with pytest.raises(ValueError, match="pair"):
        EngineProbe(("http://a/metrics",), replicas=("http://a", "http://b"))


def test_the_engine_counts_requests_while_it_answers_them() -> None:
    # the test upstream's gauge is its real count of requests in progress (a stream until its body ends)
    up = UpstreamBehaviour(engine_metrics="llamacpp", chunks=3, chunk_delay_s=0.3)
    with ServerThread(create_upstream_app(up)) as server:
        board = InFlightBoard()
        poller = EngineLoadPoller(board, {TARGET: EngineProbe((metrics_url(server.url),), timeout_s=2.0)},
                                  httpx.AsyncClient())

        async def go() -> list[int]:
            seen = []
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                poller.client = client
                body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
                async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                    await poller.poll_once()
                    seen.append(board.count(TARGET))
                    async for _ in response.aiter_bytes():
                        pass
                await poller.poll_once()
                seen.append(board.count(TARGET))
            return seen

        assert asyncio.run(go()) == [1, 0]


def test_the_poller_runs_in_the_loop_and_clears_its_reports_when_closed() -> None:
    up = UpstreamBehaviour(engine_metrics="vllm", other_running=3)
    with ServerThread(create_upstream_app(up)) as server:
        board = InFlightBoard()

        async def go() -> tuple[int, int, int]:
            async with httpx.AsyncClient() as client:
                probe = EngineProbe((metrics_url(server.url),), interval_s=0.05, timeout_s=2.0)
                poller = EngineLoadPoller(board, {TARGET: probe}, client)
                await poller.start()
                await poller.start()  # idempotent: one task per deployment
                for _ in range(200):
                    await asyncio.sleep(0.02)
                    if poller.stats["rounds"] >= 2:
                        break
                first = board.count(TARGET)
                up.other_running = 9
                rounds = poller.stats["rounds"]
                while poller.stats["rounds"] < rounds + 2:
                    await asyncio.sleep(0.02)
                second = board.count(TARGET)
                await poller.aclose()
                return first, second, board.count(TARGET)

        assert asyncio.run(go()) == (3, 9, 0)


def test_a_polling_task_that_dies_leaves_no_report_behind() -> None:
    up = UpstreamBehaviour(engine_metrics="vllm", other_running=3)
    with ServerThread(create_upstream_app(up)) as server:
        board = InFlightBoard()

        async def go() -> tuple[int, int]:
            client = httpx.AsyncClient()
            probe = EngineProbe((metrics_url(server.url),), interval_s=0.05, timeout_s=2.0)
            poller = EngineLoadPoller(board, {TARGET: probe}, client)
            await poller.start()
            while poller.stats["rounds"] < 1:
                await asyncio.sleep(0.02)
            seen = board.count(TARGET)
            await client.aclose()  # the next scrape raises outside httpx.HTTPError (a closed client)
            for _ in range(100):
                await asyncio.sleep(0.02)
                if all(t.done() for t in poller._tasks):
                    break
            after = board.count(TARGET)  # before aclose, which clears the reports anyway
            await poller.aclose()
            return seen, after

        assert asyncio.run(go()) == (3, 0)


def test_an_engine_that_answers_but_cannot_be_read_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    """A misconfigured engine_load (an engine without metrics, a wrong path) was silent: the gauge stayed empty
    with nothing above debug level (review, 2026-11-28). Now one warning per URL, without credentials; a replica
    that is down (a blip) stays at debug level."""
    a = UpstreamBehaviour(engine_metrics=None)  # /metrics answers 404
    with ServerThread(create_upstream_app(a)) as ua:
        url = metrics_url(ua.url.replace("http://", "http://user:secret@") + "/v1")
        down = metrics_url(closed_port_url() + "/v1")
        poller = EngineLoadPoller(InFlightBoard(), {TARGET: EngineProbe((url, down), timeout_s=2.0)},
                                  httpx.AsyncClient())
        with caplog.at_level(logging.WARNING, logger="sovrouter.adapters.engine_load"):
            _poll(poller)
            _poll(poller)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "HTTP 404" in warnings[0] and "/metrics" in warnings[0]
    assert "secret" not in caplog.text and "user" not in warnings[0]
