"""The in-process llama.cpp adapter without a model: one generation at a time on its ``Llama``, cancels included."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from sovrouter.contracts import Candidate, ModelCall
from sovrouter.errors import UpstreamTimeoutError
from sovrouter.intake import normalize_chat
from sovrouter.reliability.timeout import TimeoutAdapter
from sovrouter.speculative.local import LlamaLocalAdapter

LOCAL = Candidate(slot="local-small", deployment="edge")


class SlowLlama:
    """Stands in for ``llama_cpp.Llama``: counts generations running at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    def create_chat_completion(self, messages: Any, **kwargs: Any) -> dict[str, Any]:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(self.seconds)
        with self._lock:
            self.running -= 1
        return {"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1}}


def _call(rid: str) -> ModelCall:
    req = normalize_chat({"messages": [{"role": "user", "content": "hi"}]}, tenant="t", request_id=rid)
    return ModelCall(request=req, allowed=[LOCAL])


async def test_a_timed_out_generation_keeps_the_model_until_it_ends() -> None:
    """A timeout released the adapter's lock while the generation's thread ran on, so the next call generated on
    the same ``Llama`` at the same time (llama.cpp's context is not thread-safe)."""
    llm = SlowLlama(0.4)
    adapter = LlamaLocalAdapter(LOCAL, llm)
    timed = TimeoutAdapter(adapter, total_s=0.1)
    with pytest.raises(UpstreamTimeoutError):
        await timed.generate(_call("r1"))
    result = await adapter.generate(_call("r2"))
    assert result.text == "ok"
    assert llm.most == 1


def test_local_llama_adapter_forwards_penalties() -> None:
    seen: dict[str, Any] = {}

    class _Llm:
        def create_chat_completion(self, messages: Any, **kwargs: Any) -> dict[str, Any]:
            seen.update(kwargs)
            return {"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1}}

    LlamaLocalAdapter(LOCAL, _Llm())._run(normalize_chat(
        {"messages": [{"role": "user", "content": "hi"}], "frequency_penalty": 1.5, "presence_penalty": 0.5},
        tenant="t", request_id="r"))
    assert seen.get("frequency_penalty") == 1.5 and seen.get("presence_penalty") == 0.5


class _DraftingLlama:
    """Stands in for a ``Llama`` with a prompt-lookup draft model: sets the draft's counts as a generation would."""

    def __init__(self, draft: Any, drafted: int, accepted: int) -> None:
        self.draft, self.drafted, self.accepted = draft, drafted, accepted
        self.input_ids = [1, 2, 3, 4]
        self.n_tokens = 4

    def create_chat_completion(self, messages: Any, **kwargs: Any) -> dict[str, Any]:
        from sovrouter.speculative.lookup import DraftStats

        self.draft.stats = DraftStats(drafted=self.drafted, accepted=self.accepted, proposals=int(self.drafted > 0))
        return {"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1}}


@pytest.mark.parametrize(("drafted", "accepted", "expected"), [(10, 4, 0.4), (0, 0, None)])
def test_acceptance_is_a_ratio_only_when_something_was_drafted(drafted: int, accepted: int,
                                                               expected: float | None) -> None:
    """On with nothing proposed was recorded as an acceptance of 0.0 (every draft rejected) until 2026-11-28; it is
    now no ratio and 0 tokens drafted, as on the HTTP path."""
    from sovrouter.speculative.lookup import CountingPromptLookup

    draft = CountingPromptLookup()
    adapter = LlamaLocalAdapter(LOCAL, _DraftingLlama(draft, drafted, accepted), draft)
    result = adapter._run(_call("r").request)
    assert (result.spec_acceptance, result.spec_drafted_tokens) == (expected, drafted)
    plain = LlamaLocalAdapter(LOCAL, SlowLlama(0.0))._run(_call("p").request)
    assert (plain.spec_acceptance, plain.spec_drafted_tokens) == (None, None)  # no draft model: off
