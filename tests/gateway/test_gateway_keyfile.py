"""``api_keys_file``: keys added and revoked without a restart, a wrong file keeping the keys read before, and
every surface of a live gateway reading the same keys (batches: ``tests/batch/test_batch_revocation.py``)."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import openai
import pytest
from gateway_harness import ACME_KEY, live_gateway

from sovrouter.config import ApiKey, Settings, hash_key
from sovrouter.errors import AuthenticationError, ConfigError
from sovrouter.gateway.auth import KeyRing
from sovrouter.gateway.keyfile import KeyFile, read_keys

TENANTS = {"acme-us", "eurobank"}
ONE, TWO = hash_key("sk-file-one"), hash_key("sk-file-two")


def _write(path: Path, entries: object) -> None:
    """Written whole and renamed into place, as the module asks (and as a mounted Secret is updated)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(entries if isinstance(entries, str) else json.dumps(entries), encoding="utf-8")
    os.replace(tmp, path)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _inline_and_file_ring(path: Path, reload_s: float) -> tuple[KeyRing, Clock]:
    """One inline key (eurobank, ``sk-inline``) and a key file holding acme-us's ``sk-file-one``."""
    _write(path, [{"tenant": "acme-us", "key_sha256": ONE}])
    clock = Clock()
    ring = KeyRing([ApiKey(tenant="eurobank", key_sha256=hash_key("sk-inline"))],
                   KeyFile(path, TENANTS, reload_s=reload_s, clock=clock))
    return ring, clock


def test_the_file_reads_as_a_list_or_as_an_api_keys_section(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(f"- tenant: acme-us\n  key_sha256: {ONE}\n", encoding="utf-8")
    assert [k.key_sha256 for k in read_keys(path, TENANTS)] == [ONE]
    path.write_text(f"api_keys:\n  - {{tenant: eurobank, key_sha256: {TWO}, label: ci}}\n", encoding="utf-8")
    assert read_keys(path, TENANTS) == [ApiKey(tenant="eurobank", key_sha256=TWO, label="ci")]
    path.write_text("[]", encoding="utf-8")
    assert read_keys(path, TENANTS) == []


@pytest.mark.parametrize(("text", "says"), [
    ("", "empty"),
    ("   \n", "empty"),
    ("- tenant: acme-us\n  key_sha256: [unclosed", "not valid YAML"),
    (json.dumps([{"tenant": "acme-us", "key_sha256": "sk-plain-secret-pasted"}]), "0.key_sha256"),
    (json.dumps([{"tenant": "acme-us", "key_sha256": ONE, "extra": "sk-plain-secret"}]), "0.extra"),
    (json.dumps([{"tenant": "nobody", "key_sha256": ONE}]), "entry 0 names tenant 'nobody'"),
    (json.dumps([{"tenant": "acme-us", "key_sha256": ONE}, {"tenant": "eurobank", "key_sha256": ONE}]),
     "entry 1: the same key is listed more than once"),
    (json.dumps({"keys": []}), "(root)"),
])
def test_a_wrong_file_is_a_config_error_that_echoes_no_value(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        read_keys(path, TENANTS)
    assert says in err.value.message and str(path) in err.value.message
    assert "sk-plain" not in err.value.message and ONE not in err.value.message


def test_a_key_in_both_the_configuration_and_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    _write(path, [{"tenant": "eurobank", "key_sha256": ONE}])
    with pytest.raises(ConfigError, match="listed more than once"):
        read_keys(path, TENANTS, [ApiKey(tenant="acme-us", key_sha256=ONE)])
    with pytest.raises(ConfigError, match="cannot read it"):
        read_keys(tmp_path / "missing.json", TENANTS)


def test_keys_are_added_and_revoked_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    ring, clock = _inline_and_file_ring(path, reload_s=5.0)
    assert ring.tenant_for("Bearer sk-file-one") == "acme-us"
    assert ring.tenant_for("Bearer sk-inline") == "eurobank"
    _write(path, [{"tenant": "eurobank", "key_sha256": TWO}])  # one revoked, one added
    clock.t = 4.9  # not checked before reload_s has passed
    assert ring.tenant_for("Bearer sk-file-one") == "acme-us"
    clock.t = 5.0
    with pytest.raises(AuthenticationError):
        ring.tenant_for("Bearer sk-file-one")
    assert ring.tenant_for("Bearer sk-file-two") == "eurobank"
    assert ring.tenant_for("Bearer sk-inline") == "eurobank"  # the configuration's own keys stay
    assert ring.digests() == {TWO, hash_key("sk-inline")}


def test_a_wrong_file_keeps_the_keys_read_before_until_it_is_fixed(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "keys.json"
    _write(path, [{"tenant": "acme-us", "key_sha256": ONE}])
    clock = Clock()
    source = KeyFile(path, TENANTS, reload_s=1.0, clock=clock)
    ring = KeyRing([], source)
    for t, broken in enumerate(("[{\"tenant\": \"acme-us\", ", "", json.dumps([{"tenant": "x", "key_sha256": TWO}])),
                               start=1):
        _write(path, broken)
        clock.t = float(t)
        with caplog.at_level(logging.WARNING, logger="sovrouter.gateway.keyfile"):
            assert ring.tenant_for("Bearer sk-file-one") == "acme-us"
        assert source.reloads["error"] == t
        assert "stay in force" in caplog.text and ONE not in caplog.text and TWO not in caplog.text
    clock.t = 10.0  # unchanged since: not read (nor warned about) again
    assert ring.tenant_for("Bearer sk-file-one") == "acme-us" and source.reloads["error"] == 3
    path.unlink()  # gone: the keys read before stay
    clock.t = 11.0
    assert ring.tenant_for("Bearer sk-file-one") == "acme-us" and source.reloads["error"] == 4
    _write(path, [{"tenant": "acme-us", "key_sha256": TWO}])
    clock.t = 12.0
    assert ring.tenant_for("Bearer sk-file-two") == "acme-us" and source.reloads == {"ok": 1, "error": 4}
    with pytest.raises(AuthenticationError):
        ring.tenant_for("Bearer sk-file-one")


def test_a_wrong_file_at_start_up_stops_the_start(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    _write(path, [{"tenant": "nobody", "key_sha256": ONE}])
    data = Path(__file__).resolve().parents[2] / "src" / "sovrouter" / "data" / "demo"
    settings = Settings(catalog=data / "models.json", tenants=data / "tenants.json", api_keys_file=path)
    with pytest.raises(ConfigError, match="names tenant 'nobody'"):
        KeyRing.from_settings(settings)


def test_the_file_is_found_relative_to_the_configuration(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    cfg = tmp_path / "conf" / "gw.yaml"
    cfg.write_text("catalog: models.json\ntenants: tenants.json\napi_keys_file: secrets/keys.yaml\n"
                   "api_keys_reload_s: 0.5\n", encoding="utf-8")
    settings = Settings.load(cfg)
    assert settings.api_keys_file == (tmp_path / "conf" / "secrets" / "keys.yaml").resolve()
    assert settings.api_keys_reload_s == 0.5


def test_a_live_gateway_follows_the_file_with_the_official_client(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    _write(path, [{"tenant": "acme-us", "key_sha256": ONE}])
    with live_gateway(tmp_path / "state", api_keys_file=path, api_keys_reload_s=0.05) as live:
        ask = {"model": "auto", "messages": [{"role": "user", "content": "hello"}]}
        assert live.client("sk-file-one").chat.completions.create(**ask).choices[0].message.content
        assert live.client(ACME_KEY).chat.completions.create(**ask).choices  # api_keys still apply
        _write(path, [{"tenant": "acme-us", "key_sha256": TWO}])
        time.sleep(0.1)
        with pytest.raises(openai.AuthenticationError) as err:
            live.client("sk-file-one").chat.completions.create(**ask)
        assert "sk-file" not in str(err.value.body) and ONE not in str(err.value.body)
        assert live.client("sk-file-two").chat.completions.create(**ask).choices
        with pytest.raises(openai.AuthenticationError):  # every surface reads the same ring
            live.client("sk-file-one").files.list()


def test_reloads_and_keys_in_force_are_on_metrics(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from sovrouter.telemetry.metrics import KeyFileCollector

    path = tmp_path / "keys.json"
    ring, clock = _inline_and_file_ring(path, reload_s=1.0)
    registry = CollectorRegistry()
    registry.register(KeyFileCollector(ring))

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("sovrouter_api_keys") == 2
    _write(path, "not: [valid")
    clock.t = 1.0
    ring.digests()
    _write(path, [{"tenant": "acme-us", "key_sha256": ONE}, {"tenant": "acme-us", "key_sha256": TWO}])
    clock.t = 2.0
    ring.digests()
    assert value("sovrouter_api_keys_file_reloads_total", result="error") == 1
    assert value("sovrouter_api_keys_file_reloads_total", result="ok") == 1
    assert value("sovrouter_api_keys") == 3


def test_the_eval_loop_puts_the_key_file_on_metrics(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from gateway_harness import make_settings

    from sovrouter.adapters.openai_http import new_client
    from sovrouter.evalloop.loop import EvalSettings, build_observability
    from sovrouter.gateway.app import create_app
    from sovrouter.gateway.wiring import build_live_pipeline

    path = tmp_path / "keys.json"
    _write(path, [{"tenant": "acme-us", "key_sha256": ONE}])
    settings = make_settings(tmp_path / "state", "http://127.0.0.1:9", "http://127.0.0.1:9", api_keys_file=path)
    client = new_client()
    pipeline = build_live_pipeline(settings, client=client)
    obs = build_observability(EvalSettings())
    app = create_app(obs.observe(pipeline), settings, on_shutdown=[client.aclose])
    obs.mount(app)
    with TestClient(app) as http:
        body = http.get("/metrics").text
    assert "sovrouter_api_keys 3.0" in body  # the configuration's two and the file's one
    assert 'sovrouter_api_keys_file_reloads_total{result="error"} 0.0' in body


def test_a_key_pasted_as_a_field_name_is_not_echoed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``- sk-...: acme-us`` (a key mapped to its tenant) failed with ``0.sk-...: Extra inputs are not permitted``:
    the key itself in the start-up error, or in the log after a change (found in review, 2026-11-28)."""
    path = tmp_path / "keys.yaml"
    path.write_text(f"- sk-live-pasted-4f9a: acme-us\n- {ONE}: eurobank\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        read_keys(path, TENANTS)
    assert "sk-live" not in err.value.message and ONE not in err.value.message
    assert "0.tenant: Field required" in err.value.message  # where and why stay
    _write(path, [{"tenant": "acme-us", "key_sha256": ONE}])
    clock = Clock()
    ring = KeyRing([], KeyFile(path, TENANTS, reload_s=1.0, clock=clock))
    path.write_text("- sk-live-pasted-4f9a: acme-us\n", encoding="utf-8")
    clock.t = 1.0
    with caplog.at_level(logging.WARNING, logger="sovrouter.gateway.keyfile"):
        assert ring.tenant_for("Bearer sk-file-one") == "acme-us"
    assert "stay in force" in caplog.text and "sk-live" not in caplog.text


def test_a_rewrite_the_stat_cannot_tell_apart_is_still_read(tmp_path: Path) -> None:
    """Same inode, size and modification time: a rewrite in place within one timestamp tick (coarse on many
    kernels and filesystems), or a copy that keeps times. A key revoked so stayed valid until the file changed
    again (found in review, 2026-11-28)."""
    path = tmp_path / "keys.json"
    path.write_text(json.dumps([{"tenant": "acme-us", "key_sha256": ONE}]), encoding="utf-8")
    before = os.stat(path)
    clock = Clock()
    ring = KeyRing([], KeyFile(path, TENANTS, reload_s=1.0, clock=clock))
    with path.open("r+", encoding="utf-8") as f:  # in place, the same length
        f.write(json.dumps([{"tenant": "acme-us", "key_sha256": TWO}]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    clock.t = 1.0
    with pytest.raises(AuthenticationError):
        ring.tenant_for("Bearer sk-file-one")
    assert ring.tenant_for("Bearer sk-file-two") == "acme-us"


def _secret_volume(tmp_path: Path) -> tuple[Path, Path]:
    """A Secret volume's layout, ``keys.json -> ..data/keys.json`` and ``..data -> ..<first>``, with the folder
    of its next update (key ONE in the first, TWO in the second) beside it."""
    first, second = tmp_path / "..2026_11_28_a", tmp_path / "..2026_11_28_b"
    for folder, digest in ((first, ONE), (second, TWO)):
        folder.mkdir()
        (folder / "keys.json").write_text(json.dumps([{"tenant": "acme-us", "key_sha256": digest}]),
                                          encoding="utf-8")
    (tmp_path / "..data").symlink_to(first.name)
    (tmp_path / "keys.json").symlink_to("..data/keys.json")
    return first, second


def test_a_kubernetes_style_symlink_swap_is_read(tmp_path: Path) -> None:
    """A Secret volume: ``keys.json -> ..data/keys.json``, ``..data -> ..<timestamp>``, swapped atomically."""
    _, second = _secret_volume(tmp_path)
    clock = Clock()
    ring = KeyRing([], KeyFile(tmp_path / "keys.json", TENANTS, reload_s=1.0, clock=clock))
    assert ring.tenant_for("Bearer sk-file-one") == "acme-us"
    (tmp_path / "..data_tmp").symlink_to(second.name)
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    clock.t = 1.0
    assert ring.tenant_for("Bearer sk-file-two") == "acme-us"
    with pytest.raises(AuthenticationError):
        ring.tenant_for("Bearer sk-file-one")


def test_the_batch_service_made_without_the_ring_still_reads_the_file(tmp_path: Path) -> None:
    """``make_batch_service(settings, pipeline)`` read ``api_keys`` only: every batch created with a key of
    ``api_keys_file`` was failed as revoked when taken."""
    from gateway_harness import make_settings

    from sovrouter.adapters.openai_http import new_client
    from sovrouter.gateway.wiring import build_live_pipeline, make_batch_service

    path = tmp_path / "keys.json"
    _write(path, [{"tenant": "acme-us", "key_sha256": ONE}])
    settings = make_settings(tmp_path / "state", "http://127.0.0.1:9", "http://127.0.0.1:9", api_keys_file=path)
    service = make_batch_service(settings, build_live_pipeline(settings, client=new_client()))
    assert service is not None and service.keys is not None
    keys = service.keys() if callable(service.keys) else service.keys
    assert ONE in keys and hash_key(ACME_KEY) in keys
    service.store.close()


def test_a_file_of_comments_only_lists_no_keys(tmp_path: Path) -> None:
    """Not empty (that is refused), but nothing in it: ``# every key revoked`` or an empty ``api_keys:`` section
    revokes the file's keys, as ``[]`` does."""
    path = tmp_path / "keys.yaml"
    for text in ("# every key revoked for now\n", "api_keys:\n", "null\n"):
        path.write_text(text, encoding="utf-8")
        assert read_keys(path, TENANTS) == []
    _write(path, [{"tenant": "acme-us", "key_sha256": ONE}])
    clock = Clock()
    ring = KeyRing([], KeyFile(path, TENANTS, reload_s=1.0, clock=clock))
    _write(path, "# all revoked\n")
    clock.t = 1.0
    with pytest.raises(AuthenticationError):
        ring.tenant_for("Bearer sk-file-one")
    assert ring.digests() == frozenset() and ring.source is not None and ring.source.reloads["error"] == 0


def test_a_long_key_of_letters_only_is_not_echoed_as_a_field_name(tmp_path: Path) -> None:
    """A plain word is shown (``extra``), up to 40 letters: a pasted key may be letters only."""
    secret = "sk" + "Q" * 46  # no digit, no dash: a word but for its length
    path = tmp_path / "keys.yaml"
    path.write_text(f"- tenant: acme-us\n  key_sha256: {ONE}\n  {secret[2:]}: x\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        read_keys(path, TENANTS)
    assert secret[2:] not in err.value.message and "0.(a field): Extra inputs are not permitted" in err.value.message


def test_the_file_is_checked_at_most_every_reload_s_after_each_check(tmp_path: Path) -> None:
    """Not only before the first check: each check puts the next one ``reload_s`` later (a file read, hashed and
    parsed at every request of a busy gateway otherwise)."""
    path = tmp_path / "keys.json"
    _write(path, [{"tenant": "acme-us", "key_sha256": ONE}])
    clock = Clock()
    ring = KeyRing([], KeyFile(path, TENANTS, reload_s=5.0, clock=clock))
    _write(path, [{"tenant": "acme-us", "key_sha256": TWO}])
    clock.t = 1.0  # read at construction: the first check is reload_s later
    assert ring.tenant_for("Bearer sk-file-one") == "acme-us"
    clock.t = 5.0
    assert ring.tenant_for("Bearer sk-file-two") == "acme-us"  # checked at 5.0; the next check is at 10.0
    _write(path, [{"tenant": "acme-us", "key_sha256": ONE}])
    clock.t = 9.9
    assert ring.tenant_for("Bearer sk-file-two") == "acme-us"
    clock.t = 10.0
    assert ring.tenant_for("Bearer sk-file-one") == "acme-us"
    with pytest.raises(AuthenticationError):
        ring.tenant_for("Bearer sk-file-two")


def test_a_rewrite_with_the_same_keys_is_a_good_reload_that_changes_nothing(tmp_path: Path) -> None:
    """``reloads_total{result="ok"}`` counts every change read (an operator checks it after each edit), not only
    those that changed the keys in force."""
    from prometheus_client import CollectorRegistry

    from sovrouter.telemetry.metrics import KeyFileCollector

    path = tmp_path / "keys.json"
    _write(path, [{"tenant": "acme-us", "key_sha256": ONE}])
    clock = Clock()
    source = KeyFile(path, TENANTS, reload_s=1.0, clock=clock)
    registry = CollectorRegistry()
    registry.register(KeyFileCollector(KeyRing([], source)))
    _write(path, f"# reformatted\n- {{tenant: acme-us, key_sha256: {ONE}}}\n")
    clock.t = 1.0
    assert source.refresh() is False
    assert source.reloads == {"ok": 1, "error": 0}
    assert [k.key_sha256 for k in source.keys] == [ONE]
    for result, count in (("ok", 1), ("error", 0)):  # each count under its own label
        assert registry.get_sample_value("sovrouter_api_keys_file_reloads_total", {"result": result}) == count


def test_a_key_both_in_api_keys_and_in_the_file_stops_the_start(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    _write(path, [{"tenant": "eurobank", "key_sha256": ONE}])
    data = Path(__file__).resolve().parents[2] / "src" / "sovrouter" / "data" / "demo"
    settings = Settings(catalog=data / "models.json", tenants=data / "tenants.json", api_keys_file=path,
                        api_keys=[ApiKey(tenant="acme-us", key_sha256=ONE)])
    with pytest.raises(ConfigError, match="listed more than once"):
        KeyRing.from_settings(settings)


def test_the_batch_service_follows_the_ring_it_is_given(tmp_path: Path) -> None:
    """``make_batch_service(settings, pipeline, keys)`` reads the ring's keys each time it judges a batch (a
    snapshot taken at start-up would never see a revocation, nor a key added since)."""
    from gateway_harness import make_settings

    from sovrouter.adapters.openai_http import new_client
    from sovrouter.gateway.wiring import build_live_pipeline, make_batch_service

    path = tmp_path / "keys.json"
    _write(path, [{"tenant": "acme-us", "key_sha256": ONE}])
    settings = make_settings(tmp_path / "state", "http://127.0.0.1:9", "http://127.0.0.1:9", api_keys_file=path)
    ring = KeyRing.from_settings(settings)
    service = make_batch_service(settings, build_live_pipeline(settings, client=new_client()), ring)
    assert service is not None and callable(service.keys)
    in_force = service.keys  # what the service asks each time it judges a batch
    assert ONE in in_force() and TWO not in in_force()
    _write(path, [{"tenant": "acme-us", "key_sha256": TWO}])
    assert ONE not in in_force() and TWO in in_force() and hash_key(ACME_KEY) in in_force()
    service.store.close()


def test_metrics_show_no_key_file_when_there_is_none(tmp_path: Path) -> None:
    """Without ``api_keys_file``, no reload counter (an operator would read ``0`` as a file read fine); a second
    app mounted on the same observability registers the collector once."""
    from fastapi.testclient import TestClient
    from gateway_harness import make_settings

    from sovrouter.adapters.openai_http import new_client
    from sovrouter.evalloop.loop import EvalSettings, build_observability
    from sovrouter.gateway.app import create_app
    from sovrouter.gateway.wiring import build_live_pipeline

    client = new_client()
    obs = build_observability(EvalSettings())
    plain = make_settings(tmp_path / "plain", "http://127.0.0.1:9", "http://127.0.0.1:9")
    app = create_app(obs.observe(build_live_pipeline(plain, client=client)), plain)
    obs.mount(app)
    with TestClient(app) as http:
        body = http.get("/metrics").text
    assert "sovrouter_api_keys_file_reloads" not in body and "sovrouter_api_keys " not in body
    path = tmp_path / "keys.json"
    _write(path, [{"tenant": "acme-us", "key_sha256": ONE}])
    keyed = make_settings(tmp_path / "keyed", "http://127.0.0.1:9", "http://127.0.0.1:9", api_keys_file=path)
    pipeline = obs.observe(build_live_pipeline(keyed, client=client))
    for _ in range(2):  # two apps (a reload of the app in one process): one collector
        app = create_app(pipeline, keyed, on_shutdown=[client.aclose])
        obs.mount(app)
    with TestClient(app) as http:
        assert "sovrouter_api_keys 3.0" in http.get("/metrics").text


def test_keys_added_and_revoked_with_the_cli_on_a_live_gateway(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The operator's path end to end: ``sovrouter keys new`` / ``keys revoke`` on the configuration's
    ``api_keys_file`` while a gateway serves, the official client on the other side."""
    from sovrouter.cli.main import main

    path = tmp_path / "keys.yaml"
    path.write_text("[]\n", encoding="utf-8")
    data = Path(__file__).resolve().parents[2] / "src" / "sovrouter" / "data" / "demo"
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(f"catalog: {data / 'models.json'}\ntenants: {data / 'tenants.json'}\napi_keys_file: keys.yaml\n",
                   encoding="utf-8")
    ask = {"model": "auto", "messages": [{"role": "user", "content": "hello"}]}
    with live_gateway(tmp_path / "state", api_keys_file=path, api_keys_reload_s=0.05) as live:
        assert main(["keys", "new", "--tenant", "acme-us", "--label", "ci", "--config", str(cfg)]) == 0
        key = capsys.readouterr().err.split("key (shown once): ")[1].strip()
        time.sleep(0.1)
        assert live.client(key).chat.completions.create(**ask).choices
        assert main(["keys", "revoke", "--label", "ci", "--config", str(cfg)]) == 0
        time.sleep(0.1)
        with pytest.raises(openai.AuthenticationError):
            live.client(key).chat.completions.create(**ask)


def test_a_secret_volume_named_in_the_configuration_is_followed(tmp_path: Path) -> None:
    """``Settings.load`` resolved the path's links: the ring read ``..<first>/keys.json`` for ever, so after the
    Secret's update (``..data`` relinked, the old folder deleted) a removed key stayed valid and a new one was
    refused until a restart (found in review)."""
    import shutil

    first, second = _secret_volume(tmp_path)
    data = Path(__file__).resolve().parents[2] / "src" / "sovrouter" / "data" / "demo"
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(f"catalog: {data / 'models.json'}\ntenants: {data / 'tenants.json'}\napi_keys_file: keys.json\n",
                   encoding="utf-8")
    settings = Settings.load(cfg)
    assert settings.api_keys_file == tmp_path / "keys.json"
    ring = KeyRing.from_settings(settings)
    assert ring.tenant_for("Bearer sk-file-one") == "acme-us"
    (tmp_path / "..data_tmp").symlink_to(second.name)
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    shutil.rmtree(first)
    assert hash_key("sk-file-two") in ring.digests()  # read again at once
    with pytest.raises(AuthenticationError):
        ring.tenant_for("Bearer sk-file-one")
