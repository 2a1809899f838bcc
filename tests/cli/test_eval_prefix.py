"""``sovrouter eval prefix-affinity`` / ``prefix-score``: output format, online figures, clean errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from sovrouter.cli.main import main
from sovrouter.testing_traces import conversation_trace, write_trace


def _trace(path: Path, n: int = 60) -> Path:
    with gzip.open(path, "wt") as fh:
        for i in range(n):
            conv = i % 5
            ids = [0] + [1000 * conv + k for k in range(1, 2 + i // 5)]
            fh.write(json.dumps({"timestamp": i * 700, "input_length": len(ids) * 512 - 100,
                                 "output_length": 50 + i, "hash_ids": ids}) + "\n")
    return path


def test_prefix_affinity_writes_one_line_per_request_and_scores(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    trace = _trace(tmp_path / "t.jsonl.gz")
    out = tmp_path / "assign.jsonl"
    assert main(["eval", "prefix-affinity", "--trace", str(trace), "--replicas", "3", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["i"] for r in rows] == list(range(60))
    assert all(set(r) == {"i", "replica"} and r["replica"] in (0, 1, 2) for r in rows)
    err = capsys.readouterr().err
    online = json.loads(err.split("prefix-affinity ours: ", 1)[1])
    assert main(["eval", "prefix-score", "--trace", str(trace), "--replicas", "3", "--assign", str(out)]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored == online
    assert scored["token_hit_rate"] > 0.3  # conversations stick to their replica


def test_policy_and_model_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = _trace(tmp_path / "t.jsonl.gz")
    out = tmp_path / "rr.jsonl"
    assert main(["eval", "prefix-affinity", "--trace", str(trace), "--replicas", "2", "--out", str(out),
                 "--policy", "round-robin", "--capacity", "8", "--prefill-rate", "5000",
                 "--decode-rate", "500"]) == 0
    assert [json.loads(x)["replica"] for x in out.read_text().splitlines()][:4] == [0, 1, 0, 1]


def _busy_trace(path: Path, n: int = 400, seed: int = 7) -> Path:
    """Multi-turn conversations arriving faster than 3 replicas with 64 blocks serve without queueing."""
    return write_trace(path, conversation_trace(n, seed))


def test_ours_has_the_long_wait_penalty_on_by_default_and_tail_0_turns_it_off(tmp_path: Path) -> None:
    trace = _busy_trace(tmp_path / "busy.jsonl.gz")
    got = {}
    for name, flags in (("default", []), ("0.3", ["--tail", "0.3"]), ("0", ["--tail", "0"])):
        out = tmp_path / f"{name}.jsonl"
        assert main(["eval", "prefix-affinity", "--trace", str(trace), "--replicas", "3", "--capacity", "64",
                     "--out", str(out), *flags]) == 0
        got[name] = [json.loads(x)["replica"] for x in out.read_text().splitlines()]
    assert got["default"] == got["0.3"]
    assert got["0"] != got["default"]  # the penalty moves choices on this trace


def test_bad_input_gives_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"timestamp": 0}\n')
    rc = main(["eval", "prefix-affinity", "--trace", str(bad), "--replicas", "2", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "trace line 1" in err and "Traceback" not in err
    rc = main(["eval", "prefix-affinity", "--trace", str(_trace(tmp_path / "t.gz")), "--replicas", "0",
               "--out", str(tmp_path / "o")])
    assert rc == 2 and "--replicas" in capsys.readouterr().err
    ok = str(_trace(tmp_path / "t2.gz"))
    rc = main(["eval", "prefix-affinity", "--trace", ok, "--replicas", "2", "--out", str(tmp_path / "o"),
               "--policy", "round-robin", "--tail", "0.3"])
    assert rc == 2 and "--tail applies to --policy ours" in capsys.readouterr().err
    rc = main(["eval", "prefix-affinity", "--trace", ok, "--replicas", "2", "--out", str(tmp_path / "o"),
               "--tail", "-1"])
    err = capsys.readouterr().err
    assert rc == 2 and "tail" in err and "Traceback" not in err


def test_odd_replica_counts_and_assignment_indices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = str(_trace(tmp_path / "t.gz"))
    rc = main(["eval", "prefix-affinity", "--trace", trace, "--replicas", "100000000", "--out", str(tmp_path / "o")])
    assert rc == 2 and "--replicas" in capsys.readouterr().err  # was killed for memory
    out = tmp_path / "a.jsonl"
    assert main(["eval", "prefix-affinity", "--trace", trace, "--replicas", "2", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    out.write_text("\n".join([lines[0].replace('"i": 0', '"i": 0.7'), *lines[1:]]) + "\n")
    rc = main(["eval", "prefix-score", "--trace", trace, "--replicas", "2", "--assign", str(out)])
    assert rc == 2 and "assignment line 1" in capsys.readouterr().err  # 0.7 was read as request 0


def test_out_that_is_the_trace_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = _trace(tmp_path / "t.jsonl.gz")
    before = trace.read_bytes()
    assert main(["eval", "prefix-affinity", "--trace", str(trace), "--replicas", "2", "--out", str(trace)]) == 2
    assert "is the input file" in capsys.readouterr().err and trace.read_bytes() == before


def test_sglang_survives_a_huge_gap_between_timestamps(tmp_path: Path) -> None:
    """The eviction rounds were stepped one interval at a time: 0 then 1e15 ms looped ~10^10 times."""
    import signal

    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": ts, "input_length": 10, "output_length": 1, "hash_ids": [1]})
                             + "\n" for ts in (0, 1e15, 1e15 + 1)))
    out = tmp_path / "a.jsonl"

    def boom(*_: object) -> None:
        raise TimeoutError("eviction loop did not finish")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(10)
    try:
        assert main(["eval", "prefix-affinity", "--trace", str(trace), "--replicas", "2", "--policy", "sglang",
                     "--out", str(out)]) == 0
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert len(out.read_text().splitlines()) == 3


def test_missing_files_are_named_by_the_path_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """"trace file not found: missing.gz" left the operator to guess which folder was meant (found in review)."""
    missing = str(Path("sub") / "dir" / "missing.gz")
    assert main(["eval", "prefix-affinity", "--trace", missing, "--replicas", "2", "--out",
                 str(tmp_path / "a.jsonl")]) == 2
    assert capsys.readouterr().err == f"sovrouter: trace file not found: {missing}\n"
    trace = _trace(tmp_path / "t.jsonl.gz", n=5)
    assign = str(tmp_path / "sub" / "a.jsonl")
    assert main(["eval", "prefix-score", "--trace", str(trace), "--replicas", "2", "--assign", assign]) == 2
    assert capsys.readouterr().err == f"sovrouter: assignment file not found: {assign}\n"
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8b\x08\x00broken")
    assert main(["eval", "prefix-score", "--trace", str(tmp_path / "bad.gz"), "--replicas", "2", "--assign",
                 assign]) == 2
    assert f"cannot read trace file {tmp_path / 'bad.gz'}" in capsys.readouterr().err
