"""Commands never overwrite their own inputs, never write into a SQLite file that is not their store, refuse a
file of another format, and leave nothing behind (not even an empty folder) when they fail (found in review,
2026-11-28)."""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path

import pytest

from sovrouter.cache.calibrate import read_pairs
from sovrouter.cli.main import main
from sovrouter.testing_workload import write_workload


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_replay_and_report_refuse_an_output_that_is_one_of_their_inputs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``replay --out W/stream.jsonl.gz`` replaced the workload's stream, ``--out X --records X`` lost the
    decisions, ``report --json D --decisions D`` replaced the decisions with the KPIs: each exited 0."""
    wl = tmp_path / "wl"
    write_workload(wl, n_requests=4)
    decisions, cfg, link = tmp_path / "d.jsonl", tmp_path / "c.yaml", tmp_path / "s.gz"
    decisions.write_text('{"seq": 0}\n')  # refused before it is read: its content does not matter
    cfg.write_text("{}\n")
    link.symlink_to(wl / "stream.jsonl.gz")
    before = _tree(tmp_path)
    x = tmp_path / "x.jsonl"
    cases = [
        ["replay", "--workload", wl, "--out", wl / "stream.jsonl.gz"],
        ["replay", "--workload", wl, "--out", wl / "stream.jsonl"],  # it would be read as the stream next time
        ["replay", "--workload", wl, "--out", wl / "." / "models.json"],
        ["replay", "--workload", wl, "--out", wl / "tenants.json"],
        ["replay", "--workload", wl, "--out", link],  # the stream under another name
        ["replay", "--workload", wl, "--out", x, "--records", x],
        ["replay", "--workload", wl, "--out", x, "--records", wl / "requests.jsonl.gz"],
        ["replay", "--workload", wl, "--out", wl / "labels.jsonl.gz"],
        ["replay", "--workload", wl, "--out", cfg, "--config", cfg],
        ["report", "--workload", wl, "--decisions", decisions, "--json", decisions],
        ["report", "--workload", wl, "--decisions", decisions, "--json", wl / "scores.jsonl.gz"],
        ["report", "--workload", wl, "--decisions", decisions, "--json", wl / "responses.jsonl.gz"],
    ]
    for argv in cases:
        assert main([str(a) for a in argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("sovrouter: ") and "choose another file" in err and err[-1:] == "\n", err
        assert err.count("\n") == 1
    assert _tree(tmp_path) == before and not x.exists()


@pytest.mark.parametrize(("argv", "said"), [
    (["replay", "--workload", "{t}/nonexistent", "--out", "{t}/new/a/b/d.jsonl"], "does not exist"),
    (["replay", "--workload", "{t}/nonexistent", "--out", "{t}/new/d.jsonl", "--records", "{t}/new/r/r.jsonl"],
     "does not exist"),
    (["report", "--workload", "{t}/nonexistent", "--decisions", "{t}/d.jsonl", "--json", "{t}/new/k.json"],
     "does not exist"),
    (["weakness", "--out", "{t}/wk"], "give --db"),
    (["weakness", "--db", "{t}/none.sqlite", "--out", "{t}/wk"], "no record store"),
    (["weakness", "--records", "{t}/none.jsonl", "--workload", "{t}", "--out", "{t}/wk"], "no records file"),
    (["weakness", "--records", "{t}/there.jsonl", "--out", "{t}/wk"], "no quality signals"),
    (["weakness", "--records", "{t}/there.jsonl", "--signals", "{t}/none.sqlite", "--out", "{t}/wk"],
     "no signal store"),
    (["records", "export", "--db", "{t}/none.sqlite", "--out", "{t}/new/r.jsonl"], "no record store"),
    (["recalibrate", "--db", "{t}/none.sqlite", "--out", "{t}/new/r.json"], "no record store"),
    (["train-answer-shape", "--workload", "{t}/none", "--out", "{t}/new/a.json"], "does not exist"),
    (["eval", "semantic-cache", "--pairs", "{t}/none.jsonl", "--out", "{t}/new/s.jsonl"], "cannot read pairs"),
    (["eval", "prefix-affinity", "--trace", "{t}/none.gz", "--replicas", "2", "--out", "{t}/new/p.jsonl"],
     "not found"),
])
def test_a_failed_command_leaves_no_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                            said: str) -> None:
    """``replay --workload /nonexistent --out new/a/b/d.jsonl`` left ``new/a/b``; ``weakness --out wk`` without
    ``--db`` left ``wk/``: the output's folder was created before the inputs were looked at."""
    (tmp_path / "there.jsonl").write_text("")
    assert main([a.format(t=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sovrouter: ") and said in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["there.jsonl"]


def _sqlite_file(path: Path) -> dict[str, object]:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE exact_cache (key TEXT PRIMARY KEY, value TEXT)")
    db.execute("INSERT INTO exact_cache VALUES ('k', 'v')")
    db.commit()
    db.close()
    return {"bytes": path.read_bytes(), "tables": _tables(path)}


def _tables(path: Path) -> list[str]:
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return sorted(r[0] for r in db.execute("SELECT name FROM sqlite_master"))
    finally:
        db.close()


def test_commands_that_read_stores_never_write_into_another_sqlite_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``explain ID --db F`` and ``weakness --db F --signals G`` created records, quality_signals, regenerations
    and sqlite_sequence tables in any SQLite file they were given (a running gateway's cache.sqlite)."""
    cache, other = tmp_path / "cache.sqlite", tmp_path / "other.sqlite"
    was = {p: _sqlite_file(p) for p in (cache, other)}
    rec = tmp_path / "r.jsonl"
    rec.write_text("")
    for argv, said in [
        (["explain", "req-1", "--db", cache], "not a record store"),
        (["explain", "chatcmpl-req-1", "--db", cache], "not a record store"),
        (["weakness", "--db", other, "--signals", cache, "--out", tmp_path / "wk"], "not a record store"),
        (["weakness", "--records", rec, "--signals", cache, "--out", tmp_path / "wk"], "not a signal store"),
        (["recalibrate", "--db", cache, "--out", tmp_path / "r.json"], "not a record store"),
        (["recalibrate", "--records", rec, "--signals", other, "--out", tmp_path / "r.json"], "not a signal store"),
        (["records", "export", "--db", cache, "--out", tmp_path / "o.jsonl"], "not a record store"),
    ]:
        assert main([str(a) for a in argv]) == 2, argv
        assert said in capsys.readouterr().err
    assert {p: {"bytes": p.read_bytes(), "tables": _tables(p)} for p in (cache, other)} == was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.sqlite", "other.sqlite", "r.jsonl"]


def test_weakness_reads_a_live_record_store_and_signal_store_read_only(tmp_path: Path) -> None:
    """The stores a gateway holds open (WAL, uncommitted checkpoints) read through the read-only connection."""
    from sovrouter.contracts import RequestRecord
    from sovrouter.evalloop.offline import load_records
    from sovrouter.evalloop.signals import QualitySignal, SignalStore, stored_signals
    from sovrouter.store.records import SQLiteRecordStore

    path = tmp_path / "records.sqlite"
    store, signals = SQLiteRecordStore(path), SignalStore(path)  # one file, as the gateway may keep them
    store.write(RequestRecord(request_id="r1", tenant="acme-us", data_class="public", effective_class="public",
                              modalities=["text"], arrived_ms=1.0, status="ok"))
    signals.add(QualitySignal(request_id="r1", source="feedback", score=1.0))
    try:  # the writer still open
        assert [r.request_id for r in load_records(path)] == ["r1"]
        assert [s.request_id for s in stored_signals(path)] == ["r1"]
        reader = SQLiteRecordStore(path, read_only=True)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.write(RequestRecord(request_id="r2", tenant="acme-us", data_class="public",
                                       effective_class="public", modalities=["text"], arrived_ms=1.0, status="ok"))
        reader.close()
    finally:
        store.close()
        signals.close()
    assert [r.request_id for r in load_records(path)] == ["r1"]


def test_semantic_cache_refuses_a_file_that_is_not_a_pairs_file(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A decisions file or a Mooncake trace as ``--pairs`` exited 0 with every lookup a miss ("{'empty': N}")."""
    decisions = tmp_path / "decisions.jsonl"
    decisions.write_text("".join(json.dumps({"id": i, "hit": False, "matched": None}) + "\n" for i in range(5)))
    trace = tmp_path / "trace.jsonl.gz"
    with gzip.open(trace, "wt") as fh:
        for i in range(5):
            fh.write(json.dumps({"timestamp": i, "input_length": 5, "output_length": 1, "hash_ids": [i]}) + "\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    for pairs in (decisions, trace, empty):
        out = tmp_path / "new" / "d.jsonl"
        assert main(["eval", "semantic-cache", "--pairs", str(pairs), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("sovrouter: ") and "is not a pairs file" in err and str(pairs) in err
        assert not (tmp_path / "new").exists()
    # a pairs file where only some lines lack a question reads as before: those lines are misses, counted "empty"
    some = tmp_path / "some.jsonl"
    some.write_text('{"id": 1, "q1": "How do I cook rice?", "q2": "How to cook rice?"}\n{"id": 2}\n'
                    '{"id": 3, "q1": null, "q2": "rice?"}\n')
    assert [(p.id, p.q1, p.q2) for p in read_pairs(some)] == [
        (1, "How do I cook rice?", "How to cook rice?"), (2, "", ""), (3, "", "rice?")]
