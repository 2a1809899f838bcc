"""``sovrouter eval prefix-affinity`` (online replica choice over a Mooncake trace) and ``eval prefix-score``.

    sovrouter eval prefix-affinity --trace FILE --replicas N --out ASSIGN.jsonl
        [--policy ours|sglang|sglang-0.1|least-loaded|round-robin] [--tail 0.3]
        [--capacity 4096 --prefill-rate 10000 --decode-rate 1000]
    sovrouter eval prefix-score --trace FILE --assign ASSIGN.jsonl --replicas N [same model flags]

``prefix-affinity`` writes ``{"i": request index, "replica": int}`` per line, choosing online (see
:mod:`sovrouter.reuse.prefix_policies`), and prints the figures of the scoring model to stderr.
``--tail`` sets the long-wait penalty of policy ``ours`` (default 0.3, ``--tail 0`` turns it off).
``prefix-score`` scores any assignment file with the independent model of :mod:`sovrouter.reuse.prefix_sim`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sovrouter.errors import InvalidRequestError
from sovrouter.fileio import atomic_text, check_not_input, check_output
from sovrouter.reuse.prefix import AffinitySettings
from sovrouter.reuse.prefix_policies import POLICIES, OursPolicy, TracePolicy, make_policy, run_online, trace_settings
from sovrouter.reuse.prefix_sim import Score, SimConfig, load_assignment, load_trace, score, summarize


def _model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trace", required=True, type=Path, help="Mooncake trace, gzip or plain JSONL")
    p.add_argument("--replicas", required=True, type=int, help="number of replicas")
    p.add_argument("--capacity", type=int, default=4096, help="KV cache blocks per replica (LRU)")
    p.add_argument("--prefill-rate", type=float, default=10_000.0, help="prefill tokens/s per replica")
    p.add_argument("--decode-rate", type=float, default=1_000.0, help="decode tokens/s per replica")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("prefix-affinity", help="choose a replica per trace request, online")
    _model_flags(p)
    p.add_argument("--out", required=True, type=Path, help="assignment JSONL to write")
    p.add_argument("--policy", default="ours", choices=sorted(POLICIES), help="replica-choice policy")
    p.add_argument("--tail", type=float, default=None,
                   help=f"long-wait penalty weight of policy ours (default {AffinitySettings().tail}; 0 = off)")
    p.set_defaults(func=run_affinity)
    s = sub.add_parser("prefix-score", help="score an assignment under the FIFO + LRU model")
    _model_flags(s)
    s.add_argument("--assign", required=True, type=Path, help="assignment JSONL ({\"i\", \"replica\"} lines)")
    s.set_defaults(func=run_score)


def _config(args: argparse.Namespace) -> SimConfig:
    if not 1 <= args.replicas <= 10_000:  # 10^8 was accepted, and the process was killed for memory
        raise InvalidRequestError("--replicas must be from 1 to 10000")
    return SimConfig(capacity=args.capacity, prefill_rate=args.prefill_rate, decode_rate=args.decode_rate)


def _report(label: str, sc: Score) -> None:
    print(f"{label}: " + json.dumps(sc.as_dict()), file=sys.stderr)


def _policy(args: argparse.Namespace, cfg: SimConfig) -> TracePolicy:
    if args.policy != "ours":
        if args.tail is not None:
            raise InvalidRequestError("--tail applies to --policy ours only")
        return make_policy(args.policy, args.replicas, cfg)
    return OursPolicy(args.replicas, cfg, trace_settings(cfg, args.tail))


def run_affinity(args: argparse.Namespace) -> int:
    cfg = _config(args)
    check_not_input(args.out, args.trace)
    check_output(args.out)
    trace = load_trace(args.trace)
    run = run_online(trace, args.replicas, _policy(args, cfg), cfg)
    with atomic_text(args.out) as fh:
        for i, r in enumerate(run.assignment):
            fh.write(json.dumps({"i": i, "replica": r}) + "\n")
    _report(f"prefix-affinity {args.policy}", summarize(trace, run.served, run.busy_s, cfg.block_tokens))
    return 0


def run_score(args: argparse.Namespace) -> int:
    cfg = _config(args)
    trace = load_trace(args.trace)
    sc = score(trace, load_assignment(args.assign, len(trace)), args.replicas, cfg)
    print(json.dumps(sc.as_dict()))
    return 0
