from __future__ import annotations

import asyncio

import pytest

from sovrouter.catalog import Deployment, Latency, Speculative
from sovrouter.contracts import Candidate, ModelCall
from sovrouter.errors import ConfigError, UpstreamError
from sovrouter.intake import normalize_chat
from sovrouter.speculative.switch import SpeculativeSwitchAdapter, prompt_lookup_server_args
from sovrouter.testing import FailingAdapter, FakeAdapter

LOCAL = Candidate(slot="local-small", deployment="edge")
CODE = "```python\n" + "\n".join(f"def g{i}(v):\n    return v + {i}\n" for i in range(10)) + "```"


def _call(text: str) -> ModelCall:
    return ModelCall(request=normalize_chat({"messages": [{"role": "user", "content": text}]}, tenant="t",
                                            request_id="r"), allowed=[LOCAL])


async def test_switch_sends_copy_heavy_requests_to_the_lookup_path() -> None:
    plain, lookup = FakeAdapter(LOCAL, text="plain"), FakeAdapter(LOCAL, text="lookup")
    switch = SpeculativeSwitchAdapter(plain, lookup)
    assert switch.target == LOCAL
    assert (await switch.generate(_call(f"Rename g1 to h1 and return the full code:\n{CODE}"))).text == "lookup"
    assert (await switch.generate(_call("Why do cats purr?"))).text == "plain"
    chunks = [c async for c in switch.stream(_call(f"Refactor this code:\n{CODE}"))]
    assert chunks[-1].final is not None and chunks[-1].final.text == "lookup"
    assert (plain.calls, lookup.calls) == (1, 2) and (switch.used_plain, switch.used_lookup) == (1, 2)


def test_both_paths_must_serve_the_same_deployment() -> None:
    with pytest.raises(ConfigError):
        SpeculativeSwitchAdapter(FakeAdapter(LOCAL), FakeAdapter(Candidate(slot="frontier", deployment="us")))


def test_server_args_name_the_prompt_lookup_draft() -> None:
    assert prompt_lookup_server_args(5) == ["--draft_model", "prompt-lookup-decoding",
                                            "--draft_model_num_pred_tokens", "5"]


def dep(expected: float, max_batch: int | None = None) -> Deployment:
    return Deployment(id="edge", region="x", compute="cpu", latency=Latency(ttft_ms=1, tokens_per_s=10),
                      speculative=Speculative(kind="prompt-lookup", expected_speedup=expected, base_speedup=0.4,
                                              max_batch=max_batch))


async def test_a_deployment_declared_slower_with_lookup_never_turns_it_on() -> None:
    copy = _call(f"Rename g1 to h1 and return the full code:\n{CODE}")
    losing = SpeculativeSwitchAdapter(FakeAdapter(LOCAL, text="plain"), FakeAdapter(LOCAL, text="lookup"),
                                      deployment=dep(0.9))
    assert (await losing.generate(copy)).text == "plain"
    winning = SpeculativeSwitchAdapter(FakeAdapter(LOCAL, text="plain"), FakeAdapter(LOCAL, text="lookup"),
                                       deployment=dep(2.0))
    assert (await winning.generate(copy)).text == "lookup"
    assert (await winning.generate(_call("Why do cats purr?"))).text == "plain"


async def test_requests_beyond_the_declared_batch_decode_plainly() -> None:
    plain, lookup = FakeAdapter(LOCAL, text="plain", delay_s=0.05), FakeAdapter(LOCAL, text="lookup", delay_s=0.05)
    switch = SpeculativeSwitchAdapter(plain, lookup, deployment=dep(3.0, max_batch=2))
    copy = _call(f"Rename g1 to h1 and return the full code:\n{CODE}")
    texts = [r.text for r in await asyncio.gather(*(switch.generate(copy) for _ in range(5)))]
    assert texts == ["lookup", "lookup", "plain", "plain", "plain"]  # 2 in flight: the rest decode plainly
    assert switch.in_flight == 0
    assert (await switch.generate(copy)).text == "lookup"  # load gone: speculation back on

    async def streamed() -> str:
        chunks = [c async for c in switch.stream(copy)]
        final = chunks[-1].final
        assert final is not None
        return final.text

    assert await asyncio.gather(streamed(), streamed(), streamed()) == ["lookup", "lookup", "plain"]
    assert switch.in_flight == 0


async def test_a_failed_call_leaves_the_in_flight_count() -> None:
    switch = SpeculativeSwitchAdapter(FakeAdapter(LOCAL, text="plain"), FailingAdapter(LOCAL),
                                      deployment=dep(3.0, max_batch=1))
    copy = _call(f"Rename g1 to h1 and return the full code:\n{CODE}")
    for _ in range(3):
        with pytest.raises(UpstreamError):
            await switch.generate(copy)
        with pytest.raises(UpstreamError):
            _ = [c async for c in switch.stream(copy)]
    assert switch.in_flight == 0 and switch.used_lookup == 6
