"""Synthetic Mooncake-format traces for tests and examples: multi-turn conversations sharing a system block.

Each request either continues an earlier conversation (its blocks extended by 1..``max_new`` new blocks) or
starts a new one from block 0, arriving as a Poisson process of ``rate`` requests per second.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Sequence
from pathlib import Path

from sovrouter.reuse.prefix_sim import TraceRequest


def conversation_trace(n: int = 400, seed: int = 7, *, rate: float = 2.0, p_return: float = 0.6,
                       max_new: int = 6, slack: int = 511, max_output: int = 600,
                       round_ms: bool = True) -> list[TraceRequest]:
    """``n`` requests; the last block of each is partial (up to ``slack`` tokens short)."""
    rng = random.Random(seed)
    next_id = 1
    convs: list[list[int]] = []
    out: list[TraceRequest] = []
    t = 0.0
    for _ in range(n):
        t += rng.expovariate(rate)
        if convs and rng.random() < p_return:
            blocks = rng.choice(convs)
        else:
            blocks = [0]
            convs.append(blocks)
        for _ in range(rng.randint(1, max_new)):
            blocks.append(next_id)
            next_id += 1
        inp = len(blocks) * 512 - rng.randint(0, slack)
        out.append(TraceRequest(round(t * 1000.0) if round_ms else t * 1000.0, inp, rng.randint(1, max_output),
                                tuple(blocks)))
    return out


def write_trace(path: Path, trace: Sequence[TraceRequest]) -> Path:
    """Write ``trace`` as gzip JSONL in the Mooncake record format."""
    with gzip.open(path, "wt") as fh:
        for r in trace:
            fh.write(json.dumps({"timestamp": r.timestamp_ms, "input_length": r.input_length,
                                 "output_length": r.output_length, "hash_ids": list(r.hash_ids)}) + "\n")
    return path
