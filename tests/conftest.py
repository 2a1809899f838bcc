from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sovrouter.catalog import Catalog, Tenants
from sovrouter.testing_postgres import PostgresServer, postgres_bin_dir, postgres_server
from sovrouter.testing_redis import RedisServer, redis_server, redis_server_path

DATA = Path(__file__).resolve().parents[1] / "src" / "sovrouter" / "data" / "demo"


@pytest.fixture
def catalog() -> Catalog:
    return Catalog.load(DATA / "models.json")


@pytest.fixture
def tenants() -> Tenants:
    return Tenants.load(DATA / "tenants.json")


def needs_process_without_usearch(nodeid: str) -> bool:
    """In-process llama.cpp cannot load a model in a process that has imported usearch (both bundle C++ runtimes;
    the vocabulary load fails with std::bad_cast). When the suite has imported it (the semantic-cache tests do), run
    the test again in a fresh interpreter and report that run's result. Returns True when it was run there."""
    import os
    import subprocess
    import sys

    if "usearch" not in sys.modules or os.environ.get("SOVROUTER_TEST_ISOLATED"):
        return False
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", nodeid],
        cwd=root, env={**os.environ, "SOVROUTER_TEST_ISOLATED": "1"}, capture_output=True, text=True, timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return True

@pytest.fixture(scope="session")
def redis_srv() -> Iterator[RedisServer]:
    """A real redis-server for the shared-cache tests. Missing, the tests are skipped on a developer's machine
    and fail under CI, which installs it (.ci/run)."""
    if redis_server_path() is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; .ci/run should have installed it")
        pytest.skip("needs redis-server (apt-get install -y redis-server)")
    with redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def pg_srv() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the shared batch store tests (each test makes its own database). Missing,
    the tests are skipped on a developer's machine and fail under CI, which installs it (.ci/run)."""
    if postgres_bin_dir() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed; .ci/run should have installed it")
        pytest.skip("needs PostgreSQL (apt-get install -y postgresql)")
    with postgres_server() as server:
        yield server
