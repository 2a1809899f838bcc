"""Prompt-lookup speculative decoding on a GPU: the same SmolLM2-135M-Instruct weights and prompts as
``speculative.py`` (llama.cpp on this box's CPU), decoded with PyTorch on and off, by task kind.

    python bench/speculative_gpu.py --gguf SmolLM2-135M-Instruct.Q4_1.gguf [--device cuda] [--dtype float32]
                                    [--runs 2] [--max-tokens 96] [--k 3,10] [--out FILE]

Why a second bench: on a CPU a decode step is compute-bound, so verifying k drafted tokens costs about k steps and
prompt lookup was at best even there (docs/benchmarks.md). Speculation pays where a step costs the same for one
token or eleven: a GPU, whose decode steps are bound by memory traffic and kernel launches. The weights are the
package's GGUF, dequantised by transformers (``gguf_file=``), so the model is the one the CPU bench runs.

The decoding loop is written out here (greedy, KV cache cropped after each verification) so that plain and
lookup decoding run the same code and every drafted and accepted token is counted: each step feeds the last
token plus up to k tokens proposed by prompt lookup (the earliest earlier occurrence of the last 2-gram, else
1-gram, in prompt + output, as llama.cpp's ``LlamaPromptLookupDecoding``), keeps the longest drafted prefix that
equals the model's own greedy choices and one token more. Plain decoding is the same loop with k = 0; for one
prompt its text is checked against ``model.generate`` (greedy). Arms run back to back per prompt, their order
rotated per prompt and run. Needs torch, transformers, accelerate and gguf, nothing of sovrouter, so it runs on a
bare GPU machine (here: ``pip install gguf accelerate``, bench-only, not project dependencies). The end-of-turn id
is read from the GGUF itself. Writes JSON (default bench/results/speculative_gpu.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import transformers
from speculative_prompts import COPY_HEAVY, PROMPTS
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

OUT = Path(__file__).resolve().parent / "results" / "speculative_gpu.json"
MAX_NGRAM = 2
warnings.filterwarnings("ignore", category=FutureWarning)  # transformers renames past_key_values


def lookup(ids: list[int], k: int, max_ngram: int = MAX_NGRAM) -> list[int]:
    """Up to ``k`` tokens that followed the earliest earlier occurrence of the last n-gram (n = max_ngram..1)."""
    n_ids = len(ids)
    for n in range(min(max_ngram, n_ids - 1), 0, -1):
        tail = ids[-n:]
        for start in range(n_ids - n):
            if ids[start:start + n] == tail:
                follow = ids[start + n:start + n + k]
                if follow:
                    return follow
    return []


@torch.inference_mode()
def decode(model: Any, prompt: list[int], max_tokens: int, k: int, eos: int, device: str) -> dict[str, Any]:
    """Greedy decoding of ``prompt``; ``k`` > 0 drafts up to k tokens a step by prompt lookup."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t0 = time.perf_counter()
    cache = DynamicCache()
    logits = model(torch.tensor([prompt], device=device), past_key_values=cache, use_cache=True).logits
    nxt = int(logits[0, -1].argmax())
    ids, out = list(prompt), []
    steps = drafted = accepted = 0
    while nxt != eos and len(out) < max_tokens:
        out.append(nxt)
        ids.append(nxt)
        if len(out) == max_tokens:
            break
        draft = lookup(ids, min(k, max_tokens - len(out))) if k else []
        logits = model(torch.tensor([[nxt, *draft]], device=device), past_key_values=cache, use_cache=True).logits
        greedy = logits[0].argmax(dim=-1).tolist()
        steps += 1
        n_ok = 0
        while n_ok < len(draft) and draft[n_ok] == greedy[n_ok]:
            n_ok += 1
        drafted += len(draft)
        accepted += n_ok
        rejected = len(draft) - n_ok  # the fed token and the accepted drafts stay in the cache
        if rejected:
            cache.crop(-rejected)  # a negative count removes that many (5.17 and 5.24 accept it; 5.24 refuses a length)
        kept = draft[:n_ok]
        if eos in kept:  # the model chose to stop inside the draft
            kept = kept[:kept.index(eos)]
            nxt = eos
        else:
            nxt = greedy[n_ok]  # the model's own token after the accepted drafts (fed next step)
        out.extend(kept)
        ids.extend(kept)
    sync()
    wall = time.perf_counter() - t0
    return {"tokens": out, "wall_s": wall, "output_tokens": len(out), "tokens_per_s": len(out) / wall,
            "steps": steps + 1, "drafted": drafted, "accepted": accepted}


def load(gguf: Path, device: str, dtype: str) -> tuple[Any, Any, int]:
    """Tokenizer, model and the end-of-turn token id. The id is read from the GGUF's own metadata, as llama.cpp
    does: transformers 5.17 maps this file's eos to ``<|im_start|>`` (5.24 to ``<|im_end|>``, the file's), and
    decoding then ran on past the end of the answer."""
    from gguf import GGUFReader

    field = GGUFReader(gguf).fields["tokenizer.ggml.eos_token_id"]
    eos = int(field.parts[field.data[0]][0])
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=getattr(torch, dtype))
    return tok, model.to(device).eval(), eos


def prompt_ids(tok: Any, text: str) -> list[int]:
    enc = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                  return_dict=True)
    return list(enc["input_ids"])


def generate_check(model: Any, eos: int, prompt: list[int], mine: list[int], max_tokens: int,
                   device: str) -> bool:
    """Does the hand-written loop (k = 0) give ``model.generate``'s greedy tokens?"""
    with torch.inference_mode():
        ref = model.generate(torch.tensor([prompt], device=device), max_new_tokens=max_tokens, do_sample=False,
                             eos_token_id=eos, pad_token_id=eos)
    theirs = [t for t in ref[0, len(prompt):].tolist() if t != eos]
    return theirs == mine


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def summarise(rows: list[dict[str, Any]], ks: list[int]) -> dict[str, Any]:
    by_kind: dict[str, Any] = {}
    for kind in PROMPTS:
        base = {(r["run"], r["prompt"]): r for r in rows if r["kind"] == kind and r["k"] == 0}
        entry: dict[str, Any] = {"copy_heavy": kind in COPY_HEAVY,
                                 "tokens_per_s_off": median([r["tokens_per_s"] for r in base.values()])}
        for k in ks:
            on = [r for r in rows if r["kind"] == kind and r["k"] == k]
            drafted = sum(r["drafted"] for r in on)
            entry[f"k{k}"] = {
                "tokens_per_s_on": median([r["tokens_per_s"] for r in on]),
                "speedup_median": median([r["tokens_per_s"] / base[(r["run"], r["prompt"])]["tokens_per_s"]
                                          for r in on]),
                "acceptance_pooled": sum(r["accepted"] for r in on) / drafted if drafted else None,
                "tokens_per_step": sum(r["output_tokens"] for r in on) / sum(r["steps"] for r in on),
                "identical_text_share": sum(r["tokens"] == base[(r["run"], r["prompt"])]["tokens"] for r in on)
                / len(on),
            }
        by_kind[kind] = entry
    return by_kind


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", type=Path, required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--k", default="3,10", help="drafted tokens per step, comma-separated (0 = plain is always run)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch (CPU runs)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ks = [int(x) for x in args.k.split(",") if int(x) > 0]
    t0 = time.perf_counter()
    tok, model, eos = load(args.gguf.resolve(), args.device, args.dtype)
    load_s = time.perf_counter() - t0
    prompts = {kind: [prompt_ids(tok, p) for p in ps] for kind, ps in PROMPTS.items()}
    first = prompts["rewrite"][0]
    for k in [0, *ks]:  # warm-up (kernels, allocator), not recorded
        decode(model, first, 16, k, eos, args.device)
    check = generate_check(model, eos, first, decode(model, first, args.max_tokens, 0, eos, args.device)["tokens"],
                           args.max_tokens, args.device)
    print(f"loaded in {load_s:.1f} s; hand-written loop equals model.generate: {check}", flush=True)
    arms = [0, *ks]
    rows: list[dict[str, Any]] = []
    for run in range(args.runs):
        for kind, ps in prompts.items():
            for i, ids in enumerate(ps):
                shift = (run + i) % len(arms)
                for k in arms[shift:] + arms[:shift]:
                    r = decode(model, ids, args.max_tokens, k, eos, args.device)
                    rows.append({"run": run, "kind": kind, "prompt": i, "k": k, "prompt_tokens": len(ids), **r})
                line = "  ".join(f"k={r['k']}: {r['tokens_per_s']:.0f} tok/s"
                                 + (f" acc {r['accepted']}/{r['drafted']}" if r["k"] else "")
                                 for r in sorted(rows[-len(arms):], key=lambda r: r["k"]))
                print(f"run {run} {kind:14s} #{i} {line}", flush=True)
    by_kind = summarise(rows, ks)
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None
    result = {
        "bench": "speculative_gpu",
        "command": f"python bench/speculative_gpu.py --gguf {args.gguf.name} --device {args.device} --dtype "
                   f"{args.dtype} --runs {args.runs} --max-tokens {args.max_tokens} --k {args.k}",
        "machine": gpu or f"{platform.machine()} CPU, torch threads {torch.get_num_threads()}",
        "torch": torch.__version__, "transformers": transformers.__version__, "model": args.gguf.name,
        "eos_token_id": eos, "dtype": args.dtype, "load_s": load_s,
        "loop_equals_generate": check,
        "method": "hand-written greedy loop with a DynamicCache cropped after each verification; k = 0 is plain "
                  "decoding; prompt lookup as llama.cpp's (max n-gram 2, earliest match); arms back to back per "
                  "prompt, order rotated; tokens/s = output tokens / wall time incl. prefill",
        "by_kind": by_kind,
        "plain_texts": {f"{r['kind']}/{r['prompt']}": tok.decode(r["tokens"]) for r in rows
                        if r["run"] == 0 and r["k"] == 0},
        "rows": [{k: v for k, v in r.items() if k != "tokens"} | {"n_tokens": len(r["tokens"])} for r in rows],
    }
    for kind, e in by_kind.items():
        print(f"{kind:14s} off {e['tokens_per_s_off']:.0f} tok/s  " + "  ".join(
            f"k={k}: x{e[f'k{k}']['speedup_median']:.2f} acc {e[f'k{k}']['acceptance_pooled'] or 0:.2f} "
            f"{e[f'k{k}']['tokens_per_step']:.2f} tok/step same {e[f'k{k}']['identical_text_share']:.2f}"
            for k in ks))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
