"""Two gateway instances in front of the same upstreams share an exact cache in a real Redis (`cache.shared`):
what one answered, the other serves without an upstream call; bad shared-cache settings fail at start-up without
echoing a secret."""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest
from gateway_harness import ACME_KEY, EURO_KEY, make_settings

from sovrouter.adapters.openai_http import new_client
from sovrouter.build import make_exact_cache
from sovrouter.cache.layered import LayeredCache
from sovrouter.cache.semantic_share import SharedSemanticCache
from sovrouter.cache.split import SplitCache
from sovrouter.clock import SimClock
from sovrouter.config import Settings, SharedCacheSettings, Upstream
from sovrouter.errors import ConfigError
from sovrouter.gateway.app import create_app
from sovrouter.gateway.server import ServerThread
from sovrouter.gateway.wiring import build_live_pipeline, make_affinity_bus
from sovrouter.testing_redis import RedisServer
from sovrouter.testing_upstream import UpstreamBehaviour, create_upstream_app


def _ask(url: str, key: str, text: str) -> tuple[str, str]:
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=20)
    raw = client.chat.completions.with_raw_response.create(model="auto",
                                                           messages=[{"role": "user", "content": text}])
    return raw.parse().choices[0].message.content or "", raw.headers["x-sovrouter-cache"]


def test_two_gateway_instances_share_answers_through_redis(tmp_path: Path, redis_srv: RedisServer) -> None:
    primary = UpstreamBehaviour(reply="primary answer", chunks=2)
    backup = UpstreamBehaviour(reply="backup answer", chunks=2)
    shared = SharedCacheSettings(url=redis_srv.url, tenants=["acme-us"], key_prefix="gw-test")
    with ServerThread(create_upstream_app(primary), log_level="critical") as p, \
            ServerThread(create_upstream_app(backup), log_level="critical") as b:
        gateways = []
        for i in range(2):
            settings = make_settings(tmp_path / f"gw{i}", p.url, b.url, cache={"shared": shared})
            client = new_client()
            pipeline = build_live_pipeline(settings, client=client)
            assert isinstance(pipeline.cache, SplitCache)
            gateways.append(ServerThread(create_app(pipeline, settings,
                                                    on_shutdown=[client.aclose, pipeline.cache.aclose]),
                                         log_level="critical"))
        with gateways[0] as g0, gateways[1] as g1:
            assert _ask(g0.url, ACME_KEY, "What is sovereignty?") == ("primary answer", "miss")
            assert _ask(g1.url, ACME_KEY, "What is sovereignty?") == ("primary answer", "exact")
            assert primary.calls == 1
            # a streamed answer is stored once complete and served to the other instance too
            stream = openai.OpenAI(base_url=g1.url + "/v1", api_key=ACME_KEY, max_retries=0, timeout=20)
            pieces = [c.choices[0].delta.content or "" for c in stream.chat.completions.create(
                model="auto", stream=True, messages=[{"role": "user", "content": "Streamed question"}])
                if c.choices]
            assert "".join(pieces) == "primary answer" and primary.calls == 2
            assert _ask(g0.url, ACME_KEY, "Streamed question") == ("primary answer", "exact")
            assert primary.calls == 2
            # eurobank is not in the shared scope: each instance answers it once on its own
            assert _ask(g0.url, EURO_KEY, "What is sovereignty?")[1] == "miss"
            assert _ask(g1.url, EURO_KEY, "What is sovereignty?")[1] == "miss"
            assert _ask(g1.url, EURO_KEY, "What is sovereignty?")[1] == "exact"
            assert primary.calls == 4


@pytest.mark.slow
def test_a_paraphrase_answered_by_one_instance_is_a_semantic_hit_on_the_other(
        tmp_path: Path, redis_srv: RedisServer) -> None:
    """The real models and verifier: instance 0 answers a question, instance 1 serves a paraphrase of it from the
    entry instance 0 published; a tenant outside the shared scope gets no such hit."""
    primary = UpstreamBehaviour(reply="primary answer", chunks=1)
    shared = SharedCacheSettings(url=redis_srv.url, tenants=["acme-us"], key_prefix="gw-semantic-test")
    with ServerThread(create_upstream_app(primary), log_level="critical") as p, \
            ServerThread(create_upstream_app(UpstreamBehaviour(reply="backup")), log_level="critical") as b:
        gateways = []
        for i in range(2):
            settings = make_settings(tmp_path / f"gw{i}", p.url, b.url,
                                     cache={"shared": shared, "semantic_enabled": True})
            client = new_client()
            pipeline = build_live_pipeline(settings, client=client)
            assert isinstance(pipeline.cache, LayeredCache) and isinstance(pipeline.cache.semantic,
                                                                           SharedSemanticCache)
            gateways.append(ServerThread(create_app(pipeline, settings,
                                                    on_shutdown=[client.aclose, pipeline.cache.aclose]),
                                         log_level="critical"))
            semantic = pipeline.cache.semantic
            if i == 1:
                receiver = semantic
        with gateways[0] as g0, gateways[1] as g1:
            for key in (ACME_KEY, EURO_KEY):  # instance 1 starts reading the shared entries with a request
                assert _ask(g1.url, key, "Why is the sky blue?")[1] == "miss"
            for key in (ACME_KEY, EURO_KEY):
                assert _ask(g0.url, key, "What is the meaning of life?") == ("primary answer", "miss")
            deadline = time.monotonic() + 10
            while receiver.local.entry_count() < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            calls = primary.calls
            assert _ask(g1.url, ACME_KEY, "What's the meaning of life?") == ("primary answer", "semantic")
            assert primary.calls == calls
            assert _ask(g1.url, EURO_KEY, "What's the meaning of life?")[1] == "miss"  # not in the shared scope
            assert receiver.stats["inserted"] == 1


def test_shared_cache_settings_are_checked_at_start_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sovrouter.yaml"
    path.write_text("catalog: c.json\ntenants: t.json\ncache:\n  shared: {url: 'redis://:hunter2@cache:6379/0', "
                    "tenants: [acme-us]}\n")
    with pytest.raises(ConfigError, match=r"cache\.shared\.url") as info:
        Settings.load(path)
    assert "hunter2" not in str(info.value)  # a credential in the URL is refused and never echoed
    path.write_text("catalog: c.json\ntenants: t.json\ncache:\n  shared: {url: 'redis://cache:6379/0', tenants: []}\n")
    with pytest.raises(ConfigError, match=r"cache\.shared\.tenants"):
        Settings.load(path)  # sharing nobody's answers is a mistake, not a silent no-op

    monkeypatch.delenv("SOVROUTER_TEST_REDIS_PASSWORD", raising=False)
    settings = make_settings(tmp_path, "http://a", "http://b", cache={"shared": SharedCacheSettings(
        url="redis://127.0.0.1:9/0", tenants=["acme-us"], password_env="SOVROUTER_TEST_REDIS_PASSWORD")})
    with pytest.raises(ConfigError, match="SOVROUTER_TEST_REDIS_PASSWORD"):
        make_exact_cache(settings, SimClock(), ":memory:")
    monkeypatch.setenv("SOVROUTER_TEST_REDIS_PASSWORD", "s3cret")
    assert isinstance(make_exact_cache(settings, SimClock(), ":memory:"), SplitCache)


def test_two_gateway_instances_send_a_conversation_to_one_replica(tmp_path: Path, redis_srv: RedisServer) -> None:
    """Real HTTP: two gateway instances, three replicas of one deployment, a conversation whose turns alternate
    between the instances. With `affinity_events` each instance knows where the other sent the earlier turns."""
    behaviours = [UpstreamBehaviour(reply=f"replica {i}", chunks=1) for i in range(3)]
    with ServerThread(create_upstream_app(behaviours[0]), log_level="critical") as r0, \
            ServerThread(create_upstream_app(behaviours[1]), log_level="critical") as r1, \
            ServerThread(create_upstream_app(behaviours[2]), log_level="critical") as r2:
        gateways, buses = [], []
        for i in range(2):
            settings = make_settings(tmp_path / f"gw{i}", "http://127.0.0.1:9", "http://127.0.0.1:9",
                                     max_body_bytes=1_000_000,
                                     affinity_events={"url": redis_srv.url, "key_prefix": "gw-affinity-test"})
            settings.upstreams["sovereign-large/eu-sov"] = Upstream(base_urls=[r0.url, r1.url, r2.url])
            client = new_client()
            bus = make_affinity_bus(settings)
            assert bus is not None
            buses.append(bus)
            app = create_app(build_live_pipeline(settings, client=client, events=bus), settings,
                             on_shutdown=[client.aclose, bus.aclose], on_startup=[bus.start])
            gateways.append(ServerThread(app, log_level="critical"))
        with gateways[0] as g0, gateways[1] as g1:
            apis = [openai.OpenAI(base_url=g.url + "/v1", api_key=ACME_KEY, max_retries=0, timeout=20)
                    for g in (g0, g1)]
            docs = {c: " ".join(f"{c}{i}" for i in range(1500)) for c in "abc"}
            history: dict[str, list[dict[str, str]]] = {c: [{"role": "user", "content": d}] for c, d in docs.items()}
            served: dict[str, list[str]] = {c: [] for c in docs}
            calls = 0

            def settle() -> None:  # each call's start and end have reached the other instance
                deadline = time.monotonic() + 10
                while sum(b.stats["applied"] for b in buses) < 2 * calls and time.monotonic() < deadline:
                    time.sleep(0.01)

            for step, order in enumerate(["abc", "cab", "bca", "acb"]):  # turn k goes through instance k % 2
                for c in order:  # (a new order each round: an instance guessing blind would not match)
                    settle()
                    out = apis[step % 2].chat.completions.create(model="sovereign-large/eu-sov",
                                                                 messages=history[c])
                    calls += 1
                    reply = out.choices[0].message.content or ""
                    served[c].append(reply)
                    history[c] += [{"role": "assistant", "content": reply},
                                   {"role": "user", "content": f"and then {step}?"}]
    assert all(len(set(replies)) == 1 for replies in served.values()), served  # one replica per conversation
    assert sorted(replies[0] for replies in served.values()) == ["replica 0", "replica 1", "replica 2"]
    assert [b.calls for b in behaviours] == [4, 4, 4]
