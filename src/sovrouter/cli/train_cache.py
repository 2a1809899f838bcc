"""``sovrouter train-cache --pairs FILE --out DIR``: rebuild the semantic cache's pair verifier.

FILE is labelled gzip JSONL ``{"q1", "q2", "duplicate"}`` (the dev Quora pairs). Writes ``DIR/verifier.json``
(copy it to ``src/sovrouter/data/semantic_cache/`` to ship it) and ``DIR/training_report.json``. The verifier
reads a second embedding model (multilingual-e5-small) unless ``--no-alt``. With ``--vectors VDIR`` both models'
vectors are kept on disk there, so a rerun embeds nothing again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sovrouter.cache.training import ALT_EMBEDDER, VectorStore, load_labelled, train, write_artifact
from sovrouter.embed import E5Embedder, Embedder, MiniLMEmbedder
from sovrouter.errors import ConfigError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("train-cache", help="fit and calibrate the semantic cache's pair verifier")
    p.add_argument("--pairs", required=True, type=Path, help="labelled pairs, gzip JSONL")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for the embedding model")
    p.add_argument("--vectors", type=Path, default=None, help="folder to keep embeddings in between runs")
    p.add_argument("--no-alt", action="store_true", help="no second embedding model (pair features only)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.threads < 1:
        raise ConfigError("--threads must be at least 1")
    pairs = load_labelled(args.pairs)
    embedder = MiniLMEmbedder(threads=args.threads, batch_size=128)
    embed = embedder.embed if args.vectors is None else VectorStore(embedder.embed, args.vectors).embed
    alt: Embedder | None = None
    if not args.no_alt:
        e5 = E5Embedder()
        alt = e5 if args.vectors is None else VectorStore(e5.embed, args.vectors, embedder=ALT_EMBEDDER)
    verifier, report = train(pairs, embed, alt=alt)
    path = write_artifact(verifier, report, args.out)
    print(f"train-cache: threshold {verifier.threshold:.4f} ({report['calibration']}) -> {path}", file=sys.stderr)
    return 0
