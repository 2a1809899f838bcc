"""``sovrouter demo``: the gateway with a real local model (SmolLM2 via llama.cpp) and recorded upstreams, a mix
of sample requests through the official ``openai`` client, and a table of routes, cost and latency."""

from __future__ import annotations

import argparse
import signal
import types
from pathlib import Path

from sovrouter.demo.runner import DemoOptions, run_demo


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run the end-to-end demo on loopback (one to two minutes)")
    p.add_argument("--latency-scale", type=float, default=0.05,
                   help="playback latency = catalog latency profile x this (default 0.05)")
    p.add_argument("--max-tokens", type=int, default=64, help="max_tokens sent with every request (default 64)")
    p.add_argument("--limit", type=int, default=None, help="send only the first N requests of the sample")
    p.add_argument("--local-threads", type=int, default=1, help="llama.cpp threads (default 1)")
    p.add_argument("--state-dir", type=Path, default=None,
                   help="keep the run's config, records and llama.cpp log here (default: a temporary folder)")
    p.set_defaults(func=run)


def _terminate(signum: int, frame: types.FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds the demo's ExitStack: every server it started is stopped


def run(args: argparse.Namespace) -> int:
    if args.latency_scale < 0 or args.max_tokens < 1 or (args.limit is not None and args.limit < 1):
        raise SystemExit("sovrouter demo: --latency-scale must be >= 0, --max-tokens and --limit >= 1")
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        result = run_demo(DemoOptions(latency_scale=args.latency_scale, max_tokens=args.max_tokens,
                                      limit=args.limit, local_threads=max(1, args.local_threads),
                                      state_dir=args.state_dir))
    finally:
        signal.signal(signal.SIGTERM, previous)
    # a policy refusal is a correct outcome; any other error fails the run
    return 0 if result.totals.answered > 0 and result.totals.errors == 0 else 1
