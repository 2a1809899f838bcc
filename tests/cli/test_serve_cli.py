"""``sovrouter serve`` as a real process, and ``sovrouter keys``."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis

from sovrouter.cli.main import main
from sovrouter.cli.serve import shutdown_order
from sovrouter.config import hash_key
from sovrouter.gateway.server import ServerThread
from sovrouter.testing_postgres import PostgresServer
from sovrouter.testing_redis import RedisServer
from sovrouter.testing_upstream import UpstreamBehaviour, closed_port_url, create_upstream_app

DATA = Path(__file__).resolve().parents[2] / "src" / "sovrouter" / "data" / "demo"


def _wait_healthy(proc: subprocess.Popen[str] | subprocess.Popen[bytes], port: int) -> str:
    """Wait until the served gateway answers /health; its base URL."""
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/health").status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "serve did not come up"
        time.sleep(0.1)


def _config(path: Path, base_urls: list[str], extra_yaml: str = "", state_dir: str = "state",
            upstream_yaml: str = "") -> Path:
    """A serve configuration over the demo catalog: key ``sk-serve`` for acme-us, ``sovereign-large/eu-sov`` at
    ``base_urls`` (``upstream_yaml``: more lines of that upstream), then ``extra_yaml``."""
    urls = ", ".join(f"'{u}'" for u in base_urls)
    path.write_text(
        f"catalog: {DATA / 'models.json'}\ntenants: {DATA / 'tenants.json'}\nstate_dir: {state_dir}\n"
        "detector: none\npolicy: availability\n"
        f"api_keys:\n  - tenant: acme-us\n    key_sha256: {hash_key('sk-serve')}\n"
        f"upstreams:\n  sovereign-large/eu-sov:\n    base_urls: [{urls}]\n" + upstream_yaml + extra_yaml,
        encoding="utf-8")
    return path


def _popen(config: Path, port: int, **kwargs: Any) -> subprocess.Popen[str]:
    """``sovrouter serve`` on ``port`` with ``config`` (``kwargs`` go to ``Popen``: ``stderr``, ``cwd``)."""
    return subprocess.Popen([sys.executable, "-m", "sovrouter.cli.main", "serve", "--config", str(config),
                             "--port", str(port), "--log-level", "warning"], text=True, **kwargs)


def test_keys_hash_prints_sha256(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "hash", "sk-abc"]) == 0
    assert capsys.readouterr().out.strip() == hash_key("sk-abc")


def test_keys_new_prints_a_config_entry_matching_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "new", "--tenant", "acme-us"]) == 0
    out = capsys.readouterr()
    key = out.err.split("key (shown once): ")[1].strip()
    assert f"key_sha256: {hash_key(key)}" in out.out and "tenant: acme-us" in out.out


def test_serve_runs_the_gateway(tmp_path: Path) -> None:
    behaviour = UpstreamBehaviour(reply="served")
    port = int(closed_port_url().rsplit(":", 1)[1])
    with ServerThread(create_upstream_app(behaviour), log_level="critical") as up:
        proc = _popen(_config(tmp_path / "sovrouter.yaml", [up.url]), port)
        try:
            url = _wait_healthy(proc, port)
            r = httpx.post(url + "/v1/chat/completions", headers={"Authorization": "Bearer sk-serve"},
                           json={"messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "served"
            # the Batch API is served too, from the same pipeline
            auth = {"Authorization": "Bearer sk-serve"}
            line = json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                               "body": {"messages": [{"role": "user", "content": "hi"}]}})
            f = httpx.post(url + "/v1/files", headers=auth, files={"file": ("in.jsonl", line.encode()),
                                                                   "purpose": (None, "batch")})
            b = httpx.post(url + "/v1/batches", headers=auth, json={
                "input_file_id": f.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"})
            for _ in range(200):
                batch = httpx.get(url + f"/v1/batches/{b.json()['id']}", headers=auth).json()
                if batch["status"] == "completed":
                    break
                time.sleep(0.05)
            out = httpx.get(url + f"/v1/files/{batch['output_file_id']}/content", headers=auth).text
            assert json.loads(out)["response"]["body"]["choices"][0]["message"]["content"] == "served"
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    assert (tmp_path / "state" / "records.sqlite").is_file()
    assert (tmp_path / "state" / "batches" / "batches.sqlite").is_file()


def test_serve_wires_the_shared_cache_and_the_shared_affinity_model(tmp_path: Path, redis_srv: RedisServer) -> None:
    """`sovrouter serve` with `cache.shared` and `affinity_events`: an answer lands in Redis, the replica chooser's
    start and end events are on the deployment's stream, and the process stops cleanly."""
    behaviour = UpstreamBehaviour(reply="served")
    port = int(closed_port_url().rsplit(":", 1)[1])
    with ServerThread(create_upstream_app(behaviour), log_level="critical") as up, \
            ServerThread(create_upstream_app(behaviour), log_level="critical") as up2:
        config = _config(tmp_path / "sovrouter.yaml", [up.url, up2.url],
                         f"cache:\n  shared: {{url: '{redis_srv.url}', tenants: [acme-us], key_prefix: serve-test}}\n"
                         f"affinity_events: {{url: '{redis_srv.url}', key_prefix: serve-test}}\n")
        proc = _popen(config, port, stderr=subprocess.PIPE)
        try:
            url = _wait_healthy(proc, port)
            r = httpx.post(url + "/v1/chat/completions", headers={"Authorization": "Bearer sk-serve"},
                           json={"model": "sovereign-large/eu-sov", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "served"
            client = redis.Redis.from_url(redis_srv.url)
            try:
                deadline = time.monotonic() + 10
                while client.xlen("serve-test:affinity:sovereign-large/eu-sov") < 2 and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert client.xlen("serve-test:affinity:sovereign-large/eu-sov") == 2  # the call's start and end
                assert len(list(client.scan_iter(match="serve-test:e:*"))) == 1
            finally:
                client.close()
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=15)
    assert "Traceback" not in err, err[-2000:]  # start-up and shutdown (readers, Redis clients) raised nothing


def test_serve_polls_the_requests_the_engines_hold(tmp_path: Path) -> None:
    """`engine_load` on an upstream: the served gateway scrapes the engine's /metrics in its loop and shows what it
    read on its own /metrics; the poller stops cleanly with the process."""
    behaviour = UpstreamBehaviour(reply="served", engine_metrics="vllm", other_running=6, other_waiting=2)
    port = int(closed_port_url().rsplit(":", 1)[1])
    with ServerThread(create_upstream_app(behaviour), log_level="critical") as up:
        config = _config(tmp_path / "sovrouter.yaml", [up.url + "/v1"],
                         upstream_yaml="    engine_load: {interval_s: 0.1}\n")
        proc = _popen(config, port, stderr=subprocess.PIPE)
        try:
            url = _wait_healthy(proc, port)
            gauge = 'sovrouter_upstream_engine_requests{deployment="eu-sov",slot="sovereign-large"}'
            deadline = time.monotonic() + 10
            while gauge not in (text := httpx.get(url + "/metrics").text) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert f"{gauge} 8.0" in text  # 6 running and 2 waiting
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=15)
    assert "Traceback" not in err, err[-2000:]


def test_serve_gives_the_replica_chooser_each_engines_load(tmp_path: Path) -> None:
    """Two replicas with `engine_load` and the cheapest deployment chooser (the replica chooser is the only
    reader): the served gateway starts, scrapes both engines and keeps new conversations off the replica whose
    engine holds another client's backlog."""
    busy = UpstreamBehaviour(reply="busy replica", engine_metrics="llamacpp", other_running=1, other_waiting=30)
    idle = UpstreamBehaviour(reply="idle replica", engine_metrics="llamacpp")
    port = int(closed_port_url().rsplit(":", 1)[1])
    with ServerThread(create_upstream_app(busy), log_level="critical") as up0, \
            ServerThread(create_upstream_app(idle), log_level="critical") as up1:
        config = _config(tmp_path / "sovrouter.yaml", [up0.url + "/v1", up1.url + "/v1"],
                         "deployment_choice: cheapest\n", upstream_yaml="    engine_load: {interval_s: 0.05}\n")
        proc = _popen(config, port, stderr=subprocess.PIPE)
        try:
            url = _wait_healthy(proc, port)
            deadline = time.monotonic() + 10
            while min(busy.scrapes, idle.scrapes) < 2 and time.monotonic() < deadline:  # a whole poll has reported
                time.sleep(0.02)
            answers = []
            for k in range(4):
                r = httpx.post(url + "/v1/chat/completions", headers={"Authorization": "Bearer sk-serve"},
                               json={"model": "sovereign-large/eu-sov",
                                     "messages": [{"role": "user", "content": f"conversation {k}: hello"}]})
                assert r.status_code == 200
                answers.append(r.json()["choices"][0]["message"]["content"])
            assert answers == ["idle replica"] * 4 and busy.calls == 0
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=15)
    assert "Traceback" not in err, err[-2000:]


def _serve(tmp_path: Path, name: str, upstream_url: str, extra_yaml: str,
           procs: list[subprocess.Popen[str]]) -> str:
    """A `sovrouter serve` process (appended to ``procs``) over one upstream, with ``extra_yaml`` added to its
    configuration; its base URL once healthy."""
    port = int(closed_port_url().rsplit(":", 1)[1])
    config = _config(tmp_path / f"{name}.yaml", [upstream_url], extra_yaml, state_dir=f"state-{name}")
    proc = _popen(config, port, cwd=tmp_path, stderr=subprocess.PIPE)
    procs.append(proc)
    return _wait_healthy(proc, port)


@pytest.mark.slow
def test_a_batch_outlives_its_serve_process_being_killed(tmp_path: Path, pg_srv: PostgresServer) -> None:
    """Two `sovrouter serve` processes over one PostgreSQL batch store: the one running a batch is killed
    (SIGKILL: no shutdown, its lease left behind); the other takes the batch over once the lease lapses and
    finishes it, every line in the output once, the lines answered before the kill not asked again."""
    behaviour = UpstreamBehaviour(reply="served", first_token_delay_s=0.05)
    database = pg_srv.new_database()
    auth = {"Authorization": "Bearer sk-serve"}
    procs: list[subprocess.Popen[str]] = []
    shared = f"{{url: '{database}', lease_s: 2, poll_s: 0.2, tenants: [acme-us]}}"
    store = f"cache: {{exact_enabled: false}}\nbatches: {{concurrency: 2, store: {shared}}}\n"
    with ServerThread(create_upstream_app(behaviour), log_level="critical") as up:
        def serve(name: str) -> str:
            return _serve(tmp_path, name, up.url, store, procs)

        try:
            first = serve("a")
            lines = "".join(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                                        "body": {"messages": [{"role": "user", "content": f"q {i}"}]}}) + "\n"
                            for i in range(40))
            f = httpx.post(first + "/v1/files", headers=auth, files={"file": ("in.jsonl", lines.encode()),
                                                                     "purpose": (None, "batch")}).json()
            batch = httpx.post(first + "/v1/batches", headers=auth, json={
                "input_file_id": f["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}).json()
            deadline = time.monotonic() + 30
            while behaviour.calls < 8 and time.monotonic() < deadline:
                time.sleep(0.01)
            procs[0].kill()
            procs[0].wait(timeout=10)
            asked_before_kill = behaviour.calls
            assert 0 < asked_before_kill < 40
            second = serve("b")
            deadline = time.monotonic() + 60
            while True:
                state = httpx.get(second + f"/v1/batches/{batch['id']}", headers=auth).json()
                if state["status"] == "completed" or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert state["status"] == "completed" and state["request_counts"]["completed"] == 40
            out = httpx.get(second + f"/v1/files/{state['output_file_id']}/content", headers=auth).text
            assert [json.loads(x)["custom_id"] for x in out.splitlines()] == [f"r{i}" for i in range(40)]
            assert behaviour.calls <= 40 + 2  # only the lines in flight at the kill (concurrency 2) were asked twice
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
                proc.communicate(timeout=15)


@pytest.mark.slow
def test_feedback_reaches_a_response_another_serve_process_gave(tmp_path: Path, pg_srv: PostgresServer) -> None:
    """Two `sovrouter serve` processes with `records` on one PostgreSQL database: a response from one takes
    feedback on the other (without it, a 404 for (k-1)/k of the feedback behind a load balancer)."""
    behaviour = UpstreamBehaviour(reply="served")
    database = pg_srv.new_database()
    procs: list[subprocess.Popen[str]] = []
    with ServerThread(create_upstream_app(behaviour), log_level="critical") as up:
        def serve(name: str) -> str:
            return _serve(tmp_path, name, up.url, f"records: {{url: '{database}', ship_every_s: 0.1}}\n", procs)

        try:
            a, b = serve("a"), serve("b")
            r = httpx.post(a + "/v1/chat/completions", headers={"Authorization": "Bearer sk-serve"},
                           json={"messages": [{"role": "user", "content": "hi"}]})
            response_id = r.json()["id"]
            deadline = time.monotonic() + 10
            while True:
                fb = httpx.post(b + "/v1/feedback", json={"response_id": response_id, "thumbs": "up"},
                                headers={"Authorization": "Bearer sk-serve"})
                if fb.status_code != 404 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)  # shipped within ship_every_s
            assert fb.status_code == 200 and fb.json()["score"] == 1.0
            missing = httpx.post(b + "/v1/feedback", json={"response_id": "chatcmpl-nope", "thumbs": "up"},
                                 headers={"Authorization": "Bearer sk-serve"})
            assert missing.status_code == 404
        finally:
            for proc in procs:
                proc.terminate()
            errors = [proc.communicate(timeout=15)[1] for proc in procs]
    assert all("Traceback" not in e for e in errors), errors
    shipped = sqlite3.connect(tmp_path / "state-a" / "records.sqlite").execute(
        "SELECT last FROM outbox_marks WHERE name = 'records->records'").fetchone()
    assert shipped == (1,)  # the shutdown left nothing unshipped
    with psycopg.connect(database.replace("postgresql+psycopg", "postgresql")) as db:  # the feedback, shared
        assert db.execute("SELECT score FROM quality_signals WHERE source = 'feedback'").fetchall() == [(1.0,)]


async def test_shadow_calls_in_flight_finish_before_the_shared_client_closes() -> None:
    """``serve`` closed the HTTP client before draining the eval loop: a shadow call still running then failed on a
    closed client and its comparison was lost."""
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(200)))
    seen: list[int] = []
    order: list[str] = []

    async def shadow_call() -> None:
        await asyncio.sleep(0.05)
        seen.append((await client.get("http://upstream/v1/chat/completions")).status_code)

    task = asyncio.create_task(shadow_call())

    async def drain() -> None:
        await task
        order.append("drain")

    async def stop_poller() -> None:
        order.append("poller")

    async def close_store() -> None:
        order.append("store")

    for hook in shutdown_order(stop_poller, drain, client.aclose, [close_store]):
        await hook()
    assert seen == [200] and order == ["poller", "drain", "store"] and client.is_closed


@pytest.mark.parametrize("port", ["0", "65536", "99999", "-1", "http"])
def test_a_port_out_of_range_is_refused_before_anything_starts(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    """99999 was accepted: uvicorn bound 34463 (99999 mod 65536) while its log said 99999."""
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--config", "nowhere.yaml", "--port", port])
    assert exc.value.code == 2 and "1 to 65535" in capsys.readouterr().err
