"""API keys kept in a file of their own (``api_keys_file``), read again when it changes, so that an operator adds
and revokes keys without restarting any instance.

- **Format**: YAML or JSON, a list of entries as in ``api_keys`` (``tenant``, ``key_sha256``, ``label``), or a
  mapping with that list under ``api_keys`` (the section moved out of the configuration as it is). The keys in
  force are the configuration's ``api_keys`` plus the file's.
- **When it is read**: at start-up (a file that does not read, parse or validate stops the start, as any
  configuration error does), then whenever it changed (modification time, size or inode) at the next
  authentication at least ``api_keys_reload_s`` after the previous check: a removed key is refused by every
  instance within about that long, and a batch it created is failed at the owner's next lease renewal
  (:mod:`sovrouter.batch.revocation`).
- **A file that is wrong after a change** (unreadable, not YAML, an entry that does not validate, a tenant the
  tenants file does not have, a digest listed twice, an empty file) keeps the keys read before, with a warning in
  the log and ``sovrouter_api_keys_file_reloads_total{result="error"}``; it is read again once it changes. Keeping
  the last good set is what configuration reloaders commonly do (a typo must not lock every tenant out); the
  price is that a revocation written into a broken file waits for the file to be fixed. Write the file whole and
  rename it into place (a Kubernetes Secret mounted as a volume is updated that way): a reader that meets a
  half-written list takes it as it stands until the next check.
- Messages name the file, the entry's index and field and the tenant id (configuration, not a secret); never a
  digest or any other value.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from sovrouter.config import ApiKey
from sovrouter.errors import ConfigError

log = logging.getLogger(__name__)

_KEYS = TypeAdapter(list[ApiKey])
Signature = tuple[int, int, int]


def read_keys(path: Path, known_tenants: Collection[str], inline: Sequence[ApiKey] = ()) -> list[ApiKey]:
    """The keys ``path`` lists, checked against the tenants and against ``inline`` (the configuration's own
    ``api_keys``); raises :class:`ConfigError` saying what is wrong."""
    where = f"api_keys_file {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(f"{where}: cannot read it ({why})") from None
    if not text.strip():
        raise ConfigError(f"{where}: the file is empty (write [] for no keys)")
    try:
        raw: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{where}: not valid YAML or JSON{at}") from None
    if isinstance(raw, dict) and set(raw) == {"api_keys"}:
        raw = raw["api_keys"]
    if raw is None:
        raw = []
    try:
        keys = _KEYS.validate_python(raw)
    except ValidationError as exc:  # where and why only: the values may be digests
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors()[:3])
        raise ConfigError(f"{where}: {problems}") from None
    bad = [f"entry {i} names tenant {k.tenant!r}" for i, k in enumerate(keys) if k.tenant not in known_tenants]
    if bad:
        raise ConfigError(f"{where}: {'; '.join(bad[:3])}: the tenants file has no such tenant")
    seen = {k.key_sha256 for k in inline}
    for i, k in enumerate(keys):
        if k.key_sha256 in seen:
            raise ConfigError(f"{where}: entry {i}: the same key is listed more than once (here or in api_keys)")
        seen.add(k.key_sha256)
    return keys


def signature(path: Path) -> Signature | None:
    """What tells a changed file: modification time (ns), size and inode; None when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class KeyFile:
    """The keys of one ``api_keys_file``, read at construction and again by :meth:`refresh` after a change."""

    def __init__(self, path: Path, known_tenants: Collection[str], inline: Sequence[ApiKey] = (), *,
                 reload_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.known_tenants = frozenset(known_tenants)
        self.inline = tuple(inline)
        self.reload_s = reload_s
        self.clock = clock
        self._seen = signature(path)
        self.keys: tuple[ApiKey, ...] = tuple(read_keys(path, self.known_tenants, self.inline))
        self._next = clock() + reload_s
        self.reloads = {"ok": 0, "error": 0}

    def refresh(self) -> bool:
        """Read the file again when it changed and the last check is ``reload_s`` old; True when the keys in
        force changed. A file that is wrong keeps the keys read before (see the module's notes)."""
        now = self.clock()
        if now < self._next:
            return False
        self._next = now + self.reload_s
        seen = signature(self.path)
        if seen == self._seen:
            return False
        self._seen = seen  # read once per change: a wrong file is reported once, and read again when it changes
        try:
            keys = tuple(read_keys(self.path, self.known_tenants, self.inline))
        except ConfigError as exc:
            self.reloads["error"] += 1
            log.warning("%s; the %d keys read before stay in force", exc, len(self.keys))
            return False
        self.reloads["ok"] += 1
        changed = keys != self.keys
        if changed:
            log.info("api_keys_file %s: %d keys in force (%d before)", self.path, len(keys), len(self.keys))
        self.keys = keys
        return changed
