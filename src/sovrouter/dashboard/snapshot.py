"""Render the dashboard of a replay to a static HTML file (for docs and offline review)::

    python -m sovrouter.dashboard.snapshot --records RECORDS.jsonl --workload DIR --out dashboard.html

Signals: the workload's scores joined with the records (offline), regenerations recomputed by the same
per-tenant index the live loop uses (prompt text from the workload's requests, hashed, never shown). The output
is checked before the work (a directory, an input file, or a folder that cannot be created is a one-line error,
exit 2) and written atomically (a missing folder is created then)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sovrouter.catalog import Catalog
from sovrouter.dashboard.data import build
from sovrouter.dashboard.render import render
from sovrouter.errors import SovrouterError
from sovrouter.evalloop.offline import load_records, offline_signals
from sovrouter.evalloop.regeneration import RegenerationIndex
from sovrouter.evalloop.signals import SignalStore
from sovrouter.fileio import atomic_text, check_not_input, check_output
from sovrouter.intake import normalize_chat
from sovrouter.workload import load_requests, load_responses, load_scores, resolve

PROG = "python -m sovrouter.dashboard.snapshot"


def _snapshot(args: argparse.Namespace) -> str:
    paths = resolve(args.workload, args.split)
    check_not_input(args.out, args.records, what="the records file")
    check_not_input(args.out, *paths.input_files(), what="a file of the workload")
    check_output(args.out)  # before the work: a missing folder failed with a traceback after it (review, 2026-11-28)
    records = load_records(jsonl=args.records)
    store = SignalStore()
    store.add_many(offline_signals(records, load_scores(paths), load_responses(paths)))
    requests = load_requests(paths)
    index = RegenerationIndex(store=store)
    for rec in records:
        wreq = requests.get(rec.external_id or "")
        if wreq is not None:
            req = normalize_chat(wreq.chat_body(), tenant=rec.tenant, request_id=rec.request_id,
                                 arrived_ms=rec.arrived_ms, recorded=True)
            index.observe(req, rec)
    data = build(records, store.signals(), store.regenerations(), Catalog.load(paths.catalog))
    with atomic_text(args.out) as fh:  # the file appears whole, its folder created then
        fh.write(render(data))
    return f"dashboard: {data.requests} requests -> {args.out}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=PROG)
    ap.add_argument("--records", required=True, type=Path)
    ap.add_argument("--workload", required=True, type=Path)
    ap.add_argument("--split", default=None)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    try:
        print(_snapshot(args))
    except SovrouterError as exc:  # as the sovrouter command does: exit 2 and one line, not a traceback
        print(f"{PROG}: {exc.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
