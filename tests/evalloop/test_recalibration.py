"""Recalibration detects a drifted slot and lowers its calibration error on held-out samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sovrouter.contracts import Signals
from sovrouter.evalloop.recalibrate import (
    CalibrationSample,
    Recalibration,
    apply_all,
    detect_drift,
    fit_recalibration,
    samples_from,
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


def test_the_learned_router_decides_on_recalibrated_probabilities() -> None:
    """The artifact was loaded by nothing and rewrote only the classifier's prior, which the router's decisions
    barely read: it changed nothing. It now maps the verifiers' probabilities, which the gains compare."""
    from sovrouter.catalog import Catalog, Tenants
    from sovrouter.contracts import Candidate, ModelResult
    from sovrouter.routing.model import SLOT_ORDER, Bundle, RouterModels, Thresholds, TierThresholds
    from sovrouter.testing_workload import DEMO_DATA

    class Const:
        def __init__(self, p: float) -> None:
            self.p = p

        def predict_proba(self, x: object) -> np.ndarray:
            n = len(x)  # type: ignore[arg-type]
            return np.column_stack([np.full(n, 1 - self.p), np.full(n, self.p)])

    from sovrouter.routing.learned import LearnedRouter

    catalog, tenants = Catalog.load(DEMO_DATA / "models.json"), Tenants.load(DEMO_DATA / "tenants.json")
    models = RouterModels(domains=("math",), domain_model=None, kind_model=None, prior_models={},
                          stage1_first=Const(0.9), stage1_top=Const(0.92), stage2_second=Const(0.5),
                          stage2_top=Const(0.9))
    bundle = Bundle(models, Thresholds(standard=TierThresholds(direct=2.0, stage1=0.05, stage2=0.05, skip=2.0)))
    # observed: local-small is right far less often than its verifier says
    recal = fit_recalibration([CalibrationSample("local-small", "math", p, float(i % 10 < 4))
                               for i, p in enumerate(np.linspace(0.5, 0.99, 2000))], "isotonic")
    signals = Signals(domain="math", slot_prior={s: 0.7 for s in SLOT_ORDER}, route_features=[0.0] * 27)
    req = normalize_chat({"messages": [{"role": "user", "content": "What is 6*7?"}]}, tenant="acme-us",
                         request_id="r")
    allowed = [Candidate(slot=s.id, deployment=d.id) for s, d in catalog.pairs() if d.available_for("acme-us")]
    outcomes = []
    for router in (LearnedRouter(bundle, catalog, tenants), LearnedRouter(bundle, catalog, tenants, None, recal)):
        d = router.decide(req, signals, allowed)
        first = ModelResult(candidate=d.plan[0], text='{"answer": "42"}')
        outcomes.append((router.review(req, signals, d, [first]), d.evidence["predicted_quality"]))
    (plain, plain_p), (recalibrated, recal_p) = outcomes
    assert plain is None and plain_p["local-small"] == 0.9  # accepted: the gain 0.02 is under 0.05
    assert recalibrated is not None and recal_p["local-small"] < 0.5  # escalated on the corrected number


def test_the_next_map_is_fitted_on_the_raw_predictions_the_router_applies_it_to() -> None:
    """Fitted on the corrected numbers it recorded, the second round saw no drift and wrote an empty map, and
    deploying it undid the first correction."""
    from sovrouter.contracts import RequestRecord, RouteDecision
    from sovrouter.evalloop.observations import Observation, predicted_quality

    first = fit_recalibration(_samples(4000, 0, drop=0.25), "isotonic")
    rng = np.random.default_rng(1)
    seen = []
    for i in range(4000):
        raw = float(rng.uniform(0.3, 0.95))
        seen.append(Observation(request_id=f"r{i}", tenant="t", slot="drifted", deployment="d", domain="math",
                                language="en", output_kind="number", score=float(rng.random() < raw - 0.25),
                                reference_score=None, reference_slot=None,
                                predicted=first.apply("drifted", "math", raw), failure_mode=None, cost_usd=0.0,
                                source="scorer", predicted_raw=raw))
    assert not any(d.alarm for d in detect_drift(samples_from(seen)))  # the router's numbers are calibrated now
    second = fit_recalibration(samples_from(seen, raw=True), "isotonic", slots=["drifted"])
    assert second.groups and abs(second.apply("drifted", "math", 0.8) - first.apply("drifted", "math", 0.8)) < 0.1
    record = RequestRecord(request_id="r", tenant="t", data_class="public", effective_class="public",
                           modalities=["text"], arrived_ms=0.0, status="ok",
                           decision=RouteDecision(plan=[], router="learned", evidence={
                               "predicted_quality": {"drifted": 0.55}, "predicted_quality_raw": {"drifted": 0.8}}))
    assert predicted_quality(record, "drifted") == 0.55 and predicted_quality(record, "drifted", raw=True) == 0.8


def test_batch_records_of_the_learned_router_never_fall_back_to_the_prior() -> None:
    """The Batch API wraps the router (``deferrable(learned)``): its records still fed the prompt-only prior."""
    from sovrouter.contracts import RequestRecord, RouteDecision
    from sovrouter.evalloop.observations import predicted_quality

    for router, evidence in (("learned", {}), ("deferrable(learned)", {"inner_router": "learned"})):
        record = RequestRecord(request_id="r", tenant="t", data_class="public", effective_class="public",
                               modalities=["text"], arrived_ms=0.0, status="ok",
                               decision=RouteDecision(plan=[], router=router, evidence=evidence),
                               signals=Signals(domain="math", slot_prior={"frontier": 0.93}))
        assert predicted_quality(record, "frontier") is None


def test_settings_wire_the_artifact_into_the_learned_router(tmp_path: Path) -> None:
    from sovrouter.build import make_router
    from sovrouter.catalog import Catalog, Tenants
    from sovrouter.config import Settings
    from sovrouter.testing_workload import DEMO_DATA

    artifact = tmp_path / "recal.json"
    fit_recalibration(_samples(2000, 0, drop=0.2), "isotonic").save(artifact)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"catalog: {DEMO_DATA / 'models.json'}\ntenants: {DEMO_DATA / 'tenants.json'}\n"
                   "recalibration: recal.json\n")
    settings = Settings.load(cfg)
    assert settings.recalibration == artifact.resolve()
    router, _ = make_router(settings, Catalog.load(settings.catalog), Tenants.load(settings.tenants))
    assert router.calibrator is not None  # type: ignore[attr-defined]
    assert router.calibrator.apply("drifted", "math", 0.8) < 0.7  # type: ignore[attr-defined]


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
