"""``max_in_flight_per_tenant`` across gateway instances (``shared_in_flight``): two real gateway instances and a
real Redis, the official ``openai`` client. Without it a tenant got k times the limit behind k instances."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
from gateway_harness import ACME_KEY, EURO_KEY, make_settings
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sovrouter.adapters.openai_http import new_client
from sovrouter.config import Settings, SharedInFlightSettings
from sovrouter.errors import ConfigError, TooManyRequestsError
from sovrouter.evalloop.loop import EvalSettings, build_observability
from sovrouter.gateway.app import Gateway, create_app
from sovrouter.gateway.auth import TenantSlots
from sovrouter.gateway.server import ServerThread
from sovrouter.gateway.shared_slots import RedisTenantSlots, lease_key, make_tenant_slots
from sovrouter.gateway.wiring import build_live_pipeline
from sovrouter.store.records import SQLiteRecordStore
from sovrouter.telemetry.metrics import SharedSlotsCollector, TenantLabels
from sovrouter.testing import counts_read_race
from sovrouter.testing_redis import RedisServer, redis_server
from sovrouter.testing_upstream import UpstreamBehaviour, closed_port_url, create_upstream_app

ASK: Any = [{"role": "user", "content": "hello"}]


@dataclass
class Pair:
    urls: list[str]
    gateways: list[Gateway]
    primary: UpstreamBehaviour
    state_dirs: list[Path]

    def client(self, i: int, key: str = ACME_KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.urls[i] + "/v1", api_key=key, max_retries=0, timeout=20)

    def metrics(self, i: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Instance ``i``'s ``/metrics`` (``observed`` gateways), by sample name and sorted labels."""
        return _samples(httpx.get(self.urls[i] + "/metrics", timeout=10).text)

    def refused_codes(self, i: int) -> list[str | None]:
        store = SQLiteRecordStore(self.state_dirs[i] / "records.sqlite")
        try:
            return [r.error_code for r in store if r.status == "error"]
        finally:
            store.close()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(x.name, tuple(sorted(x.labels.items()))): x.value
            for f in text_string_to_metric_families(text) for x in f.samples}


@contextmanager
def two_gateways(tmp_path: Path, observed: bool = False, **overrides: Any) -> Iterator[Pair]:
    """Two gateway instances in front of the same two test upstreams (each with its own state_dir);
    ``observed``: with metrics and ``/metrics`` as ``sovrouter serve`` mounts them."""
    primary = UpstreamBehaviour(reply="primary answer", chunks=3)
    backup = UpstreamBehaviour(reply="backup answer", chunks=3)
    with ServerThread(create_upstream_app(primary), log_level="critical") as p, \
            ServerThread(create_upstream_app(backup), log_level="critical") as b:
        servers, gateways, dirs = [], [], []
        for i in range(2):
            dirs.append(tmp_path / f"gw{i}")
            settings = make_settings(dirs[-1], p.url, b.url, **overrides)
            client = new_client()
            pipeline = build_live_pipeline(settings, client=client)
            obs = build_observability(EvalSettings()) if observed else None
            app = create_app(obs.observe(pipeline) if obs is not None else pipeline, settings,
                             on_shutdown=[client.aclose])
            if obs is not None:
                obs.mount(app)
            gateways.append(app.state.gateway)
            servers.append(ServerThread(app, log_level="critical"))
        with servers[0] as g0, servers[1] as g1:
            yield Pair([g0.url, g1.url], gateways, primary, dirs)


def _shared(srv: RedisServer, prefix: str, **fields: Any) -> SharedInFlightSettings:
    return SharedInFlightSettings(url=srv.url, key_prefix=prefix, **fields)


def _until(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _slow_request(pair: Pair, i: int) -> tuple[threading.Thread, dict[str, Any]]:
    """A request to instance ``i`` that holds acme's slot while the primary upstream is slow to answer."""
    out: dict[str, Any] = {}
    calls = pair.primary.calls

    def run() -> None:
        out["answer"] = pair.client(i).chat.completions.create(model="auto", messages=ASK)

    worker = threading.Thread(target=run)
    worker.start()
    _until(lambda: pair.primary.calls > calls)  # it has reached the upstream: its slot is taken
    return worker, out


def test_a_second_instance_refuses_a_request_past_the_shared_limit_and_gets_the_slot_back(
        tmp_path: Path, redis_srv: RedisServer) -> None:
    prefix = "gw-slots-a"
    leases = redis.Redis.from_url(redis_srv.url)

    def held() -> int:
        return int(leases.zcard(lease_key(prefix, "acme-us")))

    with two_gateways(tmp_path, max_in_flight_per_tenant=1, shared_in_flight=_shared(redis_srv, prefix)) as pair:
        assert all(isinstance(g.slots, RedisTenantSlots) for g in pair.gateways)
        pair.primary.first_token_delay_s = 1.0
        worker, out = _slow_request(pair, 0)
        assert held() == 1
        refused = httpx.post(pair.urls[1] + "/v1/chat/completions", json={"model": "auto", "messages": ASK},
                             headers={"authorization": f"Bearer {ACME_KEY}"}, timeout=10)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert refused.json() == {"error": {
            "message": "too many requests in flight for this API key (at most 1); retry after one has finished",
            "type": "rate_limit_error", "param": None, "code": "rate_limit_exceeded"}}
        with pytest.raises(openai.RateLimitError) as info:  # the official client's class for it
            pair.client(1).chat.completions.create(model="auto", messages=ASK)
        assert info.value.status_code == 429
        assert pair.client(1, EURO_KEY).chat.completions.create(model="auto", messages=ASK).choices[0].message.content
        worker.join(10)
        assert out["answer"].choices[0].message.content == "primary answer"

        # released on instance 0 (not expired: the lease would live 30 s): instance 1 may take it now
        _until(lambda: held() == 0)
        pair.primary.first_token_delay_s = 0.0
        assert pair.client(1).chat.completions.create(model="auto", messages=ASK).choices[0].message.content

        # a stream on instance 1 holds the slot until it ends; instance 0 refuses meanwhile
        pair.primary.chunk_delay_s = 0.3
        stream = pair.client(1).chat.completions.create(  # a question not asked before: not a cache hit
            model="auto", messages=[{"role": "user", "content": "a long story"}], stream=True)
        chunks = iter(stream)
        first = next(chunks)
        with pytest.raises(openai.RateLimitError):
            pair.client(0).chat.completions.create(model="auto", messages=ASK)
        text = "".join(c.choices[0].delta.content or "" for c in [first, *chunks] if c.choices)
        assert text == "primary answer"
        _until(lambda: held() == 0)
        pair.primary.chunk_delay_s = 0.0
        assert pair.client(0).chat.completions.create(model="auto", messages=ASK).choices[0].message.content
        assert pair.refused_codes(0) == ["rate_limit_exceeded"]  # each refusal has its record, where it was
        assert pair.refused_codes(1) == ["rate_limit_exceeded"] * 2
    assert held() == 0
    leases.close()


def test_a_lease_left_by_an_instance_that_died_stops_counting(tmp_path: Path, redis_srv: RedisServer) -> None:
    """An instance that died mid-request neither releases nor refreshes its lease: it counts until its expiry
    (scored in the Redis server's clock), then the next take drops it."""
    prefix = "gw-slots-dead"
    leases = redis.Redis.from_url(redis_srv.url)
    key = lease_key(prefix, "acme-us")
    seconds, micros = leases.time()
    expires_ms = seconds * 1000 + micros // 1000 + 1500
    leases.zadd(key, {"dead-instance:7": expires_ms})
    with two_gateways(tmp_path, max_in_flight_per_tenant=1, shared_in_flight=_shared(redis_srv, prefix)) as pair:
        for i in (0, 1):
            with pytest.raises(openai.RateLimitError):
                pair.client(i).chat.completions.create(model="auto", messages=ASK)
        _until(lambda: (lambda t: t[0] * 1000 + t[1] // 1000)(leases.time()) > expires_ms + 50)
        assert pair.client(1).chat.completions.create(model="auto", messages=ASK).choices[0].message.content
        assert leases.zscore(key, "dead-instance:7") is None  # dropped by the take
    leases.close()


async def test_a_lease_is_refreshed_while_held_and_concurrent_takes_stay_within_the_limit(
        redis_srv: RedisServer) -> None:
    one = RedisTenantSlots.from_url(redis_srv.url, 1, prefix="slots-refresh", lease_ttl_s=1.0)
    two = RedisTenantSlots.from_url(redis_srv.url, 1, prefix="slots-refresh", lease_ttl_s=1.0)
    crowd = [RedisTenantSlots.from_url(redis_srv.url, 5, prefix="slots-crowd") for _ in range(2)]
    try:
        release = await one.take("t")
        await asyncio.sleep(2.5)  # two and a half lease lives: refreshed every third of one
        with pytest.raises(TooManyRequestsError):
            await two.take("t")
        assert await two.in_flight("t") == 1 and one.stats["refreshed"] >= 5 and not one.stats["lost"]
        release()
        release()  # a second release frees nothing more
        for _ in range(200):
            if await two.in_flight("t") == 0:
                break
            await asyncio.sleep(0.01)
        (await two.take("t"))()

        # 40 requests at once on two instances (each would allow 5 on its own): 5 slots in all
        results = await asyncio.gather(*(crowd[i % 2].take("t") for i in range(40)), return_exceptions=True)
        assert sum(callable(r) for r in results) == 5
        assert all(isinstance(r, TooManyRequestsError) for r in results if not callable(r))
        assert await crowd[0].in_flight("t") == 5
    finally:
        for slots in (one, two, *crowd):
            await slots.aclose()  # gives back what is still held
    check = RedisTenantSlots.from_url(redis_srv.url, 5, prefix="slots-crowd")
    assert await check.in_flight("t") == 0
    await check.aclose()


async def test_a_lease_that_expired_before_its_refresh_is_not_revived(redis_srv: RedisServer) -> None:
    """Cut off from Redis for a whole lease life, an instance's lease lapses and another instance takes the slot:
    the late refresh must not bring it back (two requests would count as one slot's worth)."""
    one = RedisTenantSlots.from_url(redis_srv.url, 1, prefix="slots-lapse", lease_ttl_s=30.0)
    two = RedisTenantSlots.from_url(redis_srv.url, 1, prefix="slots-lapse", lease_ttl_s=30.0)
    try:
        release = await one.take("t")
        key = lease_key("slots-lapse", "t")
        [(lease, _)] = await one.client.zrange(key, 0, -1, withscores=True)
        await one.client.zadd(key, {lease: 1}, xx=True)  # as if its refreshes had not reached Redis in time
        other = await two.take("t")  # drops the lapsed lease, takes the slot
        await one.refresh()
        assert one.stats["lost"] == 1 and one.stats["refreshed"] == 0
        assert await two.in_flight("t") == 1  # not revived
        with pytest.raises(TooManyRequestsError):
            await one.take("t")  # this instance's own count still holds its request
        release()
        other()
    finally:
        await one.aclose()
        await two.aclose()


async def test_redis_stopping_falls_back_to_the_instances_own_limit(redis_srv: RedisServer) -> None:
    with redis_server() as own:
        slots = RedisTenantSlots.from_url(own.url, 1, prefix="slots-down", op_timeout_s=0.2, retry_s=60.0)
        try:
            first = await slots.take("t")
            own.process.kill()
            own.process.wait()
            first()  # the removal fails in the background: nothing raised, the lease would expire by itself
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            second = await slots.take("t")  # served: this instance holds nothing else of the tenant
            with pytest.raises(TooManyRequestsError):
                await slots.take("t")  # the limit still holds on this instance
            assert loop.time() - t0 < 1.0 and slots.stats["errors"] >= 1
            second()
            (await slots.take("t"))()  # within retry_s Redis is not asked again
            assert slots.stats["local_only"] == 1
            assert await slots.in_flight("t") == 0  # this instance's own count when Redis cannot say
        finally:
            await slots.aclose()


def test_redis_down_from_the_start_each_instance_keeps_its_own_limit(tmp_path: Path) -> None:
    down = SharedInFlightSettings(url=closed_port_url().replace("http", "redis") + "/0", op_timeout_s=0.2)
    with two_gateways(tmp_path, max_in_flight_per_tenant=1, shared_in_flight=down) as pair:
        pair.primary.first_token_delay_s = 0.8
        worker, out = _slow_request(pair, 0)
        with pytest.raises(openai.RateLimitError):
            pair.client(0).chat.completions.create(model="auto", messages=ASK)  # this instance's own limit
        assert pair.client(1).chat.completions.create(model="auto", messages=ASK).choices[0].message.content
        worker.join(10)
        assert out["answer"].choices[0].message.content
        assert all(isinstance(g.slots, RedisTenantSlots) and g.slots.stats["errors"] >= 1 for g in pair.gateways)


def test_without_shared_in_flight_each_instance_counts_its_own(tmp_path: Path) -> None:
    """The default is unchanged: the in-process count, nothing asked of Redis, k instances allow k x the limit."""
    with two_gateways(tmp_path, max_in_flight_per_tenant=1) as pair:
        assert all(type(g.slots) is TenantSlots for g in pair.gateways)
        pair.primary.first_token_delay_s = 0.8
        worker, out = _slow_request(pair, 0)
        with pytest.raises(openai.RateLimitError):
            pair.client(0).chat.completions.create(model="auto", messages=ASK)
        assert pair.client(1).chat.completions.create(model="auto", messages=ASK).choices[0].message.content
        worker.join(10)
        assert out["answer"].choices[0].message.content


def test_shared_in_flight_settings_are_checked_at_start_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sovrouter.yaml"
    path.write_text("catalog: c.json\ntenants: t.json\nmax_in_flight_per_tenant: null\n"
                    "shared_in_flight: {url: 'redis://cache:6379/0'}\n")
    with pytest.raises(ConfigError, match="needs max_in_flight_per_tenant"):
        Settings.load(path)  # nothing to share: a mistake, not a silent no-op
    path.write_text("catalog: c.json\ntenants: t.json\nshared_in_flight: {url: 'redis://:hunter2@cache:6379/0'}\n")
    with pytest.raises(ConfigError, match=r"shared_in_flight\.url") as info:
        Settings.load(path)
    assert "hunter2" not in str(info.value)
    path.write_text("catalog: c.json\ntenants: t.json\nshared_in_flight: {url: 'redis://cache:6379/0', "
                    "lease_ttl_s: 0.1}\n")
    with pytest.raises(ConfigError, match=r"shared_in_flight\.lease_ttl_s"):
        Settings.load(path)

    monkeypatch.delenv("SOVROUTER_TEST_SLOTS_PASSWORD", raising=False)
    settings = make_settings(tmp_path, "http://a:1", "http://b:1", shared_in_flight=SharedInFlightSettings(
        url="redis://127.0.0.1:9/0", password_env="SOVROUTER_TEST_SLOTS_PASSWORD"))
    with pytest.raises(ConfigError, match="SOVROUTER_TEST_SLOTS_PASSWORD"):
        make_tenant_slots(settings)
    assert type(make_tenant_slots(make_settings(tmp_path, "http://a:1", "http://b:1"))) is TenantSlots
    unlimited = make_settings(tmp_path, "http://a:1", "http://b:1", max_in_flight_per_tenant=None)
    assert type(make_tenant_slots(unlimited)) is TenantSlots


async def test_a_lease_released_during_a_refresh_is_not_counted_lost(redis_srv: RedisServer) -> None:
    """A request that ends while a refresh is on its way: the refresh was asked for its lease, its removal reached
    Redis first. It was given back, not lost: no ``lost`` count, no warning (review 2026-11-28)."""
    one = RedisTenantSlots.from_url(redis_srv.url, 5, prefix="slots-race", lease_ttl_s=30.0)
    try:
        release = await one.take("t")
        held = dict(one._leases)  # what refresh() reads before its script call
        release()
        await asyncio.gather(*list(one._tasks))  # the removal lands first
        [(key, leases)] = [(k, [lease for lease, kk in held.items() if kk == k]) for k in set(held.values())]
        await one._refresh_key(key, leases)
        assert one.stats["lost"] == 0 and one.stats["released"] == 1
    finally:
        await one.aclose()


def test_the_shared_limit_s_refusals_and_leases_are_on_metrics(tmp_path: Path, redis_srv: RedisServer) -> None:
    """Until 2026-11-28 nothing on ``/metrics`` told which count refused a request, nor how many leases an
    instance held: the shared limit's refusals looked like any other ``rate_limit_exceeded``."""
    prefix = "gw-slots-metrics"
    acme = ("tenant", "acme-us")
    with two_gateways(tmp_path, observed=True, max_in_flight_per_tenant=1,
                      shared_in_flight=_shared(redis_srv, prefix)) as pair:
        pair.primary.first_token_delay_s = 1.0
        worker, out = _slow_request(pair, 0)
        with pytest.raises(openai.RateLimitError):
            pair.client(1).chat.completions.create(model="auto", messages=ASK)  # every instance's count: full
        with pytest.raises(openai.RateLimitError):
            pair.client(0).chat.completions.create(model="auto", messages=ASK)  # this instance's own: full
        busy, other = pair.metrics(0), pair.metrics(1)
        leases = "sovrouter_shared_in_flight_leases"
        assert busy[leases, ()] == 1 and other[leases, ()] == 0
        assert other["sovrouter_shared_in_flight_refused_total", (("by", "shared"), acme)] == 1
        assert ("sovrouter_shared_in_flight_refused_total", (("by", "instance"), acme)) not in other
        assert busy["sovrouter_shared_in_flight_refused_total", (("by", "instance"), acme)] == 1
        for seen in (busy, other):  # the same refusals as the request metrics', by tenant
            assert seen["sovrouter_refusals_total", (("reason", "rate_limit_exceeded"), acme)] == sum(
                v for (name, labels), v in seen.items()
                if name == "sovrouter_shared_in_flight_refused_total" and acme in labels)
            assert all(v == 0 for (name, _), v in seen.items() if name in (
                "sovrouter_shared_in_flight_redis_errors_total", "sovrouter_shared_in_flight_local_only_total",
                "sovrouter_shared_in_flight_leases_lost_total"))
        worker.join(10)
        assert out["answer"].choices[0].message.content == "primary answer"
        _until(lambda: pair.metrics(0)[leases, ()] == 0)


async def test_redis_failures_and_the_local_decisions_are_on_metrics(redis_srv: RedisServer) -> None:
    """Redis stopped: each failed operation, and each request this instance's count alone decided, is counted
    (until 2026-11-28 only in ``stats``, which nothing exported)."""
    with redis_server() as own:
        slots = RedisTenantSlots.from_url(own.url, 1, prefix="slots-down-metrics", op_timeout_s=0.2, retry_s=60.0)
        registry = CollectorRegistry(auto_describe=True)
        registry.register(SharedSlotsCollector(slots, TenantLabels(["t"])))

        def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            return _samples(generate_latest(registry).decode())

        try:
            first = await slots.take("t")
            assert scrape()["sovrouter_shared_in_flight_leases", ()] == 1
            own.process.kill()
            own.process.wait()
            first()
            await asyncio.gather(*list(slots._tasks))  # the removal fails
            second = await slots.take("t")  # the take fails: this instance's count decides
            with pytest.raises(TooManyRequestsError):
                await slots.take("t")
            second()
            (await slots.take("u"))()  # within retry_s: Redis not asked
            await slots.in_flight("t")  # within retry_s too, but a count is always asked: it fails
            seen = scrape()
            errors = {op: seen["sovrouter_shared_in_flight_redis_errors_total", (("op", op),)]
                      for op in ("take", "count", "refresh", "release")}
            assert errors == {"take": 1, "count": 1, "refresh": 0, "release": 1}
            assert seen["sovrouter_shared_in_flight_local_only_total", (("why", "error"),)] == 1
            assert seen["sovrouter_shared_in_flight_local_only_total", (("why", "backoff"),)] == 1
            assert seen["sovrouter_shared_in_flight_refused_total", (("by", "instance"), ("tenant", "t"))] == 1
            assert seen["sovrouter_shared_in_flight_leases", ()] == 0
        finally:
            await slots.aclose()


async def test_the_shared_limit_s_counters_on_metrics_sum_capped_tenants_and_keep_their_kinds_apart() -> None:
    """Each series reads its own count: refusals of tenants beyond the labelled ones add up under ``other`` (one
    series, the sum; not the last tenant's count), the failed takes and the backoff admissions stay apart, and the
    lost leases are the ones counted (found in review)."""
    slots = RedisTenantSlots.from_url(closed_port_url().replace("http://", "redis://"), 1, prefix="slots-collect")
    registry = CollectorRegistry(auto_describe=True)
    registry.register(SharedSlotsCollector(slots, TenantLabels(["t"])))
    try:
        slots.refused_by.update({("t", "shared"): 1, ("u", "instance"): 2, ("v", "instance"): 3, ("w", "shared"): 4})
        slots.stats.update({"errors:take": 5, "local_only": 6, "lost": 7})
        seen = _samples(generate_latest(registry).decode())
        name = "sovrouter_shared_in_flight_refused_total"
        refused = {labels: v for (n, labels), v in seen.items() if n == name}
        assert refused == {(("by", "shared"), ("tenant", "t")): 1, (("by", "instance"), ("tenant", "other")): 5,
                           (("by", "shared"), ("tenant", "other")): 4}
        assert seen["sovrouter_shared_in_flight_local_only_total", (("why", "error"),)] == 5
        assert seen["sovrouter_shared_in_flight_local_only_total", (("why", "backoff"),)] == 6
        assert seen["sovrouter_shared_in_flight_leases_lost_total", ()] == 7
    finally:
        await slots.aclose()


class _RefusedOf(MutableMapping[str, int]):
    """``refused_by`` seen as a count per tenant (refused by the shared count), for :func:`counts_read_race`."""

    def __init__(self, refused_by: Counter[tuple[str, str]]) -> None:
        self.refused_by = refused_by

    def __getitem__(self, tenant: str) -> int:
        return self.refused_by[tenant, "shared"]

    def __setitem__(self, tenant: str, n: int) -> None:
        self.refused_by[tenant, "shared"] = n

    def __delitem__(self, tenant: str) -> None:
        del self.refused_by[tenant, "shared"]

    def __iter__(self) -> Iterator[str]:
        return iter([t for t, _ in self.refused_by])

    def __len__(self) -> int:
        return len(self.refused_by)


async def test_metrics_read_the_refusals_safely_while_the_loop_adds_tenants() -> None:
    """``/metrics`` runs in a worker thread: iterating ``refused_by`` while the event loop refuses a tenant never
    refused before failed the scrape ("dictionary changed size during iteration")."""
    slots = RedisTenantSlots.from_url(closed_port_url().replace("http://", "redis://"), 1, prefix="slots-race-read")
    collector = SharedSlotsCollector(slots, TenantLabels(["t"]))
    for i in range(2000):  # a long read: each scrape iterates every tenant
        slots.refused_by[f"seen_{i}", "instance"] += 1
    try:
        assert counts_read_race(_RefusedOf(slots.refused_by), lambda: list(collector.collect())) == []
    finally:
        await slots.aclose()
