"""Calls in flight per deployment: counted while they run, released however they end."""

from __future__ import annotations

import asyncio

import pytest

from sovrouter.adapters.inflight import InFlightAdapter, InFlightBoard
from sovrouter.contracts import Candidate, ModelCall
from sovrouter.errors import UpstreamError
from sovrouter.intake import normalize_chat
from sovrouter.testing import FailingAdapter, FakeAdapter, MidStreamFailingAdapter

A = Candidate(slot="sovereign-large", deployment="eu")
B = Candidate(slot="sovereign-large", deployment="onprem")


def _call() -> ModelCall:
    return ModelCall(request=normalize_chat({"messages": [{"role": "user", "content": "hi"}]}, tenant="t",
                                            request_id="r"), allowed=[A, B])


def test_board_counts_per_deployment() -> None:
    board = InFlightBoard()
    board.enter(A)
    board.enter(A)
    board.enter(B)
    assert (board.count(A), board.count(B)) == (2, 1)
    board.leave(A)
    board.leave(B)
    board.leave(B)  # never below zero
    assert (board.count(A), board.count(B)) == (1, 0)


async def test_generate_counts_while_running_and_releases_after() -> None:
    board = InFlightBoard()
    slow = InFlightAdapter(FakeAdapter(A, delay_s=0.05), board)
    other = InFlightAdapter(FakeAdapter(B), board)
    assert slow.target == A
    tasks = [asyncio.create_task(slow.generate(_call())) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert (board.count(A), board.count(B)) == (3, 0)
    await other.generate(_call())
    await asyncio.gather(*tasks)
    assert (board.count(A), board.count(B)) == (0, 0)


async def test_failures_and_abandoned_streams_release_the_count() -> None:
    board = InFlightBoard()
    with pytest.raises(UpstreamError):
        await InFlightAdapter(FailingAdapter(A), board).generate(_call())
    with pytest.raises(UpstreamError):
        _ = [c async for c in InFlightAdapter(MidStreamFailingAdapter(A), board).stream(_call())]
    assert board.count(A) == 0
    stream = InFlightAdapter(FakeAdapter(A, text="a long answer", chunks=4), board).stream(_call())
    first = await stream.__anext__()
    assert first.delta and board.count(A) == 1  # held while the stream is open
    await stream.aclose()  # the client went away
    assert board.count(A) == 0
