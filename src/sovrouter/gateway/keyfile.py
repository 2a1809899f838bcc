"""API keys kept in a file of their own (``api_keys_file``), read again when it changes, so that an operator adds
and revokes keys without restarting any instance.

- **Format**: YAML or JSON, a list of entries as in ``api_keys`` (``tenant``, ``key_sha256``, ``label``), or a
  mapping with that list under ``api_keys`` (the section moved out of the configuration as it is). The keys in
  force are the configuration's ``api_keys`` plus the file's.
- **When it is read**: at start-up (a file that does not read, parse or validate stops the start, as any
  configuration error does), then whenever its content changed at the next authentication at least
  ``api_keys_reload_s`` after the previous check: a removed key is refused by every instance within about that
  long, and a batch it created is failed at the owner's next lease renewal (:mod:`sovrouter.batch.revocation`;
  the batch path checks the file each time it asks, without waiting for ``api_keys_reload_s``). The content is
  compared, not the modification time, size and inode: a rewrite in place of the same length within one
  timestamp tick, or a copy that keeps times, leaves all three as they were (found in review).
- **A file that is wrong after a change** (unreadable, not YAML, an entry that does not validate, a tenant the
  tenants file does not have, a digest listed twice, an empty file) keeps the keys read before, with a warning in
  the log and ``sovrouter_api_keys_file_reloads_total{result="error"}``; it is read again once it changes. Keeping
  the last good set is what configuration reloaders commonly do (a typo must not lock every tenant out); the
  price is that a revocation written into a broken file waits for the file to be fixed. Write the file whole and
  rename it into place (``sovrouter keys new / revoke`` do, through :func:`write_keys` under :func:`editing`; a
  Kubernetes Secret mounted as a volume is updated that way): a reader that meets a half-written list takes it
  as it stands until the next check.
- Messages name the file, the entry's index and field and the tenant id (configuration, not a secret); never a
  digest or any other value, nor an unknown field's name unless it is a plain word (``- sk-...: acme-us``, a key
  mapped to its tenant, would otherwise put the key in the message).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from sovrouter.config import ApiKey, error_place
from sovrouter.errors import ConfigError

log = logging.getLogger(__name__)

_KEYS = TypeAdapter(list[ApiKey])


def read_keys(path: Path, known_tenants: Collection[str], inline: Sequence[ApiKey] = (),
              data: bytes | None = None) -> list[ApiKey]:
    """The keys ``path`` lists (``data``: its bytes, already read), checked against the tenants and against
    ``inline`` (the configuration's own ``api_keys``); raises :class:`ConfigError` saying what is wrong."""
    where = f"api_keys_file {path}"
    try:
        text = (path.read_bytes() if data is None else data).decode("utf-8")
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
        problems = "; ".join(f"{_place(e['loc'])}: {e['msg']}" for e in exc.errors()[:3])
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


def _place(loc: tuple[int | str, ...]) -> str:
    """Where a validation error is: indexes and field names, as the configuration's ``api_keys`` are reported."""
    return error_place(("api_keys", *loc)).removeprefix("api_keys").lstrip(".") or "(root)"


def _contents(path: Path) -> tuple[bytes | None, bytes | None]:
    """The file's bytes and their sha256 (what tells a changed file); (None, None) when it cannot be read."""
    try:
        data = path.read_bytes()
    except OSError:
        return None, None
    return data, hashlib.sha256(data).digest()


class KeyFile:
    """The keys of one ``api_keys_file``, read at construction and again by :meth:`refresh` after a change."""

    def __init__(self, path: Path, known_tenants: Collection[str], inline: Sequence[ApiKey] = (), *,
                 reload_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.known_tenants = frozenset(known_tenants)
        self.inline = tuple(inline)
        self.reload_s = reload_s
        self.clock = clock
        data, self._seen = _contents(path)
        self.keys: tuple[ApiKey, ...] = tuple(read_keys(path, self.known_tenants, self.inline, data))
        self._next = clock() + reload_s
        self.reloads = {"ok": 0, "error": 0}

    def refresh(self, now: bool = False) -> bool:
        """Read the file again when it changed and the last check is ``reload_s`` old (``now``: whatever its
        age); True when the keys in force changed. A file that is wrong keeps the keys read before (see the
        module's notes)."""
        at = self.clock()
        if at < self._next and not now:
            return False
        self._next = at + self.reload_s
        data, seen = _contents(self.path)
        if seen == self._seen:
            return False
        self._seen = seen  # read once per change: a wrong file is reported once, and read again when it changes
        try:
            keys = tuple(read_keys(self.path, self.known_tenants, self.inline, data))
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


def _not_a_link(path: Path) -> None:
    """Refuse to edit a symbolic link: renaming over it would put a plain file in its place, cut off from what
    it named (a Secret or ConfigMap volume's ``keys.yaml -> ..data/keys.yaml``, whose next update would then
    never be seen; a file kept elsewhere and linked here)."""
    if path.is_symlink():
        raise ConfigError(f"api_keys_file {path} is a symbolic link (a mounted Secret?): edit what it names "
                          "at its source, or name the file itself in the configuration")


@contextlib.contextmanager
def editing(path: Path) -> Iterator[None]:
    """Hold ``path``'s edit lock (``<path>.lock``, ``flock``): two ``sovrouter keys`` runs on one file take turns
    instead of one overwriting the other's change. Readers (the gateways) take no lock: they see the old file or
    the new one, as :func:`write_keys` replaces it whole."""
    _not_a_link(path)
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(f"api_keys_file {path}: cannot take its edit lock ({exc.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _text(path: Path, keys: Sequence[ApiKey]) -> bytes:
    """The file's new bytes, checked to read back as ``keys``: JSON's ``\\ud83d\\udd11`` for a label's emoji
    read back through YAML as two lone surrogates, and a character YAML does not allow raw stops every read."""
    entries = [k.model_dump(exclude_defaults=True) for k in keys]
    text = (json.dumps(entries, indent=1, ensure_ascii=False) + "\n" if path.suffix.lower() == ".json"
            else yaml.safe_dump(entries, sort_keys=False) if entries else "[]\n")
    try:
        data = text.encode("utf-8")
        back = _KEYS.validate_python(yaml.safe_load(data.decode("utf-8")) or [])
    except (UnicodeError, yaml.YAMLError, ValidationError):
        back = None
    if back != list(keys):
        raise ConfigError(f"api_keys_file {path}: an entry would not read back as written (a label with a "
                          "character that is not printable?); nothing was changed")
    return data


def write_keys(path: Path, keys: Sequence[ApiKey]) -> None:
    """Write ``keys`` to ``path`` the way the module asks: whole, to a temporary file beside it, flushed to disk,
    then renamed over it and the folder flushed (readers see the old list or the new one, never part of one; a
    crash leaves one of the two). JSON for a ``.json`` file, YAML otherwise (comments in a YAML file are not kept,
    nor the ``api_keys:`` mapping around the list); the file keeps its permissions, owner and group (0600 and the
    caller's when new: a file ``sudo`` left root's would no longer read for a gateway, which then keeps the keys
    read before, a revoked one among them). A symbolic link is refused."""
    data = _text(path, keys)
    _not_a_link(path)
    try:
        st: os.stat_result | None = path.stat()
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise ConfigError(f"api_keys_file {path}: cannot read it ({exc.strerror})") from None
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            if st is not None:
                mine = os.fstat(fh.fileno())
                if (mine.st_uid, mine.st_gid) != (st.st_uid, st.st_gid):
                    try:
                        os.fchown(fh.fileno(), st.st_uid, st.st_gid)
                    except PermissionError:
                        raise ConfigError(f"api_keys_file {path}: cannot keep its owner and group (uid "
                                          f"{st.st_uid}, gid {st.st_gid}): run as its owner") from None
            os.fchmod(fh.fileno(), 0o600 if st is None else st.st_mode & 0o777)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)  # the rename itself reaches the disk: a revocation reported done stays done
        finally:
            os.close(folder)
    except OSError as exc:
        raise ConfigError(f"api_keys_file {path}: cannot write it ({exc.strerror})") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
