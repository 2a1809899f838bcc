"""``sovrouter eval semantic-cache --pairs FILE --out DECISIONS.jsonl [--verifier FILE] [--threads N]``.

Loads every distinct ``q1`` of FILE (gzip JSONL ``{"id", "q1", "q2"}``) into a fresh cache of one tenant, looks
up each ``q2`` in file order and writes ``{"id", "hit", "matched"}`` per line (``id`` as the file wrote it, string
or number; the line index when absent). Gzip is recognised by content, so a plain file works too. Labels in the
file, if any, are never read, and nothing is fitted to it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sovrouter.cache.calibrate import read_pairs
from sovrouter.cache.evaluate import evaluate_pairs
from sovrouter.cache.verifier import PairVerifier
from sovrouter.embed import MiniLMEmbedder, named_embedder
from sovrouter.errors import ConfigError
from sovrouter.fileio import atomic_text, check_not_input, check_output, json_line


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("semantic-cache", help="label-free semantic-cache decisions over question pairs")
    p.add_argument("--pairs", required=True, type=Path, help="gzip JSONL of {id, q1, q2}")
    p.add_argument("--out", required=True, type=Path, help="decisions JSONL to write")
    p.add_argument("--verifier", type=Path, default=None, help="pair verifier artifact (default: the shipped one)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for the embedding model")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    if args.threads < 1:
        raise ConfigError("--threads must be at least 1")
    check_not_input(args.out, args.pairs)
    check_output(args.out)  # before the work (minutes on a large file), not after it
    pairs = read_pairs(args.pairs)
    verifier = PairVerifier.load(args.verifier)
    alt = named_embedder(verifier.alt_embedder) if verifier.alt_embedder else None
    decisions, kinds = evaluate_pairs(pairs, MiniLMEmbedder(threads=args.threads, batch_size=128), verifier, alt)
    with atomic_text(args.out) as fh:
        for d in decisions:
            fh.write(json_line(d))
    hits = sum(d["hit"] for d in decisions)
    print(f"semantic-cache: {len(decisions)} lookups, {hits} hits ({kinds}); "
          f"{time.perf_counter() - t0:.1f} s -> {args.out}", file=sys.stderr)
    return 0
