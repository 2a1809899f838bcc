"""BatchStore on both databases (SQLite file, real PostgreSQL): tenancy, compare-and-set, leases, results stored
once, finishing in one transaction."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from sovrouter.batch.store import BatchStore, store_url
from sovrouter.errors import ConfigError, ConflictError, NotFoundError


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BatchStore]:
    if request.param == "sqlite":
        url = store_url(None, tmp_path)
    else:
        url = store_url(request.getfixturevalue("pg_srv").new_database(), tmp_path)
    s = BatchStore(url)
    yield s
    s.close()


def _meta(status: str = "in_progress", **extra: Any) -> dict[str, Any]:
    return {"id": "b1", "status": status, **extra}


def test_files_are_tenant_scoped(store: BatchStore) -> None:
    store.add_file("acme", "file-1", '{"id": "file-1"}', b"line\n", 1.0)
    store.add_file("acme", "file-2", '{"id": "file-2"}', b"\x00" * 70_000, 2.0)
    assert store.file_data("acme", "file-1") == b"line\n" and len(store.file_data("acme", "file-2")) == 70_000
    assert store.files("acme") == ['{"id": "file-2"}', '{"id": "file-1"}']  # newest first
    assert store.files("euro") == []
    for call in (lambda: store.file_meta("euro", "file-1"), lambda: store.file_data("euro", "file-1"),
                 lambda: store.file_meta("acme", "nope")):
        with pytest.raises(NotFoundError):
            call()


def test_update_is_compare_and_set(store: BatchStore) -> None:
    store.add_batch("acme", "b1", "in_progress", _meta(), 1.0)
    seen: list[str] = []

    def cancel(meta: dict[str, Any]) -> dict[str, Any] | None:
        seen.append(meta["status"])
        if len(seen) == 1:  # someone else writes between our read and our write
            store.update("b1", lambda m: {**m, "status": "finalizing"})
        return {**meta, "note": len(seen)}

    written = store.update("b1", cancel)
    assert seen == ["in_progress", "finalizing"]  # the first write lost the race and was redone on the new state
    assert written == {"id": "b1", "status": "finalizing", "note": 2}
    assert store.batch("acme", "b1").version == 2
    assert store.update("b1", lambda m: None) is None and store.batch("acme", "b1").version == 2
    with pytest.raises(NotFoundError):
        store.batch("euro", "b1")


def test_one_lease_at_a_time_and_it_lapses(store: BatchStore) -> None:
    store.add_batch("acme", "b1", "in_progress", _meta(), 1.0)
    store.add_batch("acme", "b2", "completed", _meta("completed"), 2.0)
    assert store.unowned(now=100.0) == ["b1"]  # closed batches need nobody
    assert store.claim("b1", "gw-a", now=100.0, lease_s=30)
    assert not store.claim("b1", "gw-b", now=110.0, lease_s=30)
    assert store.unowned(now=110.0) == []
    assert store.renew("b1", "gw-a", now=120.0, lease_s=30) == "in_progress"  # held until 150
    assert store.renew("b1", "gw-b", now=120.0, lease_s=30) is None
    assert not store.claim("b1", "gw-b", now=149.0, lease_s=30)
    assert store.unowned(now=151.0) == ["b1"] and store.claim("b1", "gw-b", now=151.0, lease_s=30)
    assert store.renew("b1", "gw-a", now=152.0, lease_s=30) is None  # the old owner learns it lost the batch
    assert store.update("b1", lambda m: {**m, "x": 1}, owner="gw-a") is None  # and can no longer write it
    assert store.update("b1", lambda m: {**m, "x": 1}, owner="gw-b") is not None
    store.release("b1", "gw-a")
    assert store.owner("b1") == "gw-b"
    store.release_all()
    assert store.owner("b1") is None


def test_results_are_stored_once_and_finish_is_atomic(store: BatchStore) -> None:
    store.add_batch("acme", "b1", "in_progress", _meta(), 1.0)
    store.claim("b1", "gw-a", now=0.0, lease_s=1e9)
    assert store.add_result("b1", "b1_req_1", '{"id": "b1_req_1", "n": 1}', "gw-a")
    assert store.add_result("b1", "b1_req_1", '{"id": "b1_req_1", "n": 2}', "gw-a")  # answered twice: kept once
    assert not store.add_result("b1", "b1_req_2", '{"id": "b1_req_2", "n": 3}', "gw-b")  # not the owner
    assert store.add_result("b1", "b1_req_2", '{"id": "b1_req_2"}', "gw-a")
    assert sorted(r["id"] for r in store.results("b1")) == ["b1_req_1", "b1_req_2"]
    assert [r.get("n") for r in store.results("b1") if r["id"] == "b1_req_1"] == [1]
    version = store.batch(None, "b1").version
    out = [("acme", "file-out", '{"id": "file-out"}', b"results\n", 5.0)]
    # a stale version (someone changed the batch) or a lost lease writes nothing at all
    assert not store.finish("b1", "gw-a", version + 1, _meta("completed"), out, 2)
    assert not store.finish("b1", "gw-b", version, _meta("completed"), out, 2)
    assert store.files("acme") == [] and len(store.results("b1")) == 2
    assert not store.finish("b1", "gw-a", version, _meta("completed"), out, 1)  # built from fewer lines than stored
    assert store.files("acme") == [] and len(store.results("b1")) == 2 and store.owner("b1") == "gw-a"
    assert store.finish("b1", "gw-a", version, _meta("completed"), out, 2)
    assert store.batch("acme", "b1").meta["status"] == "completed" and store.owner("b1") is None
    assert store.file_data("acme", "file-out") == b"results\n" and store.results("b1") == []
    assert store.unowned(now=0.0) == []


def test_a_line_stored_while_the_batch_closes_is_never_dropped(store: BatchStore) -> None:
    """A line in flight when its batch is cancelled is stored after the owner read the results and before it
    closes the batch: the finish must refuse (and the owner read again), not delete the line with the rest."""
    store.add_batch("acme", "b1", "in_progress", _meta(), 1.0)
    store.claim("b1", "gw-a", now=0.0, lease_s=1e9)
    store.add_result("b1", "b1_req_1", '{"id": "b1_req_1"}', "gw-a")
    read = store.results("b1")
    assert store.add_result("b1", "b1_req_2", '{"id": "b1_req_2"}', "gw-a")  # the late line
    version = store.batch(None, "b1").version
    assert not store.finish("b1", "gw-a", version, _meta("cancelled"), [], len(read))
    assert len(store.results("b1")) == 2 and store.owner("b1") == "gw-a"
    assert store.finish("b1", "gw-a", version, _meta("cancelled"), [], len(store.results("b1")))
    assert not store.add_result("b1", "b1_req_3", '{"id": "b1_req_3"}', "gw-a")  # closed: the lease is gone
    assert store.results("b1") == []


def test_a_finish_that_fails_midway_leaves_the_batch_as_it_was(store: BatchStore) -> None:
    store.add_batch("acme", "b1", "in_progress", _meta(), 1.0)
    store.add_file("acme", "file-dup", "{}", b"x", 1.0)
    store.claim("b1", "gw-a", now=0.0, lease_s=1e9)
    store.add_result("b1", "b1_req_1", '{"id": "b1_req_1"}', "gw-a")
    version = store.batch(None, "b1").version
    with pytest.raises(IntegrityError):  # the second file's id already exists
        store.finish("b1", "gw-a", version, _meta("completed"),
                     [("acme", "file-new", "{}", b"y", 2.0), ("acme", "file-dup", "{}", b"z", 2.0)], 1)
    assert store.batch(None, "b1").meta["status"] == "in_progress" and store.owner("b1") == "gw-a"
    assert len(store.results("b1")) == 1 and store.files("acme") == ["{}"]  # file-new rolled back too


def test_store_url_keeps_secrets_out_of_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert store_url(None, tmp_path / "b").database == str(tmp_path / "b" / "batches.sqlite")
    with pytest.raises(ConfigError, match="password"):
        store_url("postgresql+psycopg://u:secret@db/x", tmp_path)
    with pytest.raises(ConfigError, match="SOV_PG"):
        store_url("postgresql+psycopg://u@db/x", tmp_path, "SOV_PG")
    monkeypatch.setenv("SOV_PG", "s3cret")
    url = store_url("postgresql+psycopg://u@db/x", tmp_path, "SOV_PG")
    assert url.password == "s3cret" and "s3cret" not in str(url)  # SQLAlchemy masks it when printed
    assert store_url("postgresql://u@db/x", tmp_path).drivername == "postgresql+psycopg"


def test_purge_deletes_only_what_is_closed_and_old(store: BatchStore) -> None:
    for file_id, created in (("f-in", 1.0), ("f-old", 1.0), ("f-new", 100.0)):
        store.add_file("acme", file_id, "{}", b"x", created)
    store.add_batch("acme", "b-open", "in_progress",
                    {"id": "b-open", "status": "in_progress", "input_file_id": "f-in"}, 1.0)
    store.add_batch("acme", "b-old", "completed", {"id": "b-old", "status": "completed", "input_file_id": "f-old"},
                    1.0)
    store.add_batch("acme", "b-new", "cancelled",
                    {"id": "b-new", "status": "cancelled", "input_file_id": "f-new"}, 100.0)
    assert store.purge(before=50.0) == (1, 1)
    assert {b["id"] for b in store.batches("acme")} == {"b-open", "b-new"}  # an open batch is never purged
    assert store.file_data("acme", "f-in") == b"x"  # nor the file it reads
    with pytest.raises(NotFoundError):
        store.file_data("acme", "f-old")
    assert store.purge(before=50.0) == (0, 0)


def test_instances_starting_together_create_the_tables_once(pg_srv: Any, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    url = store_url(pg_srv.new_database(), tmp_path)
    with ThreadPoolExecutor(6) as pool:
        stores = list(pool.map(lambda _: BatchStore(url), range(6)))  # six instances' start-ups at once
    stores[0].add_file("acme", "f", "{}", b"x", 1.0)
    assert all(s.file_data("acme", "f") == b"x" for s in stores)
    for s in stores:
        s.close()


def test_a_file_is_deleted_only_when_no_unfinished_batch_reads_it(store: BatchStore) -> None:
    for file_id in ("f-in", "f-free"):
        store.add_file("acme", file_id, "{}", b"prompt", 1.0)
    store.add_batch("acme", "b1", "in_progress", {"id": "b1", "status": "in_progress", "input_file_id": "f-in"}, 1.0)
    with pytest.raises(NotFoundError):
        store.delete_file("euro", "f-free")  # another tenant's file is not found, and stays
    store.delete_file("acme", "f-free")
    with pytest.raises(NotFoundError):
        store.file_data("acme", "f-free")  # the bytes are gone
    with pytest.raises(NotFoundError):
        store.delete_file("acme", "f-free")
    with pytest.raises(ConflictError):
        store.delete_file("acme", "f-in")
    assert store.file_data("acme", "f-in") == b"prompt"  # the refused delete was rolled back
    store.update("b1", lambda m: {**m, "status": "completed"})
    store.delete_file("acme", "f-in")  # closed: the input may go
    assert store.files("acme") == [] and store.batch("acme", "b1").meta["input_file_id"] == "f-in"


def test_a_batch_is_created_only_while_its_input_file_exists(store: BatchStore) -> None:
    store.add_file("acme", "f", "{}", b"x", 1.0)
    with pytest.raises(NotFoundError):  # another tenant's file is no input
        store.add_batch("euro", "b-euro", "in_progress", {"id": "b-euro", "status": "in_progress",
                                                          "input_file_id": "f"}, 1.0)
    store.delete_file("acme", "f")
    with pytest.raises(NotFoundError):
        store.add_batch("acme", "b1", "in_progress", {"id": "b1", "status": "in_progress", "input_file_id": "f"}, 1.0)
    assert store.batches("acme") == [] and store.batches("euro") == []  # nothing half-created


def test_delete_and_create_racing_never_leave_a_batch_without_its_input(store: BatchStore) -> None:
    """A delete and a batch creation on the same file, started together from two threads, many times: either
    the batch exists and kept its file, or the file is gone and no batch was created."""
    import threading

    for k in range(25):
        file_id, batch_id = f"f{k}", f"b{k}"
        store.add_file("acme", file_id, "{}", b"x", 1.0)
        start = threading.Barrier(2)
        outcome: dict[str, str] = {}

        def delete(file_id: str = file_id, start: threading.Barrier = start,
                   outcome: dict[str, str] = outcome) -> None:
            start.wait()
            try:
                store.delete_file("acme", file_id)
                outcome["delete"] = "done"
            except ConflictError:
                outcome["delete"] = "conflict"

        def create(file_id: str = file_id, batch_id: str = batch_id, start: threading.Barrier = start,
                   outcome: dict[str, str] = outcome) -> None:
            start.wait()
            try:
                store.add_batch("acme", batch_id, "in_progress",
                                {"id": batch_id, "status": "in_progress", "input_file_id": file_id}, 1.0)
                outcome["create"] = "done"
            except NotFoundError:
                outcome["create"] = "not_found"

        threads = [threading.Thread(target=delete), threading.Thread(target=create)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcome.values()) in (["conflict", "done"], ["done", "not_found"]), outcome
        exists = any(b["id"] == batch_id for b in store.batches("acme"))
        assert exists == (outcome["create"] == "done")
        if exists:
            assert store.file_data("acme", file_id) == b"x"


def test_a_purge_that_meets_a_new_batch_deletes_nothing(store: BatchStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.add_file("acme", "f-old", "{}", b"x", 1.0)
    reads: list[int] = []
    real = BatchStore._open_inputs

    def racing(db: Any) -> set[str]:  # the second read sees a batch created on f-old in between
        reads.append(1)
        return real(db) | ({"f-old"} if len(reads) == 2 else set())

    monkeypatch.setattr(BatchStore, "_open_inputs", staticmethod(racing))
    store.add_batch("acme", "b-old", "completed", {"id": "b-old", "status": "completed"}, 1.0)
    assert store.purge(before=50.0) == (0, 0)
    assert store.file_data("acme", "f-old") == b"x" and store.batches("acme") != []  # all rolled back
    reads.clear()
    monkeypatch.setattr(BatchStore, "_open_inputs", staticmethod(real))
    assert store.purge(before=50.0) == (1, 1)


@pytest.mark.parametrize("size", [1, 3000])  # in a page, and over overflow pages
def test_a_deleted_file_is_overwritten_in_the_sqlite_file(tmp_path: Path, size: int) -> None:
    """``make_engine`` turns SQLite's ``secure_delete`` on; some SQLite builds (Debian's) have it on by default,
    others not, where a deleted row's bytes stay in free pages."""
    url = store_url(None, tmp_path)
    first = BatchStore(url)
    first.add_file("acme", "f", "{}", b"zebra-quokka " * size, 1.0)
    first.add_file("acme", "g", "{}", b"other " * size, 1.0)
    first.close()  # the last connection checkpoints the rows into the database file
    second = BatchStore(url)
    second.delete_file("acme", "f")
    second.close()
    on_disk = b"".join(p.read_bytes() for p in tmp_path.glob("batches.sqlite*"))
    assert b"zebra-quokka" not in on_disk and b"other" in on_disk


def test_purge_deletes_expired_files_unless_an_open_batch_reads_them(store: BatchStore) -> None:
    store.add_file("acme", "f-exp", '{"expires_at": 100}', b"x", 1.0)
    store.add_file("acme", "f-read", '{"expires_at": 100}', b"x", 1.0)
    store.add_file("acme", "f-later", '{"expires_at": 500}', b"x", 1.0)
    store.add_file("acme", "f-none", "{}", b"x", 1.0)
    store.add_batch("acme", "b1", "in_progress", {"id": "b1", "status": "in_progress", "input_file_id": "f-read"},
                    1.0)
    assert store.purge(before=None, now=99.0) == (0, 0)
    assert store.purge(before=None, now=100.0) == (1, 0)  # retention off: only the expiry deletes
    assert _left(store) == ["f-later", "f-none", "f-read"]
    store.update("b1", lambda m: {**m, "status": "completed"})
    assert store.purge(before=None, now=1_000.0) == (2, 0)  # closed now: its input may go, and f-later too
    assert _left(store) == ["f-none"]


def _left(store: BatchStore) -> list[str]:
    return [fid for fid in ("f-exp", "f-later", "f-none", "f-read") if _exists(store, fid)]


def _exists(store: BatchStore, file_id: str) -> bool:
    try:
        store.file_data("acme", file_id)
    except NotFoundError:
        return False
    return True
