from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sovrouter.cli.main import main
from sovrouter.replay.decisions import Decision, write_decisions
from sovrouter.report.data import load_eval_data
from sovrouter.report.kpi import evaluate_events, kpi_report, paired_diff, validate
from sovrouter.testing_workload import DEMO_DATA, SLOTS, write_jsonl, write_workload

OUT_TOKENS = {"local-small": 100, "sovereign-large": 200, "hosted-mini": 300, "frontier": 400}
SCORES = {  # request -> slot -> score
    "A": {"local-small": 0.0, "sovereign-large": 1.0, "hosted-mini": 1.0, "frontier": 1.0},
    "B": {"local-small": 0.0, "sovereign-large": 0.0, "hosted-mini": 1.0, "frontier": 1.0},
    "C": {"local-small": 1.0, "sovereign-large": 1.0, "hosted-mini": 0.0, "frontier": 1.0},
}
REQUESTS = [  # id, tenant, class, content (input tokens = len/4), domain, personal data
    ("A", "acme-us", "public", "a" * 40, "math", []),
    ("B", "eurobank", "confidential", "b" * 80, "code", []),
    ("C", "clinic-ca", "public", "c" * 40, "math", ["PERSON"]),
]


def _tiny(root: Path, stream_ids: list[str]) -> Path:
    root.mkdir()
    shutil.copy(DEMO_DATA / "models.json", root / "models.json")
    shutil.copy(DEMO_DATA / "tenants.json", root / "tenants.json")
    write_jsonl(root / "requests.jsonl.gz", [
        {"id": i, "tenant": t, "data_class": c, "messages": [{"role": "user", "content": text}]}
        for i, t, c, text, _, _ in REQUESTS])
    write_jsonl(root / "responses.jsonl.gz", [
        {"request_id": i, "model": s, "response": "x", "input_tokens": len(text) // 4,
         "output_tokens": OUT_TOKENS[s]} for i, _, _, text, _, _ in REQUESTS for s in SLOTS])
    write_jsonl(root / "scores.jsonl.gz", [
        {"request_id": i, "model": s, "score": SCORES[i][s], "score_kind": "binary_correct"}
        for i, *_ in REQUESTS for s in SLOTS])
    write_jsonl(root / "labels.jsonl.gz", [
        {"id": i, "source": "syn", "source_item_id": f"item-{i}", "domain": dom, "pii_types": pii}
        for i, _, _, _, dom, pii in REQUESTS])
    write_jsonl(root / "stream.jsonl.gz", [
        {"seq": k, "request_id": rid, "t_ms": 10 * k} for k, rid in enumerate(stream_ids)])
    return root


def _d(seq: int, rid: str, calls: list[tuple[str, str]], final: tuple[str, str] | None,
       cache: int | None = None) -> Decision:
    return Decision.model_validate({
        "seq": seq, "request_id": rid, "calls": [{"model": m, "deployment": d} for m, d in calls],
        "final": {"model": final[0], "deployment": final[1]} if final else None,
        "cache": {"source_seq": cache} if cache is not None else None, "detected": {"pii_types": []},
        "decision_ms": 0.1})


DECISIONS = [
    _d(0, "A", [("sovereign-large", "eu-sov")], ("sovereign-large", "eu-sov")),
    # escalation local-small -> hosted-mini on `us`: eurobank confidential may not leave the EU: 1 violation
    _d(1, "B", [("local-small", "edge"), ("hosted-mini", "us")], ("hosted-mini", "us")),
    _d(2, "A", [], ("sovereign-large", "eu-sov"), cache=0),
    _d(3, "C", [], None),  # refused
]


def test_kpis_match_hand_computation(tmp_path: Path) -> None:
    data = load_eval_data(_tiny(tmp_path / "wl", ["A", "B", "A", "C"]))
    assert validate(data, DECISIONS) == []
    rep = kpi_report(data, DECISIONS)
    # costs by hand: (in*price_in + out*price_out) / 1e6 * multiplier
    cost_a_sl = (10 * 0.9 + 200 * 0.9) / 1e6
    cost_b = (20 * 0.1 + 100 * 0.1) / 1e6 + (20 * 0.15 + 300 * 0.6) / 1e6
    ref_a = (10 * 2.5 + 400 * 10.0) / 1e6  # acme-us: frontier/us
    ref_b = (20 * 0.15 + 300 * 0.6) / 1e6 * 1.1  # eurobank confidential: frontier (US) not allowed -> hm/eu-zone
    ref_c = (10 * 0.1 + 100 * 0.1) / 1e6  # clinic-ca with personal data: on premises only -> local-small/edge
    assert rep["n_events"] == 4
    assert rep["quality"] == pytest.approx((1 + 1 + 1 + 0) / 4)
    assert rep["ref_quality"] == pytest.approx(1.0)
    assert rep["cost"] == pytest.approx(cost_a_sl + cost_b)
    assert rep["cost_ratio"] == pytest.approx((cost_a_sl + cost_b) / (ref_a + ref_b + ref_a + ref_c))
    assert rep["off_frontier_share"] == pytest.approx(3 / 4)
    assert rep["cache_hit_share"] == pytest.approx(1 / 4)
    assert rep["ref_off_frontier_share"] == pytest.approx(1 / 4)  # only C's reference (edge) is off frontier
    assert rep["refusals"] == 1
    assert rep["violations"] == 1
    assert rep["paired_diff"]["mean"] == pytest.approx(-0.25)
    assert rep["paired_diff"]["ci_low"] <= -0.25 <= rep["paired_diff"]["ci_high"]
    math_ = rep["per_domain"]["math"]
    assert math_["n"] == 3 and math_["quality"] == pytest.approx(2 / 3) and math_["ref_quality"] == 1.0
    assert math_["cost_ratio"] == pytest.approx(cost_a_sl / (ref_a + ref_a + ref_c))
    code = rep["per_domain"]["code"]
    assert code["n"] == 1 and code["off_frontier_share"] == 0.0 and code["violations"] == 1


def test_cache_hits_other_item_and_forbidden_deployment(tmp_path: Path) -> None:
    data = load_eval_data(_tiny(tmp_path / "wl", ["A", "B", "C", "B"]))
    decisions = [
        _d(0, "A", [("frontier", "us")], ("frontier", "us")),
        _d(1, "B", [("sovereign-large", "us-east")], ("sovereign-large", "us-east")),  # violation (US)
        _d(2, "C", [], ("frontier", "us"), cache=0),  # another item's answer, and off-premises for C
        _d(3, "B", [], ("sovereign-large", "us-east"), cache=1),  # served on a deployment B may not use
    ]
    assert validate(data, decisions) == []
    ev = evaluate_events(data, decisions)
    assert [e.quality for e in ev] == [1.0, 0.0, 0.0, 0.0]  # C got A's answer: scored 0 whatever C's scores
    assert [e.violations for e in ev] == [0, 1, 1, 1]
    assert [e.cost for e in ev][2:] == [0.0, 0.0]
    assert [e.off_frontier for e in ev] == [False, True, True, True]
    assert sum(e.cross_tenant_cache for e in ev) == 1
    assert [e.cache_other_item for e in ev] == [False, False, True, False]
    assert kpi_report(data, decisions)["cache_other_item_hits"] == 1


def test_validate_rejects_invalid_decisions(tmp_path: Path) -> None:
    data = load_eval_data(_tiny(tmp_path / "wl", ["A", "B", "A", "C"]))
    bad = [
        _d(0, "A", [("frontier", "mars")], ("frontier", "mars")),
        _d(1, "B", [], None),
        _d(2, "A", [], ("local-small", "edge"), cache=1),  # source was refused
    ]
    problems = validate(data, bad)
    assert any("unknown deployment frontier/mars" in p for p in problems)
    assert any("seq 3: no decision" in p for p in problems)
    assert any("seq 2: cache source 1" in p for p in problems)
    forward = [*DECISIONS[:2], _d(2, "A", [], ("sovereign-large", "eu-sov"), cache=3), DECISIONS[3]]
    assert any("not an earlier served event" in p for p in validate(data, forward))


def test_paired_diff_interval_is_fixed_and_covers_mean() -> None:
    data_free = [0.1 * (i % 7) for i in range(200)]
    from sovrouter.report.kpi import EventEval

    ev = [EventEval(i, "r", "d", q, 0.3, 0, 0, True, False, False, 0, False) for i, q in enumerate(data_free)]
    a, b = paired_diff(ev), paired_diff(ev)
    assert a == b
    assert a["ci_low"] < a["mean"] < a["ci_high"]


def test_cli_report_after_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_workload(tmp_path / "wl", n_requests=25, seed=11)
    dec, out = tmp_path / "d.jsonl", tmp_path / "kpi.json"
    assert main(["replay", "--workload", str(tmp_path / "wl"), "--out", str(dec)]) == 0
    assert main(["report", "--workload", str(tmp_path / "wl"), "--decisions", str(dec), "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    for key in ("quality", "ref_quality", "cost_ratio", "off_frontier_share", "cache_hit_share", "per_domain",
                "paired_diff", "violations", "n_events"):
        assert key in rep
    assert set(rep["paired_diff"]) == {"mean", "ci_low", "ci_high"}
    assert rep["cache_hit_share"] > 0
    text = capsys.readouterr().out
    assert "always-frontier" in text and "Per domain" in text


def test_cli_report_needs_scores_and_matching_decisions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_workload(tmp_path / "wl", n_requests=6, seed=12, with_eval=False)
    dec = tmp_path / "d.jsonl"
    assert main(["replay", "--workload", str(tmp_path / "wl"), "--out", str(dec)]) == 0
    assert main(["report", "--workload", str(tmp_path / "wl"), "--decisions", str(dec)]) == 2
    assert "no scores" in capsys.readouterr().err
    write_workload(tmp_path / "other", n_requests=6, seed=13)
    write_decisions([], tmp_path / "empty.jsonl")
    assert main(["report", "--workload", str(tmp_path / "other"), "--decisions", str(tmp_path / "empty.jsonl")]) == 2
    assert "no decision" in capsys.readouterr().err
