"""``sovrouter records export --db FILE --out FILE.jsonl``: the record store as JSONL."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sovrouter.errors import ConfigError
from sovrouter.store.records import SQLiteRecordStore


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("records", help="per-request records")
    rsub = p.add_subparsers(dest="records_command", required=True)
    e = rsub.add_parser("export", help="export the record store as JSONL (one record a line, in write order)")
    e.add_argument("--db", required=True, type=Path, help="records SQLite file")
    e.add_argument("--out", required=True, type=Path, help="JSONL file to write")
    e.set_defaults(func=export)


def export(args: argparse.Namespace) -> int:
    if not args.db.is_file():  # never let SQLite create an empty store by accident
        raise ConfigError(f"no record store at {args.db}")
    store = SQLiteRecordStore(args.db)
    try:
        n = store.export_jsonl(args.out)
    finally:
        store.close()
    print(f"records: {n} exported to {args.out}", file=sys.stderr)
    return 0
