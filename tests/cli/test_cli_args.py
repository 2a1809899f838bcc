"""Numeric options out of range are one-line errors before any work, not tracebacks (or silent nonsense)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sovrouter.cli.main import main


@pytest.mark.parametrize("argv", [
    ["weakness", "--out", "{t}/w", "--min-n", "0"],
    ["weakness", "--out", "{t}/w", "--alpha", "nan"],
    ["weakness", "--out", "{t}/w", "--alpha", "2"],
    ["weakness", "--out", "{t}/w", "--min-gap", "nan"],
    ["recalibrate", "--out", "{t}/r.json", "--min-n", "1"],
    ["train-cache", "--pairs", "{t}/p.jsonl", "--out", "{t}/c", "--threads", "-1"],
    ["eval", "semantic-cache", "--pairs", "{t}/p.jsonl", "--out", "{t}/d.jsonl", "--threads", "0"],
])
def test_out_of_range_options(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert main([a.format(t=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sovrouter: ") and "Traceback" not in err


@pytest.mark.parametrize(("argv", "said"), [
    (["records", "export", "--url", "postgresql+psycopg://u@127.0.0.1:9/none", "--out", "{t}"], "is a directory"),
    (["weakness", "--url", "postgresql+psycopg://u@127.0.0.1:9/none", "--out", "{t}/file.txt"],
     "is a file, not a folder"),
    (["recalibrate", "--db", "{t}/none.sqlite", "--out", "{t}"], "is a directory"),
    (["train-answer-shape", "--workload", "{t}/none", "--out", "{t}"], "is a directory"),
])
def test_outputs_are_checked_before_the_work(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                             said: str) -> None:
    """These read a database or fit a model first and only then failed on their output, with a traceback."""
    (tmp_path / "file.txt").write_text("x")
    assert main([a.format(t=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sovrouter: ") and said in err and "Traceback" not in err
