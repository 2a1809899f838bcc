"""Opening input files: gzip is recognised by its magic bytes, not by the file name, so a compressed file named
``pairs.jsonl`` (or a plain one named ``.gz``) reads the same as a correctly named one; a UTF-8 byte-order mark
(as some Windows tools write) is skipped, and universal newlines make CRLF files read like LF ones.

Writing output files: :func:`atomic_text` writes beside the target and renames it into place only when the
whole file is written, so a command that fails midway leaves no half-written output (and an earlier file stays
as it was); :func:`check_output` refuses, before any work is done, an output that cannot be written. A missing
folder is only checked then (it could be created) and is created when the output is written: a command that
fails on its input, or midway, leaves no empty folders behind; :func:`check_not_input` refuses an output that is
one of the command's inputs."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from sovrouter.errors import ConfigError

GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: str | Path) -> bool:
    with Path(path).open("rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def open_text(path: str | Path) -> IO[str]:
    """A UTF-8 text stream over ``path`` (an initial byte-order mark skipped), decompressed when the file is gzip."""
    if is_gzip(path):
        return gzip.open(path, "rt", encoding="utf-8-sig")
    return open(path, encoding="utf-8-sig")


def _check_folder(folder: Path) -> None:
    """``folder`` is a folder one can write in, or could be created: checked, never created here."""
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"cannot create the output folder {folder} ({probe} is a file)")
    if not os.access(probe, os.W_OK | os.X_OK):
        verb = "write in" if probe == folder else "create"
        raise ConfigError(f"cannot {verb} the output folder {folder} (Permission denied)")


def _in_place(path: Path) -> bool:
    """An output written in place, not replaced: it exists and is no regular file (``/dev/stdout``, ``/dev/null``,
    a FIFO). Judged on the path as given: stat() follows links, /dev/stdout's /proc/self/fd/1 too, while the
    realpath of a pipe ("pipe:[N]") names nothing, and writing there crashed (found in review, 2026-11-28)."""
    return path.exists() and not path.is_file()


def check_output(path: str | Path) -> None:
    """A clear error now, not a traceback after an hour's work, when ``path`` cannot be written. A missing folder
    (as a scorer that names ``results/decisions.jsonl`` expects) is not created here but by the writer
    (:func:`atomic_text`), so a command that stops before it writes leaves no empty folders (found in review,
    2026-11-28: ``replay --workload /nonexistent --out new/a/b/d.jsonl`` left ``new/a/b``)."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"output {p} is a directory")
    if _in_place(p):  # written in place, whatever its folder (non-root users cannot write in /dev)
        return
    _check_folder(Path(os.path.realpath(p)).parent)  # where atomic_text writes beside it (a link's target's)


def check_not_input(output: str | Path, *inputs: str | Path, what: str = "the input file",
                    flag: str = "--out") -> None:
    """Refuse an output that is one of the command's input files (by path, or the same file under another name):
    it would be replaced by the output. An input that does not exist yet is refused too (a file the command
    would read next time under that name). ``flag`` is the option that named the output, for the message."""
    out = Path(output)
    for given in inputs:
        src = Path(given)
        try:
            same = out.resolve() == src.resolve() or (out.exists() and src.exists() and os.path.samefile(out, src))
        except OSError:
            same = False
        if same:
            raise ConfigError(f"{flag} {out} is {what} {src}: choose another file")


def check_output_dir(path: str | Path) -> None:
    """:func:`check_output` for a command that writes a folder of files: an existing file in its place is a clear
    error now; a missing folder is checked, and created by the writer."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"output {p} is a file, not a folder")
    _check_folder(p)


def make_folder(path: str | Path) -> None:
    """Create the folder ``path`` (and its parents) when the output is written; a failure is a one-line error."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the output folder {path} ({exc.strerror or type(exc).__name__})") from None


@contextlib.contextmanager
def atomic_text(path: str | Path) -> Iterator[IO[str]]:
    """A UTF-8 text stream that becomes ``path`` only when the block ends without an error. A symlink is
    followed (the file it names is replaced, the link kept); a target that exists and is not a regular file
    (``/dev/stdout``, ``/dev/null``, a FIFO) is written in place: replacing it would swap a device for a file."""
    check_output(path)
    given = Path(path)
    make_folder(given.parent)
    direct = _in_place(given)
    target = Path(os.path.realpath(path))
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        fh = (given if direct else partial).open("w", encoding="utf-8")
    except PermissionError as exc:
        raise ConfigError(f"cannot write {path} ({exc.strerror})") from None
    if direct:
        with fh:
            yield fh
        return
    try:
        with fh:
            yield fh
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def json_line(obj: object, *, compact: bool = False, allow_nan: bool = False) -> str:
    """One JSONL line, readable UTF-8; a string holding a lone surrogate (as the input file wrote it) is written
    as an escape instead of failing the whole file. ``compact``: no spaces after separators."""
    separators = (",", ":") if compact else None
    text = json.dumps(obj, ensure_ascii=False, allow_nan=allow_nan, separators=separators)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(obj, ensure_ascii=True, allow_nan=allow_nan, separators=separators)
    return text + "\n"
