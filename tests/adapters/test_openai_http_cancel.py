"""A call the gateway stops waiting for (a batch cancelled, a shutdown) is not the replica's failure; a call past
the timeout wrapper's deadline is."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from sovrouter.adapters.openai_http import OpenAIHTTPAdapter
from sovrouter.adapters.replicas import HealthAwareChooser
from sovrouter.clock import WallClock
from sovrouter.contracts import Candidate, ModelCall, NormalizedRequest
from sovrouter.errors import UpstreamTimeoutError
from sovrouter.intake import normalize_chat
from sovrouter.reliability.timeout import TimeoutAdapter
from sovrouter.reuse.affinity_events import AffinityEvent, MemoryAffinityBus
from sovrouter.reuse.prefix_chooser import PrefixAffinityChooser

CAND = Candidate(slot="open", deployment="vllm")
URLS = ["http://r0:8000/v1", "http://r1:8000/v1"]


def _requests(n: int) -> list[NormalizedRequest]:
    system = "You answer questions about the shipping manual. " * 60
    return [normalize_chat({"messages": [{"role": "system", "content": system}, {"role": "user", "content": f"q{i}"}]},
                           tenant="t", request_id=f"r{i}") for i in range(n)]


def _setup() -> tuple[OpenAIHTTPAdapter, HealthAwareChooser, PrefixAffinityChooser, list[AffinityEvent]]:
    async def never(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(60)  # a healthy replica still generating
        return httpx.Response(200, json={"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}]})

    clock = WallClock()
    hub = MemoryAffinityBus("hub")
    seen: list[AffinityEvent] = []
    hub.view("peer").subscribe(CAND.key, seen.append)
    inner = PrefixAffinityChooser(clock, events=hub.view("me"), stream=CAND.key)
    chooser = HealthAwareChooser(inner, clock, consecutive_failures=3, cooldown_s=10)
    client = httpx.AsyncClient(transport=httpx.MockTransport(never))
    return OpenAIHTTPAdapter(CAND, URLS, client=client, chooser=chooser), chooser, inner, seen


async def test_cancelled_calls_eject_nothing_and_forget_nothing() -> None:
    """Cancelling six calls in flight ejected both healthy replicas and forgot the prefixes they had cached,
    here and (through the done events) on every other gateway instance."""
    adapter, chooser, inner, seen = _setup()
    reqs = _requests(6)
    tasks = [asyncio.create_task(adapter.generate(ModelCall(request=r, allowed=[CAND]))) for r in reqs]
    await asyncio.sleep(0.05)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await adapter.client.aclose()
    assert not any(chooser.ejected(u) for u in URLS)
    blocks = inner._blocks(reqs[0])[0]
    assert max(inner._router._model(u).cache.leading_run(blocks) for u in URLS) > 0
    done = [e for e in seen if e.kind == "done"]
    assert len(done) == 6 and all(e.blocks == () for e in done)


@pytest.mark.parametrize("stream", [False, True])
async def test_calls_past_the_deadline_still_count_against_the_replica(stream: bool) -> None:
    adapter, chooser, _, _ = _setup()
    timed = TimeoutAdapter(adapter, total_s=0.05, first_token_s=0.05)
    for r in _requests(6):
        with pytest.raises(UpstreamTimeoutError):
            if stream:
                async for _ in timed.stream(ModelCall(request=r, allowed=[CAND])):
                    pass
            else:
                await timed.generate(ModelCall(request=r, allowed=[CAND]))
    await adapter.client.aclose()
    assert any(chooser.ejected(u) for u in URLS)  # three timeouts in a row on a replica eject it
