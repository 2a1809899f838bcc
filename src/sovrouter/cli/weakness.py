"""``sovrouter weakness (--db RECORDS.sqlite | --records RECORDS.jsonl | --decisions D.jsonl | --url URL)
[--signals SIGNALS.sqlite] [--workload DIR] --out DIR``: the weakness report (Markdown, JSON, PNG plots).

Quality signals come from a signal store (feedback, scorers, judge, shadow) and/or, in replay, from the
workload's score file joined with the records (labels are never read). With several gateway instances,
``--url`` reads every instance's records and signals from the shared database (``records.url``) instead of one
instance's files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from sovrouter.contracts import RequestRecord
from sovrouter.errors import ConfigError
from sovrouter.evalloop.observations import observations
from sovrouter.evalloop.offline import load_records, offline_signals, records_from_decisions
from sovrouter.evalloop.signals import QualitySignal, SignalStore, shared_signals, stored_signals
from sovrouter.evalloop.weakness import WeaknessSettings, analyse
from sovrouter.evalloop.weakness_report import write_report
from sovrouter.fileio import check_output_dir
from sovrouter.replay.decisions import read_decisions
from sovrouter.store.records import SQLiteRecordStore
from sovrouter.store.shared_records import read_all_shared
from sovrouter.store.sql import database_url
from sovrouter.workload import WorkloadPaths, load_replay_inputs, load_responses, load_scores, resolve


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("weakness", help="weakness report: slices where a model is worse than expected")
    p.add_argument("--db", type=Path, default=None, help="record store (SQLite)")
    p.add_argument("--records", type=Path, default=None, help="records JSONL (sovrouter replay --records)")
    p.add_argument("--decisions", type=Path, default=None,
                   help="a replay's decisions JSONL (with --workload; per-slot slices only)")
    p.add_argument("--url", default=None, help="the shared records database (records.url): every gateway "
                   "instance's records and quality signals")
    p.add_argument("--password-env", default=None, help="environment variable holding the database password")
    p.add_argument("--signals", type=Path, default=None, help="signal store (SQLite) with live quality signals")
    p.add_argument("--workload", type=Path, default=None, help="workload dir: use its scores as offline signals")
    p.add_argument("--split", default=None, help="split folder of the workload (default: dev)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--min-n", type=int, default=30, help="smallest slice tested (default 30)")
    p.add_argument("--min-gap", type=float, default=0.03, help="smallest gap reported as a weakness")
    p.add_argument("--alpha", type=float, default=0.05, help="family-wise error rate (Holm)")
    p.set_defaults(func=run)


def _shared(url: str, password_env: str | None) -> tuple[list[RequestRecord], list[QualitySignal]]:
    database = database_url(url, password_env, "records")
    try:
        return read_all_shared(database), shared_signals(database)
    except SQLAlchemyError as exc:
        raise ConfigError(f"records: cannot read the shared database ({type(exc).__name__})") from None


def _check_inputs(args: argparse.Namespace) -> WorkloadPaths | None:
    """Each input named, present and of the right kind, before the output folder is checked: ``--out wk``
    without ``--db`` left an empty ``wk/`` (found in review, 2026-11-28). The SQLite stores are opened
    read-only (a file that is not the store is refused, untouched). Returns the workload's paths, if given."""
    if args.decisions is not None and args.workload is None:
        raise ConfigError("--decisions needs --workload (requests, responses and scores)")
    if args.decisions is None and args.url is None and args.db is None and args.records is None:
        raise ConfigError("give --db (record store), --records (records JSONL), --decisions (with --workload) "
                          "or --url (shared records database)")
    for given, what in ((args.decisions, "decisions file"), (args.records, "records file")):
        if given is not None and not given.is_file():
            raise ConfigError(f"no {what} at {given}")
    if args.decisions is None and args.url is None and args.db is not None:
        SQLiteRecordStore(args.db, read_only=True).close()
    if args.signals is not None:
        SignalStore(args.signals, read_only=True).close()
    if args.signals is None and args.url is None and args.workload is None:
        raise ConfigError("no quality signals: give --signals and/or --workload")
    return resolve(args.workload, args.split) if args.workload is not None else None


def run(args: argparse.Namespace) -> int:
    if args.min_n < 2 or not 0.0 < args.alpha < 1.0 or not 0.0 <= args.min_gap < 1.0:  # NaN fails each too
        raise ConfigError("--min-n must be at least 2, --alpha in (0, 1), --min-gap in [0, 1)")
    paths = _check_inputs(args)
    check_output_dir(args.out)  # before the reading and the analysis; created when the report is written
    shared: list[QualitySignal] = []
    if args.decisions is not None and paths is not None:
        records = records_from_decisions(read_decisions(args.decisions), load_replay_inputs(paths))
    elif args.url is not None:
        records, shared = _shared(args.url, args.password_env)
    else:
        records = load_records(args.db, args.records)
    signals: list[QualitySignal] = stored_signals(args.signals) + shared
    if paths is not None:
        responses = load_responses(paths) if paths.file("responses") is not None else None
        signals += list(offline_signals(records, load_scores(paths), responses))
    if not signals:
        given = " in the given signal store (it fills from /v1/feedback, shadow sampling and the format checks)" \
            if args.signals is not None or args.url is not None else ": give --signals and/or --workload"
        raise ConfigError("no quality signals" + given)
    obs = observations(records, signals)
    report = analyse(obs, WeaknessSettings(min_n=args.min_n, min_gap=args.min_gap, alpha=args.alpha))
    written = write_report(report, args.out)
    print(f"weakness: {len(obs)} observations, {len(report.slices)} slices, {len(report.weaknesses)} weaknesses "
          f"-> {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0
