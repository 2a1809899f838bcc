"""Recalibration detects a drifted slot and lowers its calibration error on held-out samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sovrouter.contracts import Detection, NormalizedRequest, Signals
from sovrouter.evalloop.recalibrate import (
    CalibrationSample,
    RecalibratedClassifier,
    Recalibration,
    apply_all,
    detect_drift,
    fit_recalibration,
)
from sovrouter.evalloop.stats import cusum_drop, ece
from sovrouter.intake import normalize_chat


def _samples(n: int, seed: int, drop: float) -> list[CalibrationSample]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        slot = ("stable", "drifted")[i % 2]
        domain = ("math", "code")[(i // 2) % 2]
        p = float(rng.uniform(0.2, 0.95))
        q = max(0.0, p - drop) if slot == "drifted" else p
        out.append(CalibrationSample(slot, domain, p, float(rng.random() < q)))
    return out


def test_drift_detected_and_recalibrated(tmp_path: Path) -> None:
    fit_part, held_out = _samples(4000, 0, drop=0.2), _samples(4000, 1, drop=0.2)
    status = detect_drift(fit_part)
    assert {d.slot for d in status if d.alarm} == {"drifted"}
    recal = fit_recalibration(fit_part, "isotonic")
    keys = set(recal.groups)
    assert {k.split("|")[0] for k in keys} == {"drifted"}  # only what helps out of sample
    path = tmp_path / "recal.json"
    recal.save(path)
    loaded = Recalibration.load(path)
    after = apply_all(loaded, held_out)
    for slot in ("drifted", "stable"):
        idx = [i for i, s in enumerate(held_out) if s.slot == slot]
        before_e = ece([held_out[i].predicted for i in idx], [held_out[i].observed for i in idx])
        after_e = ece([after[i] for i in idx], [held_out[i].observed for i in idx])
        if slot == "drifted":
            assert before_e > 0.15 and after_e < 0.05 and after_e < before_e / 3
        else:
            assert after_e < before_e + 0.03  # a calibrated slot is not made worse
    # once recalibrated, the drifted slot no longer alarms
    fixed = [CalibrationSample(s.slot, s.domain, a, s.observed) for s, a in zip(held_out, after, strict=True)]
    assert not any(d.alarm for d in detect_drift(fixed))


def test_platt_also_lowers_error() -> None:
    fit_part, held_out = _samples(3000, 2, drop=0.15), _samples(3000, 3, drop=0.15)
    recal = fit_recalibration(fit_part, "platt")
    idx = [i for i, s in enumerate(held_out) if s.slot == "drifted"]
    after = apply_all(recal, held_out)
    assert ece([after[i] for i in idx], [held_out[i].observed for i in idx]) < \
        ece([held_out[i].predicted for i in idx], [held_out[i].observed for i in idx]) / 2


def test_cusum_quiet_when_calibrated() -> None:
    rng = np.random.default_rng(5)
    p = rng.uniform(0.2, 0.9, 5000)
    assert not cusum_drop(p, (rng.random(5000) < p).astype(float)).alarm


class _Prior:
    def classify(self, request: NormalizedRequest, detection: Detection) -> Signals:
        return Signals(domain="math", slot_prior={"drifted": 0.8, "other": 0.6})


def test_recalibrated_classifier_rewrites_priors() -> None:
    recal = fit_recalibration(_samples(4000, 0, drop=0.2), "isotonic")
    wrapped = RecalibratedClassifier(_Prior(), recal)
    req = normalize_chat({"messages": [{"role": "user", "content": "x"}]}, tenant="t", request_id="r")
    prior = wrapped.classify(req, Detection()).slot_prior  # type: ignore[attr-defined]
    assert prior["drifted"] < 0.7 and prior["other"] == 0.6  # unknown slot: unchanged


def test_recalibrate_cli_on_records_and_scores(tmp_path: Path) -> None:
    from sovrouter.cli.main import main
    from sovrouter.evalloop.testing import Planted, synthetic, write_records, write_workload

    records, scores = synthetic(n=2400, seed=7, planted=Planted(slot="sovereign-large", domain="math", quality=0.3))
    rec = write_records(tmp_path / "records.jsonl", records)
    wl = write_workload(tmp_path / "wl", records, scores)
    out = tmp_path / "recal.json"
    assert main(["recalibrate", "--records", str(rec), "--workload", str(wl), "--out", str(out)]) == 0
    recal = Recalibration.load(out)
    assert recal.groups and all(k.startswith("sovereign-large|") for k in recal.groups)
    assert recal.apply("sovereign-large", "math", 0.7) < 0.5 and recal.apply("frontier", "math", 0.7) == 0.7
