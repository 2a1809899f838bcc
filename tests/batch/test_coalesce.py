"""The coalescing adapter's worker side without a model: handing outcomes back to callers."""

from __future__ import annotations

import asyncio

import pytest

from sovrouter.batch.coalesce import _notify, _Seq
from sovrouter.contracts import Candidate, ModelResult
from sovrouter.intake import normalize_chat


def test_a_caller_whose_loop_closed_does_not_take_the_worker_down() -> None:
    """``call_soon_threadsafe`` on a closed loop raises RuntimeError; in the worker thread that killed the worker
    and left every other caller's sequence unanswered."""
    loop = asyncio.new_event_loop()
    seq = _Seq(request=normalize_chat({"messages": [{"role": "user", "content": "hi"}]}, tenant="t",
                                      request_id="r"),
               future=loop.create_future(), loop=loop, prompt=[1], max_tokens=1, started=0.0)
    loop.close()
    _notify(seq, ModelResult(candidate=Candidate(slot="local-small", deployment="edge"), text="x"), None)
    _notify(seq, None, RuntimeError("failed"))


def _seq(loop: asyncio.AbstractEventLoop, **params: object) -> _Seq:
    req = normalize_chat({"messages": [{"role": "user", "content": "hi"}], **params}, tenant="t", request_id="r")
    return _Seq(request=req, future=loop.create_future(), loop=loop, prompt=[1], max_tokens=1, started=0.0)


def test_a_negative_seed_is_no_seed_and_a_tiny_temperature_samples_greedily() -> None:
    """seed=-1 (llama.cpp's "random") raised numpy's ValueError, not an upstream error; a temperature of 1e-310
    overflowed the scaled logits into NaN probabilities, and the ValueError from sampling killed the worker."""
    import numpy as np

    from sovrouter.batch.coalesce import CoalescingLlamaAdapter, _rng

    assert isinstance(_rng(-1), np.random.Generator) and isinstance(_rng(None), np.random.Generator)
    assert _rng(7).integers(1000) == np.random.default_rng(7).integers(1000)
    loop = asyncio.new_event_loop()
    try:
        seq = _seq(loop, temperature=1e-310, seed=3)
        seq.rng = _rng(3)
        logits = np.array([0.1, 2.5, -1.0, 2.4], dtype=np.float32)
        assert CoalescingLlamaAdapter._sample(None, seq, logits) == 1  # type: ignore[arg-type]
    finally:
        loop.close()


class _Ctx:
    """Stands in for the llama context: records the cells freed, or fails like a broken one."""

    def __init__(self, broken: bool) -> None:
        self.broken = broken
        self.removed: list[int] = []

    def kv_cache_seq_rm(self, seq_id: int, p0: int, p1: int) -> None:
        if self.broken:
            raise OSError("llama context unusable")
        self.removed.append(seq_id)


@pytest.mark.parametrize("broken", [False, True])
def test_the_worker_fails_what_it_holds_when_it_stops(broken: bool) -> None:
    """However the worker ends, every sequence it held is answered with an error and its cells freed: a caller
    must never wait forever on a dead thread, even when freeing the cells of a broken context raises too (the
    callers were failed after the cells, so they waited forever)."""
    import queue

    from sovrouter.batch.coalesce import CoalescingLlamaAdapter
    from sovrouter.errors import UpstreamUnavailableError

    adapter = CoalescingLlamaAdapter.__new__(CoalescingLlamaAdapter)
    adapter.candidate = Candidate(slot="local-small", deployment="edge")
    adapter._ctx = ctx = _Ctx(broken)
    adapter._queue = queue.Queue()
    loop = asyncio.new_event_loop()
    held, queued = _seq(loop), _seq(loop)
    held.seq_id = 2

    def dies(active: list[_Seq], pending: list[_Seq]) -> None:
        active.append(held)
        adapter._queue.put(queued)
        raise MemoryError("simulated")

    adapter._serve = dies  # type: ignore[method-assign]
    try:
        with pytest.raises(OSError if broken else MemoryError):
            adapter._loop()
        loop.run_until_complete(asyncio.sleep(0))
        for seq in (held, queued):
            assert isinstance(seq.future.exception(), UpstreamUnavailableError)
        assert ctx.removed == ([] if broken else [2])
    finally:
        loop.close()
