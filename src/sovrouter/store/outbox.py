"""Copying an instance's local SQLite rows to a shared SQL database, off the request path (an outbox).

An :class:`Outbox` copies the rows of one local table past a mark, in order and in batches, into a shared table
(``INSERT ... ON CONFLICT DO NOTHING``: a row copied twice, after a crash between the copy and the mark, is stored
once), then moves the mark, which lives in the same local file (table ``outbox_marks``). A :class:`Shipper` thread
runs a store's outboxes every ``ship_every_s``; a shared database that is down, slow or refusing only delays them.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from sovrouter.store.sql import insert_ignoring_duplicates

log = logging.getLogger("sovrouter.outbox")


def local_origin(path: str) -> str:
    """A name for this local file, made once and kept in it: rows copied from it stay distinct from other
    instances' rows with the same local ids."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("CREATE TABLE IF NOT EXISTS outbox_origin (k INTEGER PRIMARY KEY CHECK (k = 0), origin TEXT)")
        db.execute("INSERT OR IGNORE INTO outbox_origin VALUES (0, ?)", (uuid.uuid4().hex,))
        return str(db.execute("SELECT origin FROM outbox_origin WHERE k = 0").fetchone()[0])
    finally:
        db.close()


class Outbox:
    """Rows of local table ``source`` (columns ``columns``, ordered by ``order``) into ``target``; ``order_as``
    names the target column that receives the order value, ``extra`` adds constant columns."""

    def __init__(self, path: str, engine: Engine, source: str, target: sa.Table, columns: Sequence[str], *,
                 order: str = "rowid", order_as: str | None = None, extra: dict[str, Any] | None = None,
                 batch_rows: int = 500) -> None:
        self.engine = engine
        self.name = f"{source}->{target.name}"
        self.target = target
        self.batch_rows = batch_rows
        self._columns, self._order, self._order_as, self._extra = list(columns), order, order_as, extra or {}
        self._select = (f"SELECT {order}, {', '.join(columns)} FROM {source} WHERE {order} > ? "
                        f"ORDER BY {order} LIMIT ?")
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("CREATE TABLE IF NOT EXISTS outbox_marks (name TEXT PRIMARY KEY, last INTEGER NOT NULL)")
        self._lock = threading.Lock()
        self.refused = 0  # rows the shared database refused for their content (kept locally only)

    def adopt_mark(self, last: int) -> bool:
        """Start past ``last`` (a mark an earlier shipper kept elsewhere) unless this outbox has a mark already;
        whether it was taken."""
        with self._lock:
            return bool(self._db.execute("INSERT OR IGNORE INTO outbox_marks VALUES (?, ?)",
                                         (self.name, int(last))).rowcount == 1)

    def ship(self) -> int:
        """Copy the next rows past the mark (at most ``batch_rows``); how many. Raises SQLAlchemyError when the
        shared database cannot take them (they are copied next time); a row it refuses for its content is skipped
        (logged, counted in ``refused``), never retried forever."""
        with self._lock:
            row = self._db.execute("SELECT last FROM outbox_marks WHERE name = ?", (self.name,)).fetchone()
            rows = self._db.execute(self._select, (0 if row is None else int(row[0]), self.batch_rows)).fetchall()
            if not rows:
                return 0
            values = []
            for r in rows:
                item = dict(zip(self._columns, r[1:], strict=True)) | self._extra
                if self._order_as is not None:
                    item[self._order_as] = r[0]
                values.append(item)
            try:
                with self.engine.begin() as db:
                    db.execute(insert_ignoring_duplicates(self.engine, self.target), values)
            except (DataError, IntegrityError):
                self._one_by_one(rows, values)
            self._db.execute("INSERT INTO outbox_marks VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET "
                             "last = excluded.last", (self.name, rows[-1][0]))
            return len(rows)

    def _one_by_one(self, rows: Sequence[Any], values: Sequence[dict[str, Any]]) -> None:
        """The shared database refused the batch for its content (a value too long for a column...): each row on
        its own, and the ones it refuses stay only in the local file, named in the log by their order value. Until
        2026-11-28 the whole batch was retried forever, logged as "unreachable", and nothing of that instance
        reached the shared database again (found in review)."""
        for row, item in zip(rows, values, strict=True):
            try:
                with self.engine.begin() as db:
                    db.execute(insert_ignoring_duplicates(self.engine, self.target), [item])
            except (DataError, IntegrityError) as exc:
                self.refused += 1
                log.error("%s: the shared database refused row %s (%s); it stays in the local file only",
                          self.name, row[0], type(exc).__name__)

    def ship_all(self) -> int:
        total = 0
        while (n := self.ship()) > 0:
            total += n
            if n < self.batch_rows:
                break
        return total

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Shipper:
    """A daemon thread running ``outboxes`` every ``ship_every_s``; :meth:`close` stops it and ships what is left
    (if the shared database takes it). ``stats``: rows shipped, failed tries."""

    def __init__(self, outboxes: Sequence[Outbox], ship_every_s: float, name: str) -> None:
        self.outboxes = list(outboxes)
        self.ship_every_s = ship_every_s
        self.stats = {"shipped": 0, "failures": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"sovrouter-{name}-shipper", daemon=True)
        self._thread.start()

    def ship_all(self) -> int:
        n = sum(box.ship_all() for box in self.outboxes)
        self.stats["shipped"] += n
        return n

    def _loop(self) -> None:
        failing = False
        while not self._stop.wait(self.ship_every_s):
            try:
                self.ship_all()
                failing = False
            except SQLAlchemyError as exc:
                self.stats["failures"] += 1
                if not failing:  # once per outage, without the database's message (it may carry the host)
                    log.warning("%s: shared database unreachable (%s); rows wait locally",
                                self._thread.name, type(exc).__name__)
                failing = True

    def close(self, on_failure: Callable[[], None] | None = None) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        try:
            self.ship_all()
        except SQLAlchemyError:
            if on_failure is not None:
                on_failure()
        for box in self.outboxes:
            box.close()
