from __future__ import annotations

import json
from pathlib import Path

import pytest

from sovrouter.cli.main import main
from sovrouter.contracts import RequestRecord
from sovrouter.store.records import SQLiteRecordStore
from sovrouter.store.shared_records import SharedRecordStore
from sovrouter.store.sql import database_url
from sovrouter.testing_postgres import PostgresServer


def _record(i: int) -> RequestRecord:
    return RequestRecord(request_id=f"r{i}", tenant="acme-us", data_class="public", effective_class="public",
                         modalities=["text"], arrived_ms=float(i), status="ok")


def test_records_export_writes_one_line_per_record(tmp_path: Path) -> None:
    db = tmp_path / "records.sqlite"
    store = SQLiteRecordStore(db)
    for i in range(3):
        store.write(_record(i))
    store.close()
    out = tmp_path / "out.jsonl"
    assert main(["records", "export", "--db", str(db), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["request_id"] for r in rows] == ["r0", "r1", "r2"]
    assert RequestRecord.model_validate(rows[0]) == _record(0)


def test_records_export_missing_db_is_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["records", "export", "--db", str(tmp_path / "nope.sqlite"), "--out", str(tmp_path / "o")]) == 2
    assert "no record store" in capsys.readouterr().err
    assert not (tmp_path / "nope.sqlite").exists()


def test_records_export_from_the_shared_database(tmp_path: Path, pg_srv: PostgresServer,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    database = pg_srv.new_database()
    for name, offset in (("a", 0), ("b", 10)):  # two instances' records, shipped
        store = SharedRecordStore(SQLiteRecordStore(tmp_path / name / "records.sqlite"),
                                  database_url(database, None, "records"), ship_every_s=3600)
        for i in range(2):
            store.write(_record(i + offset))
        store.close()
    out = tmp_path / "all.jsonl"
    assert main(["records", "export", "--url", database, "--out", str(out)]) == 0
    assert [json.loads(x)["request_id"] for x in out.read_text().splitlines()] == ["r0", "r1", "r10", "r11"]
    nowhere = pg_srv.url("no_such_database")
    assert main(["records", "export", "--url", nowhere, "--out", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "cannot read the shared database" in err and "no_such_database" not in err
    assert not list(tmp_path.glob("*x.jsonl*"))  # nothing half-written


def test_exporting_onto_the_store_itself_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--out`` = ``--db`` truncated the record store (and, written atomically, would silently replace it)."""
    db = tmp_path / "records.sqlite"
    store = SQLiteRecordStore(db)
    store.write(_record(1))
    store.close()
    before = db.read_bytes()
    for out in (db, tmp_path / "." / "records.sqlite", tmp_path / "records.sqlite-wal"):
        assert main(["records", "export", "--db", str(db), "--out", str(out)]) == 2
        assert "record store itself" in capsys.readouterr().err
    assert db.read_bytes() == before
    assert main(["records", "export", "--db", str(db), "--out", str(tmp_path)]) == 2  # a directory


def test_a_file_that_is_not_a_database_is_a_one_line_error(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    notdb = tmp_path / "records.jsonl"
    notdb.write_text('{"request_id": "r1"}\n' * 50)
    assert main(["records", "export", "--db", str(notdb), "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "not a readable SQLite file" in err and "Traceback" not in err
    gz = tmp_path / "d.jsonl"
    gz.write_bytes(b"\x1f\x8b\x08\x00\xff\xfe\x00\x01")
    from sovrouter.errors import ConfigError
    from sovrouter.replay.decisions import read_decisions

    with pytest.raises(ConfigError, match="UTF-8"):
        read_decisions(gz)


def test_another_sqlite_file_is_refused_and_left_untouched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The exact cache's file, given as ``--db``, got a ``records`` table and the command said "0 exported"."""
    import sqlite3

    other = tmp_path / "cache.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE exact_cache (key TEXT)")
    db.commit()
    db.close()
    before = other.read_bytes()
    assert main(["records", "export", "--db", str(other), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "not a record store" in capsys.readouterr().err
    assert other.read_bytes() == before and not (tmp_path / "o.jsonl").exists()


def test_export_follows_a_link_and_writes_a_pipe_in_place(tmp_path: Path, pg_srv: PostgresServer) -> None:
    """``--url --out LINK`` replaced the link itself with a file (as /dev/stdout was once), and ``--out`` naming a
    pipe (``/dev/stdout | cat``) crashed looking for ``pipe:[N]``."""
    import os
    import subprocess
    import sys

    database = pg_srv.new_database()
    store = SharedRecordStore(SQLiteRecordStore(tmp_path / "records.sqlite"), database_url(database, None, "records"),
                              ship_every_s=3600)
    store.write(_record(1))
    store.close()
    real, link = tmp_path / "real.jsonl", tmp_path / "link.jsonl"
    real.write_text("old\n")
    link.symlink_to(real)
    assert main(["records", "export", "--url", database, "--out", str(link)]) == 0
    assert link.is_symlink() and json.loads(real.read_text())["request_id"] == "r1"
    read, write = os.pipe()
    code = ("import sys; from sovrouter.cli.main import main; "
            f"sys.exit(main(['records', 'export', '--db', {str(tmp_path / 'records.sqlite')!r}, "
            f"'--out', '/dev/fd/{write}']))")
    proc = subprocess.run([sys.executable, "-c", code], pass_fds=(write,), capture_output=True, timeout=60)
    os.close(write)
    with os.fdopen(read) as fh:
        piped = fh.read()
    assert proc.returncode == 0, proc.stderr
    assert json.loads(piped)["request_id"] == "r1"
