"""SharedRecordStore against a real PostgreSQL server: every instance's records readable from any instance, the
request path never waiting on the shared database, rows kept locally through an outage and shipped once."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from sovrouter.contracts import RequestRecord
from sovrouter.errors import ConfigError, NotFoundError, StoreUnavailableError
from sovrouter.store.records import SQLiteRecordStore
from sovrouter.store.shared_records import SharedRecordStore
from sovrouter.store.sql import database_url
from sovrouter.testing_postgres import PostgresServer, postgres_bin_dir, postgres_server


def _record(rid: str, t: float) -> RequestRecord:
    return RequestRecord(request_id=rid, tenant="acme-us", data_class="public", effective_class="public",
                         modalities=["text"], arrived_ms=t, status="ok")


def _store(tmp_path: Path, name: str, url: str, ship_every_s: float = 3600) -> SharedRecordStore:
    local = SQLiteRecordStore(tmp_path / name / "records.sqlite")
    return SharedRecordStore(local, database_url(url, None, "records"), ship_every_s=ship_every_s)


@pytest.fixture
def url(pg_srv: PostgresServer) -> str:
    return pg_srv.new_database()


def test_any_instance_reads_every_instances_records(tmp_path: Path, url: str) -> None:
    a, b = _store(tmp_path, "a", url), _store(tmp_path, "b", url)
    for i in range(3):
        a.write(_record(f"a{i}", 10.0 * i))
        b.write(_record(f"b{i}", 10.0 * i + 5))
    assert a.get("a1").request_id == "a1"  # its own, from its local file, before any shipping
    with pytest.raises(NotFoundError):
        a.get("b1")  # not shipped yet
    assert a.ship() == 3 and b.ship() == 3 and a.ship() == 0
    assert a.get("b1").request_id == "b1" and b.get("a2").request_id == "a2"
    assert [r.request_id for r in a] == ["a0", "b0", "a1", "b1", "a2", "b2"]  # all of them, by arrival
    assert a.count() == b.count() == 6
    with pytest.raises(NotFoundError):
        b.get("nope")
    a.close()
    b.close()


def test_the_shipper_thread_ships_and_close_ships_the_rest(tmp_path: Path, url: str) -> None:
    a = _store(tmp_path, "a", url, ship_every_s=0.05)
    a.write(_record("x", 1.0))
    for _ in range(200):
        if a.stats["shipped"]:
            break
        time.sleep(0.01)
    assert a.stats["shipped"] == 1
    slow = _store(tmp_path, "b", url)  # never ships on its own
    slow.write(_record("y", 2.0))
    slow.close()  # ... but ships at close
    reader = _store(tmp_path, "c", url)
    assert reader.get("y").request_id == "y" and reader.count() == 2
    a.close()
    reader.close()


def test_a_row_copied_twice_is_stored_once(tmp_path: Path, url: str) -> None:
    a = _store(tmp_path, "a", url)
    a.write(_record("x", 1.0))
    a.ship()
    with sqlite3.connect(tmp_path / "a" / "records.sqlite") as db:  # a crash between the copy and the mark
        db.execute("UPDATE outbox_marks SET last = 0")
    assert a.ship() == 1 and a.count() == 1
    a.close()


def test_a_local_only_store_cannot_be_shared(url: str) -> None:
    with pytest.raises(ConfigError):
        SharedRecordStore(SQLiteRecordStore(":memory:"), database_url(url, None, "records"))


@pytest.fixture
def own_pg() -> Iterator[PostgresServer]:
    if postgres_bin_dir() is None:
        pytest.skip("needs PostgreSQL")  # the session fixture makes CI fail loudly when it is missing
    with postgres_server() as server:
        yield server


def test_an_outage_costs_no_write_and_loses_no_row(tmp_path: Path, own_pg: PostgresServer) -> None:
    a = _store(tmp_path, "a", own_pg.new_database())
    a.write(_record("before", 1.0))
    a.ship()
    own_pg.stop()
    for i in range(5):
        a.write(_record(f"during{i}", 2.0 + i))  # the request path never touches the shared database
    assert a.get("during3").request_id == "during3"  # served from the local file
    with pytest.raises(StoreUnavailableError):
        a.get("another-instances-id")  # a clear 503 upstream, not a wrong 404
    with pytest.raises(OperationalError):
        a.ship()
    assert [r.request_id for r in a][:2] == ["before", "during0"]  # the dashboard falls back to local records
    own_pg.start()
    assert a.ship() == 5 and a.count() == 6
    a.close()


def test_a_row_the_database_refuses_is_skipped_not_retried_forever(tmp_path: Path, url: str) -> None:
    """A 201-character tenant id (the shared column holds 200) made PostgreSQL refuse the whole batch: it was
    retried forever, logged as "unreachable", and none of that instance's records reached the shared database."""
    store = _store(tmp_path, "a", url)
    for i in range(5):
        record = _record(f"r{i}", float(i))
        store.write(record.model_copy(update={"tenant": "t" * 201}) if i == 1 else record)
    assert store.ship() == 5  # the batch, read; one row refused
    assert store.outbox.refused == 1
    assert [r.request_id for r in store] == ["r0", "r2", "r3", "r4"]
    assert store.local.get("r1").tenant == "t" * 201  # kept locally
    store.write(_record("r5", 5.0))
    assert store.ship() == 1 and store.get("r5").request_id == "r5"  # shipping goes on
    store.close()


def _first_shipper_state(path: Path) -> None:
    """Three local records, of which the first shipper (c3e6eb1) had copied two, its mark as that version wrote it."""
    local = SQLiteRecordStore(path)
    for i in range(3):
        local.write(_record(f"a{i}", float(i)))
    local.close()
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE IF NOT EXISTS records_shipped (k INTEGER PRIMARY KEY CHECK (k = 0), "
                   "last_rowid INTEGER NOT NULL)")
        db.execute("INSERT INTO records_shipped VALUES (0, ?) ON CONFLICT(k) DO UPDATE SET "
                   "last_rowid = excluded.last_rowid", (2,))


def test_the_mark_of_the_first_shipper_is_kept_across_the_upgrade(tmp_path: Path, url: str) -> None:
    """The first shipper (c3e6eb1, 2026-11-26) kept how far it got in table ``records_shipped``; the outbox that
    replaced it the same day reads ``outbox_marks`` only, so an upgraded instance copied its whole local history
    again before any new record (up to 500 rows a tick: the feedback endpoint of other instances said 404 for new
    records meanwhile; found in review, 2026-11-28). The mark is written here as that version wrote it."""
    _first_shipper_state(tmp_path / "a" / "records.sqlite")
    a = _store(tmp_path, "a", url)
    assert a.ship() == 1  # only the row the first shipper had not copied
    assert [r.request_id for r in a] == ["a2"]
    a.close()


def test_the_first_shipper_s_mark_does_not_replace_the_outbox_s_on_later_starts(tmp_path: Path, url: str) -> None:
    """``records_shipped`` stays in the local file after the upgrade: every later start reads it again, and must
    keep the outbox's own mark, which is further on (each restart copied everything since the upgrade again
    otherwise; found in review)."""
    _first_shipper_state(tmp_path / "a" / "records.sqlite")
    a = _store(tmp_path, "a", url)
    a.write(_record("a3", 3.0))
    assert a.ship() == 2  # a2 and the new a3
    a.close()
    again = _store(tmp_path, "a", url)  # the next start: the outbox's mark (past a3) holds
    assert again.ship() == 0
    assert [r.request_id for r in again] == ["a2", "a3"]
    again.close()
