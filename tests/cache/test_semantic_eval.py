"""``sovrouter eval semantic-cache``: input handling and output format."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from sovrouter.cache.calibrate import read_pairs
from sovrouter.cache.evaluate import evaluate_pairs
from sovrouter.cache.verifier import PairVerifier
from sovrouter.cli.main import main
from sovrouter.embed import HashingEmbedder
from sovrouter.errors import ConfigError

ROWS = [
    {"id": "a", "q1": "How do I learn Python quickly?", "q2": "How can I learn Python quickly?", "duplicate": False},
    {"id": "b", "q1": "Why is the sky blue?", "q2": "What is the best pizza in Naples?", "duplicate": True},
    {"id": "c", "q1": "Why is the sky blue?", "q2": "How do I learn Python quickly?"},
    {"id": "d", "q1": "What is the news today?", "q2": "What is the news today?"},
]


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return path


def test_labels_are_never_read_and_missing_ids_are_line_indexes(tmp_path: Path) -> None:
    rows = [{k: v for k, v in r.items() if k != "id"} for r in ROWS]
    pairs = read_pairs(write(tmp_path / "p.jsonl.gz", rows))
    assert [p.id for p in pairs] == [0, 1, 2, 3]
    assert all(p.duplicate is None for p in pairs)


def test_ids_keep_their_json_type(tmp_path: Path) -> None:
    rows = [{**r, "id": k} for k, r in zip((7, "8", 9.5, 0), ROWS, strict=True)]
    pairs = read_pairs(write(tmp_path / "p.jsonl.gz", rows))
    decisions, _ = evaluate_pairs(pairs, HashingEmbedder(384), PairVerifier.cosine_only(0.7))
    assert [d["id"] for d in decisions] == [7, "8", 9.5, 0]
    assert [type(json.loads(json.dumps(d))["id"]) for d in decisions] == [int, str, float, int]


def test_gzip_is_recognised_by_content_not_name(tmp_path: Path) -> None:
    gz_named_plain = write(tmp_path / "pairs.jsonl", ROWS)
    plain_named_gz = tmp_path / "plain.jsonl.gz"
    plain_named_gz.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    assert read_pairs(gz_named_plain) == read_pairs(plain_named_gz) == read_pairs(write(tmp_path / "p.gz", ROWS))


@pytest.mark.parametrize("bad_id", [True, [1], {"a": 1}])
def test_id_that_is_not_a_string_or_number_is_a_clear_error(tmp_path: Path, bad_id: object) -> None:
    with pytest.raises(ConfigError, match="id must be"):
        read_pairs(write(tmp_path / "p.jsonl.gz", [{**ROWS[0], "id": bad_id}]))


def test_what_another_writer_may_write_is_read_not_refused(tmp_path: Path) -> None:
    """One null id, one question written as a number, a NaN (pandas' empty question) or a missing key refused
    the whole file: no decision at all."""
    path = tmp_path / "p.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({**ROWS[0], "id": None}) + "\n")
        fh.write('{"id": "n", "q1": 1984, "q2": NaN}\n')
        fh.write('{"id": "m", "q1": "Why is the sky blue?"}\n')
    pairs = read_pairs(path)
    assert [(p.id, p.q1, p.q2) for p in pairs] == [
        (0, ROWS[0]["q1"], ROWS[0]["q2"]), ("n", "1984", ""), ("m", "Why is the sky blue?", "")]
    decisions, _ = evaluate_pairs(pairs, HashingEmbedder(384), PairVerifier.cosine_only(0.7))
    assert [d["id"] for d in decisions] == [0, "n", "m"] and not decisions[1]["hit"] and not decisions[2]["hit"]


def test_decisions_in_file_order(tmp_path: Path) -> None:
    pairs = read_pairs(write(tmp_path / "p.jsonl.gz", ROWS))
    decisions, _ = evaluate_pairs(pairs, HashingEmbedder(384), PairVerifier.cosine_only(0.7))
    assert [d["id"] for d in decisions] == ["a", "b", "c", "d"]
    assert all(set(d) == {"id", "hit", "matched"} for d in decisions)
    by_id = {d["id"]: d for d in decisions}
    assert by_id["a"] == {"id": "a", "hit": True, "matched": "How do I learn Python quickly?"}
    assert by_id["b"] == {"id": "b", "hit": False, "matched": None}
    assert by_id["c"]["matched"] == "How do I learn Python quickly?"  # q1 of another pair: all q1 are cached
    assert by_id["d"]["hit"] is True  # verbatim: the exact layer serves it even though it is time-sensitive


def test_a_question_with_no_text_gets_a_miss_and_is_never_cached(tmp_path: Path) -> None:
    rows = [*ROWS, {"id": "e", "q1": None, "q2": None}, {"id": "f", "q1": "", "q2": "  "},
            {"id": "g", "q1": "Why is the sky blue?", "q2": None},
            {"id": "h", "q1": None, "q2": "Why is the sky blue?"}]
    pairs = read_pairs(write(tmp_path / "p.jsonl.gz", rows))
    decisions, kinds = evaluate_pairs(pairs, HashingEmbedder(384), PairVerifier.cosine_only(0.7))
    by_id = {d["id"]: d for d in decisions}
    assert [d["id"] for d in decisions] == ["a", "b", "c", "d", "e", "f", "g", "h"]
    for i in "efg":
        assert by_id[i] == {"id": i, "hit": False, "matched": None}
    assert by_id["h"]["matched"] == "Why is the sky blue?" and kinds["empty"] == 3


def test_bad_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl.gz"
    with gzip.open(bad, "wt") as fh:
        fh.write('["q1", "x"]\n')
    with pytest.raises(ConfigError, match="not a JSON object"):
        read_pairs(bad)
    with gzip.open(bad, "wt") as fh:
        fh.write('{"q1": "x", "q2": ["a"]}\n')
    with pytest.raises(ConfigError, match="text, numbers or null"):
        read_pairs(bad)


@pytest.mark.slow
def test_cli_writes_decisions(tmp_path: Path) -> None:
    src = write(tmp_path / "p.jsonl.gz", ROWS)
    out = tmp_path / "out" / "decisions.jsonl"
    assert main(["eval", "semantic-cache", "--pairs", str(src), "--out", str(out), "--threads", "1"]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [d["id"] for d in lines] == ["a", "b", "c", "d"]
    assert all(set(d) == {"id", "hit", "matched"} and isinstance(d["hit"], bool) for d in lines)
    assert all((d["matched"] is None) != d["hit"] for d in lines)
    assert lines[3]["hit"] and lines[3]["matched"] == "What is the news today?"


def test_broken_escapes_and_odd_ids(tmp_path: Path) -> None:
    """A lone surrogate in a question crashed the tokenizer, one in an id the output half-way (after the old file
    was truncated); a NaN id was written back as bare NaN, not JSON."""
    rows = [{"id": "s\ud800", "q1": "Why is the sky blue\ud83d?", "q2": "Why is the sky blue\ud83d?"}, *ROWS]
    pairs = read_pairs(write(tmp_path / "p.jsonl.gz", rows))
    decisions, _ = evaluate_pairs(pairs, HashingEmbedder(384), PairVerifier.cosine_only(0.7))
    assert decisions[0]["hit"] and decisions[0]["matched"] == "Why is the sky blue\ud83d?"  # q1 as written
    from sovrouter.fileio import json_line

    line = json_line(decisions[0])
    line.encode("utf-8")
    assert json.loads(line) == decisions[0]
    bad = tmp_path / "nan.jsonl"
    bad.write_text('{"id": NaN, "q1": "a", "q2": "b"}\n')
    with pytest.raises(ConfigError, match="finite"):
        read_pairs(bad)


def test_matched_text_does_not_depend_on_line_order(tmp_path: Path) -> None:
    """Two q1s equal up to whitespace share one semantic entry: which one a q2 matched followed the file's order
    (found in review: shuffled lines changed "matched")."""
    rows = [{"id": "a", "q1": "How do I learn Python?", "q2": "How do I  learn Python?"},
            {"id": "b", "q1": "How do I learn  Python?", "q2": "Why is the sky blue?"}]
    verifier = PairVerifier.cosine_only(0.7)
    one, _ = evaluate_pairs(read_pairs(write(tmp_path / "1.jsonl.gz", rows)), HashingEmbedder(384), verifier)
    two, _ = evaluate_pairs(read_pairs(write(tmp_path / "2.jsonl.gz", rows[::-1])), HashingEmbedder(384), verifier)
    assert one[0]["hit"] and sorted(one, key=lambda d: d["id"]) == sorted(two, key=lambda d: d["id"])


def test_verbatim_q2_of_an_ineligible_q1_with_a_lone_surrogate_hits(tmp_path: Path) -> None:
    """The exact layer could not store an answer holding a lone surrogate, so the verbatim q2 missed."""
    q = "What is the latest news today \ud800?"  # time-sensitive: exact layer only
    pairs = read_pairs(write(tmp_path / "p.jsonl.gz", [{"id": 1, "q1": q, "q2": q}]))
    decisions, kinds = evaluate_pairs(pairs, HashingEmbedder(384), PairVerifier.cosine_only(0.7))
    assert decisions == [{"id": 1, "hit": True, "matched": q}] and kinds == {"exact": 1}


def test_out_that_is_the_pairs_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = write(tmp_path / "p.jsonl.gz", ROWS)
    before = pairs.read_bytes()
    assert main(["eval", "semantic-cache", "--pairs", str(pairs), "--out", str(pairs)]) == 2
    assert "is the input file" in capsys.readouterr().err and pairs.read_bytes() == before
