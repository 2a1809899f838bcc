"""``sovrouter replay --workload DIR --out DECISIONS.jsonl [--config FILE] [--records RECORDS.jsonl]``.

Neither output may be one of the files replay reads (the workload's, ``--config``) nor the other output; both
are checked before the replay and written atomically."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("replay", help="replay a workload's stream through the request path")
    p.add_argument("--workload", required=True, type=Path, help="workload directory (flat or shared layout)")
    p.add_argument("--out", required=True, type=Path, help="decisions JSONL to write (one line per event)")
    p.add_argument("--config", type=Path, default=None, help="settings file (default: shipped configuration)")
    p.add_argument("--split", default=None, help="split folder in the shared layout (default: dev)")
    p.add_argument("--records", type=Path, default=None, help="also export the per-request records as JSONL")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here so `sovrouter <other command>` does not pay for the pipeline's imports.
    from sovrouter.fileio import check_not_input, check_output
    from sovrouter.replay.decisions import write_decisions
    from sovrouter.replay.harness import replay_settings, run_replay
    from sovrouter.workload import load_replay_inputs, resolve

    paths = resolve(args.workload, args.split)  # the inputs first: a missing workload is the error, not --out
    config = [args.config] if args.config is not None else []
    for flag, out in (("--out", args.out), ("--records", args.records)):
        if out is not None:  # --out W/stream.jsonl.gz replaced the workload's stream (found in review, 2026-11-28)
            check_not_input(out, *paths.input_files(), what="a file of the workload", flag=flag)
            check_not_input(out, *config, what="the configuration file", flag=flag)
    if args.records is not None:  # --out = --records: the records replaced the decisions (same review)
        check_not_input(args.out, args.records, what="the --records file")
    for out in (args.out, args.records):  # before the replay, not after it
        if out is not None:
            check_output(out)
    inputs = load_replay_inputs(paths)
    settings = replay_settings(inputs, args.config)
    result = run_replay(inputs, settings, keep_records=args.records is not None)
    write_decisions(result.decisions, args.out)
    if result.records is not None:
        n = result.records.export_jsonl(args.records)
        result.records.close()
        print(f"records: {n} written to {args.records}", file=sys.stderr)
    s = result.summary()
    print(
        f"replay: {s['events']:.0f} events, {s['calls']:.0f} upstream calls, {s['refused']:.0f} refused "
        f"({s['errors']:.0f} errors), {s['cache_hits']:.0f} cache hits; decision_ms p50 "
        f"{s['decision_ms_p50']:.3f} p99 {s['decision_ms_p99']:.3f}; {s['wall_s']:.1f} s wall "
        f"({s['events_per_s']:.0f} events/s); data {inputs.paths.data} -> {args.out}",
        file=sys.stderr,
    )
    return 0
