"""Replay throughput with the shipped configuration: wall time, events/s and the router's decision_ms.

    python bench/replay_speed.py [--workload DIR] [--runs 3] [--config FILE]

Default workload: the shared dev split (6,122 events) when present, else a synthetic one (``testing_workload``).
Writes ``bench/results/replay_speed.json``. The held-out split has ~2,600 events, so its replay takes about
0.43x the dev figure.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from sovrouter.replay.harness import replay_settings, run_replay
from sovrouter.testing_workload import write_workload
from sovrouter.workload import load_replay_inputs

SHARED = Path("/work/shared/data/workload")
RESULTS = Path(__file__).resolve().parent / "results" / "replay_speed.json"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", type=Path, default=None)
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workload = args.workload
        if workload is None:
            workload = SHARED if (SHARED / "dev" / "stream.jsonl.gz").is_file() else Path(tmp) / "wl"
            if workload != SHARED:
                write_workload(workload, n_requests=2000, seed=1)
        t0 = time.perf_counter()
        inputs = load_replay_inputs(workload)
        load_s = time.perf_counter() - t0
        settings = replay_settings(inputs, args.config)
        runs = []
        for _ in range(args.runs):
            t1 = time.perf_counter()  # includes assembling the pipeline (model loading, if any)
            result = run_replay(inputs, settings)
            total = time.perf_counter() - t1
            runs.append({**result.summary(), "total_s": total})
    med = statistics.median(r["total_s"] for r in runs)
    out = {
        "workload": str(workload),
        "events": len(inputs.stream),
        "settings": {"router": settings.router, "detector": settings.detector, "policy": settings.policy,
                     "exact_cache": settings.cache.exact_enabled, "semantic_cache": settings.cache.semantic_enabled},
        "load_s": load_s,
        "median_replay_s": med,
        "median_events_per_s": len(inputs.stream) / med if med > 0 else 0.0,
        "decision_ms_p50": statistics.median(r["decision_ms_p50"] for r in runs),
        "decision_ms_p99": statistics.median(r["decision_ms_p99"] for r in runs),
        "runs": runs,
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"replay of {out['events']} events ({workload}): load {load_s:.2f} s, replay median {med:.2f} s "
          f"({out['median_events_per_s']:.0f} events/s); decision_ms p50 {out['decision_ms_p50']:.3f} "
          f"p99 {out['decision_ms_p99']:.3f}; settings {out['settings']} -> {RESULTS}")


if __name__ == "__main__":
    main()
