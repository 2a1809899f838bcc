"""Opening input files: gzip is recognised by its magic bytes, not by the file name, so a compressed file named
``pairs.jsonl`` (or a plain one named ``.gz``) reads the same as a correctly named one; a UTF-8 byte-order mark
(as some Windows tools write) is skipped, and universal newlines make CRLF files read like LF ones."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import IO

GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: str | Path) -> bool:
    with Path(path).open("rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def open_text(path: str | Path) -> IO[str]:
    """A UTF-8 text stream over ``path`` (an initial byte-order mark skipped), decompressed when the file is gzip."""
    if is_gzip(path):
        return gzip.open(path, "rt", encoding="utf-8-sig")
    return open(path, encoding="utf-8-sig")
