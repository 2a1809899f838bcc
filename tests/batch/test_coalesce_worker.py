"""The coalescer's worker over a stand-in model (no weights loaded): sampling penalties and abandoned callers
(found in review, 2026-11-28)."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from typing import Any

import numpy as np

from sovrouter.batch.coalesce import CoalescingLlamaAdapter, _notify, _Seq
from sovrouter.contracts import Candidate, ModelCall, ModelResult
from sovrouter.intake import normalize_chat

LOCAL = Candidate(slot="local-small", deployment="edge")


def _req(**params: object) -> Any:
    return normalize_chat({"messages": [{"role": "user", "content": "hi"}], **params}, tenant="t", request_id="r")


def test_coalescer_applies_frequency_and_presence_penalties() -> None:
    """The HTTP path forwards the penalties to llama.cpp; the coalescer ignored them (greedy on raw logits)."""
    loop = asyncio.new_event_loop()
    try:
        seq = _Seq(request=_req(frequency_penalty=2.0), future=loop.create_future(), loop=loop, prompt=[1],
                   max_tokens=8, started=0.0, out=[1, 1, 1])
        logits = np.array([0.0, 5.0, 3.0, -1.0], dtype=np.float32)
        assert CoalescingLlamaAdapter._sample(None, seq, logits) == 2  # type: ignore[arg-type]  # 5 - 3*2 < 3
        assert logits[1] == 5.0  # llama.cpp's logits buffer is not written
    finally:
        loop.close()


class _Ctx:
    def __init__(self) -> None:
        self.removed: list[int] = []

    def kv_cache_seq_rm(self, seq_id: int, p0: int, p1: int) -> None:
        self.removed.append(seq_id)


def _fake_adapter(slots: int) -> CoalescingLlamaAdapter:
    """The real worker loop over a stand-in model: each step adds one token per sequence and takes 5 ms."""
    ad = CoalescingLlamaAdapter.__new__(CoalescingLlamaAdapter)
    ad.candidate, ad.slots, ad.ctx_per_seq, ad.default_max_tokens = LOCAL, slots, 4096, 256
    ad.timer, ad._n_batch, ad._ctx = time.perf_counter, slots * 4096, _Ctx()
    ad._queue, ad._worker, ad._lock, ad.steps, ad.batched_tokens = queue.Queue(), None, threading.Lock(), 0, 0

    def step(active: list[_Seq], joining: list[_Seq]) -> None:
        time.sleep(0.005)
        ad.steps += 1
        for seq in active + joining:
            seq.out.append(7)

    ad._step = step  # type: ignore[method-assign]
    ad._finished = lambda seq: len(seq.out) >= seq.max_tokens  # type: ignore[method-assign]
    ad._complete = lambda seq: _notify(seq, ModelResult(candidate=LOCAL, text="x" * len(seq.out)), None)  # type: ignore[method-assign]
    ad._tokenize = lambda request: [1, 2, 3]  # type: ignore[method-assign]
    return ad


async def test_an_abandoned_call_gives_its_slot_back() -> None:
    """A caller that timed out (the reliability wrapper cancels it at ``deadline_at``) kept its sequence decoding
    to max_tokens, holding the slot: the next request waited for the dead one's whole answer."""
    ad = _fake_adapter(slots=1)
    try:
        long = asyncio.create_task(ad.generate(ModelCall(request=_req(max_tokens=1000), allowed=[LOCAL])))
        queued = asyncio.create_task(ad.generate(ModelCall(request=_req(max_tokens=1000), allowed=[LOCAL])))
        await asyncio.sleep(0.05)
        long.cancel()
        queued.cancel()
        started = time.perf_counter()
        result = await asyncio.wait_for(ad.generate(ModelCall(request=_req(max_tokens=2), allowed=[LOCAL])), 30)
        assert result.text == "xx"
        assert time.perf_counter() - started < 1.0  # 1000 steps x 5 ms (x2 for the queued one) before the fix
    finally:
        ad.close()
