"""The gateway's replica chooser: prefix blocks of real requests, the ReplicaChooser protocol, the HTTP path."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from sovrouter.adapters.engine_load import EngineReports
from sovrouter.adapters.openai_http import OpenAIHTTPAdapter
from sovrouter.adapters.replicas import ReplicaChooser
from sovrouter.clock import SimClock
from sovrouter.config import ReplicaAffinity, Upstream
from sovrouter.contracts import Candidate, ContentPart, Message, ModelCall, NormalizedRequest
from sovrouter.intake import normalize_chat
from sovrouter.reuse.prefix import AffinitySettings, BlockShape, PrefixAffinityRouter
from sovrouter.reuse.prefix_chooser import (
    PrefixAffinityChooser,
    prefix_affinity_factory,
    prompt_blocks,
    settings_from_config,
)

S = AffinitySettings(capacity_blocks=100, prefill_rate=1000.0, decode_rate=100.0, block_tokens=100)


def test_the_chooser_reads_each_replicas_report_on_its_own_stream() -> None:
    reports = EngineReports()
    chooser = PrefixAffinityChooser(SimClock(), S, engine=reports, stream="sovereign-large/eu-sov")
    req = normalize_chat({"messages": [{"role": "user", "content": "hello there"}]}, tenant="acme", request_id="r1")
    replicas = ["http://r0", "http://r1"]
    assert chooser.choose(req, replicas) == 0
    reports.publish("frontier/us", "http://r0", 50)  # another deployment's stream: not this chooser's
    assert chooser.choose(req, replicas) == 0
    reports.publish("sovereign-large/eu-sov", "http://r0", 50)
    assert chooser.choose(req, replicas) == 1
    reports.publish("sovereign-large/eu-sov", "http://r0", None)
    assert chooser.choose(req, replicas) == 0


def _req(rid: str, texts: list[str], tenant: str = "t1") -> NormalizedRequest:
    msgs = tuple(Message(role="user" if i % 2 == 0 else "assistant", parts=(ContentPart(modality="text", text=t),))
                 for i, t in enumerate(texts))
    return NormalizedRequest(request_id=rid, tenant=tenant, messages=msgs)


def test_prompt_blocks_are_chained_and_tenant_salted() -> None:
    long_turn = " ".join(f"w{i}" for i in range(200))
    a, na, sa = prompt_blocks(_req("1", [long_turn]), block_words=64)
    b, nb, sb = prompt_blocks(_req("2", [long_turn, "reply", "next question"]), block_words=64)
    assert len(a) == 4 and nb > na
    # Blocks end at message boundaries: the next turn starts with every block of this one, the short last too.
    assert b[:4] == a and len(b) == 6
    assert sa.sizes == (85, 85, 85, 12) and sb.sizes[:4] == sa.sizes and na == sum(sa.sizes)  # 201 words
    assert sa.answer is None and sb.answer == (4, 5)  # the assistant's reply, followed by a question
    c, _, _ = prompt_blocks(_req("3", [long_turn], tenant="t2"), block_words=64)
    assert not set(a) & set(c)
    d, _, _ = prompt_blocks(_req("4", [long_turn, "other reply", "next question"]), block_words=64)
    assert d[:4] == a and d[4:] != b[4:]  # a block covers every word before it


def test_a_follow_up_counts_its_conversation_and_the_answer_as_cached_where_it_was_served() -> None:
    clock = SimClock(1000.0)
    chooser = PrefixAffinityChooser(clock)
    doc = " ".join(f"d{i}" for i in range(400))
    first = _req("1", [doc])
    chooser.observe_start(first, ["r0", "r1"], 1)
    clock.set(5000.0)
    chooser.observe_done(first, ["r0", "r1"], 1, ok=True, latency_ms=4000.0)
    answer = " ".join(f"a{i}" for i in range(150))  # a long answer: generated on r1, so cached there
    follow = _req("2", [doc, answer, "and what about the second point?"])
    blocks, tokens, shape = chooser._blocks(follow)
    r0, r1 = chooser._router.estimate(blocks, tokens, 5.0, ["r0", "r1"], shape)
    assert r0.hit_tokens == 0
    assert tokens - r1.hit_tokens == shape.sizes[-1] == (7 * 4) // 3  # only the new question is uncached
    # An assistant message that is not the latest (or a client's own text in its place) is not assumed cached.
    other = _req("3", [doc, "an answer r1 never generated", "q", "a", "q2"])
    blocks, tokens, shape = chooser._blocks(other)
    assert chooser._router.estimate(blocks, tokens, 5.0, ["r1"], shape)[0].hit_tokens == sum(shape.sizes[:7])


def test_short_blocks_fill_the_cache_model_by_their_size() -> None:
    settings = AffinitySettings(capacity_blocks=4, block_tokens=100)
    router = PrefixAffinityRouter(settings)
    shape = BlockShape((50,) * 8, 100)  # eight half blocks: four blocks' worth
    router.assign(1, list(range(8)), 400, 0.0, "r", shape=shape)
    assert router.estimate(list(range(8)), 400, 1.0, ["r"], shape)[0].hit_tokens == 400
    router.assign(2, [100, 101], 200, 1.0, "r", shape=BlockShape((100, 100), 100))  # two full blocks in
    # Six blocks' worth against a capacity of four: the four oldest half blocks go, two blocks' worth, no more.
    assert router.estimate(list(range(8)), 400, 2.0, ["r"], shape)[0].hit_tokens == 0
    assert router.estimate([3], 50, 2.0, ["r"], BlockShape((50,), 100))[0].hit_tokens == 0
    assert router.estimate([4, 5, 6, 7], 200, 2.0, ["r"], BlockShape((50,) * 4, 100))[0].hit_tokens == 200
    assert router.estimate([100, 101], 200, 2.0, ["r"], BlockShape((100, 100), 100))[0].hit_tokens == 200


def test_chooser_through_the_replica_chooser_protocol() -> None:
    clock = SimClock()
    chooser: ReplicaChooser = PrefixAffinityChooser(clock)
    assert isinstance(chooser, ReplicaChooser)
    urls = ["http://r0", "http://r1", "http://r2", "http://r3"]
    history = " ".join(f"tok{i}" for i in range(3000))
    placed: dict[str, int] = {}
    for conv in range(4):
        req = _req(f"c{conv}", [f"conversation {conv} " + history])
        i = chooser.choose(req, urls)
        chooser.observe_start(req, urls, i)
        clock.set(clock.now_ms() + 10)
        chooser.observe_done(req, urls, i, True, 10.0)
        placed[f"c{conv}"] = i
    assert len(set(placed.values())) == 4  # four new conversations on four idle replicas
    clock.set(clock.now_ms() + 5000)
    for conv in range(4):  # follow-up turns return to the replica holding their history
        follow = _req(f"c{conv}-2", [f"conversation {conv} " + history, "answer", "and then?"])
        assert chooser.choose(follow, urls) == placed[f"c{conv}"]


def test_chooser_tracks_outstanding_calls_and_ignores_unknown_done() -> None:
    clock = SimClock()
    chooser = PrefixAffinityChooser(clock)
    urls = ["http://r0", "http://r1"]
    big = _req("big", [" ".join(f"x{i}" for i in range(60_000))])
    chooser.observe_start(big, urls, 0)  # a long prefill now occupies r0
    small = _req("s", ["hello there"])
    assert chooser.choose(small, urls) == 1
    chooser.observe_done(small, urls, 1, True, 1.0)  # never started: ignored
    chooser.observe_done(big, urls, 0, True, 5.0)
    clock.set(100_000)
    follow = _req("big-2", [" ".join(f"x{i}" for i in range(60_000)), "ok", "more"])
    assert chooser.choose(follow, urls) == 0  # r0 is free again and holds the 60k-word prefix


def test_a_failed_call_is_not_counted_as_cached_on_its_replica() -> None:
    clock = SimClock()
    chooser = PrefixAffinityChooser(clock)
    urls = ["http://r0", "http://r1"]
    doc = " ".join(f"y{i}" for i in range(3000))
    first = _req("a", [doc])
    chooser.observe_start(first, urls, 0)
    clock.set(1_000)
    chooser.observe_done(first, urls, 0, True, 1.0)
    clock.set(2_000)
    assert chooser.choose(_req("a2", [doc, "ok", "more"]), urls) == 0  # r0 holds the document
    second = _req("b", [doc, "ok", "again"])
    chooser.observe_start(second, urls, 0)
    clock.set(3_000)
    chooser.observe_done(second, urls, 0, False, 1.0)  # r0 failed: it may have lost its cache
    clock.set(4_000)
    assert chooser.choose(_req("b2", [doc, "ok", "once more"]), urls) == 1  # nothing cached to go back for


async def test_http_adapter_sends_follow_up_turns_to_the_replica_holding_the_conversation() -> None:
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return httpx.Response(200, json={
            "choices": [{"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 1}})

    cand = Candidate(slot="s", deployment="d")
    clock = SimClock()
    urls = ["http://r0.test/v1", "http://r1.test/v1", "http://r2.test/v1"]
    factory = prefix_affinity_factory(clock)
    chooser = factory(cand, Upstream(base_urls=urls))
    assert chooser is not factory(cand, Upstream(base_urls=urls))  # one state per deployment
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        ad = OpenAIHTTPAdapter(cand, urls, client=client, chooser=chooser)
        docs = {c: " ".join(f"{c}{i}" for i in range(2000)) for c in ("a", "b", "c")}
        for n, doc in enumerate(docs.values()):
            req = normalize_chat({"messages": [{"role": "user", "content": doc}]}, tenant="t", request_id=f"{n}")
            await ad.generate(ModelCall(request=req, allowed=[cand]))
            clock.set(clock.now_ms() + 50)
        first = dict(zip(docs, hosts, strict=True))
        assert len(set(first.values())) == 3
        clock.set(clock.now_ms() + 10_000)
        for n, (c, doc) in enumerate(reversed(list(docs.items()))):
            msgs = [{"role": "user", "content": doc}, {"role": "assistant", "content": "ok"},
                    {"role": "user", "content": "and more?"}]
            req = normalize_chat({"messages": msgs}, tenant="t", request_id=f"f{n}")
            await ad.generate(ModelCall(request=req, allowed=[cand]))
            assert hosts[-1] == first[c]




def test_the_instance_band_comes_from_the_upstreams_affinity_configuration() -> None:
    assert settings_from_config(ReplicaAffinity()).instance_band_s == 0.1
    assert settings_from_config(ReplicaAffinity(instance_band_s=0.0)).instance_band_s == 0.0
    with pytest.raises(ValidationError):
        ReplicaAffinity(instance_band_s=-1.0)


def test_the_same_text_with_another_image_is_another_prefix() -> None:
    """Media parts were left out of the blocks: the same question about two different images counted as one
    cached prefix."""
    def ask(url: str) -> list[int]:
        req = normalize_chat({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is in this picture?"},
            {"type": "image_url", "image_url": {"url": url}}]}]}, tenant="t", request_id="r")
        return prompt_blocks(req)[0]

    assert ask("https://x/a.png") != ask("https://x/b.png")
    assert ask("https://x/a.png") == ask("https://x/a.png")
    text_only = normalize_chat({"messages": [{"role": "user", "content": "what is in this picture?"}]},
                               tenant="t", request_id="r")
    assert prompt_blocks(text_only)[0] != ask("https://x/a.png")
