"""``fileio``: gzip recognised by content."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from sovrouter.fileio import is_gzip, open_text


def test_reads_gzip_and_plain_whatever_the_name(tmp_path: Path) -> None:
    zipped = tmp_path / "named-plain.jsonl"
    with gzip.open(zipped, "wt", encoding="utf-8") as fh:
        fh.write('{"a": "é"}\n')
    plain = tmp_path / "named-zipped.jsonl.gz"
    plain.write_text('{"a": "é"}\n', encoding="utf-8")
    assert is_gzip(zipped) and not is_gzip(plain)
    for path in (zipped, plain):
        with open_text(path) as fh:
            assert fh.read() == '{"a": "é"}\n'


def test_empty_file_is_plain(tmp_path: Path) -> None:
    empty = tmp_path / "empty.gz"
    empty.write_bytes(b"")
    assert not is_gzip(empty)
    with open_text(empty) as fh:
        assert fh.read() == ""


def test_byte_order_mark_and_crlf_read_like_plain_lf(tmp_path: Path) -> None:
    body = b'{"q1": "a?", "q2": "b?"}\r\n{"q1": "c?", "q2": "d?"}\r\n'
    plain = tmp_path / "bom.jsonl"
    plain.write_bytes(b"\xef\xbb\xbf" + body)
    zipped = tmp_path / "bom.jsonl.gz"
    zipped.write_bytes(gzip.compress(b"\xef\xbb\xbf" + body))
    for path in (plain, zipped):
        with open_text(path) as fh:
            assert [json.loads(line) for line in fh] == [{"q1": "a?", "q2": "b?"}, {"q1": "c?", "q2": "d?"}]


def test_an_output_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    import pytest as _pytest

    from sovrouter.errors import ConfigError
    from sovrouter.fileio import atomic_text, check_output

    target = tmp_path / "out.jsonl"
    target.write_text("earlier run\n")
    with _pytest.raises(RuntimeError), atomic_text(target) as fh:
        fh.write("half")
        raise RuntimeError("the command failed midway")
    assert target.read_text() == "earlier run\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
    with atomic_text(target) as fh:
        fh.write("new\n")
    assert target.read_text() == "new\n"
    for bad in (tmp_path / "missing" / "x.jsonl", tmp_path):
        with _pytest.raises(ConfigError):
            check_output(bad)
