"""``sovrouter batch`` end to end: config file -> live pipeline -> loopback OpenAI-compatible upstream."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sovrouter.cli.main import main
from sovrouter.gateway.server import ServerThread
from sovrouter.testing_redis import RedisServer
from sovrouter.testing_upstream import UpstreamBehaviour, create_upstream_app

DATA = Path(__file__).resolve().parents[2] / "src" / "sovrouter" / "data" / "demo"


def _config(tmp_path: Path, url: str) -> Path:
    catalog = json.loads((DATA / "models.json").read_text())
    upstreams = {f"{s['id']}/{d['id']}": {"base_urls": [url], "model": f"{s['id']}/{d['id']}"}
                 for s in catalog["slots"] for d in s["deployments"]}
    cfg = {"catalog": str(DATA / "models.json"), "tenants": str(DATA / "tenants.json"), "state_dir": str(tmp_path),
           "detector": "none", "policy": "availability", "router": "baseline", "upstreams": upstreams,
           "cache": {"exact_enabled": False}}
    path = tmp_path / "sovrouter.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_batch_cli_writes_one_output_line_per_input_line(tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    good = {"method": "POST", "url": "/v1/chat/completions",
            "body": {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8}}
    inp.write_text("\n".join([json.dumps({"custom_id": "one", **good}), "{broken",
                              json.dumps({"custom_id": "two", **good})]) + "\n")
    behaviour = UpstreamBehaviour(reply="hi there")
    with ServerThread(create_upstream_app(behaviour), log_level="critical") as up:
        rc = main(["batch", "--config", str(_config(tmp_path, up.url)), "--tenant", "acme-us",
                   "--input", str(inp), "--output", str(out), "--scope", "plan"])
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["custom_id"] for r in rows] == ["one", None, "two"]
    for r in (rows[0], rows[2]):
        assert r["response"]["status_code"] == 200 and r["error"] is None
        body = r["response"]["body"]
        assert body["choices"][0]["message"]["content"] == "hi there"
        assert body["sovrouter"]["route"] == {"slot": "local-small", "deployment": "edge"}  # cheapest allowed
    assert rows[1]["response"] is None and rows[1]["error"]["code"] == "invalid_json"
    assert behaviour.calls == 2 and behaviour.last_body is not None
    assert behaviour.last_body["model"] == "local-small/edge"


def test_batch_cli_unknown_tenant_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inp = tmp_path / "in.jsonl"
    inp.write_text("")
    rc = main(["batch", "--config", str(_config(tmp_path, "http://127.0.0.1:9")), "--tenant", "nobody",
               "--input", str(inp), "--output", str(tmp_path / "out.jsonl")])
    assert rc == 2
    assert "unknown tenant" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


def test_batch_cli_sends_its_last_affinity_events_before_it_exits(tmp_path: Path, redis_srv: RedisServer) -> None:
    """The command left the affinity bus to build_live_pipeline and never closed it: the last "done" events were
    cancelled with the event loop, and live gateways sharing the stream modelled those calls as running on their
    replicas for max_call_s (found in review, 2026-11-28)."""
    import redis

    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [{"custom_id": f"l{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"messages": [{"role": "user", "content": f"Say hi {i}"}], "max_tokens": 8}} for i in range(6)]
    inp.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    with ServerThread(create_upstream_app(UpstreamBehaviour(reply="hi")), log_level="critical") as up:
        cfg = yaml.safe_load(_config(tmp_path, up.url).read_text())
        cfg["upstreams"]["local-small/edge"]["base_urls"] = [up.url, up.url + "/v1"]  # two names, two replicas
        cfg["affinity_events"] = {"url": redis_srv.url, "key_prefix": "batch-test"}
        path = tmp_path / "affinity.yaml"
        path.write_text(yaml.safe_dump(cfg))
        assert main(["batch", "--config", str(path), "--tenant", "acme-us", "--input", str(inp),
                     "--output", str(out), "--scope", "plan", "--concurrency", "3"]) == 0
    entries = redis.Redis.from_url(redis_srv.url).xrange("batch-test:affinity:local-small/edge")
    kinds = [json.loads(fields[b"e"])["kind"] for _, fields in entries]
    assert kinds.count("start") == 6 and kinds.count("done") == 6


def test_batch_cli_checks_its_arguments_and_output_before_building_the_pipeline(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--output`` equal to ``--input`` silently replaced the input, ``--output`` under a file failed only after the
    pipeline was built, and ``--concurrency 0`` exited 1 with its own message prefix (found in review,
    2026-11-28). The pipeline's state folder is how we know it was never built."""
    cfg = yaml.safe_load(_config(tmp_path, "http://127.0.0.1:9").read_text())
    cfg["state_dir"] = str(tmp_path / "state")
    config = tmp_path / "batch.yaml"
    config.write_text(yaml.safe_dump(cfg))
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"custom_id": "one", "method": "POST", "url": "/v1/chat/completions",
                               "body": {"messages": [{"role": "user", "content": "Say hi"}]}}) + "\n")
    (tmp_path / "file").write_text("")
    before = inp.read_bytes(), config.read_bytes()
    base = ["batch", "--config", str(config), "--tenant", "acme-us", "--input", str(inp)]
    for extra, said in [
        (["--output", str(inp)], "is the input file"),
        (["--output", str(tmp_path / "." / "in.jsonl")], "is the input file"),
        (["--output", str(config)], "configuration file"),
        (["--output", str(tmp_path / "file" / "out.jsonl")], "cannot create the output folder"),
        (["--output", str(tmp_path)], "is a directory"),
        (["--output", str(tmp_path / "out.jsonl"), "--concurrency", "0"], "--concurrency must be at least 1"),
    ]:
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("sovrouter: ") and said in err and err.count("\n") == 1, err
    assert (inp.read_bytes(), config.read_bytes()) == before
    assert not (tmp_path / "state").exists() and not (tmp_path / "out.jsonl").exists()
    # a missing folder is created when the output is written (every line answered: here, an error line each)
    assert main([*base, "--output", str(tmp_path / "new" / "out.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "new" / "out.jsonl").read_text().splitlines()]
    assert [r["custom_id"] for r in rows] == ["one"]
