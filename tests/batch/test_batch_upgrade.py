"""A gateway upgraded in place keeps the files and batches an earlier version stored under ``state_dir/batches``.

Until the SQL store (1d30d0c, 2026-11-26) a file's bytes were ``files/<id>.jsonl``, its metadata a row of table
``files``, each batch a JSON row of table ``batches`` (both in ``batches.sqlite``) and a running batch's answered
lines ``<batch id>.partial.jsonl``. The SQL store opened the same ``batches.sqlite`` and created its own tables
beside those: every earlier file and batch was a 404, a batch in progress never ran again, and the prompts and
answers stayed on disk, out of reach of the retention purge (found in review, 2026-11-28). The state below is
written exactly as that version wrote it (``BatchStore.add_file`` / ``put_batch`` and the runner's partial file at
1d30d0c^)."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from batch_helpers import batch_file, make_pipeline

from sovrouter.batch.service import BatchService
from sovrouter.catalog import Catalog, Tenants


def _file_meta(file_id: str, data: bytes, name: str, purpose: str, created: int) -> str:
    # FileObject.model_dump_json() of that version (no expires_at yet)
    return json.dumps({"id": file_id, "object": "file", "bytes": len(data), "created_at": created,
                       "filename": name, "purpose": purpose, "status": "processed"}, separators=(",", ":"))


def _batch_meta(batch_id: str, file_id: str, status: str, created: int, total: int, data_class: str,
                **extra: Any) -> str:
    # json.dumps({**batch.model_dump(mode="json"), "data_class": batch.data_class}) of that version
    body: dict[str, Any] = {
        "id": batch_id, "object": "batch", "endpoint": "/v1/chat/completions", "errors": None,
        "input_file_id": file_id, "completion_window": "24h", "status": status, "output_file_id": None,
        "error_file_id": None, "created_at": created, "in_progress_at": created, "expires_at": created + 86_400,
        "finalizing_at": None, "completed_at": None, "failed_at": None, "cancelling_at": None, "cancelled_at": None,
        "expired_at": None, "request_counts": {"total": total, "completed": 0, "failed": 0}, "metadata": None,
    }
    body.update(extra)
    return json.dumps({**body, "data_class": data_class})


def _answered(batch_id: str, i: int) -> str:
    # output_line(...) of request ``r{i}`` (line i + 1 of its file) through that version's dumps_line: compact JSON
    item = {"id": f"{batch_id}_req_{i + 1}", "custom_id": f"r{i}",
            "response": {"status_code": 200, "request_id": f"old-{i}", "body": {"answer": "earlier"}},
            "error": None}
    return json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n"


def _write_old_layout(root: Path) -> None:
    now = int(time.time())
    (root / "files").mkdir(parents=True)
    db = sqlite3.connect(root / "batches.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS files (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, "
               "created REAL NOT NULL, meta TEXT NOT NULL)")
    db.execute("CREATE TABLE IF NOT EXISTS batches (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, "
               "created REAL NOT NULL, meta TEXT NOT NULL)")
    inputs = batch_file(10)
    output = b"".join(_answered("batch_done", i).encode() for i in range(2))
    for file_id, data, name, purpose in (("file-in", inputs, "in.jsonl", "batch"),
                                         ("file-out", output, "batch_done_output.jsonl", "batch_output")):
        (root / "files" / f"{file_id}.jsonl").write_bytes(data)
        db.execute("INSERT INTO files VALUES (?, ?, ?, ?)",
                   (file_id, "acme-us", time.time(), _file_meta(file_id, data, name, purpose, now)))
    db.execute("INSERT INTO batches VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET meta = excluded.meta",
               ("batch_done", "acme-us", time.time() - 5, _batch_meta(
                   "batch_done", "file-in", "completed", now - 5, 2, "public", output_file_id="file-out",
                   completed_at=now, request_counts={"total": 2, "completed": 2, "failed": 0})))
    db.execute("INSERT INTO batches VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET meta = excluded.meta",
               ("batch_run", "acme-us", time.time(), _batch_meta("batch_run", "file-in", "in_progress", now, 10,
                                                                 "internal")))
    db.close()
    # the process stopped with 3 of the 10 lines answered (and one line cut by the crash)
    (root / "batch_run.partial.jsonl").write_text(
        "".join(_answered("batch_run", i) for i in (0, 4, 7)) + '{"id": "batch_run_req_', encoding="utf-8")


async def test_files_and_batches_of_the_file_layout_survive_the_upgrade(
        tmp_path: Path, catalog: Catalog, tenants: Tenants, caplog: pytest.LogCaptureFixture) -> None:
    _write_old_layout(tmp_path)
    pipeline, adapters = make_pipeline(catalog, tenants)
    with caplog.at_level(logging.INFO, logger="sovrouter.batch"):
        service = BatchService(tmp_path, pipeline, concurrency=2)
    assert "imported 2 files and 2 batches (3 answered lines)" in caplog.text

    assert service.content("acme-us", "file-in") == batch_file(10)
    done = service.get("acme-us", "batch_done")
    assert done.status == "completed" and done.output_file_id == "file-out"
    assert [json.loads(x)["custom_id"] for x in service.content("acme-us", "file-out").decode().splitlines()] == [
        "r0", "r1"]
    assert service.store.batch("acme-us", "batch_run").meta["data_class"] == "internal"  # its class is kept

    await service.start()
    for _ in range(1000):
        if service.get("acme-us", "batch_run").status == "completed":
            break
        await asyncio.sleep(0.01)
    run = service.get("acme-us", "batch_run")
    assert (run.status, run.request_counts.completed, run.request_counts.failed) == ("completed", 10, 0)
    out = [json.loads(x) for x in service.content("acme-us", run.output_file_id or "").decode().splitlines()]
    assert [x["custom_id"] for x in out] == [f"r{i}" for i in range(10)]
    # the lines answered before the upgrade are not asked again
    assert [x["response"]["request_id"] for x in out if x["custom_id"] in ("r0", "r4", "r7")] == [
        "old-0", "old-4", "old-7"]
    assert sum(a.calls for a in adapters) == 7
    await service.aclose()

    # the earlier layout is gone once imported: its tables, bytes and partial files (nothing left out of retention)
    db = sqlite3.connect(tmp_path / "batches.sqlite")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    db.close()
    assert not {"files", "batches"} & tables
    assert not list(tmp_path.glob("*.partial.jsonl")) and not (tmp_path / "files").exists()
    again = BatchService(tmp_path, pipeline)  # a second start imports nothing and loses nothing
    assert again.get("acme-us", "batch_done").status == "completed"
    again.store.close()


def test_unusable_rows_of_the_earlier_layout_are_left_out_and_said_in_the_log(
        tmp_path: Path, catalog: Catalog, tenants: Tenants, caplog: pytest.LogCaptureFixture) -> None:
    """A file row whose bytes are gone from disk, or a batch row that does not read, cannot be served: it is left
    out of the import (in the log) instead of keeping the gateway from starting (found in review)."""
    _write_old_layout(tmp_path)
    (tmp_path / "files" / "file-out.jsonl").unlink()
    db = sqlite3.connect(tmp_path / "batches.sqlite", isolation_level=None)
    db.execute("INSERT INTO batches VALUES (?, ?, ?, ?)", ("batch_cut", "acme-us", time.time(), '{"id": "batch_cu'))
    db.close()
    pipeline, _ = make_pipeline(catalog, tenants)
    with caplog.at_level(logging.INFO, logger="sovrouter.batch"):
        service = BatchService(tmp_path, pipeline)
    assert "imported 1 files and 2 batches (3 answered lines)" in caplog.text
    assert "1 files of the earlier layout without their bytes on disk, 1 batch rows that do not read" in caplog.text
    assert service.content("acme-us", "file-in") == batch_file(10)
    assert service.get("acme-us", "batch_done").status == "completed"
    service.store.close()


def test_tables_of_another_layout_under_the_same_names_are_left_alone(
        tmp_path: Path, catalog: Catalog, tenants: Tenants, caplog: pytest.LogCaptureFixture) -> None:
    """Only the earlier layout's tables are imported and dropped; tables ``files`` and ``batches`` of another
    shape in the same file are not the gateway's to remove (a warning, and the store opens as usual)."""
    db = sqlite3.connect(tmp_path / "batches.sqlite", isolation_level=None)
    db.execute("CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER)")
    db.execute("CREATE TABLE batches (name TEXT PRIMARY KEY)")
    db.execute("INSERT INTO files VALUES ('notes.txt', 3)")
    db.close()
    pipeline, _ = make_pipeline(catalog, tenants)
    with caplog.at_level(logging.INFO, logger="sovrouter.batch"):
        service = BatchService(tmp_path, pipeline)
    assert "not the earlier layout's; left as it is" in caplog.text
    service.store.close()
    db = sqlite3.connect(tmp_path / "batches.sqlite")
    assert db.execute("SELECT path, size FROM files").fetchall() == [("notes.txt", 3)]
    db.close()
