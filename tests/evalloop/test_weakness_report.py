"""The weakness report finds a weakness planted in a synthetic score file, and none without one."""

from __future__ import annotations

import json
from pathlib import Path

from sovrouter.cli.main import main
from sovrouter.evalloop.observations import observations
from sovrouter.evalloop.offline import offline_signals
from sovrouter.evalloop.signals import SharedSignalStore
from sovrouter.evalloop.testing import Planted, synthetic, write_records, write_workload
from sovrouter.evalloop.weakness import analyse
from sovrouter.store.records import SQLiteRecordStore
from sovrouter.store.shared_records import SharedRecordStore
from sovrouter.store.sql import database_url
from sovrouter.testing_postgres import PostgresServer


def _run(tmp_path: Path, planted: Planted | None, seed: int) -> dict:  # type: ignore[type-arg]
    records, scores = synthetic(n=2400, seed=seed, planted=planted)
    tmp_path.mkdir(parents=True, exist_ok=True)
    rec = write_records(tmp_path / "records.jsonl", records)
    wl = write_workload(tmp_path / "wl", records, scores)
    out = tmp_path / "out"
    assert main(["weakness", "--records", str(rec), "--workload", str(wl), "--out", str(out)]) == 0
    for name in ("weakness.md", "weakness.json", "weakness_gaps.png", "quality_by_domain.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "weakness_gaps.png").read_bytes()[:4] == b"\x89PNG"
    data: dict = json.loads((out / "weakness.json").read_text())  # type: ignore[type-arg]
    return data


def test_planted_weakness_is_found_and_ranked_first(tmp_path: Path) -> None:
    data = _run(tmp_path, Planted(slot="sovereign-large", domain="math", quality=0.35), seed=1)
    weak = data["weaknesses"]
    assert weak, "the planted weakness was not found"
    top = weak[0]
    assert (top["slot"], top["dimension"], top["value"]) in {("sovereign-large", "domain", "math"),
                                                            ("sovereign-large", "output_kind", "number")}
    assert top["gap"]["low"] > 0.1 and top["examples"] and top["failure_modes"].get("wrong_answer", 0) > 0
    primary = {(w["slot"], w["value"]) for w in weak if w["explained_by"] is None}
    assert primary <= {("sovereign-large", "math"), ("sovereign-large", "number")}
    # broader flagged slices (whole slot, language=en) are attributed to the planted one
    assert all(w["explained_by"] in ("sovereign-large / domain=math", "sovereign-large / output_kind=number")
               for w in weak if w["explained_by"] is not None)
    assert "sovereign-large / domain=math" in (tmp_path / "out" / "weakness.md").read_text()


def test_no_weakness_without_one(tmp_path: Path) -> None:
    for seed in (2, 3):
        data = _run(tmp_path / str(seed), None, seed=seed)
        assert data["weaknesses"] == [], [w["label"] for w in data["weaknesses"]]
        assert len(data["slices"]) > 20  # slices were tested, none flagged


def test_weaker_than_predicted_is_flagged() -> None:
    records, scores = synthetic(n=2400, seed=4, planted=Planted(slot="hosted-mini", domain="code", quality=0.4))
    obs = observations(records, list(offline_signals(records, scores)))
    report = analyse(obs)
    against = {(s.slot, s.value, s.against) for s in report.weaknesses}
    assert ("hosted-mini", "code", "predicted") in against and ("hosted-mini", "code", "reference") in against


def test_weakness_from_replay_decisions(tmp_path: Path) -> None:
    from sovrouter.replay.decisions import write_decisions
    from sovrouter.replay.harness import replay_settings, run_replay
    from sovrouter.workload import load_replay_inputs

    demo = Path(__file__).resolve().parents[2] / "src" / "sovrouter" / "data" / "demo"
    inputs = load_replay_inputs(demo)
    decisions = tmp_path / "decisions.jsonl"
    write_decisions(run_replay(inputs, replay_settings(inputs)).decisions, decisions)
    out = tmp_path / "out"
    assert main(["weakness", "--decisions", str(decisions), "--workload", str(demo), "--out", str(out),
                 "--min-n", "5"]) == 0
    data = json.loads((out / "weakness.json").read_text())
    assert data["observations"] == 40 and {s["slot"] for s in data["slices"]} >= {"sovereign-large"}
    assert all(s["dimension"] in ("slot", "domain", "language", "output_kind") for s in data["slices"])


def test_failure_modes() -> None:
    from sovrouter.contracts import CallAttempt, Candidate
    from sovrouter.evalloop.failures import classify_failure

    records, _ = synthetic(n=3, seed=0)
    ok = records[0].model_copy(update={"signals": records[0].signals.model_copy(update={"output_kind": "number"})})
    assert classify_failure(ok, "I'm sorry, but I can't help with that.", 0.0) == "refusal"
    assert classify_failure(ok, "no digits here", 0.0) == "format_error"
    assert classify_failure(ok, "it is 42", 0.0) == "wrong_answer"
    assert classify_failure(ok, "it is 42", 1.0) is None
    assert classify_failure(ok, "it is 4", 1.0, finish_reason="length") == "truncated"
    assert classify_failure(ok, '{"answer": ', 1.0, expect_json=True) == "format_error"
    refused = ok.model_copy(update={"status": "refused", "error_code": "no_allowed_deployment"})
    assert classify_failure(refused) == "policy_refusal"
    c = Candidate(slot="frontier", deployment="us")
    timed_out = ok.model_copy(update={"status": "error", "error_code": "all_candidates_failed",
                                      "calls": [CallAttempt(candidate=c, outcome="timeout")]})
    assert classify_failure(timed_out) == "timeout"


def test_weakness_reads_every_instance_from_the_shared_database(tmp_path: Path, pg_srv: PostgresServer) -> None:
    """Two gateway instances each served half the traffic; ``--url`` sees both halves, one instance's files one."""
    records, scores = synthetic(n=2400, seed=1, planted=Planted(slot="sovereign-large", domain="math", quality=0.35))
    signals = list(offline_signals(records, scores))
    database = pg_srv.new_database()
    url = database_url(database, None, "records")
    for k in (0, 1):
        folder = tmp_path / f"instance{k}"
        store = SharedRecordStore(SQLiteRecordStore(folder / "records.sqlite"), url, ship_every_s=3600)
        for r in records[k::2]:
            store.write(r)
        store.close()  # ships what is left
        mine = {r.request_id for r in records[k::2]}
        sig = SharedSignalStore(folder / "signals.sqlite", url, ship_every_s=3600)
        sig.add_many(s for s in signals if s.request_id in mine)
        sig.close()
    out = tmp_path / "out"
    assert main(["weakness", "--url", database, "--out", str(out)]) == 0
    both = json.loads((out / "weakness.json").read_text())
    top = both["weaknesses"][0]
    assert (top["slot"], top["value"]) in {("sovereign-large", "math"), ("sovereign-large", "number")}
    one = tmp_path / "one"
    assert main(["weakness", "--db", str(tmp_path / "instance0" / "records.sqlite"), "--signals",
                 str(tmp_path / "instance0" / "signals.sqlite"), "--out", str(one)]) == 0
    half = json.loads((one / "weakness.json").read_text())
    assert sum(s["n"] for s in both["slices"]) > 1.8 * sum(s["n"] for s in half["slices"])
    assert main(["weakness", "--url", "postgresql://nobody@127.0.0.1:1/none", "--out", str(tmp_path / "x")]) == 2
