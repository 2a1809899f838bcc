"""Helpers for the live gateway of the tests (see ``conftest.py``): settings, keys, record access."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from sovrouter.adapters.openai_http import new_client
from sovrouter.config import ApiKey, BreakerSettings, ReliabilitySettings, Settings, Upstream, hash_key
from sovrouter.gateway.app import create_app
from sovrouter.gateway.auth import KeyRing
from sovrouter.gateway.server import ServerThread
from sovrouter.gateway.wiring import build_live_pipeline, make_batch_service
from sovrouter.store.records import SQLiteRecordStore
from sovrouter.testing_upstream import UpstreamBehaviour, closed_port_url, create_upstream_app

DATA = Path(__file__).resolve().parents[2] / "src" / "sovrouter" / "data" / "demo"
ACME_KEY = "sk-acme-test-key-0001"
EURO_KEY = "sk-euro-test-key-0002"
PRIMARY = ("sovereign-large/eu-sov", "sovereign-large/us-east")
BACKUP = ("frontier/us", "hosted-mini/us", "hosted-mini/eu-zone", "local-small/edge")


@dataclass
class Live:
    url: str
    primary: UpstreamBehaviour
    backup: UpstreamBehaviour
    state_dir: Path
    pipeline: Any = None  # the gateway's pipeline (a test may swap a component for a broken one)

    def client(self, key: str = ACME_KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=20)

    def records(self) -> list[Any]:
        store = SQLiteRecordStore(self.state_dir / "records.sqlite")
        try:
            return list(store)
        finally:
            store.close()


def make_settings(state_dir: Path, primary_url: str, backup_url: str, **overrides: Any) -> Settings:
    upstreams = {k: Upstream(base_urls=[primary_url]) for k in PRIMARY}
    upstreams.update({k: Upstream(base_urls=[backup_url]) for k in BACKUP})
    rel = ReliabilitySettings(timeout_s=2.0, first_token_timeout_s=1.0, retries=1, retry_backoff_s=0.0,
                              breaker=BreakerSettings(consecutive_failures=100, window=100, eject_error_rate=1.0))
    fields: dict[str, Any] = {
        "catalog": DATA / "models.json",
        "tenants": DATA / "tenants.json",
        "state_dir": state_dir,
        "api_keys": [ApiKey(tenant="acme-us", key_sha256=hash_key(ACME_KEY)),
                     ApiKey(tenant="eurobank", key_sha256=hash_key(EURO_KEY))],
        "upstreams": upstreams,
        "reliability": rel,
        "max_body_bytes": 4096,
        # the gateway's own behaviour is under test: the light components (the sovereignty engine and the PII
        # detector have their own tests; loading the NER models per test would take most of the suite's time)
        "detector": "none",
        "policy": "availability",
        "router": "baseline",
    }
    fields.update(overrides)
    return Settings(**fields)


@contextmanager
def live_gateway(state_dir: Path, primary_down: bool = False, **overrides: Any) -> Iterator[Live]:
    """Two test upstreams and the gateway in front of them; ``primary_down`` points sovereign-large at a port
    nobody listens on. The three servers are stopped in parallel."""
    primary = UpstreamBehaviour(reply="primary answer", chunks=3)
    backup = UpstreamBehaviour(reply="backup answer", chunks=3)
    with ServerThread(create_upstream_app(primary), log_level="critical") as p, \
            ServerThread(create_upstream_app(backup), log_level="critical") as b:
        settings = make_settings(state_dir, closed_port_url() if primary_down else p.url, b.url, **overrides)
        client = new_client()
        pipeline = build_live_pipeline(settings, client=client)
        keys = KeyRing.from_settings(settings)  # as ``sovrouter serve`` wires it: one ring for chat and batches
        app = create_app(pipeline, settings, on_shutdown=[client.aclose],
                         batches=make_batch_service(settings, pipeline, keys), keys=keys)
        gw = ServerThread(app, log_level="critical")
        with gw:
            try:
                yield Live(gw.url, primary, backup, state_dir, pipeline)
            finally:
                for server in (gw, p, b):
                    server.signal_stop()
