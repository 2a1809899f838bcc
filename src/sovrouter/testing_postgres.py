"""A real PostgreSQL server on loopback for tests and benchmarks (Debian's ``postgresql`` package; ``.ci/run``
installs it). A throwaway cluster in a temporary folder (``initdb``, trust authentication on 127.0.0.1 only, no
fsync), stopped and deleted with the context. PostgreSQL refuses to run as root: as root, the cluster is made
and run as the ``postgres`` system user the package creates."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PostgresServer:
    port: int
    user: str
    data_dir: Path
    bin_dir: Path
    run_as: str | None

    def start(self) -> None:
        """Start it again after :meth:`stop` (same data, same port): a database that comes back."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data_dir.parent / 'run'} -c fsync=off " \
                  "-c full_page_writes=off"
        subprocess.run(_as_user(self.run_as, [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-o", options,
                                              "-l", str(self.data_dir.parent / "log"), "-w", "start"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        """Stop the server now (a database lost under a running gateway); idempotent."""
        subprocess.run(_as_user(self.run_as, [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m",
                                              "immediate", "-w", "stop"]),
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database on this server; its URL (tests share a server, never a database)."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres",
                             autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def postgres_bin_dir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are (Debian keeps them off PATH, under /usr/lib/postgresql/N/bin)."""
    found = shutil.which("initdb")
    if found is not None and shutil.which("pg_ctl") is not None:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user(user: str | None, cmd: list[str]) -> list[str]:
    return cmd if user is None else ["runuser", "-u", user, "--", *cmd]


@contextmanager
def postgres_server(start_timeout_s: float = 30.0) -> Iterator[PostgresServer]:
    bindir = postgres_bin_dir()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL is not installed (apt-get install -y postgresql)")
    run_as = "postgres" if os.geteuid() == 0 else None
    with tempfile.TemporaryDirectory(prefix="sovrouter-pg-") as folder:
        data, sockets = Path(folder) / "data", Path(folder) / "run"
        sockets.mkdir()
        if run_as is not None:
            shutil.chown(folder, user=run_as)
            shutil.chown(sockets, user=run_as)
        user = "sovrouter"
        subprocess.run(_as_user(run_as, [str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust",
                                         "-E", "UTF8", "--no-sync"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        server = PostgresServer(_free_port(), user, data, bindir, run_as)
        server.start()
        port = server.port
        try:
            deadline = time.monotonic() + start_timeout_s
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"PostgreSQL did not start on port {port}") from None
                    time.sleep(0.05)
            yield server
        finally:
            server.stop()
