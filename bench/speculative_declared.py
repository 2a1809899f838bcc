"""What a GPU deployment of prompt lookup should declare in the catalog, read off measured GPU runs.

    python bench/speculative_declared.py [--runs bench/results/speculative_gpu.json] [--k 10] [--gguf PATH]

The latency estimate (``sovrouter.speculative.latency``) interpolates a deployment's decode speed-up linearly
in the output's copy fraction, between ``base_speedup`` (output that copies nothing) and ``expected_speedup``
(output copied from the prompt). ``speculative_gpu.py`` measured prompt lookup per prompt on a GPU; this fits
that line to the measurements: per prompt the median paired speed-up over runs against the copy fraction of
the model's own plain answer (``observed_copy_fraction``, the label the answer-shape model is trained on), least
squares. It reports the fitted pair, how well the line fits, and the tokens per decode step (the speed-up a
launch-bound device converts one to one), beside the pair ``deployment_latency.py`` declares from vLLM's
published figures (2.8 / 0.9), and whether a convex shape (through the medians of three copy-fraction bins)
would predict an unseen prompt better than the line (leave one out).

The plain answers come from the JSON when it holds them (``plain_texts``); for runs made before it did, they
are decoded again here on the CPU in float32 with the same loop and weights (CPU and GPU arithmetic can
flip a near-tie, so the answers whose token count differs from the GPU's are listed in the JSON).
Writes bench/results/speculative_declared.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
from speculative_prompts import PROMPTS

from sovrouter.local_model import find_smollm2_gguf
from sovrouter.speculative.predictor import observed_copy_fraction

OUT = Path(__file__).resolve().parent / "results" / "speculative_declared.json"
DECLARED = {"expected_speedup": 2.8, "base_speedup": 0.9}  # bench/deployment_latency.py


def plain_texts(result: dict[str, Any], gguf: Path) -> tuple[dict[str, str], str]:
    if "plain_texts" in result:
        return result["plain_texts"], "recorded by the GPU run"
    from speculative_gpu import decode, load, prompt_ids  # torch: only when the texts must be made again

    tok, model, eos = load(gguf, "cpu", "float32")
    gpu_len = {f"{r['kind']}/{r['prompt']}": r["n_tokens"] for r in result["rows"] if r["k"] == 0}
    texts: dict[str, str] = {}
    differ: list[str] = []
    for kind, prompts in PROMPTS.items():
        for i, prompt in enumerate(prompts):
            out = decode(model, prompt_ids(tok, prompt), 96, 0, eos, "cpu")["tokens"]
            key = f"{kind}/{i}"
            if len(out) != gpu_len[key]:
                differ.append(f"{key}: {len(out)} tokens on the CPU, {gpu_len[key]} on the GPU")
            texts[key] = tok.decode(out)
    return texts, ("decoded again on the CPU (float32); token counts differ from the GPU's for "
                   + ("; ".join(differ) if differ else "none"))


def predict_line(c: np.ndarray, y: np.ndarray, x: float) -> float:
    slope, intercept = np.polyfit(c, y, 1)
    return float(intercept + slope * min(max(x, 0.0), 1.0))


def predict_bins(c: np.ndarray, y: np.ndarray, x: float) -> float:
    """A convex alternative to the line: piecewise linear through the medians of copy fractions below 1/3,
    1/3-2/3 and above 2/3."""
    bins = [c < 1 / 3, (c >= 1 / 3) & (c < 2 / 3), c >= 2 / 3]
    points = [(float(np.median(c[b])), float(np.median(y[b]))) for b in bins if b.any()]
    return float(np.interp(x, [p[0] for p in points], [p[1] for p in points]))


def leave_one_out(c: np.ndarray, y: np.ndarray, predict: Any) -> dict[str, float]:
    """Each prompt's speed-up predicted from the other prompts' (how a shape would do on a prompt it has not
    seen): median and mean absolute error."""
    errors = [abs(predict(c[np.arange(len(c)) != j], y[np.arange(len(c)) != j], float(c[j])) - y[j])
              for j in range(len(c))]
    return {"median_abs_error": float(np.median(errors)), "mean_abs_error": float(np.mean(errors))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=Path(__file__).resolve().parent / "results" / "speculative_gpu.json")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--gguf", type=Path, default=None)
    args = ap.parse_args()
    result = json.loads(args.runs.read_text(encoding="utf-8"))
    texts, source = plain_texts(result, (args.gguf or find_smollm2_gguf()).resolve())
    rows = result["rows"]
    base = {(r["run"], r["kind"], r["prompt"]): r for r in rows if r["k"] == 0}
    per_prompt: list[dict[str, Any]] = []
    for kind, prompts in PROMPTS.items():
        for i, prompt in enumerate(prompts):
            on = [r for r in rows if r["k"] == args.k and r["kind"] == kind and r["prompt"] == i]
            per_prompt.append({
                "prompt": f"{kind}/{i}",
                "copy_fraction": observed_copy_fraction(prompt, texts[f"{kind}/{i}"]),
                "speedup_median": statistics.median(r["tokens_per_s"] / base[(r["run"], kind, i)]["tokens_per_s"]
                                                    for r in on),
                "tokens_per_step": sum(r["output_tokens"] for r in on) / sum(r["steps"] for r in on),
            })
    c = np.array([p["copy_fraction"] for p in per_prompt])
    fitted: dict[str, Any] = {}
    for target in ("speedup_median", "tokens_per_step"):
        y = np.array([p[target] for p in per_prompt])
        slope, intercept = np.polyfit(c, y, 1)
        resid = y - (intercept + slope * c)
        fitted[target] = {"base_speedup": float(intercept), "expected_speedup": float(intercept + slope),
                          "r2": float(1 - resid.var() / y.var()),
                          "median_abs_residual": float(np.median(np.abs(resid)))}
    loo = {name: leave_one_out(c, np.array([p["speedup_median"] for p in per_prompt]), f)
           for name, f in (("line", predict_line), ("curve through three bins", predict_bins))}
    declared_err = [abs(p["speedup_median"] - (DECLARED["base_speedup"] + (DECLARED["expected_speedup"]
                                                                          - DECLARED["base_speedup"])
                                                * p["copy_fraction"])) for p in per_prompt]
    for p in per_prompt:
        print(f"{p['prompt']:16s} copy {p['copy_fraction']:.2f}  speed-up x{p['speedup_median']:.2f}  "
              f"{p['tokens_per_step']:.2f} tok/step")
    for target, f in fitted.items():
        print(f"fit of {target}: base {f['base_speedup']:.2f}, expected {f['expected_speedup']:.2f} "
              f"(R^2 {f['r2']:.2f}, median |residual| {f['median_abs_residual']:.2f})")
    for name, e in loo.items():
        print(f"leave one out, {name}: median |error| {e['median_abs_error']:.2f}, mean {e['mean_abs_error']:.2f}")
    print(f"plain answers: {source}")
    print(f"declared 2.8 / 0.9: median |error| {statistics.median(declared_err):.2f}")
    out = {"bench": "speculative_declared", "runs": str(args.runs.name), "machine": result["machine"],
           "dtype": result["dtype"], "k": args.k, "plain_texts": source, "per_prompt": per_prompt,
           "fitted": fitted, "leave_one_out": loo, "declared_in_deployment_latency": DECLARED,
           "declared_median_abs_error": statistics.median(declared_err)}
    OUT.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"-> {OUT}")


if __name__ == "__main__":
    main()
