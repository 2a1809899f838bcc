"""Quality signals and their SQLite store (tables ``quality_signals`` and ``regenerations``)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sovrouter.errors import ConfigError

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

    def __init__(self, path: str | Path = ":memory:") -> None:
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
    """The signal of a request that counts as its observed quality: highest-priority source with a score."""
    scored = [s for s in signals if s.score is not None]
    if not scored:
        return None
    return min(scored, key=lambda s: SOURCE_PRIORITY.index(s.source))


def stored_signals(path: Path | None) -> list[QualitySignal]:
    """Every signal in the store at ``path`` (none when ``path`` is None); a missing file is a ConfigError."""
    if path is None:
        return []
    if not path.is_file():
        raise ConfigError(f"no signal store at {path}")
    store = SignalStore(path)
    try:
        return list(store.signals())
    finally:
        store.close()
