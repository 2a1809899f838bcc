"""Records of several gateway instances in one database, with nothing added to the request path.

Each instance still writes every record to its own SQLite file first (durable, fast, never waiting on the
network); a shipper thread copies the rows, in order and in batches, to a shared SQL database (PostgreSQL), and
remembers in the local file how far it got (an outbox). The shared database down, slow or unreachable costs no
request anything: the rows wait locally and go when it is back; a row copied twice (a crash between the copy and
the mark) is stored once (``request_id`` is the key). Reads are served across instances: a record by id (the
feedback endpoint, for a response another instance served) and the latest records (the dashboard).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from sovrouter.contracts import RequestRecord
from sovrouter.errors import ConfigError, NotFoundError, StoreUnavailableError
from sovrouter.fileio import atomic_text
from sovrouter.store.outbox import Outbox, Shipper
from sovrouter.store.records import SQLiteRecordStore
from sovrouter.store.sql import create_tables, make_engine

log = logging.getLogger("sovrouter.records")
_META = sa.MetaData()
RECORDS = sa.Table(
    "records", _META,
    sa.Column("request_id", sa.String(200), primary_key=True),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("arrived_ms", sa.Float, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("record_json", sa.Text, nullable=False),
    sa.Index("records_arrived", "arrived_ms"),
)


class SharedRecordStore:
    """A :class:`~sovrouter.protocols.RecordSink` and record source over a local :class:`SQLiteRecordStore` (a
    file) shipped to the database at ``url``. ``close()`` (or ``aclose()``) ships what is left."""

    def __init__(self, local: SQLiteRecordStore, url: sa.URL | str, *, ship_every_s: float = 1.0,
                 batch_rows: int = 500) -> None:
        if local.path == ":memory:":
            raise ConfigError("a shared record store needs the local records in a file")
        self.local = local
        self.ship_every_s = ship_every_s
        self.batch_rows = batch_rows
        self.engine = make_engine(url)
        create_tables(self.engine, _META)
        self.outbox = Outbox(local.path, self.engine, "records", RECORDS,
                             ["request_id", "tenant", "arrived_ms", "status", "record_json"], batch_rows=batch_rows)
        first = _first_shipper_mark(local.path)
        if first is not None and self.outbox.adopt_mark(first):
            log.info("records: shipping resumes after row %d, where the shipper of an earlier version stopped", first)
        self.shipper = Shipper([self.outbox], ship_every_s, "records")
        self.stats = self.shipper.stats

    # ------------------------------------------------------------------ writing
    def write(self, record: RequestRecord) -> None:
        self.local.write(record)

    def ship(self) -> int:
        """Copy the next rows not yet shipped (at most ``batch_rows``); how many. Raises SQLAlchemyError when the
        shared database cannot take them (they stay and go next time)."""
        n = self.outbox.ship()
        self.stats["shipped"] += n
        return n

    # ------------------------------------------------------------------ reading (every instance's records)
    def get(self, request_id: str) -> RequestRecord:
        try:
            return self.local.get(request_id)
        except NotFoundError:
            pass
        try:
            with self.engine.connect() as db:
                raw = db.scalar(sa.select(RECORDS.c.record_json).where(RECORDS.c.request_id == request_id))
        except SQLAlchemyError:
            raise StoreUnavailableError("the record store is unavailable; try again later") from None
        if raw is None:
            raise NotFoundError("no record with that request id")
        return RequestRecord.model_validate_json(raw)

    def __iter__(self) -> Iterator[RequestRecord]:
        """Every instance's records by arrival (this instance's alone while the shared database is down)."""
        try:
            self.shipper.ship_all()
            with self.engine.connect() as db:
                rows = list(db.scalars(sa.select(RECORDS.c.record_json)
                                       .order_by(RECORDS.c.arrived_ms, RECORDS.c.request_id)))
        except SQLAlchemyError:
            log.warning("records: shared store unreachable; showing this instance's records only")
            yield from self.local
            return
        for raw in rows:
            yield RequestRecord.model_validate_json(raw)

    def recent(self, limit: int) -> Iterator[RequestRecord]:
        """Every instance's latest ``limit`` records by arrival, oldest first (this instance's while the shared
        database is down)."""
        try:
            self.shipper.ship_all()
            with self.engine.connect() as db:
                rows = list(db.scalars(sa.select(RECORDS.c.record_json)
                                       .order_by(RECORDS.c.arrived_ms.desc(), RECORDS.c.request_id.desc())
                                       .limit(limit)))
        except SQLAlchemyError:
            log.warning("records: shared store unreachable; showing this instance's records only")
            yield from self.local.recent(limit)
            return
        for raw in reversed(rows):
            yield RequestRecord.model_validate_json(raw)

    def count(self) -> int:
        with self.engine.connect() as db:
            return int(db.scalar(sa.select(sa.func.count()).select_from(RECORDS)) or 0)

    # ------------------------------------------------------------------ closing
    def close(self) -> None:
        """Stop the shipper, ship what is left (if the shared database takes it), close both stores."""
        self.shipper.close(on_failure=lambda: log.warning(
            "records: could not ship the last rows; they stay in %s and go at the next start", self.local.path))
        self.local.close()
        self.engine.dispose()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)


def _first_shipper_mark(path: str) -> int | None:
    """How far the first shipper (2026-11-26, before the generic outbox) had copied the local file: its table
    ``records_shipped``, None when absent. Until 2026-11-28 an upgraded instance ignored it and copied its whole
    history again before any new record (found in review)."""
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT last_rowid FROM records_shipped WHERE k = 0").fetchone()
    except sqlite3.OperationalError:  # no such table: nothing shipped by that version
        return None
    finally:
        db.close()
    return None if row is None else int(row[0])


def export_shared(url: sa.URL | str, path: str | Path) -> int:
    """Every instance's shipped records, by arrival, as JSONL at ``path``; how many. Only reads the database; the
    file appears whole or not at all."""
    engine = make_engine(url)
    n = 0
    try:  # as the SQLite export: a symlink followed (it replaced the link itself), a pipe or device in place
        with engine.connect() as db, atomic_text(path) as fh:
            for raw in _by_arrival(db):
                fh.write(raw + "\n")
                n += 1
    finally:
        engine.dispose()
    return n


def read_all_shared(url: sa.URL | str) -> list[RequestRecord]:
    """Every instance's shipped records, by arrival (the ``weakness`` command)."""
    engine = make_engine(url)
    try:
        with engine.connect() as db:
            return [RequestRecord.model_validate_json(raw) for raw in _by_arrival(db)]
    finally:
        engine.dispose()


def _by_arrival(db: sa.Connection) -> Iterator[str]:
    """Every shipped record's JSON, by arrival, streamed in chunks."""
    query = sa.select(RECORDS.c.record_json).order_by(RECORDS.c.arrived_ms, RECORDS.c.request_id)
    yield from db.execution_options(yield_per=1000).scalars(query)


def read_shared(url: sa.URL | str, request_id: str) -> RequestRecord:
    """One shipped record from the shared database (the ``explain`` command); NotFoundError when absent."""
    engine = make_engine(url)
    try:
        with engine.connect() as db:
            raw = db.scalar(sa.select(RECORDS.c.record_json).where(RECORDS.c.request_id == request_id))
    finally:
        engine.dispose()
    if raw is None:
        raise NotFoundError("no record with that request id")
    return RequestRecord.model_validate_json(raw)
