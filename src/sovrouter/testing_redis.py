"""A real ``redis-server`` on loopback for tests and benchmarks (Debian's package: ``apt-get install
redis-server``; ``.ci/run`` installs it). Nothing is persisted; the server lives in a temporary folder and
stops with the context."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def redis_server_path() -> str | None:
    return shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server(start_timeout_s: float = 10.0) -> Iterator[RedisServer]:
    exe = redis_server_path()
    if exe is None:
        raise FileNotFoundError("redis-server is not installed (apt-get install -y redis-server)")
    with tempfile.TemporaryDirectory(prefix="sovrouter-redis-") as folder:
        port = _free_port()
        proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", folder, "--protected-mode", "yes"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + start_timeout_s
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                        s.sendall(b"PING\r\n")
                        if s.recv(16).startswith(b"+PONG"):
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}")
                time.sleep(0.05)
            yield RedisServer(port, proc)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class SwallowingStreamClient:
    """A stand-in for a Redis client whose blocking ``XREAD``, when cancelled, returns as if nothing had arrived
    (bench/semantic_share.py once hung in a stream reader's ``aclose`` this way). Streams read nothing."""

    async def xrevrange(self, *args: object, **kwargs: object) -> list[object]:
        return []

    async def xread(self, *args: object, **kwargs: object) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return None

    async def aclose(self) -> None:
        return None
