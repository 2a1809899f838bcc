"""``sovrouter recalibrate (--db RECORDS.sqlite | --records RECORDS.jsonl) [--signals SIGNALS.sqlite]
[--workload DIR] --out RECALIBRATION.json``: check the router's predicted quality against observed quality
(drift per slot: CUSUM + ECE), fit an isotonic (or Platt) correction per slot and per (slot, domain), and save
it as the artifact the router applies on top of its calibrated model. By default only the slots whose drift check
alarmed are refitted, and a map is kept only when it lowers the cross-validated calibration error."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sovrouter.errors import ConfigError
from sovrouter.evalloop.observations import observations
from sovrouter.evalloop.offline import load_records, offline_signals
from sovrouter.evalloop.recalibrate import detect_drift, drifted_slots, fit_recalibration, samples_from
from sovrouter.evalloop.signals import QualitySignal, stored_signals
from sovrouter.fileio import check_output
from sovrouter.workload import load_scores, resolve


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("recalibrate", help="fit a predicted-vs-observed quality correction for the router")
    p.add_argument("--db", type=Path, default=None, help="record store (SQLite)")
    p.add_argument("--records", type=Path, default=None, help="records JSONL (sovrouter replay --records)")
    p.add_argument("--signals", type=Path, default=None, help="signal store (SQLite)")
    p.add_argument("--workload", type=Path, default=None, help="workload dir: use its scores as offline signals")
    p.add_argument("--split", default=None, help="split folder of the workload (default: dev)")
    p.add_argument("--out", required=True, type=Path, help="recalibration artifact (JSON) to write")
    p.add_argument("--method", choices=("isotonic", "platt"), default="isotonic")
    p.add_argument("--min-n", type=int, default=50, help="fewest samples for a (slot, domain) map (default 50)")
    p.add_argument("--all-slots", action="store_true",
                   help="fit every slot (default: only the slots whose drift check alarmed)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.min_n < 2:  # a map needs samples to fit and hold out (an sklearn traceback on empty folds otherwise)
        raise ConfigError("--min-n must be at least 2")
    check_output(args.out)
    records = load_records(args.db, args.records)
    signals: list[QualitySignal] = stored_signals(args.signals)
    if args.workload is not None:
        signals += list(offline_signals(records, load_scores(resolve(args.workload, args.split))))
    seen = observations(records, signals)
    samples = samples_from(seen)
    if not samples:
        raise ConfigError("no request has both a predicted quality (router evidence) and an observed quality")
    status = detect_drift(samples)
    for d in status:
        print(f"drift {d.slot}|{d.domain}: n={d.n} predicted {d.mean_predicted:.3f} observed {d.mean_observed:.3f} "
              f"ECE {d.ece:.3f} CUSUM {d.cusum:.1f} -> {'ALARM' if d.alarm else 'ok'}", file=sys.stderr)
    slots = None if args.all_slots else drifted_slots(status)
    # drift is judged on the numbers the router acted on; the map is fitted on the raw ones it applies to
    recal = fit_recalibration(samples_from(seen, raw=True), args.method, args.min_n, slots=slots)
    recal.save(args.out)
    for key, g in recal.groups.items():
        print(f"recalibrated {key}: n={g.n} ECE {g.ece_before:.3f} -> {g.ece_after:.3f} (in-sample)",
              file=sys.stderr)
    print(f"recalibration: {len(recal.groups)} maps -> {args.out}", file=sys.stderr)
    return 0
