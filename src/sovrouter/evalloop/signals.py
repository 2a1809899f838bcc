"""Quality signals and their SQLite store (tables ``quality_signals`` and ``regenerations``), and the same store
shared by several gateway instances (:class:`SharedSignalStore`)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import SQLAlchemyError

from sovrouter.errors import ConfigError
from sovrouter.store.outbox import Outbox, Shipper, local_origin
from sovrouter.store.sql import create_tables, make_engine
from sovrouter.store.sqlite_files import open_read_only

log = logging.getLogger("sovrouter.signals")

Source = Literal["feedback", "offline", "scorer", "judge", "shadow"]
FailureMode = Literal["wrong_answer", "format_error", "truncated", "refusal", "timeout", "policy_refusal"]
FAILURE_MODES: tuple[FailureMode, ...] = (
    "wrong_answer", "format_error", "truncated", "refusal", "timeout", "policy_refusal",
)
# When one request has several signals, the more trustworthy source wins (see docs/eval.md).
SOURCE_PRIORITY: tuple[Source, ...] = ("offline", "shadow", "judge", "scorer", "feedback")


class QualitySignal(BaseModel):
    """One observation of the quality of a served answer. ``reference_score`` is the quality of the reference
    route's answer to the same request (shadow sampling, offline scores), when known."""

    model_config = ConfigDict(frozen=True)
    request_id: str
    source: Source
    score: float | None = Field(default=None, ge=0, le=1)
    reference_score: float | None = Field(default=None, ge=0, le=1)
    failure_mode: FailureMode | None = None
    slot: str | None = None
    deployment: str | None = None
    reference_slot: str | None = None
    cost_usd: float = Field(default=0.0, ge=0, description="cost of producing this signal (shadow call)")
    comment: str | None = Field(default=None, max_length=2000, description="stored, never displayed")
    created_ms: float = 0.0


class Regeneration(BaseModel):
    model_config = ConfigDict(frozen=True)
    request_id: str
    previous_request_id: str
    tenant: str
    slot: str | None = None
    deployment: str | None = None
    match: Literal["exact", "normalized", "near"] = "exact"
    gap_ms: float = 0.0


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS quality_signals (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      request_id TEXT NOT NULL, source TEXT NOT NULL, score REAL, reference_score REAL, failure_mode TEXT,
      slot TEXT, deployment TEXT, reference_slot TEXT, cost_usd REAL NOT NULL DEFAULT 0, comment TEXT,
      created_ms REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS quality_signals_rid ON quality_signals(request_id)",
    """CREATE TABLE IF NOT EXISTS regenerations (
      request_id TEXT PRIMARY KEY, previous_request_id TEXT NOT NULL, tenant TEXT NOT NULL, slot TEXT,
      deployment TEXT, match TEXT NOT NULL, gap_ms REAL NOT NULL)""",
)
_COLS = ("request_id", "source", "score", "reference_score", "failure_mode", "slot", "deployment",
         "reference_slot", "cost_usd", "comment", "created_ms")


class SignalStore:
    """SQLite store of quality signals (its own file, or the records file: the tables do not clash)."""

    def __init__(self, path: str | Path = ":memory:", *, read_only: bool = False) -> None:
        if read_only:  # a command that only reads: never a table created in a file that is not a signal store
            self._db = open_read_only(path, "quality_signals", "signal store")
            return
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        for stmt in _SCHEMA:
            self._db.execute(stmt)

    def add(self, signal: QualitySignal) -> None:
        self.add_many([signal])

    def add_many(self, signals: Iterable[QualitySignal]) -> int:
        rows = [tuple(getattr(s, c) if c != "created_ms" else (s.created_ms or time.time() * 1000.0)
                      for c in _COLS) for s in signals]
        self._db.execute("BEGIN")
        self._db.executemany(f"INSERT INTO quality_signals ({','.join(_COLS)}) VALUES "
                             f"({','.join('?' * len(_COLS))})", rows)
        self._db.execute("COMMIT")
        return len(rows)

    def signals(self, source: Source | None = None) -> Iterator[QualitySignal]:
        sql = f"SELECT {','.join(_COLS)} FROM quality_signals"
        args: tuple[str, ...] = ()
        if source is not None:
            sql, args = sql + " WHERE source = ?", (source,)
        for row in self._db.execute(sql + " ORDER BY id", args):
            yield QualitySignal.model_validate(dict(zip(_COLS, row, strict=True)))

    def for_request(self, request_id: str) -> list[QualitySignal]:
        rows = self._db.execute(f"SELECT {','.join(_COLS)} FROM quality_signals WHERE request_id = ? ORDER BY id",
                                (request_id,))
        return [QualitySignal.model_validate(dict(zip(_COLS, r, strict=True))) for r in rows]

    def add_regeneration(self, regen: Regeneration) -> None:
        self._db.execute("INSERT OR IGNORE INTO regenerations VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (regen.request_id, regen.previous_request_id, regen.tenant, regen.slot, regen.deployment,
                          regen.match, regen.gap_ms))

    def regenerations(self) -> list[Regeneration]:
        cols = ("request_id", "previous_request_id", "tenant", "slot", "deployment", "match", "gap_ms")
        return [Regeneration.model_validate(dict(zip(cols, r, strict=True)))
                for r in self._db.execute(f"SELECT {','.join(cols)} FROM regenerations ORDER BY rowid")]

    def close(self) -> None:
        self._db.close()


def best_signal(signals: Iterable[QualitySignal]) -> QualitySignal | None:
    """The signal of a request that counts as its observed quality: the highest-priority source with a score, and
    within it the latest (a client that corrects its feedback is heard; the first one counted until 2026-11-28)."""
    scored = [s for s in signals if s.score is not None]
    if not scored:
        return None
    best = min(SOURCE_PRIORITY.index(s.source) for s in scored)
    return [s for s in scored if SOURCE_PRIORITY.index(s.source) == best][-1]


def stored_signals(path: Path | None) -> list[QualitySignal]:
    """Every signal in the store at ``path`` (none when ``path`` is None), read-only; a missing file, or one that
    is not a signal store, is a ConfigError."""
    if path is None:
        return []
    store = SignalStore(path, read_only=True)
    try:
        return list(store.signals())
    finally:
        store.close()


_SHARED = sa.MetaData()
SHARED_SIGNALS = sa.Table(
    "quality_signals", _SHARED,
    sa.Column("origin", sa.String(64), primary_key=True),
    sa.Column("origin_id", sa.BigInteger, primary_key=True),
    sa.Column("request_id", sa.String(200), nullable=False, index=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("score", sa.Float), sa.Column("reference_score", sa.Float), sa.Column("failure_mode", sa.String(32)),
    sa.Column("slot", sa.String(200)), sa.Column("deployment", sa.String(200)),
    sa.Column("reference_slot", sa.String(200)), sa.Column("cost_usd", sa.Float, nullable=False),
    sa.Column("comment", sa.Text), sa.Column("created_ms", sa.Float, nullable=False),
)
SHARED_REGENERATIONS = sa.Table(
    "regenerations", _SHARED,
    sa.Column("request_id", sa.String(200), primary_key=True),
    sa.Column("previous_request_id", sa.String(200), nullable=False), sa.Column("tenant", sa.String(200),
                                                                                 nullable=False),
    sa.Column("slot", sa.String(200)), sa.Column("deployment", sa.String(200)),
    sa.Column("match", sa.String(16), nullable=False), sa.Column("gap_ms", sa.Float, nullable=False),
)
# a feedback comment is free text a user typed (it may hold personal data): it stays in the instance's own file
_SHIPPED_COLS = tuple(c for c in _COLS if c != "comment")
_REGEN_COLS = ("request_id", "previous_request_id", "tenant", "slot", "deployment", "match", "gap_ms")


def shared_signals(url: sa.URL | str) -> list[QualitySignal]:
    """Every instance's shipped signals from the shared database (the ``weakness`` command); comments never
    travel there, so they are None."""
    engine = make_engine(url)
    try:
        with engine.connect() as db:
            rows = db.execute(sa.select(*[SHARED_SIGNALS.c[c] for c in _SHIPPED_COLS])
                              .order_by(SHARED_SIGNALS.c.created_ms, SHARED_SIGNALS.c.origin,
                                        SHARED_SIGNALS.c.origin_id))
            return [QualitySignal.model_validate(dict(zip(_SHIPPED_COLS, r, strict=True))) for r in rows]
    finally:
        engine.dispose()


def _clear_shipped_comments(engine: sa.Engine) -> None:
    """Clear the feedback comments that versions before 2026-11-27 (387e2fd) copied into the shared table with the
    rest of each signal: free text a user typed, which never leaves the instance now. Each stays in the local file
    of the instance that received it; the shared rows keep everything else. Until 2026-11-28 they stayed and were
    read back by every instance (found in review)."""
    with engine.begin() as db:
        cleared = db.execute(SHARED_SIGNALS.update().where(SHARED_SIGNALS.c.comment.is_not(None))
                             .values(comment=None)).rowcount
    if cleared:
        log.warning("signals: cleared %d feedback comment(s) an earlier version had copied to the shared database "
                    "(comments stay in each instance's own file)", cleared)


class SharedSignalStore(SignalStore):
    """Several gateway instances: signals are written to this instance's SQLite file (as before) and copied by a
    shipper thread to one shared database (``store/outbox.py``); reads (the dashboard, a request's signals) see
    every instance's, or this instance's alone while the shared database is down."""

    def __init__(self, path: str | Path, url: sa.URL | str, *, ship_every_s: float = 1.0) -> None:
        if str(path) == ":memory:":
            raise ConfigError("a shared signal store needs the local signals in a file")
        super().__init__(path)
        self.engine = make_engine(url)
        create_tables(self.engine, _SHARED)
        _clear_shipped_comments(self.engine)
        origin = local_origin(str(path))
        self.shipper = Shipper([
            Outbox(str(path), self.engine, "quality_signals", SHARED_SIGNALS, _SHIPPED_COLS, order="id",
                   order_as="origin_id", extra={"origin": origin}),
            Outbox(str(path), self.engine, "regenerations", SHARED_REGENERATIONS, _REGEN_COLS),
        ], ship_every_s, "signals")

    def _shared_rows(self, query: sa.Select[Any]) -> list[Any] | None:
        try:
            self.shipper.ship_all()
            with self.engine.connect() as db:
                return list(db.execute(query))
        except SQLAlchemyError:
            log.warning("signals: shared database unreachable; this instance's signals only")
            return None

    def signals(self, source: Source | None = None) -> Iterator[QualitySignal]:
        cols = [SHARED_SIGNALS.c[c] for c in _SHIPPED_COLS]
        query = sa.select(*cols).order_by(SHARED_SIGNALS.c.created_ms, SHARED_SIGNALS.c.origin,
                                          SHARED_SIGNALS.c.origin_id)
        if source is not None:
            query = query.where(SHARED_SIGNALS.c.source == source)
        rows = self._shared_rows(query)
        if rows is None:
            yield from super().signals(source)
            return
        for row in rows:
            yield QualitySignal.model_validate(dict(zip(_SHIPPED_COLS, row, strict=True)))

    def for_request(self, request_id: str) -> list[QualitySignal]:
        cols = [SHARED_SIGNALS.c[c] for c in _SHIPPED_COLS]
        rows = self._shared_rows(sa.select(*cols).where(SHARED_SIGNALS.c.request_id == request_id)
                                 .order_by(SHARED_SIGNALS.c.created_ms, SHARED_SIGNALS.c.origin_id))
        if rows is None:
            return super().for_request(request_id)
        return [QualitySignal.model_validate(dict(zip(_SHIPPED_COLS, r, strict=True))) for r in rows]

    def regenerations(self) -> list[Regeneration]:
        rows = self._shared_rows(sa.select(*[SHARED_REGENERATIONS.c[c] for c in _REGEN_COLS])
                                 .order_by(SHARED_REGENERATIONS.c.request_id))
        if rows is None:
            return super().regenerations()
        return [Regeneration.model_validate(dict(zip(_REGEN_COLS, r, strict=True))) for r in rows]

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        self.shipper.close(on_failure=lambda: log.warning("signals: could not ship the last rows; they go at the "
                                                          "next start"))
        super().close()
        self.engine.dispose()
