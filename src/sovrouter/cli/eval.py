"""``sovrouter eval <what> ...``: offline evaluation commands of the reuse levers.

Each module named in :data:`EVAL_COMMANDS` (under ``sovrouter.cli``) defines ``register(eval_subparsers)`` and
adds its own sub-subcommand (``prefix-affinity``, ``prefix-score``, ``semantic-cache`` ...).
"""

from __future__ import annotations

import argparse
import importlib

EVAL_COMMANDS: tuple[str, ...] = (
    "eval_prefix",
    "eval_semantic",
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("eval", help="offline evaluation of the reuse levers")
    eval_sub = p.add_subparsers(dest="eval_command", required=True)
    for name in EVAL_COMMANDS:
        importlib.import_module(f"sovrouter.cli.{name}").register(eval_sub)
