"""The ``sovrouter`` command. Each subcommand lives in its own module with ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from sovrouter.errors import SovrouterError

# Subcommand modules (each defines ``register(subparsers)``; the handler is stored as ``func``).
SUBCOMMANDS: tuple[str, ...] = (
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sovrouter", description="Sovereign AI routing control plane")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"sovrouter.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rc = args.func(args)
    except SovrouterError as exc:
        print(f"sovrouter: {exc.message}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
