"""What the SQL stores share (the batch store, the shared record store): URLs without secrets, engines for SQLite
and PostgreSQL, and creating tables when several instances start at once."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from sovrouter.config import env_secret
from sovrouter.errors import ConfigError

_SCHEMA_LOCK = 0x736F7662  # the PostgreSQL advisory lock key held while tables are created ("sovb")


def database_url(url: str, password_env: str | None, needed_by: str) -> sa.URL:
    """``url`` with its password from the environment variable ``password_env`` (never written in the URL);
    ``postgresql://`` means the psycopg 3 driver installed with sovrouter. Errors name ``needed_by``, never the
    URL."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(f"{needed_by}.url is not a database URL") from None
    if parsed.password is not None:
        raise ConfigError(f"{needed_by}.url must not hold a password (use {needed_by}.password_env)")
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    secret = env_secret(password_env, needed_by)
    return parsed if secret is None else parsed.set(password=secret)


def make_engine(url: sa.URL | str) -> Engine:
    """A pooled engine: SQLite in WAL mode usable from several threads, deleted content overwritten with zeros
    (``secure_delete``), or PostgreSQL with a connect timeout."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=5,
                            connect_args={"connect_timeout": 10})


def create_tables(engine: Engine, metadata: sa.MetaData) -> None:
    """``CREATE TABLE`` what is missing. On PostgreSQL under an advisory lock: instances starting together would
    otherwise race on the catalog and all but one fail."""
    with engine.begin() as db:
        if engine.dialect.name == "postgresql":
            db.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
        metadata.create_all(db)


def insert_ignoring_duplicates(engine: Engine, table: sa.Table) -> Any:
    """``INSERT ... ON CONFLICT (primary key) DO NOTHING`` in ``engine``'s dialect (SQLite or PostgreSQL): a row
    written twice is stored once."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    keys = [c.name for c in table.primary_key.columns]
    return dialect.insert(table).on_conflict_do_nothing(index_elements=keys)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA secure_delete=ON")  # a deleted row (a batch file's prompts) is overwritten, not left
    cursor.close()
