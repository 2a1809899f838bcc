"""FallbackAdapter: what its final error says when every candidate failed."""

from __future__ import annotations

import pytest

from sovrouter.contracts import Candidate, ModelCall
from sovrouter.errors import (
    AllCandidatesFailedError,
    AllCandidatesRejectedError,
    UpstreamError,
    UpstreamRejectedError,
    UpstreamUnavailableError,
)
from sovrouter.intake import normalize_chat
from sovrouter.reliability.fallback import FallbackAdapter
from sovrouter.testing import FailingAdapter


def _call() -> ModelCall:
    request = normalize_chat({"messages": [{"role": "user", "content": "hi"}]}, tenant="t", request_id="r")
    return ModelCall(request=request, allowed=[])


def _fallback(*errors: UpstreamError) -> FallbackAdapter:
    return FallbackAdapter([FailingAdapter(Candidate(slot=f"s{i}", deployment="d"), error=e)
                            for i, e in enumerate(errors)])


def _too_long() -> UpstreamRejectedError:
    return UpstreamRejectedError("upstream returned 400", upstream_status=400)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_request_every_model_refused_is_the_clients_400(stream: bool) -> None:
    """Every deployment refusing the request itself (a prompt past every context) was a 502, which OpenAI's clients
    retry: one request the client had to change became three times the plan's calls."""
    adapter = _fallback(_too_long(), UpstreamRejectedError("upstream returned 413", upstream_status=413))
    with pytest.raises(AllCandidatesRejectedError) as exc:
        if stream:
            async for _ in adapter.stream(_call()):
                pass
        else:
            await adapter.generate(_call())
    assert (exc.value.status, exc.value.type, exc.value.code) == (400, "invalid_request_error", "upstream_rejected")
    assert isinstance(exc.value, AllCandidatesFailedError)  # still an upstream failure to the pipeline's record


@pytest.mark.parametrize("other", [UpstreamUnavailableError("upstream returned 503"),
                                   UpstreamRejectedError("upstream returned 401", upstream_status=401)])
async def test_any_other_failure_among_them_stays_a_502(other: UpstreamError) -> None:
    """One deployment down, or one misconfigured (its 401 is not about the request): the request may be fine."""
    with pytest.raises(AllCandidatesFailedError) as exc:
        await _fallback(_too_long(), other).generate(_call())
    assert not isinstance(exc.value, AllCandidatesRejectedError) and exc.value.status == 502
