"""The coalescing adapter's worker side without a model: handing outcomes back to callers."""

from __future__ import annotations

import asyncio

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
