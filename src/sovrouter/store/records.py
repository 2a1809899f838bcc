"""Per-request records: exactly one per request, in SQLite, exportable as JSONL."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

from sovrouter.contracts import RequestRecord
from sovrouter.errors import NotFoundError
from sovrouter.fileio import atomic_text
from sovrouter.store.sqlite_files import open_read_only

# The gateway's completions carry ``id: chatcmpl-<request id>`` (OpenAI's shape); the records hold the request id.
COMPLETION_ID_PREFIX = "chatcmpl-"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
  request_id TEXT PRIMARY KEY,
  tenant TEXT NOT NULL,
  arrived_ms REAL NOT NULL,
  status TEXT NOT NULL,
  record_json TEXT NOT NULL
)
"""


def completion_id(request_id: str) -> str:
    """The ``id`` of the completion the gateway returns for ``request_id``."""
    return f"{COMPLETION_ID_PREFIX}{request_id}"


def find_record(get: Callable[[str], RequestRecord], rid: str) -> RequestRecord:
    """The record of ``rid``: a request id, or the ``id`` of a completion the gateway returned (``chatcmpl-`` +
    the request id), looked up with ``get`` (which raises :class:`NotFoundError` for an unknown id, as
    :meth:`SQLiteRecordStore.get` does). A request id that itself starts with ``chatcmpl-`` is found as given."""
    try:
        return get(rid)
    except NotFoundError:
        if not rid.startswith(COMPLETION_ID_PREFIX):
            raise
        return get(rid.removeprefix(COMPLETION_ID_PREFIX))


class SQLiteRecordStore:
    """``INSERT`` (not upsert): a second record for the same request id is an error, by design. ``read_only``
    (the commands that only read a store): the file must exist and hold a ``records`` table, and is never
    written (:func:`~sovrouter.store.sqlite_files.open_read_only`)."""

    def __init__(self, path: str | Path = ":memory:", *, read_only: bool = False) -> None:
        self.path = str(path)
        if read_only:
            self._db = open_read_only(path, "records", "record store")
            return
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: no fsync per commit; crash-safe
        self._db.execute(_SCHEMA)

    def write(self, record: RequestRecord) -> None:
        self._db.execute(
            "INSERT INTO records VALUES (?, ?, ?, ?, ?)",
            (record.request_id, record.tenant, record.arrived_ms, record.status, record.model_dump_json()),
        )

    def get(self, request_id: str) -> RequestRecord:
        row = self._db.execute("SELECT record_json FROM records WHERE request_id = ?", (request_id,)).fetchone()
        if row is None:
            raise NotFoundError("no record with that request id")
        return RequestRecord.model_validate_json(row[0])

    def __iter__(self) -> Iterator[RequestRecord]:
        for (raw,) in self._db.execute("SELECT record_json FROM records ORDER BY rowid"):
            yield RequestRecord.model_validate_json(raw)

    def recent(self, limit: int) -> Iterator[RequestRecord]:
        """The latest ``limit`` records, oldest first (what a page that must not read the whole history reads)."""
        rows = self._db.execute("SELECT record_json FROM (SELECT rowid AS r, record_json FROM records "
                                "ORDER BY rowid DESC LIMIT ?) ORDER BY r", (limit,)).fetchall()
        for (raw,) in rows:
            yield RequestRecord.model_validate_json(raw)

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    def export_jsonl(self, path: str | Path) -> int:
        n = 0
        with atomic_text(path) as fh:
            for (raw,) in self._db.execute("SELECT record_json FROM records ORDER BY rowid"):
                fh.write(raw + "\n")
                n += 1
        return n

    def close(self) -> None:
        self._db.close()
