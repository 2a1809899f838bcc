"""The ``sovrouter`` command. Each subcommand lives in its own module with ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import sqlite3
import sys
from collections.abc import Sequence

from sovrouter.errors import SovrouterError

# Command name -> module under ``sovrouter.cli`` (each defines ``register(subparsers)`` and sets ``func``).
# Only the module of the command being run is imported, so one command's heavy dependencies (models, plotting)
# never slow down or break another.
SUBCOMMANDS: dict[str, str] = {
    "serve": "serve",
    "demo": "demo",
    "replay": "replay",
    "report": "report",
    "explain": "explain",
    "records": "records",
    "keys": "keys",
    "train": "train",
    "train-cache": "train_cache",
    "train-answer-shape": "train_answer_shape",
    "eval": "eval",
    "weakness": "weakness",
    "recalibrate": "recalibrate",
    "batch": "batch",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sovrouter", description="Sovereign AI routing control plane")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in SUBCOMMANDS.items():
        if only is None or name == only:
            importlib.import_module(f"sovrouter.cli.{module}").register(sub)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in SUBCOMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_command_in(argv)).parse_args(argv)
    try:
        rc = args.func(args)
    except SovrouterError as exc:
        print(f"sovrouter: {exc.message}", file=sys.stderr)
        return 2
    # the command line's boundary for two input mistakes any command can meet: a one-line error, not a traceback
    except sqlite3.DatabaseError:
        print("sovrouter: a database given is not a readable SQLite file", file=sys.stderr)
        return 2
    except UnicodeDecodeError:
        print("sovrouter: an input file is not UTF-8 text (a gzip one where plain JSONL is read?)", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
