"""Opening a SQLite file that a command only reads (``explain``, ``weakness``, ``records export``...).

Opened read-write, a store creates its tables in whatever file it is given: ``--db`` naming a running gateway's
exact-cache file, or a signals file as ``--db``, gained ``records``, ``quality_signals``, ``regenerations`` and
``sqlite_sequence`` tables, and the command then said "no record" or "0 exported" (found in review, 2026-11-28).
Here the file is opened read-only (SQLite's ``mode=ro``) and refused, untouched, unless it holds the store's
table."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sovrouter.errors import ConfigError


def open_read_only(path: str | Path, table: str, what: str) -> sqlite3.Connection:
    """A read-only connection to the SQLite file ``path``, which must exist and hold ``table``. A missing file is
    ``no {what} at PATH``, a SQLite file without the table ``PATH is not a {what}`` (both :class:`ConfigError`); a
    file that is not SQLite raises :class:`sqlite3.DatabaseError` (the command line's one-line error)."""
    p = Path(path)
    if not p.is_file():  # never let SQLite create an empty store by accident
        raise ConfigError(f"no {what} at {p}")
    db = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    try:
        found = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    except BaseException:
        db.close()
        raise
    if found is None:
        db.close()
        raise ConfigError(f"{p} is not a {what} (it holds no {table} table)")
    return db
