"""``python -m sovrouter.dashboard.snapshot`` (documented in docs/eval.md): its output checked before the work and
written atomically, its errors one line (exit 2) as the ``sovrouter`` command's are."""

from __future__ import annotations

from pathlib import Path

import pytest

from sovrouter.contracts import Candidate, RequestRecord
from sovrouter.dashboard.snapshot import main
from sovrouter.testing_workload import write_workload


def _records(path: Path, ids: list[str]) -> Path:
    final = Candidate(slot="local-small", deployment="edge")
    path.write_text("".join(
        RequestRecord(request_id=f"{rid}#{i}", external_id=rid, tenant="acme-us", data_class="public",
                      effective_class="public", modalities=["text"], arrived_ms=float(i), status="ok",
                      final=final).model_dump_json() + "\n" for i, rid in enumerate(ids)))
    return path


def test_snapshot_writes_into_a_missing_folder_and_refuses_bad_outputs_first(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--out missing/dir/d.html`` printed a FileNotFoundError traceback after doing all the work (found in
    review, 2026-11-28)."""
    wl = write_workload(tmp_path / "wl", n_requests=4)
    records = _records(tmp_path / "r.jsonl", [r["id"] for r in wl.requests])
    out = tmp_path / "missing" / "dir" / "d.html"
    assert main(["--records", str(records), "--workload", str(tmp_path / "wl"), "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")
    assert "-> " + str(out) in capsys.readouterr().out
    (tmp_path / "file").write_text("")
    before = records.read_bytes(), (tmp_path / "wl" / "stream.jsonl.gz").read_bytes()
    for bad, said in [
        (tmp_path / "file" / "d.html", "cannot create the output folder"),
        (tmp_path, "is a directory"),
        (records, "is the records file"),
        (tmp_path / "wl" / "stream.jsonl.gz", "a file of the workload"),
    ]:
        assert main(["--records", str(records), "--workload", str(tmp_path / "wl"), "--out", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("python -m sovrouter.dashboard.snapshot: ") and said in err and err.count("\n") == 1
    assert (records.read_bytes(), (tmp_path / "wl" / "stream.jsonl.gz").read_bytes()) == before
    assert main(["--records", str(tmp_path / "none.jsonl"), "--workload", str(tmp_path / "wl"), "--out",
                 str(tmp_path / "new" / "d.html")]) == 2
    assert "cannot read records" in capsys.readouterr().err and not (tmp_path / "new").exists()
