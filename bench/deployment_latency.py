"""Latency-aware deployment choice on the dev workload: does the copy predictor find the answers a speculative
deployment speeds up, and does a tenant's latency budget get met at what cost?

Real data: the dev workload's prompts and the four real models' recorded answers. For every request the copy
predictor (prompt only) gives an expected copy fraction; the *observed* copy fraction of each recorded answer
is what prompt lookup could have guessed of it (``observed_copy_fraction``: words that follow their preceding
two words somewhere in the prompt). Part 1 compares the two.

Parts 2 and 3 are a model, not a measurement of a GPU: latency = TTFT + output tokens / (tokens/s x speed-up),
with the speed-up a deployment declares (``Deployment.speculative``) interpolated at the answer's copy fraction.
"True" latency uses the recorded answer's real length and observed copy fraction; the chooser sees only the
prompt (predicted copy fraction, ``max_tokens`` or its default output length), as in serving.

- Part 2: sovereign-large gets a second EU deployment at the same price with prompt-lookup speculative decoding
  declared as 2.8x on fully copied output and 0.9x on output that copies nothing (vLLM's published n-gram
  figures are up to ~2.8x on summarisation for a 70B target, and speculation costs throughput when drafts are
  rejected). Policies: always plain, always speculative, the latency-aware chooser, and an oracle that knows
  the true latency of each.
- Part 3: the frontier slot gets a second US deployment at 1.6x the price and twice the decode speed; a tenant
  budget of B ms. Policies: always the cheap one, always the fast one, the chooser (cheapest expected to meet
  the budget), and an oracle (fast only when the cheap one would miss and the fast one meets it). Reports the
  share of requests that meet the budget and the cost.

    python bench/deployment_latency.py [--budgets 8000,12000,20000] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from sovrouter.catalog import Catalog, Deployment, Tenants, estimate_tokens
from sovrouter.contracts import Candidate, NormalizedRequest, Signals
from sovrouter.intake import normalize_chat
from sovrouter.routing.deployments import DEFAULT_OUTPUT_TOKENS, CueAnswerShape, LatencyAwareDeployment
from sovrouter.speculative.answer_shape import AnswerShape, AnswerShapeEstimator, AnswerShapeModel
from sovrouter.speculative.answer_shape_train import Rows, build_rows, out_of_fold, report
from sovrouter.speculative.latency import expected_latency_ms
from sovrouter.speculative.predictor import CopyPredictor, observed_copy_fraction
from sovrouter.speculative.shape_online import OnlineAnswerShape
from sovrouter.workload import load_labels, load_requests, load_responses, load_stream, resolve

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "deployment_latency.json"
WORKLOAD = ROOT.parent / "shared" / "data" / "workload"
SIGNALS = Signals()


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _summary(values: list[float]) -> dict[str, float]:
    return {"mean_ms": round(statistics.fmean(values), 1), "p50_ms": round(_pct(values, 50), 1),
            "p95_ms": round(_pct(values, 95), 1)}


class FixedShapes:
    """Answer shapes computed beforehand (out-of-fold predictions), served by request id."""

    def __init__(self, shapes: dict[str, AnswerShape]) -> None:
        self.shapes = shapes

    def shape(self, request: NormalizedRequest) -> AnswerShape:
        return self.shapes[request.request_id]


def learned_shapes(rows: Rows, groups: list[str] | None) -> tuple[dict[str, AnswerShape], dict[str, Any]]:
    """Predictions for every request by a model that never saw it: random folds by request, or (``groups``)
    one fold per source benchmark (an unseen prompt family)."""
    oof = out_of_fold(rows, groups=groups)
    shapes = {rid: AnswerShape(float(oof["copy"][i]), max(1, round(float(oof["tokens_p50"][i]))),
                               max(1, round(float(oof["tokens_p90"][i]))), "learned")
              for i, rid in enumerate(rows.request_ids)}
    return shapes, report(rows, oof)


def online_report(rows: Rows, reqs: dict[str, NormalizedRequest], answers: dict[tuple[str, str], str],
                  base: dict[str, AnswerShape]) -> dict[str, Any]:
    """``base`` corrected online in arrival order: each request predicted before any of its answers is seen,
    then all its recorded answers observed (a cascade sees several)."""
    online = OnlineAnswerShape(FixedShapes(base))
    predicted: dict[str, AnswerShape] = {}
    for rid in reqs:  # ``reqs`` is in arrival order
        predicted[rid] = online.shape(reqs[rid])
        for slot in ("local-small", "sovereign-large", "hosted-mini", "frontier"):
            text = answers.get((rid, slot))
            if text is not None:
                online.observe(reqs[rid], text)
    return report(rows, {"copy": [predicted[r].copy_fraction for r in rows.request_ids],
                         "tokens_p50": [float(predicted[r].tokens_p50) for r in rows.request_ids],
                         "tokens_p90": [float(predicted[r].tokens_p90) for r in rows.request_ids]})


def cue_report(rows: Rows, reqs: dict[str, NormalizedRequest]) -> dict[str, Any]:
    cue = CopyPredictor()
    pred = {rid: cue.predict(req).copy_fraction for rid, req in reqs.items()}
    tokens = [float(DEFAULT_OUTPUT_TOKENS)] * len(rows.request_ids)
    return report(rows, {"copy": [pred[r] for r in rows.request_ids], "tokens_p50": tokens, "tokens_p90": tokens})


def _variant(catalog: Catalog, slot_id: str, extra: dict[str, Any]) -> Catalog:
    data = catalog.model_dump()
    for slot in data["slots"]:
        if slot["id"] == slot_id:
            base = next(d for d in slot["deployments"] if d["available_to"] == "all")
            slot["deployments"].append({**base, **extra})
    return Catalog.model_validate(data)


def _true_ms(dep: Deployment, text: str, prompt: str) -> float:
    return expected_latency_ms(dep, estimate_tokens(text), observed_copy_fraction(prompt, text))


def _observe(estimator: AnswerShapeEstimator, req: NormalizedRequest, answer: str) -> None:
    """An online estimator learns from the answer the chosen deployment gave (as ShapeObservingAdapter does)."""
    if isinstance(estimator, OnlineAnswerShape):
        estimator.observe(req, answer)


def part2(catalog: Catalog, reqs: dict[str, NormalizedRequest], answers: dict[tuple[str, str], str],
          estimators: dict[str, AnswerShapeEstimator]) -> dict[str, Any]:
    slot = "sovereign-large"
    spec_cat = _variant(catalog, slot, {"id": "eu-sov-spec", "speculative": {
        "kind": "prompt-lookup", "expected_speedup": 2.8, "base_speedup": 0.9}})
    plain_c, spec_c = Candidate(slot=slot, deployment="eu-sov"), Candidate(slot=slot, deployment="eu-sov-spec")
    plain_d, spec_d = spec_cat.deployment(slot, "eu-sov"), spec_cat.deployment(slot, "eu-sov-spec")
    choosers = {name: LatencyAwareDeployment(spec_cat, None, est) for name, est in estimators.items()}
    arms: dict[str, list[float]] = {"plain": [], "speculative": [], "oracle": [],
                                    **{f"chooser_{n}": [] for n in choosers}}
    on_spec = dict.fromkeys(choosers, 0)
    for rid, req in reqs.items():
        text = answers.get((rid, slot))
        if text is None:
            continue
        plain, spec = _true_ms(plain_d, text, req.prompt_text), _true_ms(spec_d, text, req.prompt_text)
        arms["plain"].append(plain)
        arms["speculative"].append(spec)
        arms["oracle"].append(min(plain, spec))
        for name, chooser in choosers.items():
            pick = chooser.order(req, SIGNALS, [plain_c, spec_c])[0]
            on_spec[name] += pick == spec_c
            arms[f"chooser_{name}"].append(spec if pick == spec_c else plain)
            _observe(estimators[name], req, text)
    return {"requests": len(arms["plain"]),
            "on_speculative": {**{f"chooser_{n}": v for n, v in on_spec.items()},
                               "oracle": sum(s < p for s, p in zip(arms["speculative"], arms["plain"], strict=True))},
            **{k: _summary(v) for k, v in arms.items()}}


def part3(catalog: Catalog, reqs: dict[str, NormalizedRequest], answers: dict[tuple[str, str], str],
          estimators: dict[str, AnswerShapeEstimator], budget: float) -> dict[str, Any]:
    slot = "frontier"
    cat = _variant(catalog, slot, {"id": "us-fast", "price_multiplier": 1.6,
                                   "latency": {"ttft_ms": 500, "tokens_per_s": 110}})
    cheap_c, fast_c = Candidate(slot=slot, deployment="us"), Candidate(slot=slot, deployment="us-fast")
    cheap_d, fast_d = cat.deployment(slot, "us"), cat.deployment(slot, "us-fast")
    tenants = Tenants.model_validate({"tenants": [{"id": t, "latency_budget_ms": budget}
                                                  for t in {r.tenant for r in reqs.values()}]})
    choosers = {name: LatencyAwareDeployment(cat, tenants, est) for name, est in estimators.items()}
    arms: dict[str, list[tuple[float, float, bool]]] = {"cheap": [], "fast": [], "oracle": [],
                                                         **{f"chooser_{n}": [] for n in choosers}}
    for rid, req in reqs.items():
        text = answers.get((rid, slot))
        if text is None:
            continue
        tin, tout = estimate_tokens(req.prompt_text), estimate_tokens(text)
        cheap = (_true_ms(cheap_d, text, req.prompt_text), cat.cost_usd(slot, "us", tin, tout), False)
        fast = (_true_ms(fast_d, text, req.prompt_text), cat.cost_usd(slot, "us-fast", tin, tout), True)
        arms["cheap"].append(cheap)
        arms["fast"].append(fast)
        arms["oracle"].append(fast if cheap[0] > budget and fast[0] <= budget else cheap)
        for name, chooser in choosers.items():
            arms[f"chooser_{name}"].append(fast if chooser.order(req, SIGNALS, [cheap_c, fast_c])[0] == fast_c
                                           else cheap)
            _observe(estimators[name], req, text)
    out: dict[str, Any] = {"budget_ms": budget}
    for name, rows in arms.items():
        out[name] = {"met_budget": round(sum(ms <= budget for ms, _, _ in rows) / len(rows), 4),
                     "cost_usd": round(sum(c for _, c, _ in rows), 3),
                     "share_on_fast": round(sum(f for _, _, f in rows) / len(rows), 4),
                     **_summary([ms for ms, _, _ in rows])}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", default=str(WORKLOAD))
    ap.add_argument("--budgets", default="8000,12000,20000")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    paths = resolve(args.workload)
    catalog = Catalog.load(paths.catalog)
    raw = load_requests(paths)
    arrival = list(dict.fromkeys([e.request_id for e in load_stream(paths) if e.request_id in raw] + list(raw)))
    reqs = {rid: normalize_chat(raw[rid].chat_body(), tenant=raw[rid].tenant, request_id=rid,
                                 recorded=True) for rid in arrival}
    answers = {k: v.response for k, v in load_responses(paths).items()}
    labels = load_labels(paths)  # the source benchmark, only to group the leave-one-family-out folds
    t0 = time.perf_counter()
    rows = build_rows(reqs, answers)
    random_shapes, random_report = learned_shapes(rows, None)
    family_shapes, family_report = learned_shapes(rows, [labels[r].source if r in labels else "?"
                                                         for r in rows.request_ids])

    def estimators() -> dict[str, AnswerShapeEstimator]:  # fresh online state for each run
        return {"cues": CueAnswerShape(), "learned_random_folds": FixedShapes(random_shapes),
                "learned_random_folds_online": OnlineAnswerShape(FixedShapes(random_shapes)),
                "learned_unseen_family": FixedShapes(family_shapes),
                "learned_unseen_family_online": OnlineAnswerShape(FixedShapes(family_shapes))}

    shipped = AnswerShapeModel.load()
    sample = list(reqs.values())[:500]
    t1 = time.perf_counter()
    for req in sample:
        shipped.shape(req)
    shape_us = (time.perf_counter() - t1) / len(sample) * 1e6
    result: dict[str, Any] = {
        "machine": f"{platform.node()} {platform.machine()} python {platform.python_version()}",
        "workload": str(paths.data),
        "part1_answer_shape_out_of_fold": {"cues (CopyPredictor, 256 tokens)": cue_report(rows, reqs),
                                           "learned, random folds by request": random_report,
                                           "learned, leave one source benchmark out": family_report,
                                           "learned, random folds, corrected online": online_report(
                                               rows, reqs, answers, random_shapes),
                                           "learned, unseen source benchmark, corrected online": online_report(
                                               rows, reqs, answers, family_shapes),
                                           "shipped model, us per request (shape)": round(shape_us, 1)},
        "part2_speculative_deployment": part2(catalog, reqs, answers, estimators()),
        "part3_latency_budget": [part3(catalog, reqs, answers, estimators(), float(b))
                                 for b in args.budgets.split(",")],
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
