"""``sovrouter explain``: decision evidence from the record store, with Cedar rule ids and their sentences."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sovrouter.build import assemble
from sovrouter.catalog import Catalog, Tenants
from sovrouter.cli.main import main
from sovrouter.clock import WallClock
from sovrouter.config import Settings
from sovrouter.contracts import Candidate, Detection, NormalizedRequest, RequestRecord
from sovrouter.intake import normalize_chat
from sovrouter.store.records import SQLiteRecordStore
from sovrouter.store.shared_records import SharedRecordStore
from sovrouter.store.sql import database_url
from sovrouter.testing import FakeAdapter
from sovrouter.testing_postgres import PostgresServer


class _Found:
    def detect(self, request: NormalizedRequest) -> Detection:
        return Detection(pii_types=["EMAIL", "PERSON"], language="en")


async def test_explain_prints_rules_and_reasons(catalog: Catalog, tenants: Tenants, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "records.sqlite"
    store = SQLiteRecordStore(db)
    adapters = {Candidate(slot=s.id, deployment=d.id): FakeAdapter(Candidate(slot=s.id, deployment=d.id))
                for s, d in catalog.pairs()}
    cfg = Settings(catalog=Path("x"), tenants=Path("y"), policy="cedar", detector="none")
    pipe = assemble(cfg, catalog, tenants, adapters, WallClock(), store)
    pipe.detector = _Found()
    await pipe.handle(normalize_chat({"messages": [{"role": "user", "content": "hi"}]}, tenant="eurobank",
                                     request_id="req-1"))
    store.close()
    assert main(["explain", "req-1", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "EMAIL, PERSON" in out and "effective confidential" in out
    assert "EXCLUDE sovereign-large/us-east" in out and "eurobank.sensitive-in-eu-or-on-premises" in out
    assert "must be processed only in the EU" in out  # the tenants.json sentence behind the rule
    assert main(["explain", "req-1", "--db", str(db), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["policy_version"].startswith("sovrouter-policy-")
    assert {c["candidate"] for c in ev["candidates"] if c["allowed"]} == {
        "local-small/edge", "sovereign-large/eu-sov", "hosted-mini/eu-zone"}


def test_explain_unknown_id_and_missing_db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "nope", "--db", str(tmp_path / "missing.sqlite")]) == 2
    db = tmp_path / "r.sqlite"
    SQLiteRecordStore(db).close()
    assert main(["explain", "nope", "--db", str(db)]) == 2
    assert "no record" in capsys.readouterr().err


def test_explain_reads_the_shared_records_database(tmp_path: Path, pg_srv: PostgresServer,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    database = pg_srv.new_database()
    store = SharedRecordStore(SQLiteRecordStore(tmp_path / "a" / "records.sqlite"),
                              database_url(database, None, "records"), ship_every_s=3600)
    store.write(RequestRecord(request_id="req-9", tenant="acme-us", data_class="public", effective_class="public",
                              modalities=["text"], arrived_ms=1.0, status="ok"))
    store.close()  # ships it
    assert main(["explain", "req-9", "--url", database, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tenant"] == "acme-us"
    assert main(["explain", "chatcmpl-req-9", "--url", database, "--json"]) == 0  # the completion's id
    assert json.loads(capsys.readouterr().out)["request_id"] == "req-9"
    assert main(["explain", "req-nope", "--url", database]) == 2
    assert "no record" in capsys.readouterr().err


def test_explain_takes_the_completion_id_the_gateway_returned(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Completions carry ``id: chatcmpl-<request id>`` and ``/v1/feedback`` takes both forms; ``explain`` said
    "no record" for the id the client has (found in review, 2026-11-28)."""
    from sovrouter.store.records import completion_id

    db = tmp_path / "records.sqlite"
    store = SQLiteRecordStore(db)
    for rid in ("req-7", "chatcmpl-odd"):  # a request id that itself starts with the prefix is found as given
        store.write(RequestRecord(request_id=rid, tenant="acme-us", data_class="public", effective_class="public",
                                  modalities=["text"], arrived_ms=1.0, status="ok"))
    store.close()
    for given, found in ((completion_id("req-7"), "req-7"), ("req-7", "req-7"), ("chatcmpl-odd", "chatcmpl-odd")):
        assert main(["explain", given, "--db", str(db), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["request_id"] == found
    assert main(["explain", "chatcmpl-nope", "--db", str(db)]) == 2
    assert "no record" in capsys.readouterr().err
