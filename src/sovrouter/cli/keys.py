"""``sovrouter keys hash [KEY]`` (sha256 to put in ``api_keys``; reads stdin without KEY, keeping the key out of
shell history) and ``sovrouter keys new --tenant T`` (a fresh random key and its config entry)."""

from __future__ import annotations

import argparse
import secrets
import sys

from sovrouter.config import hash_key


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("keys", help="API key helpers")
    ksub = p.add_subparsers(dest="keys_command", required=True)
    h = ksub.add_parser("hash", help="print the sha256 of a key (from the argument or stdin)")
    h.add_argument("key", nargs="?", help="the key; omit to read it from stdin")
    h.set_defaults(func=hash_cmd)
    n = ksub.add_parser("new", help="generate a key for a tenant; prints the key once and its config entry")
    n.add_argument("--tenant", required=True)
    n.set_defaults(func=new_cmd)


def hash_cmd(args: argparse.Namespace) -> int:
    key = args.key if args.key is not None else sys.stdin.readline().strip()
    if not key:
        print("sovrouter: no key given", file=sys.stderr)
        return 2
    print(hash_key(key))
    return 0


def new_cmd(args: argparse.Namespace) -> int:
    key = "sk-sov-" + secrets.token_urlsafe(32)
    print(f"key (shown once): {key}", file=sys.stderr)
    print(f"- tenant: {args.tenant}\n  key_sha256: {hash_key(key)}")
    return 0
