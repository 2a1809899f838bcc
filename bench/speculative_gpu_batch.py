"""What a decode step costs on a GPU as the batch grows, and so where speculative decoding stops paying.

    python bench/speculative_gpu_batch.py [--shapes smollm2-135m:float32,smollm2-135m:bfloat16,...]
                                          [--batches 1,4,16,64,256] [--k 3,10] [--context 512] [--reps 10]
                                          [--acceptance bench/results/speculative_gpu.json] [--out FILE]
    python bench/speculative_gpu_batch.py --summarise RUN.json [RUN.json ...] [--out FILE]

``speculative_gpu.py`` measured prompt lookup one request at a time on an H200, where a step costs the same for one
token or eleven, so the speed-up equals the tokens gained per step. A server decodes many requests per step. With
B requests each verifying k drafted tokens a step feeds B x (k + 1) tokens, and once that is enough work to make the
step compute-bound, rejected drafts cost time again: the speed-up becomes

    tokens_per_step(k) x cost(B, 1) / cost(B, k + 1)

This bench measures ``cost(B, n)``, one decode step over B sequences with n new tokens each after a ``--context``
token prompt (KV cache cropped back after each step, logits reduced to the greedy tokens on the host, as a
verification needs), for three model shapes: SmolLM2-135M (the model the other benches run), Qwen2.5-1.5B and
Llama-3.1-8B. The weights are random: a step's cost does not depend on their values, and no weights need to travel
to the GPU machine (the acceptance comes from the real SmolLM2 runs). Two clocks per cell, medians over ``--reps``:

- ``wall_ms``: eager PyTorch as written (a kernel launch per operation from Python: the setting of the single-stream
  runs);
- ``kernel_ms``: the sum of the step's GPU kernel times (torch.profiler), what a step costs once launches are
  captured in a CUDA graph as serving engines do; this is the clock on which batching turns a step compute-bound.

The speed-up table applies each task kind's tokens per step (deterministic, from ``--acceptance``) to both clocks.
It assumes every sequence of the batch drafts k tokens each step (an upper bound on the cost; a sequence with no
lookup match would feed fewer). Attention runs as transformers' ``sdpa`` does: a one-token step uses the cache as
stored, a masked multi-token step copies the key/value heads up to the query heads first (``repeat_kv``), which a
paged-attention engine does not, so the verification cost here grows faster with batch x context than an
engine's (docs/benchmarks.md, "Caveat"). Needs torch and transformers only. Writes JSON (default
bench/results/speculative_gpu_batch.json). ``--summarise`` joins several runs' files: medians per cell over the
runs, each kind's speed-up recomputed from them, the largest batch at which prompt lookup still pays (the value a
deployment declares as ``speculative.max_batch``), and the tables of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoModelForCausalLM, DynamicCache, LlamaConfig, Qwen2Config

OUT = Path(__file__).resolve().parent / "results" / "speculative_gpu_batch.json"
ACCEPTANCE = Path(__file__).resolve().parent / "results" / "speculative_gpu.json"
warnings.filterwarnings("ignore", category=FutureWarning)


def shape_config(name: str) -> Any:
    """The published architectures (no weights): SmolLM2-135M as in the package's GGUF, Qwen2.5-1.5B, Llama-3.1-8B."""
    if name == "smollm2-135m":
        return LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                           num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                           rope_theta=100000.0, tie_word_embeddings=True)
    if name == "qwen2.5-1.5b":
        return Qwen2Config(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                           num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768,
                           rope_theta=1000000.0, tie_word_embeddings=True)
    if name == "llama3.1-8b":
        return LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                           num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
                           rope_theta=500000.0, tie_word_embeddings=False)
    if name == "tiny":  # for a quick check on a CPU
        return LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096)
    raise SystemExit(f"unknown shape {name!r}")


def build(name: str, dtype: str, device: str) -> Any:
    cfg = shape_config(name)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=getattr(torch, dtype), attn_implementation="sdpa")
    return model.eval()


def kernel_ms(prof: Any, gpu: bool) -> float | None:
    """Summed duration of the profiled GPU kernels (on a CPU run: summed operator self time), in ms; None if the
    profiler recorded none."""
    from torch.autograd import DeviceType

    kind = DeviceType.CUDA if gpu else DeviceType.CPU
    total = 0.0
    for ev in prof.events():
        if ev.device_type == kind:
            total += float(ev.time_range.elapsed_us()) if gpu else float(ev.self_cpu_time_total)
    return total / 1000.0 if total > 0 else None


def verify_step(model: Any, feed: torch.Tensor, cache: Any) -> None:
    """One verification step: n new tokens per sequence, greedy tokens to the host, the cache cropped back."""
    logits = model(feed, past_key_values=cache, use_cache=True).logits
    logits.argmax(dim=-1).cpu()  # the greedy tokens on the host, where drafts are checked
    cache.crop(-feed.shape[1])


@torch.inference_mode()
def step_costs(model: Any, batch: int, ns: list[int], context: int, reps: int, device: str) -> dict[int, Any]:
    """Median wall and kernel time of one decode step over ``batch`` sequences feeding n tokens each."""
    gpu = device.startswith("cuda")
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    vocab = model.config.vocab_size
    gen = torch.Generator(device="cpu").manual_seed(batch)
    prompt = torch.randint(0, vocab, (batch, context), generator=gen).to(device)
    cache = DynamicCache()
    for start in range(0, context, 128):  # prefill in chunks: bounded activations at large batches
        model(prompt[:, start:start + 128], past_key_values=cache, use_cache=True, logits_to_keep=1)
    sync()
    out: dict[int, Any] = {}
    for n in ns:
        feed = torch.randint(0, vocab, (batch, n), generator=gen).to(device)
        for _ in range(2):
            verify_step(model, feed, cache)
        walls = []
        for _ in range(reps):
            sync()
            t0 = time.perf_counter()
            verify_step(model, feed, cache)
            sync()
            walls.append((time.perf_counter() - t0) * 1000.0)
        activities = [torch.profiler.ProfilerActivity.CUDA] if gpu else [torch.profiler.ProfilerActivity.CPU]
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(reps):
                verify_step(model, feed, cache)
            sync()
        kern = kernel_ms(prof, gpu)
        out[n] = {"wall_ms": statistics.median(walls), "wall_ms_all": walls,
                  "kernel_ms": kern / reps if kern is not None else None}
    return out


def speedups(cells: dict[str, Any], acceptance: dict[str, Any], ks: list[int]) -> dict[str, Any]:
    """Per task kind and batch: tokens_per_step(k) x cost(B, 1) / cost(B, k + 1), on both clocks."""
    table: dict[str, Any] = {}
    for kind, e in acceptance.items():
        row: dict[str, Any] = {}
        for b, by_n in cells.items():
            for k in ks:
                tps = e[f"k{k}"]["tokens_per_step"]
                row[f"B{b}/k{k}"] = {clock: tps * by_n["1"][clock] / by_n[str(k + 1)][clock]
                                     if by_n["1"][clock] and by_n[str(k + 1)][clock] else None
                                     for clock in ("wall_ms", "kernel_ms")}
        table[kind] = row
    return table


def pays_up_to(row: dict[str, Any], k: int, clock: str) -> int | None:
    """Largest batch B such that prompt lookup with k drafted tokens pays (> 1) at every batch up to B."""
    best = None
    for key in sorted((key for key in row if key.endswith(f"/k{k}")), key=lambda key: int(key[1:].split("/")[0])):
        value = row[key][clock]
        if value is None or value <= 1.0:
            break
        best = int(key[1:].split("/")[0])
    return best


def summarise(paths: list[Path], out: Path) -> None:
    runs = [json.loads(p.read_text()) for p in paths]
    acc_path = Path(__file__).resolve().parent / "results" / (runs[0]["acceptance_from"] or "speculative_gpu.json")
    acceptance = json.loads(acc_path.read_text())["by_kind"]
    ks = sorted({int(key.split("/k")[1]) for r in runs for s in r["shapes"].values()
                 for row in s["speedup_by_kind"].values() for key in row})
    shapes: dict[str, Any] = {}
    for spec, first in runs[0]["shapes"].items():
        cells = {b: {n: {clock: statistics.median(r["shapes"][spec]["cells"][b][n][clock] for r in runs)
                         for clock in ("wall_ms", "kernel_ms")}
                     | {"kernel_ms_runs": [r["shapes"][spec]["cells"][b][n]["kernel_ms"] for r in runs]}
                     for n in by_b} for b, by_b in first["cells"].items()}
        table = speedups(cells, acceptance, ks)
        shapes[spec] = {"parameters": first["parameters"], "cells": cells, "speedup_by_kind": table,
                        "plain_tokens_per_s_kernel": {b: int(b) / c["1"]["kernel_ms"] * 1000.0
                                                      for b, c in cells.items()},
                        "pays_up_to_batch_kernel": {kind: {f"k{k}": pays_up_to(row, k, "kernel_ms") for k in ks}
                                                    for kind, row in table.items()}}
        batches = list(cells)
        print(f"\n{spec} ({first['parameters'] / 1e6:.0f}M): kernel ms per step, n = 1 / 4 / 11 tokens per sequence")
        print("| B | " + " | ".join(batches) + " |")
        print("|---|" + "---|" * len(batches))
        print("| ms | " + " | ".join(" / ".join(f"{cells[b][n]['kernel_ms']:.1f}" for n in cells[b]) for b in batches)
              + " |")
        print("| plain tok/s | " + " | ".join(f"{shapes[spec]['plain_tokens_per_s_kernel'][b]:,.0f}" for b in batches)
              + " |")
        for kind, row in table.items():
            print(f"| {kind} | " + " | ".join(" / ".join(f"{row[f'B{b}/k{k}']['kernel_ms']:.2f}" for k in ks)
                                              for b in batches)
                  + f" | pays up to {shapes[spec]['pays_up_to_batch_kernel'][kind]}")
    result = {"bench": "speculative_gpu_batch", "runs": [r["command"] for r in runs], "machine": runs[0]["machine"],
              "torch": runs[0]["torch"], "transformers": runs[0]["transformers"], "method": runs[0]["method"],
              "combined": "median per cell over the runs", "acceptance_from": acc_path.name, "shapes": shapes,
              "raw_runs": runs}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"-> {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--summarise", nargs="+", type=Path, default=None, help="join these runs' JSON files")
    ap.add_argument("--shapes", default="smollm2-135m:float32,smollm2-135m:bfloat16,qwen2.5-1.5b:bfloat16,"
                                        "llama3.1-8b:bfloat16")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batches", default="1,4,16,64,256")
    ap.add_argument("--k", default="3,10", help="drafted tokens per step (a step feeds k + 1 tokens)")
    ap.add_argument("--context", type=int, default=512)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--acceptance", type=Path, default=ACCEPTANCE)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.summarise:
        summarise(args.summarise, args.out)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    ks = [int(x) for x in args.k.split(",")]
    ns = [1, *[k + 1 for k in ks]]
    batches = [int(x) for x in args.batches.split(",")]
    acceptance = json.loads(args.acceptance.read_text())["by_kind"] if args.acceptance.exists() else {}
    t_start = time.perf_counter()
    shapes: dict[str, Any] = {}
    gpu = args.device.startswith("cuda")
    machine = torch.cuda.get_device_name(0) if gpu else f"CPU, {torch.get_num_threads()} threads"

    def write() -> dict[str, Any]:  # after every shape, so a run cut short keeps what it measured
        result = {
            "bench": "speculative_gpu_batch",
            "command": f"python bench/speculative_gpu_batch.py --shapes {args.shapes} --batches {args.batches} --k "
                       f"{args.k} --context {args.context} --reps {args.reps} --device {args.device}",
            "machine": machine, "torch": torch.__version__, "transformers": transformers.__version__,
            "method": "random weights of the published shapes; one decode step over B sequences feeding n tokens "
                      "after a context of random tokens (DynamicCache, cropped back after each step); logits "
                      "reduced to greedy tokens on the host; medians over reps; kernel_ms = summed GPU kernel "
                      "time (torch.profiler), the step under CUDA graphs; speed-up = tokens_per_step(k) from the "
                      "acceptance file x cost(B,1) / cost(B,k+1)",
            "acceptance_from": str(args.acceptance.name) if acceptance else None,
            "total_s": time.perf_counter() - t_start,
            "shapes": shapes,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        return result

    for spec in args.shapes.split(","):
        name, dtype = spec.split(":")
        t0 = time.perf_counter()
        model = build(name, dtype, args.device)
        params = sum(p.numel() for p in model.parameters())
        print(f"{spec}: {params / 1e6:.0f}M parameters, built in {time.perf_counter() - t0:.1f} s", flush=True)
        cells: dict[str, Any] = {}
        for b in batches:
            try:
                by_n = step_costs(model, b, ns, args.context, args.reps, args.device)
            except torch.OutOfMemoryError:
                print(f"  B={b}: out of memory, larger batches skipped", flush=True)
                torch.cuda.empty_cache()
                break
            cells[str(b)] = {str(n): v for n, v in by_n.items()}
            print(f"  B={b:4d} " + "  ".join(f"n={n}: wall {v['wall_ms']:.1f} ms kernel {v['kernel_ms'] or 0:.1f} ms"
                                             for n, v in by_n.items()), flush=True)
        shapes[spec] = {"parameters": params, "cells": cells,
                        "plain_tokens_per_s": {b: {clock: int(b) / by_b["1"][clock] * 1000.0
                                                   if by_b["1"][clock] else None
                                                   for clock in ("wall_ms", "kernel_ms")}
                                               for b, by_b in cells.items()},
                        "speedup_by_kind": speedups(cells, acceptance, ks)}
        del model
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
        write()
    for spec, s in shapes.items():
        for kind, row in s["speedup_by_kind"].items():
            print(f"{spec:24s} {kind:14s} " + " ".join(f"{key}: {v['wall_ms'] or 0:.2f}/{v['kernel_ms'] or 0:.2f}"
                                                       for key, v in row.items()))
    print(f"-> {args.out} ({write()['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
