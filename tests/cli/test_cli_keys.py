"""``sovrouter keys new / revoke / list`` on a configuration's ``api_keys_file``: written whole under an edit lock,
read back by a gateway's ring without a restart; mistakes are one-line errors that change nothing."""

from __future__ import annotations

import io
import json
import os
import stat
import threading
from pathlib import Path

import pytest
import yaml

from sovrouter.cli.main import main
from sovrouter.config import ApiKey, Settings, hash_key
from sovrouter.errors import AuthenticationError, ConfigError
from sovrouter.gateway.auth import KeyRing
from sovrouter.gateway.keyfile import editing, read_keys, write_keys
from sovrouter.testing_workload import DEMO_DATA

INLINE = "sk-inline-0001"


def _config(tmp_path: Path, keys_file: str | None = "secrets/keys.yaml") -> Path:
    cfg = tmp_path / "gw.yaml"
    raw: dict[str, object] = {"catalog": str(DEMO_DATA / "models.json"), "tenants": str(DEMO_DATA / "tenants.json"),
                              "api_keys": [{"tenant": "eurobank", "key_sha256": hash_key(INLINE), "label": "ops"}]}
    if keys_file is not None:
        (tmp_path / keys_file).parent.mkdir(parents=True, exist_ok=True)
        raw["api_keys_file"] = keys_file
    cfg.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return cfg


def _new(cfg: Path, capsys: pytest.CaptureFixture[str], tenant: str = "acme-us", label: str = "") -> str:
    assert main(["keys", "new", "--tenant", tenant, "--config", str(cfg), "--label", label]) == 0
    return capsys.readouterr().err.split("key (shown once): ")[1].strip()


def test_new_adds_to_the_file_and_a_running_ring_takes_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path)
    first = _new(cfg, capsys, label="ci")
    path = tmp_path / "secrets" / "keys.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # a new file is the owner's only
    ring = KeyRing.from_settings(Settings.load(cfg))
    assert ring.tenant_for(f"Bearer {first}") == "acme-us" and ring.tenant_for(f"Bearer {INLINE}") == "eurobank"
    second = _new(cfg, capsys, tenant="eurobank")
    assert hash_key(second) in ring.digests()  # read again at once (as the batch path asks), no restart
    assert ring.tenant_for(f"Bearer {second}") == "eurobank"
    entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert entries == [{"tenant": "acme-us", "key_sha256": hash_key(first), "label": "ci"},
                       {"tenant": "eurobank", "key_sha256": hash_key(second)}]
    assert first not in path.read_text(encoding="utf-8")  # only digests are stored
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # no temporary file left


def test_revoke_removes_from_the_file_and_the_ring_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _config(tmp_path)
    by_label, by_digest, by_stdin, kept = (_new(cfg, capsys, label=x) for x in ("old", "d", "s", "keep"))
    ring = KeyRing.from_settings(Settings.load(cfg))
    assert main(["keys", "revoke", "--config", str(cfg), "--label", "old"]) == 0
    assert "removed 1 key(s)" in capsys.readouterr().out
    assert main(["keys", "revoke", "--config", str(cfg), "--sha256", hash_key(by_digest)[:12].upper()]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(by_stdin + "\n"))
    assert main(["keys", "revoke", "--config", str(cfg), "--key-stdin"]) == 0
    assert len(ring.digests()) == 2  # read again at once: the inline key and the one kept
    for gone in (by_label, by_digest, by_stdin):
        with pytest.raises(AuthenticationError):
            ring.tenant_for(f"Bearer {gone}")
    assert ring.tenant_for(f"Bearer {kept}") == "acme-us" and ring.tenant_for(f"Bearer {INLINE}") == "eurobank"


@pytest.mark.parametrize(("argv", "said"), [
    (["revoke", "--label", "nobody"], "no key in"),
    (["revoke", "--label", "ops"], "in api_keys of"),  # the configuration's own key: reported, not edited
    (["revoke", "--label", ""], "non-empty label"),
    (["revoke", "--sha256", "abc"], "at least its first 12"),
    (["revoke", "--sha256", "zz" * 8], "in hex"),
    (["new", "--tenant", "nobody"], "has no tenant 'nobody'"),
])
def test_mistakes_change_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                 said: str) -> None:
    cfg = _config(tmp_path)
    _new(cfg, capsys, label="one")
    path = tmp_path / "secrets" / "keys.yaml"
    before = path.read_bytes()
    assert main(["keys", *argv, "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sovrouter: ") and said in err and "Traceback" not in err
    assert path.read_bytes() == before


def test_an_ambiguous_digest_prefix_removes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path)
    path = tmp_path / "secrets" / "keys.yaml"
    path.write_text(yaml.safe_dump([{"tenant": "acme-us", "key_sha256": "a" * 12 + "0" * 52},
                                    {"tenant": "acme-us", "key_sha256": "a" * 12 + "1" * 52}]), encoding="utf-8")
    before = path.read_bytes()
    assert main(["keys", "revoke", "--config", str(cfg), "--sha256", "a" * 12]) == 2
    assert "more than one key" in capsys.readouterr().err and path.read_bytes() == before


def test_without_a_key_file_new_prints_the_entry_and_revoke_points_at_api_keys(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, keys_file=None)
    assert main(["keys", "new", "--tenant", "acme-us", "--config", str(cfg), "--label", "x"]) == 0
    out = capsys.readouterr()
    key = out.err.split("key (shown once): ")[1].strip()
    assert out.out == f"- tenant: acme-us\n  key_sha256: {hash_key(key)}\n  label: x\n"
    assert Settings.load(cfg).api_keys_file is None and not list(tmp_path.glob("*.yaml.lock"))
    assert main(["keys", "revoke", "--config", str(cfg), "--label", "ops"]) == 2
    assert "remove them there and restart" in capsys.readouterr().err


def test_list_shows_where_each_key_is_and_no_whole_digest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path)
    key = _new(cfg, capsys, label="ci")
    assert main(["keys", "list", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"eurobank\tops\t{hash_key(INLINE)[:12]}\tapi_keys",
                   f"acme-us\tci\t{hash_key(key)[:12]}\t{tmp_path / 'secrets' / 'keys.yaml'}"]


def test_two_edits_at_once_both_land(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The edit lock: a second run waits for the first instead of writing over its change."""
    cfg = _config(tmp_path)
    path = tmp_path / "secrets" / "keys.yaml"
    done = threading.Event()

    def second() -> None:
        main(["keys", "new", "--tenant", "eurobank", "--config", str(cfg)])
        done.set()

    with editing(path):  # an edit under way (as another `sovrouter keys` run holds it)
        worker = threading.Thread(target=second)
        worker.start()
        assert not done.wait(0.3)  # waits for the lock
        path.write_text(yaml.safe_dump([{"tenant": "acme-us", "key_sha256": hash_key("sk-first")}]),
                        encoding="utf-8")
    worker.join(10)
    assert [e["tenant"] for e in yaml.safe_load(path.read_text(encoding="utf-8"))] == ["acme-us", "eurobank"]
    capsys.readouterr()


def test_a_json_file_stays_json_and_keeps_its_permissions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, keys_file="keys.json")
    path = tmp_path / "keys.json"
    path.write_text("[]", encoding="utf-8")
    os.chmod(path, 0o640)
    _new(cfg, capsys)
    assert path.read_text(encoding="utf-8").lstrip().startswith("[")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_symlinked_file_is_refused_and_left_as_it_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A Secret volume's ``keys.yaml -> ..data/keys.yaml``: renamed over, the link became a plain file that the
    Secret's next update never reached; refused, link and file untouched."""
    cfg = _config(tmp_path, keys_file="keys.yaml")
    (tmp_path / "..data").mkdir()
    target = tmp_path / "..data" / "keys.yaml"
    target.write_text("[]\n", encoding="utf-8")
    (tmp_path / "keys.yaml").symlink_to("..data/keys.yaml")
    for argv in (["new", "--tenant", "acme-us"], ["revoke", "--label", "x"]):
        assert main(["keys", *argv, "--config", str(cfg)]) == 2
        err = capsys.readouterr().err
        assert "symbolic link" in err and "key (shown once)" not in err
    assert (tmp_path / "keys.yaml").is_symlink() and target.read_text(encoding="utf-8") == "[]\n"
    assert sorted(p.name for p in (tmp_path / "..data").iterdir()) == ["keys.yaml"]


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_rewrite_keeps_the_owner_and_group(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``sudo sovrouter keys revoke`` made the file root's (0600): the gateway's user could no longer read it and
    kept the keys read before, the revoked one among them."""
    cfg = _config(tmp_path)
    path = tmp_path / "secrets" / "keys.yaml"
    path.write_text("[]\n", encoding="utf-8")
    os.chown(path, 4321, 4322)
    _new(cfg, capsys, label="ci")
    assert (path.stat().st_uid, path.stat().st_gid) == (4321, 4322)
    assert main(["keys", "revoke", "--config", str(cfg), "--label", "ci"]) == 0
    assert (path.stat().st_uid, path.stat().st_gid) == (4321, 4322)


def test_an_owner_it_cannot_keep_refuses_the_write(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _config(tmp_path)
    path = tmp_path / "secrets" / "keys.yaml"
    path.write_text("[]\n", encoding="utf-8")
    real_stat = Path.stat

    def stat(self: Path, *, follow_symlinks: bool = True) -> os.stat_result:  # the file is someone else's
        st = real_stat(self, follow_symlinks=follow_symlinks)
        if self != path:
            return st
        return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid + 1, st.st_gid,
                               st.st_size, int(st.st_atime), int(st.st_mtime), int(st.st_ctime)))

    def fchown(fd: int, uid: int, gid: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(Path, "stat", stat)
    monkeypatch.setattr(os, "fchown", fchown)
    assert main(["keys", "new", "--tenant", "acme-us", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "cannot keep its owner" in err and "key (shown once)" not in err
    assert path.read_text(encoding="utf-8") == "[]\n" and sorted(p.name for p in path.parent.iterdir()) == [
        "keys.yaml", "keys.yaml.lock"]


def test_the_rename_is_flushed_too(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder is fsynced after the rename: without it a crash soon after a revocation reported done could
    bring the old file, and the key, back."""
    cfg = _config(tmp_path)
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    _new(cfg, capsys)
    assert synced == ["file", "folder"]


def test_a_json_file_keeps_a_label_beyond_the_basic_plane(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``json.dumps`` wrote the emoji as ``\\ud83d\\udd11``, which the YAML reader took as two lone surrogates:
    ``keys list`` died with a traceback and ``keys revoke --label`` matched nothing."""
    cfg = _config(tmp_path, keys_file="keys.json")
    _new(cfg, capsys, label="ci \U0001f511")
    assert main(["keys", "list", "--config", str(cfg)]) == 0
    assert "ci \U0001f511" in capsys.readouterr().out
    assert main(["keys", "revoke", "--config", str(cfg), "--label", "ci \U0001f511"]) == 0
    assert json.loads((tmp_path / "keys.json").read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("label", ["a\u2028b", "a\x85b", "a\ufeffb", "a\udcffb", "bell\x07"])
def test_an_entry_that_would_not_read_back_is_not_written(tmp_path: Path, label: str) -> None:
    for name in ("keys.json", "keys.yaml"):
        path = tmp_path / name
        path.write_text("[]\n", encoding="utf-8")
        entry = ApiKey(tenant="acme-us", key_sha256=hash_key("sk-x"), label=label)
        try:
            write_keys(path, [entry])
        except ConfigError:
            assert path.read_text(encoding="utf-8") == "[]\n"
        else:
            assert read_keys(path, {"acme-us"}) == [entry]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json", "keys.yaml"]


def test_new_refuses_a_label_that_is_not_printable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path)
    assert main(["keys", "new", "--tenant", "acme-us", "--config", str(cfg), "--label", "a\nb"]) == 2
    err = capsys.readouterr().err
    assert "printable" in err and "key (shown once)" not in err
    assert not (tmp_path / "secrets" / "keys.yaml").exists()


@pytest.mark.parametrize("label", ["#ci", "yes", "123", "a: b", "[x]"])
def test_the_entry_printed_without_a_key_file_reads_back(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         label: str) -> None:
    """Printed as ``label: #ci``, the pasted entry read back as null (a configuration that did not load)."""
    cfg = _config(tmp_path, keys_file=None)
    assert main(["keys", "new", "--tenant", "acme-us", "--config", str(cfg), "--label", label]) == 0
    out = capsys.readouterr()
    key = out.err.split("key (shown once): ")[1].strip()
    assert yaml.safe_load(out.out) == [{"tenant": "acme-us", "key_sha256": hash_key(key), "label": label}]


def test_a_folder_it_may_not_search_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """``keys list`` by an operator who may not search the secrets folder: ``Path.exists`` raised
    PermissionError, a traceback."""
    cfg = _config(tmp_path)
    path = tmp_path / "secrets" / "keys.yaml"
    path.write_text("[]\n", encoding="utf-8")
    real_stat, real_read = Path.stat, Path.read_bytes

    def denied(self: Path) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "stat", lambda self, **kw: denied(self) if self == path else real_stat(self, **kw))
    monkeypatch.setattr(Path, "read_bytes", lambda self: denied(self) if self == path else real_read(self))
    assert main(["keys", "list", "--config", str(cfg)]) == 2
    assert "cannot read it (Permission denied)" in capsys.readouterr().err


def test_a_matching_key_left_in_api_keys_is_exit_status_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``revoke --label ops`` removed the file's ``ops`` key and exited 0 while the configuration's own ``ops`` key
    stayed valid: ``revoke ... || alert`` heard nothing."""
    cfg = _config(tmp_path)
    _new(cfg, capsys, label="ops")
    assert main(["keys", "revoke", "--config", str(cfg), "--label", "ops"]) == 1
    out = capsys.readouterr()
    assert "removed 1 key(s)" in out.out and "stay valid" in out.err
    assert yaml.safe_load((tmp_path / "secrets" / "keys.yaml").read_text(encoding="utf-8")) == []


def test_a_key_typed_at_a_terminal_is_read_without_echo(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """``keys hash`` / ``revoke --key-stdin`` at a terminal: read with getpass (no echo), not a plain readline."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    asked: list[str] = []
    monkeypatch.setattr("sys.stdin", Terminal("sk-typed-not-read-this-way\n"))
    monkeypatch.setattr("getpass.getpass", lambda prompt="": asked.append(prompt) or "sk-typed")
    assert main(["keys", "hash"]) == 0
    assert capsys.readouterr().out.strip() == hash_key("sk-typed") and asked == ["key: "]
