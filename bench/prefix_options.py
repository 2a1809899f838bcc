"""Router options on every variant of both traces (issue 5, item 2): is a change a gain everywhere or a trade?

For each setting of :class:`sovrouter.reuse.prefix.AffinitySettings` below, runs our router online at 8
replicas on ten variants (dev conversation trace, its halves, timestamps x0.8 and x1.2; the same five for the
FAST'25 synthetic trace in bench/data/) and prints, per variant, hit (% of the unbounded bound) / mean TTFT
change / p99 TTFT change vs the SGLang-style policy / skew. Writes bench/results/prefix_options.json.

Each setting is a change from the default ``AffinitySettings`` (long-wait penalty ``tail`` 0.3, compute price
10); ``tail=0`` is the earlier default.

    python bench/prefix_options.py [--trace FILE] [--synthetic FILE]      # ~2 min
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from sovrouter.reuse.prefix_policies import OursPolicy, make_policy, run_online, trace_settings
from sovrouter.reuse.prefix_sim import SimConfig, TraceRequest, load_trace, summarize

ROOT = Path(__file__).resolve().parents[1]
DEV = Path("/work/shared/data/prefix/mooncake_conversation.jsonl.gz")
SYNTHETIC = ROOT / "bench" / "data" / "mooncake_synthetic.jsonl.gz"

SETTINGS: dict[str, dict[str, Any]] = {  # changes from the default (tail 0.3, compute price 10)
    "default": {},
    "tail=0": {"tail": 0.0},  # the earlier default: long-wait penalty off
    "age_aware": {"age_aware": True},
    "price=30": {"compute_price": 30.0},
    "price=1": {"compute_price": 1.0},
    "price=50": {"compute_price": 50.0},
    "tail=0,price=1": {"tail": 0.0, "compute_price": 1.0},
    "tail=0,price=50": {"tail": 0.0, "compute_price": 50.0},
}


def _scaled(trace: list[TraceRequest], factor: float) -> list[TraceRequest]:
    return [dataclasses.replace(r, timestamp_ms=r.timestamp_ms * factor) for r in trace]


def _variants(name: str, tr: list[TraceRequest]) -> dict[str, list[TraceRequest]]:
    h = len(tr) // 2
    return {name: tr, f"{name} 1st half": tr[:h], f"{name} 2nd half": tr[h:],
            f"{name} x0.8": _scaled(tr, 0.8), f"{name} x1.2": _scaled(tr, 1.2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trace", type=Path, default=DEV)
    ap.add_argument("--synthetic", type=Path, default=SYNTHETIC)
    ap.add_argument("--replicas", type=int, default=8)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "prefix_options.json")
    args = ap.parse_args()
    cfg, n = SimConfig(), args.replicas
    variants = _variants("dev", load_trace(args.trace))
    if args.synthetic.is_file():
        variants.update(_variants("synthetic", load_trace(args.synthetic)))
    sglang = {}
    for v, tr in variants.items():
        run = run_online(tr, n, make_policy("sglang", n, cfg), cfg)
        sglang[v] = summarize(tr, run.served, run.busy_s, cfg.block_tokens).as_dict()
    results: dict[str, dict[str, Any]] = {}
    for sname, kw in SETTINGS.items():
        results[sname] = {}
        cells = []
        for v, tr in variants.items():
            pol = OursPolicy(n, cfg, dataclasses.replace(trace_settings(cfg), **kw))
            run = run_online(tr, n, pol, cfg)
            r = summarize(tr, run.served, run.busy_s, cfg.block_tokens).as_dict()
            sg = sglang[v]
            r["mean_ttft_change_vs_sglang"] = round(r["mean_ttft_s"] / sg["mean_ttft_s"] - 1, 4)
            r["p99_ttft_change_vs_sglang"] = round(r["p99_ttft_s"] / sg["p99_ttft_s"] - 1, 4)
            results[sname][v] = r
            cells.append(f"{v}: {100 * r['hit_fraction_of_bound']:.1f}/{100 * r['mean_ttft_change_vs_sglang']:+.1f}/"
                         f"{100 * r['p99_ttft_change_vs_sglang']:+.1f}/{r['skew']:.2f}")
        print(f"{sname:18s} " + "  ".join(cells), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"replicas": n, "settings": SETTINGS, "sglang": sglang, "results": results},
                                   indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
