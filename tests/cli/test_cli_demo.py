"""``sovrouter demo`` end to end as a user runs it: a subprocess, exit 0, the table printed, one record per
request, nothing left running. Slow (starts llama.cpp and the detector; one to two minutes on the 2-core box)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sovrouter.store.records import SQLiteRecordStore

ROW = re.compile(r"^ *(\d+)  (\S+) +\S+ +(auto|local-small|frontier) +(json|stream) +(REFUSED by policy|\S+) +"
                 r"(miss|exact|semantic|bypass|-) ", re.M)


@pytest.mark.slow
def test_sovrouter_demo_runs_end_to_end(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sovrouter.cli.main", "demo", "--state-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert re.search(r"^ *#  tenant +class +asked +mode +route +cache +ms +cost \$$", out, re.M), out
    rows = ROW.findall(out)
    assert len(rows) == 40, out
    routes = {r[4] for r in rows}
    assert "local-small/edge" in routes and len(routes) >= 3  # the real local model and several playback routes
    assert any(r[5] == "exact" for r in rows)  # the sample's repeats hit the exact cache
    # demo.yaml turns the residency policy on: the air-gapped tenant never leaves its premises
    ministry = [r for r in rows if r[1] == "ministry-airgap"]
    assert {r[4] for r in ministry if r[2] != "frontier"} <= {"local-small/edge", "sovereign-large/gov-onprem"}
    assert {r[4] for r in ministry if r[2] == "frontier"} == {"REFUSED by policy"}  # asked for it: refused (403)
    assert re.search(r"cost +\$\d+\.\d+ vs always-frontier \$\d+\.\d+ \(\d+\.\d%\)", out)
    assert re.search(r"off frontier accel\. +\d+\.\d% of answered requests", out)
    assert re.search(r"latency \(client\) +p50 \d+ ms", out)
    assert re.search(r'local model +first answer: ".+"', out)
    assert "everything stopped" in out
    store = SQLiteRecordStore(tmp_path / "var" / "records.sqlite")
    try:
        assert store.count() == 40  # exactly one record per request
    finally:
        store.close()
    pid = int(re.search(r"via llama\.cpp \(pid (\d+)\)", out).group(1))  # type: ignore[union-attr]
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().split()[2] == "Z"  # no orphan llama.cpp server
