"""``sovrouter keys``: API key helpers.

- ``keys hash [KEY]``: the sha256 to put in ``api_keys`` (reads stdin without KEY, keeping the key out of shell
  history).
- ``keys new --tenant T``: a fresh random key (shown once, on stderr) and its entry. With ``--config`` the tenant
  is checked against the tenants file, and when the configuration names an ``api_keys_file`` the entry is added
  to it: written whole and renamed into place under an edit lock, so every gateway instance takes the new key at
  its next check of the file, with no restart (docs/gateway.md, "Authentication").
- ``keys revoke --config C --label L | --sha256 D | --key-stdin``: removes the matching entries from the
  ``api_keys_file`` the same way; every instance refuses the key within ``api_keys_reload_s``, and a batch it
  created fails at its owner's next lease renewal. A key listed in the configuration's own ``api_keys`` is only
  reported (remove it there and restart); when one matches, the exit status is 1, the others' removal done. A
  symbolic link (a mounted Secret's file) is refused: edit it at its source.
- ``keys list --config C``: tenant, label, the first 12 hex digits of each digest and where it is listed.
"""

from __future__ import annotations

import argparse
import getpass
import secrets
import sys
from pathlib import Path

import yaml

from sovrouter.catalog import Tenants
from sovrouter.config import ApiKey, Settings, hash_key
from sovrouter.errors import ConfigError
from sovrouter.gateway.keyfile import editing, read_keys, write_keys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("keys", help="API key helpers")
    ksub = p.add_subparsers(dest="keys_command", required=True)
    h = ksub.add_parser("hash", help="print the sha256 of a key (from the argument or stdin)")
    h.add_argument("key", nargs="?", help="the key; omit to read it from stdin")
    h.set_defaults(func=hash_cmd)
    n = ksub.add_parser("new", help="generate a key for a tenant; prints the key once and its config entry (with "
                                    "--config and an api_keys_file: adds it there)")
    n.add_argument("--tenant", required=True)
    n.add_argument("--label", default="", help="a name for the key (what `keys revoke --label` matches)")
    n.add_argument("--config", type=Path, help="the gateway's configuration: check the tenant, add to its "
                                                "api_keys_file")
    n.set_defaults(func=new_cmd)
    r = ksub.add_parser("revoke", help="remove a key from the configuration's api_keys_file (no restart)")
    r.add_argument("--config", type=Path, required=True)
    which = r.add_mutually_exclusive_group(required=True)
    which.add_argument("--label", help="every key with this label")
    which.add_argument("--sha256", help="the key's digest (64 hex digits, or at least its first 12)")
    which.add_argument("--key-stdin", action="store_true", help="read the key itself from stdin")
    r.set_defaults(func=revoke_cmd)
    ls = ksub.add_parser("list", help="the keys in force: tenant, label, digest prefix, where listed")
    ls.add_argument("--config", type=Path, required=True)
    ls.set_defaults(func=list_cmd)


def hash_cmd(args: argparse.Namespace) -> int:
    key = args.key if args.key is not None else _read_key()
    if not key:
        print("sovrouter: no key given", file=sys.stderr)
        return 2
    print(hash_key(key))
    return 0


def _read_key() -> str:
    """A key from stdin: piped, one line; typed at a terminal, without echo (``getpass``), so it stays off the
    screen and out of a terminal's scrollback."""
    if sys.stdin.isatty():
        return getpass.getpass("key: ").strip()
    return sys.stdin.readline().strip()


def _tenant_ids(settings: Settings) -> set[str]:
    return {t.id for t in Tenants.load(settings.tenants).tenants}


def _file_keys(settings: Settings, path: Path) -> list[ApiKey]:
    """The file's keys as a gateway would read them; a file not there yet is empty (``keys new`` creates it)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:  # a folder it may not search: Path.exists() raised this one (a traceback)
        raise ConfigError(f"api_keys_file {path}: cannot read it ({exc.strerror})") from None
    return read_keys(path, _tenant_ids(settings), settings.api_keys, data)


def new_cmd(args: argparse.Namespace) -> int:
    if not args.label.isprintable():
        raise ConfigError("--label takes printable characters only (no newline, tab or control character)")
    key = "sk-sov-" + secrets.token_urlsafe(32)
    entry = ApiKey(tenant=args.tenant, key_sha256=hash_key(key), label=args.label)
    settings = Settings.load(args.config) if args.config is not None else None
    if settings is not None and args.tenant not in _tenant_ids(settings):
        raise ConfigError(f"the tenants file {settings.tenants} has no tenant {args.tenant!r}")
    if settings is None or settings.api_keys_file is None:
        print(f"key (shown once): {key}", file=sys.stderr)
        # YAML's own writer: a label such as "#ci" or "yes", written as it is, read back as null or true
        print(yaml.safe_dump([entry.model_dump(exclude_defaults=True)], sort_keys=False, allow_unicode=True),
              end="")
        return 0
    path = settings.api_keys_file
    with editing(path):
        keys = _file_keys(settings, path)
        write_keys(path, [*keys, entry])
    print(f"key (shown once): {key}", file=sys.stderr)
    print(f"added a key for {args.tenant} to {path} ({len(keys) + 1} keys there); every gateway instance takes it "
          f"within api_keys_reload_s ({settings.api_keys_reload_s:g} s) of seeing the file change")
    return 0


def revoke_cmd(args: argparse.Namespace) -> int:
    settings = Settings.load(args.config)
    if args.key_stdin:
        key = _read_key()
        if not key:
            raise ConfigError("no key on stdin")
        digest = hash_key(key)
    elif args.sha256 is not None:
        digest = args.sha256.strip().lower()
        if len(digest) < 12 or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigError("--sha256 takes the key's digest in hex, at least its first 12 digits")
    else:
        digest = None
        if not args.label:
            raise ConfigError("--label takes a non-empty label")

    def matches(k: ApiKey) -> bool:
        return k.label == args.label if digest is None else k.key_sha256.startswith(digest)

    inline = [k for k in settings.api_keys if matches(k)]
    path = settings.api_keys_file
    if path is None:
        if inline:
            raise ConfigError(f"{len(inline)} matching key(s) are in api_keys of {args.config}: remove them there "
                              "and restart every instance (or move keys to an api_keys_file)")
        raise ConfigError(f"{args.config} names no api_keys_file, and no key in api_keys matches")
    with editing(path):
        keys = _file_keys(settings, path)
        kept = [k for k in keys if not matches(k)]
        if len(kept) == len(keys):
            where = f"; {len(inline)} in api_keys of {args.config} (remove them there and restart)" if inline else ""
            raise ConfigError(f"no key in {path} matches{where}")
        if digest is not None and len({k.key_sha256 for k in keys if matches(k)}) > 1:
            raise ConfigError("that digest prefix matches more than one key: give more of it")
        write_keys(path, kept)
    removed = len(keys) - len(kept)
    print(f"removed {removed} key(s) from {path} ({len(kept)} left); every gateway instance refuses them within "
          f"api_keys_reload_s ({settings.api_keys_reload_s:g} s), and their running batches fail at the next "
          "lease renewal")
    if inline:  # still valid: a script's `revoke ... || alert` must hear of it
        print(f"sovrouter: {len(inline)} more matching key(s) are in api_keys of {args.config} and stay valid: "
              "remove them there and restart every instance", file=sys.stderr)
        return 1
    return 0


def list_cmd(args: argparse.Namespace) -> int:
    settings = Settings.load(args.config)
    rows = [(k, "api_keys") for k in settings.api_keys]
    if settings.api_keys_file is not None:
        rows += [(k, str(settings.api_keys_file)) for k in _file_keys(settings, settings.api_keys_file)]
    for k, where in rows:
        print(f"{k.tenant}\t{k.label or '-'}\t{k.key_sha256[:12]}\t{where}")
    return 0
