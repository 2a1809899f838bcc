"""Render the dashboard of a replay to a static HTML file (for docs and offline review)::

    python -m sovrouter.dashboard.snapshot --records RECORDS.jsonl --workload DIR --out dashboard.html

Signals: the workload's scores joined with the records (offline), regenerations recomputed by the same
per-tenant index the live loop uses (prompt text from the workload's requests, hashed, never shown)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sovrouter.catalog import Catalog
from sovrouter.dashboard.data import build
from sovrouter.dashboard.render import render
from sovrouter.evalloop.offline import load_records, offline_signals
from sovrouter.evalloop.regeneration import RegenerationIndex
from sovrouter.evalloop.signals import SignalStore
from sovrouter.intake import normalize_chat
from sovrouter.workload import load_requests, load_responses, load_scores, resolve


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sovrouter.dashboard.snapshot")
    ap.add_argument("--records", required=True, type=Path)
    ap.add_argument("--workload", required=True, type=Path)
    ap.add_argument("--split", default=None)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    records = load_records(jsonl=args.records)
    paths = resolve(args.workload, args.split)
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
    args.out.write_text(render(data), encoding="utf-8")
    print(f"dashboard: {data.requests} requests -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
