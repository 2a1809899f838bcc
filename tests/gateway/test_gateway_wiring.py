from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from gateway_harness import ACME_KEY, make_settings
from pydantic import ValidationError

from sovrouter.adapters.engine_load import EngineReports
from sovrouter.adapters.openai_http import OpenAIHTTPAdapter, new_client
from sovrouter.adapters.replicas import HealthAwareChooser, LeastOutstandingChooser, ReplicaChooser
from sovrouter.clock import SimClock
from sovrouter.config import BatchSettings, BatchStoreSettings, EngineLoad, Settings, Upstream
from sovrouter.contracts import Candidate
from sovrouter.errors import ConfigError
from sovrouter.gateway.app import create_app
from sovrouter.gateway.server import ServerThread
from sovrouter.gateway.wiring import build_live_pipeline, configured_chooser, make_batch_service, make_load_poller
from sovrouter.reuse.prefix import AffinitySettings
from sovrouter.reuse.prefix_chooser import PrefixAffinityChooser
from sovrouter.testing_upstream import UpstreamBehaviour, closed_port_url, create_upstream_app


def test_wires_one_http_adapter_per_upstream_and_sqlite_state(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "state", "http://127.0.0.1:9", "http://127.0.0.1:10")
    pipeline = build_live_pipeline(settings)
    assert set(pipeline.executor.adapters) == {Candidate(slot=k.split("/")[0], deployment=k.split("/")[1])
                                               for k in settings.upstreams}
    assert (tmp_path / "state" / "records.sqlite").is_file()
    assert (tmp_path / "state" / "cache.sqlite").is_file()


def test_unknown_deployment_in_upstreams_is_a_config_error(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "http://a", "http://b")
    settings.upstreams["frontier/mars"] = Upstream(base_urls=["http://c"])
    with pytest.raises(ConfigError, match="frontier/mars"):
        build_live_pipeline(settings)


def test_missing_api_key_env_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOVROUTER_TEST_UPSTREAM_KEY", raising=False)
    settings = make_settings(tmp_path, "http://a", "http://b")
    settings.upstreams["frontier/us"] = Upstream(base_urls=["http://c"], api_key_env="SOVROUTER_TEST_UPSTREAM_KEY")
    with pytest.raises(ConfigError, match="SOVROUTER_TEST_UPSTREAM_KEY"):
        build_live_pipeline(settings)


def test_a_key_naming_an_unknown_tenant_is_named_by_its_entry(tmp_path: Path) -> None:
    """"api_keys: a key names a tenant the tenants file does not have" did not say which of the keys (found in
    review, 2026-11-28): the entry's index and the tenant it names (configuration, not a secret), never the
    key's digest."""
    from sovrouter.config import ApiKey, hash_key

    settings = make_settings(tmp_path, "http://a", "http://b")
    settings.api_keys.append(ApiKey(tenant="acme-uss", key_sha256=hash_key("sk-typo")))
    with pytest.raises(ConfigError) as raised:
        build_live_pipeline(settings)
    message = raised.value.message
    assert "api_keys[2]" in message and "'acme-uss'" in message and str(settings.tenants) in message
    assert hash_key("sk-typo") not in message and "sk-typo" not in message
    assert not (tmp_path / "records.sqlite").exists()  # refused at start-up, before any state is made


def _chooser_of(pipeline: Any, key: str) -> ReplicaChooser:
    """The replica chooser inside the reliability stack around one deployment's HTTP adapter."""
    slot, _, dep = key.partition("/")
    node: Any = pipeline.executor.adapters[Candidate(slot=slot, deployment=dep)]
    while not isinstance(node, OpenAIHTTPAdapter):
        node = node.inner
    return node.chooser


def test_several_replicas_get_the_prefix_affinity_chooser_from_their_configuration(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "http://a", "http://b")
    settings.upstreams["sovereign-large/eu-sov"] = Upstream.model_validate(
        {"base_urls": ["http://r0", "http://r1"], "affinity": {"kv_cache_tokens": 1024 * 512, "tail": 0}})
    settings.upstreams["sovereign-large/us-east"] = Upstream(base_urls=["http://r2", "http://r3"],
                                                             replica_choice="least-outstanding")
    settings.reliability.replica_consecutive_failures, settings.reliability.replica_cooldown_s = 1, 2.5
    pipeline = build_live_pipeline(settings)
    wrapped = _chooser_of(pipeline, "sovereign-large/eu-sov")
    assert isinstance(wrapped, HealthAwareChooser)
    assert (wrapped.consecutive_failures, wrapped.cooldown_s) == (1, 2.5)  # from the reliability settings
    chooser = wrapped.inner
    assert isinstance(chooser, PrefixAffinityChooser)
    assert chooser.settings.tail == 0.0
    assert chooser.settings == PrefixAffinityChooser(  # same capacity, in gateway blocks; rates learned
        SimClock(), AffinitySettings(capacity_blocks=1024, tail=0.0, learn_prefill_rate=True)).settings
    fixed = configured_chooser(Upstream.model_validate(
        {"base_urls": ["http://r4", "http://r5"], "affinity": {"learn_prefill_rate": False}}), SimClock())
    assert isinstance(fixed, HealthAwareChooser) and isinstance(fixed.inner, PrefixAffinityChooser)
    assert not fixed.inner.settings.learn_prefill_rate
    us_east = _chooser_of(pipeline, "sovereign-large/us-east")
    assert isinstance(us_east, HealthAwareChooser) and isinstance(us_east.inner, LeastOutstandingChooser)
    assert isinstance(_chooser_of(pipeline, "frontier/us"), LeastOutstandingChooser)  # one replica: nothing to choose


@pytest.mark.parametrize("upstream", [
    "{base_urls: [http://a, http://b], replica_choice: random}",
    "{base_urls: [http://a, http://b], affinity: {tail: -1}}",
    "{base_urls: [http://a, http://b], affinity: {kv_cache_tokens: 0}}",
    "{base_urls: [http://a, http://b], affinity: {prefill_tokens_per_s: .nan}}",
    "{base_urls: [http://a, http://b], affinity: {decode_tokens_per_s: .inf}}",
    "{base_urls: [http://a, http://b], affinity: {colour: blue}}",
])
def test_a_bad_replica_choice_is_a_config_error(tmp_path: Path, upstream: str) -> None:
    path = tmp_path / "sovrouter.yaml"
    path.write_text(f"catalog: c.json\ntenants: t.json\nupstreams:\n  sovereign-large/eu-sov: {upstream}\n")
    with pytest.raises(ConfigError, match="upstreams"):
        Settings.load(path)


def test_the_gateway_sends_each_conversation_back_to_the_replica_that_holds_it(tmp_path: Path) -> None:
    """Real HTTP end to end: the official client -> gateway -> three replicas of one deployment, chosen by the
    default (prefix-affinity) chooser; a follow-up turn goes where its conversation's prefix was sent."""
    behaviours = [UpstreamBehaviour(reply=f"replica {i}", chunks=1) for i in range(3)]
    with ServerThread(create_upstream_app(behaviours[0]), log_level="critical") as r0, \
            ServerThread(create_upstream_app(behaviours[1]), log_level="critical") as r1, \
            ServerThread(create_upstream_app(behaviours[2]), log_level="critical") as r2:
        settings = make_settings(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9", max_body_bytes=1_000_000)
        settings.upstreams["sovereign-large/eu-sov"] = Upstream(base_urls=[r0.url, r1.url, r2.url])
        client = new_client()
        app = create_app(build_live_pipeline(settings, client=client), settings, on_shutdown=[client.aclose])
        with ServerThread(app, log_level="critical") as gw:
            api = openai.OpenAI(base_url=gw.url + "/v1", api_key=ACME_KEY, max_retries=0, timeout=20)
            docs = {c: " ".join(f"{c}{i}" for i in range(1500)) for c in "abc"}
            first = {}
            for c, doc in docs.items():
                out = api.chat.completions.create(model="sovereign-large/eu-sov",
                                                  messages=[{"role": "user", "content": doc}])
                first[c] = out.choices[0].message.content
            assert sorted(first.values()) == ["replica 0", "replica 1", "replica 2"]  # idle replicas share new work
            for c in "cab":
                out = api.chat.completions.create(model="sovereign-large/eu-sov", messages=[
                    {"role": "user", "content": docs[c]}, {"role": "assistant", "content": first[c]},
                    {"role": "user", "content": f"and more about {c}?"}])
                assert out.choices[0].message.content == first[c]
    assert [b.calls for b in behaviours] == [2, 2, 2]


def test_a_dead_replica_is_avoided_on_retry_and_ejected(tmp_path: Path) -> None:
    """One of three replicas refuses connections: every request still gets an answer from the deployment (the
    retry goes to another replica, not back to the one whose modelled cache holds the prompt), and after a few
    failures the dead replica is no longer tried at all."""
    behaviours = [UpstreamBehaviour(reply=f"replica {i}", chunks=1) for i in range(2)]
    with ServerThread(create_upstream_app(behaviours[0]), log_level="critical") as r0, \
            ServerThread(create_upstream_app(behaviours[1]), log_level="critical") as r1:
        dead = closed_port_url()
        settings = make_settings(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9", max_body_bytes=1_000_000)
        settings.upstreams["sovereign-large/eu-sov"] = Upstream(base_urls=[dead, r0.url, r1.url])
        client = new_client()
        pipeline = build_live_pipeline(settings, client=client)
        app = create_app(pipeline, settings, on_shutdown=[client.aclose])
        with ServerThread(app, log_level="critical") as gw:
            api = openai.OpenAI(base_url=gw.url + "/v1", api_key=ACME_KEY, max_retries=0, timeout=20)
            answers = []
            for k in range(12):
                doc = " ".join(f"d{k}w{i}" for i in range(300))
                for turn in range(2):
                    msgs = [{"role": "user", "content": doc}]
                    if turn:
                        msgs += [{"role": "assistant", "content": answers[-1]}, {"role": "user", "content": "more?"}]
                    if k % 2:  # streamed calls take the same path through the chooser
                        chunks = api.chat.completions.create(model="sovereign-large/eu-sov", messages=msgs,
                                                             stream=True)
                        answers.append("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
                    else:
                        out = api.chat.completions.create(model="sovereign-large/eu-sov", messages=msgs)
                        answers.append(out.choices[0].message.content)
        chooser = _chooser_of(pipeline, "sovereign-large/eu-sov")
    assert set(answers) <= {"replica 0", "replica 1"}
    assert sum(b.calls for b in behaviours) == 24  # every request answered by the deployment itself
    assert isinstance(chooser, HealthAwareChooser) and chooser.ejected(dead)


def test_deployment_choice_is_configurable_and_checked(tmp_path: Path) -> None:
    from sovrouter.build import make_deployment_chooser
    from sovrouter.catalog import Catalog, Tenants
    from sovrouter.routing.deployments import CheapestDeployment, LatencyAwareDeployment
    from sovrouter.speculative.answer_shape import AnswerShapeModel
    from sovrouter.speculative.shape_online import OnlineAnswerShape

    path = tmp_path / "sovrouter.yaml"
    path.write_text("catalog: c.json\ntenants: t.json\ndeployment_choice: fastest\n")
    with pytest.raises(ConfigError, match="deployment_choice"):
        Settings.load(path)
    path.write_text("catalog: c.json\ntenants: t.json\n")
    settings = Settings.load(path)
    catalog, tenants = Catalog(slots=[]), Tenants(tenants=[])
    chooser = make_deployment_chooser(settings, catalog, tenants)
    assert isinstance(chooser, LatencyAwareDeployment) and isinstance(chooser.shapes, OnlineAnswerShape)
    assert isinstance(chooser.shapes.base, AnswerShapeModel)  # the shipped artifact, corrected online
    cheapest = settings.model_copy(update={"deployment_choice": "cheapest"})
    assert isinstance(make_deployment_chooser(cheapest, catalog, tenants), CheapestDeployment)


def test_a_shared_batch_store_is_checked_at_start_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path / "state", "http://127.0.0.1:9", "http://127.0.0.1:10")
    pipeline = build_live_pipeline(settings)
    with pytest.raises(ValidationError):  # a password written into the URL is refused before anything connects
        BatchStoreSettings(url="postgresql+psycopg://u:hunter2@db/x", tenants=["acme-us"])
    with pytest.raises(ValidationError):
        BatchStoreSettings(url="mysql://u@db/x", tenants=["acme-us"])
    with pytest.raises(ValidationError):  # which tenants' prompts may live there is a decision the operator makes
        BatchStoreSettings(url="postgresql+psycopg://u@db/x")  # type: ignore[call-arg]
    down = settings.model_copy(update={"batches": BatchSettings(store=BatchStoreSettings(
        url=f"postgresql+psycopg://u@{closed_port_url().removeprefix('http://')}/x", tenants=["acme-us"]))})
    with pytest.raises(ConfigError, match=r"batches\.store") as err:
        make_batch_service(down, pipeline)
    assert "127.0.0.1" not in str(err.value)
    secret = settings.model_copy(update={"batches": BatchSettings(store=BatchStoreSettings(
        url="postgresql+psycopg://u@db/x", password_env="SOVROUTER_TEST_PG_PASSWORD", tenants=["acme-us"]))})
    monkeypatch.delenv("SOVROUTER_TEST_PG_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="SOVROUTER_TEST_PG_PASSWORD"):
        make_batch_service(secret, pipeline)


SOV = Candidate(slot="sovereign-large", deployment="eu-sov")


def test_a_wired_gateway_polls_the_upstreams_that_ask_for_it(tmp_path: Path) -> None:
    # the engines' own running batch (here: other clients' 5 requests) reaches the board the chooser reads
    up = UpstreamBehaviour(engine_metrics="vllm", other_running=5)
    with ServerThread(create_upstream_app(up)) as server:
        settings = make_settings(tmp_path, server.url, server.url)
        assert make_load_poller(settings, build_live_pipeline(settings), httpx.AsyncClient()) is None  # not asked
        settings.upstreams["sovereign-large/eu-sov"] = Upstream(base_urls=[server.url + "/v1"],
                                                                engine_load=EngineLoad(timeout_s=2.0))
        pipeline = build_live_pipeline(settings)
        poller = make_load_poller(settings, pipeline, httpx.AsyncClient())
        assert poller is not None and pipeline.load is not None
        assert list(poller.targets) == [SOV]
        assert poller.targets[SOV].urls == (server.url + "/metrics",)
        asyncio.run(poller.poll_once())
        assert pipeline.load.count(SOV) == 5  # what the deployment chooser now reads
        for bad in ({"path": "metrics"}, {"interval_s": 0}, {"timeout_s": -1}, {"every": 1}):
            with pytest.raises(ValidationError):
                Upstream.model_validate({"base_urls": [server.url], "engine_load": bad})
        settings.deployment_choice = "cheapest"  # a chooser that reads no board: the setting would do nothing
        with pytest.raises(ConfigError, match="engine_load"):
            make_load_poller(settings, build_live_pipeline(settings), httpx.AsyncClient())


def test_prefix_affinity_weighs_the_load_each_replicas_engine_reports(tmp_path: Path) -> None:
    """Two replicas whose engines also serve another client: the default chooser reads each replica's reported
    backlog (``engine_load``) and sends new work, and at last even a conversation's follow-up, away from it."""
    behaviours = [UpstreamBehaviour(reply=f"replica {i}", chunks=1, engine_metrics="vllm") for i in range(2)]
    with ServerThread(create_upstream_app(behaviours[0]), log_level="critical") as r0, \
            ServerThread(create_upstream_app(behaviours[1]), log_level="critical") as r1:
        settings = make_settings(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9", max_body_bytes=1_000_000)
        settings.deployment_choice = "cheapest"  # the replica choosers alone read the reports
        settings.upstreams["sovereign-large/eu-sov"] = Upstream(base_urls=[r0.url + "/v1", r1.url + "/v1"],
                                                                engine_load=EngineLoad(timeout_s=2.0))
        client = new_client()
        reports = EngineReports()
        pipeline = build_live_pipeline(settings, client=client, engine_reports=reports)
        poller = make_load_poller(settings, pipeline, client, reports)
        assert poller is not None and pipeline.load is None
        assert poller.targets[SOV].names == (r0.url + "/v1", r1.url + "/v1")
        with pytest.raises(ConfigError, match="engine_load"):  # the same without the reports: nothing reads them
            make_load_poller(settings, pipeline, client)

        def poll() -> None:
            async def go() -> None:
                async with httpx.AsyncClient() as scraper:
                    poller.client = scraper
                    await poller.poll_once()
            asyncio.run(go())

        app = create_app(pipeline, settings, on_shutdown=[client.aclose])
        with ServerThread(app, log_level="critical") as gw:
            api = openai.OpenAI(base_url=gw.url + "/v1", api_key=ACME_KEY, max_retries=0, timeout=20)
            doc = " ".join(f"w{i}" for i in range(1500))

            def ask(*turns: str) -> str | None:
                msgs = [{"role": "user" if k % 2 == 0 else "assistant", "content": t} for k, t in enumerate(turns)]
                out = api.chat.completions.create(model="sovereign-large/eu-sov", messages=msgs)  # type: ignore[arg-type]
                return out.choices[0].message.content

            behaviours[0].other_running, behaviours[0].other_waiting = 4, 30  # the other client's backlog on r0
            poll()
            first = ask(doc)
            assert first == "replica 1"  # both idle as far as this gateway knows: r0's engine says otherwise
            assert ask(doc, first, "more?") == "replica 1"  # the conversation stays where its prefix is
            behaviours[0].other_running = behaviours[0].other_waiting = 0
            behaviours[1].other_running, behaviours[1].other_waiting = 4, 30  # now r1 is the busy one
            poll()
            assert ask(doc, first, "and more?") == "replica 0"  # a cached prefix is not worth 34 requests' wait
            behaviours[1].other_running = behaviours[1].other_waiting = 0
            behaviours[0].other_running, behaviours[0].other_waiting = 4, 30
            poll()
            assert ask("something else entirely") == "replica 1"
            asyncio.run(poller.aclose())  # reports withdrawn: the chooser falls back to its own model (r0: less busy)
            assert ask("and something else again") == "replica 0"


def test_a_model_with_no_upstream_here_is_not_listed_and_is_a_404(tmp_path: Path) -> None:
    """Only frontier/us and hosted-mini/us wired: sovereign-large was listed by /v1/models and asking for it was a
    502 all_candidates_failed that OpenAI clients retried (review, 2026-11-28)."""
    url = closed_port_url()
    settings = make_settings(tmp_path / "state", url, url,
                             upstreams={k: Upstream(base_urls=[url]) for k in ("frontier/us", "hosted-mini/us")})
    pipeline = build_live_pipeline(settings)
    app = create_app(pipeline, settings)

    async def go() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        auth = {"authorization": f"Bearer {ACME_KEY}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            listed = await client.get("/v1/models", headers=auth)
            asked = await client.post("/v1/chat/completions", headers=auth, json={
                "model": "sovereign-large", "messages": [{"role": "user", "content": "hi"}]})
            one = await client.get("/v1/models/sovereign-large", headers=auth)
            return listed, asked, one

    listed, asked, one = asyncio.run(go())
    assert [m["id"] for m in listed.json()["data"]] == ["auto", "hosted-mini", "frontier"]
    assert asked.status_code == 404 and asked.json()["error"]["code"] == "not_found"
    assert asked.json()["error"]["param"] == "model" and one.status_code == 404
