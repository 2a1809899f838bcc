"""The policy guard on its own (it was only exercised through the randomised property test): a call to a
deployment outside the request's allowed set never reaches the adapter, on either path, and leaves its attempt."""

from __future__ import annotations

import pytest

from sovrouter.contracts import Candidate, ModelCall
from sovrouter.errors import PolicyGuardError
from sovrouter.intake import normalize_chat
from sovrouter.reliability.guard import PolicyGuard
from sovrouter.testing import FakeAdapter

US = Candidate(slot="frontier", deployment="us")
EU = Candidate(slot="frontier", deployment="eu")  # same slot, another deployment: the guard compares both


def _call(allowed: list[Candidate]) -> ModelCall:
    req = normalize_chat({"messages": [{"role": "user", "content": "hi"}]}, tenant="t", request_id="r")
    return ModelCall(request=req, allowed=allowed, purpose="fallback")


@pytest.mark.parametrize("stream", [False, True])
async def test_a_call_outside_the_allowed_set_never_reaches_the_adapter(stream: bool) -> None:
    inner = FakeAdapter(US)
    guard = PolicyGuard(inner)
    call = _call([EU])
    with pytest.raises(PolicyGuardError):
        if stream:
            [c async for c in guard.stream(call)]
        else:
            await guard.generate(call)
    assert inner.calls == 0
    [attempt] = call.attempts
    assert (attempt.candidate, attempt.outcome, attempt.purpose) == (US, "guard_refused", "fallback")


@pytest.mark.parametrize("stream", [False, True])
async def test_an_allowed_call_goes_through_unchanged(stream: bool) -> None:
    inner = FakeAdapter(US, text="answer")
    guard = PolicyGuard(inner)
    call = _call([EU, US])
    text = "".join([c.delta async for c in guard.stream(call)]) if stream else (await guard.generate(call)).text
    assert text == "answer" and inner.calls == 1 and call.attempts == []
    assert guard.target == US
