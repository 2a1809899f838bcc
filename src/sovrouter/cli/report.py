"""``sovrouter report --workload DIR --decisions FILE [--json OUT]``: KPIs of a replay, next to the baselines.
``--json`` may be neither the decisions file nor a workload file (refused before any work)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sovrouter.errors import ConfigError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="KPIs of a replay's decisions (needs the workload's scores and labels)")
    p.add_argument("--workload", required=True, type=Path, help="workload directory (flat or shared layout)")
    p.add_argument("--decisions", required=True, type=Path, help="decisions JSONL written by `sovrouter replay`")
    p.add_argument("--json", type=Path, default=None, help="write the KPIs as JSON here")
    p.add_argument("--split", default=None, help="split folder in the shared layout (default: dev)")
    p.add_argument("--no-baselines", action="store_true", help="skip the baseline tables")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here so `sovrouter <other command>` does not pay for numpy and the report's imports.
    from sovrouter.fileio import atomic_text, check_not_input, check_output
    from sovrouter.replay.decisions import read_decisions
    from sovrouter.workload import resolve

    paths = resolve(args.workload, args.split)  # the inputs first: a missing workload is the error, not --json
    if args.json is not None:
        # --json = --decisions replaced the replay's decisions with the KPIs (found in review, 2026-11-28)
        check_not_input(args.json, args.decisions, what="the decisions file", flag="--json")
        check_not_input(args.json, *paths.input_files(), what="a file of the workload", flag="--json")
        check_output(args.json)
    from sovrouter.report.baselines import baselines
    from sovrouter.report.data import load_eval_data
    from sovrouter.report.kpi import kpi_report, validate
    from sovrouter.report.render import baseline_json, baseline_text, domain_text, kpi_text

    data = load_eval_data(paths)
    decisions = read_decisions(args.decisions)
    problems = validate(data, decisions)
    if problems:
        shown = "; ".join(problems[:5])
        raise ConfigError(f"decisions do not fit this workload ({len(problems)} problems): {shown}")
    report: dict[str, Any] = kpi_report(data, decisions)
    sections: list[str] = []
    if not args.no_baselines:
        events = [e.request_id for e in data.stream]
        records = sorted(data.requests)
        per_event = baselines(data, events, under_policy=True)
        per_record = baselines(data, records, under_policy=True)
        ignoring = baselines(data, records, under_policy=False)
        sections += [
            baseline_text("Baselines per stream event, under policy (the replay's denominator, no cache)",
                          per_event),
            baseline_text("README baselines recomputed, per request record, under policy", per_record),
            baseline_text("README baselines recomputed, per request record, ignoring policy", ignoring),
        ]
        report["baselines"] = {
            "per_event_under_policy": baseline_json(per_event),
            "per_record_under_policy": baseline_json(per_record),
            "per_record_ignoring_policy": baseline_json(ignoring),
        }
    print("\n\n".join([kpi_text(report), domain_text(report), *sections]))
    if args.json is not None:
        with atomic_text(args.json) as fh:
            fh.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return 0
