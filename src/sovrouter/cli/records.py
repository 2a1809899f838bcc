"""``sovrouter records export (--db FILE | --url URL [--password-env VAR]) --out FILE.jsonl``: the record store as
JSONL: one instance's SQLite file, or the database several instances ship their records to (``records`` in the
settings)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from sovrouter.errors import ConfigError
from sovrouter.fileio import check_not_input, check_output
from sovrouter.store.records import SQLiteRecordStore
from sovrouter.store.shared_records import export_shared
from sovrouter.store.sql import database_url


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("records", help="per-request records")
    rsub = p.add_subparsers(dest="records_command", required=True)
    e = rsub.add_parser("export", help="export the record store as JSONL (one record a line, in write order)")
    where = e.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", type=Path, help="one instance's records SQLite file")
    where.add_argument("--url", help="the shared records database (postgresql+psycopg://user@host/db)")
    e.add_argument("--password-env", help="environment variable holding the shared database's password")
    e.add_argument("--out", required=True, type=Path, help="JSONL file to write")
    e.set_defaults(func=export)


def export(args: argparse.Namespace) -> int:
    if args.url is not None:
        url = database_url(args.url, args.password_env, "records")
        check_output(args.out)
        try:
            n = export_shared(url, args.out)
        except SQLAlchemyError as exc:
            raise ConfigError(f"records: cannot read the shared database ({type(exc).__name__})") from None
    else:
        db = args.db.resolve()  # the store and its SQLite side files would be destroyed
        check_not_input(args.out, db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"),
                        what="the record store itself")
        # read-only, and refused untouched unless it holds a records table: opening the exact cache's file as a
        # store created a records table in it and reported "0 exported" (found in review, 2026-11-28)
        store = SQLiteRecordStore(args.db, read_only=True)
        try:
            check_output(args.out)
            n = store.export_jsonl(args.out)
        finally:
            store.close()
    print(f"records: {n} exported to {args.out}", file=sys.stderr)
    return 0
