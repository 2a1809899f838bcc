"""Scoring model for prefix/KV-affinity replica choice (independent of any routing policy).

Model (issue 5, item 2): each replica is one FIFO server with an LRU KV cache of ``capacity`` blocks. When a
request *starts* (the server begins serving it), its cached prefix is the longest run of its leading block ids
present in that replica's cache; then all its blocks become most recent (leading block first, so the last
block is the most recent) and the least recent blocks beyond ``capacity`` are evicted. Service time =
uncached input tokens / ``prefill_rate`` + output tokens / ``decode_rate``; time to first token = queue wait
+ uncached prefill time.

Token accounting (the same rule for the replicas and for the unbounded-cache bound): block ``k`` covers tokens
``[512k, min(512(k+1), input_length))``, so ``k`` cached leading blocks are worth ``min(512k, input_length)``
tokens; a cached partial last block counts for the tokens it really holds, never for a full 512.

Because the servers are FIFO and a replica's cache only changes when one of its own requests starts, the
start time, hit and finish time of a request are fixed the moment it is assigned: :class:`ReplicaServer` is
therefore incremental, and the same object drives the online evaluation loop (which reveals completions to the
router only once their time has come) and the offline scorer.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sovrouter.errors import InvalidRequestError
from sovrouter.fileio import open_text

BLOCK_TOKENS = 512


@dataclass(frozen=True, slots=True)
class TraceRequest:
    """One Mooncake trace record (``timestamp`` in ms, ``hash_ids`` of 512-token prefix blocks)."""

    timestamp_ms: float
    input_length: int
    output_length: int
    hash_ids: tuple[int, ...]

    @property
    def t_s(self) -> float:
        return self.timestamp_ms / 1000.0


@dataclass(frozen=True, slots=True)
class SimConfig:
    capacity: int = 4096
    prefill_rate: float = 10_000.0
    decode_rate: float = 1_000.0
    block_tokens: int = BLOCK_TOKENS

    def __post_init__(self) -> None:
        if (self.capacity < 1 or self.block_tokens < 1
                or not all(np.isfinite(r) and r > 0 for r in (self.prefill_rate, self.decode_rate))):
            raise InvalidRequestError("capacity, block size and rates must be positive")


def cached_tokens(hit_blocks: int, input_length: int, block_tokens: int = BLOCK_TOKENS) -> int:
    """Tokens covered by ``hit_blocks`` leading blocks (the last, partial block counts only what it holds)."""
    return min(hit_blocks * block_tokens, input_length)


def _parse_record(obj: Any, lineno: int) -> TraceRequest:
    if not isinstance(obj, dict):
        raise InvalidRequestError(f"trace line {lineno}: expected a JSON object")
    try:
        ts = float(obj["timestamp"])
        inp = int(obj["input_length"])
        out = int(obj["output_length"])
        ids = obj["hash_ids"]
    except (KeyError, TypeError, ValueError, OverflowError) as exc:  # OverflowError: int(1e999)
        raise InvalidRequestError(
            f"trace line {lineno}: needs timestamp, input_length, output_length and hash_ids"
        ) from exc
    if not isinstance(ids, list):
        raise InvalidRequestError(f"trace line {lineno}: hash_ids must be a list of block ids")
    blocks = tuple(_block_id(h, lineno) for h in ids)
    if inp < 0 or out < 0 or not np.isfinite(ts):
        raise InvalidRequestError(f"trace line {lineno}: lengths must be >= 0 and the timestamp finite")
    return TraceRequest(ts, inp, out, blocks)


def _block_id(h: Any, lineno: int) -> int:
    """A block id as an int. Mooncake writes integers; a trace that writes hashes as strings (hex digests) or
    integral floats is read too: a string maps to 2**64 + its 64-bit blake2b digest, outside the range of any
    64-bit integer id, so the two kinds never collide; equal strings map to equal ids."""
    if isinstance(h, int) and not isinstance(h, bool):
        return h
    if isinstance(h, float) and h.is_integer():
        return int(h)
    if isinstance(h, str) and h:
        return 2**64 + int.from_bytes(hashlib.blake2b(h.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                                      "big")
    raise InvalidRequestError(f"trace line {lineno}: hash_ids must be integers or non-empty strings")


def parse_trace(lines: Iterable[str]) -> list[TraceRequest]:
    """Parse Mooncake JSONL lines (index = line order; requests are served in timestamp order, see
    :func:`arrival_order`)."""
    out: list[TraceRequest] = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(f"trace line {lineno}: not valid JSON") from exc
        out.append(_parse_record(obj, lineno))
    return out


def arrival_order(trace: Sequence[TraceRequest]) -> list[int]:
    """Request indices in the order they arrive (timestamp, then line order); the identity for sorted traces."""
    if all(trace[i].timestamp_ms <= trace[i + 1].timestamp_ms for i in range(len(trace) - 1)):
        return list(range(len(trace)))
    return sorted(range(len(trace)), key=lambda i: (trace[i].timestamp_ms, i))


def load_trace(path: str | Path) -> list[TraceRequest]:
    """Read a Mooncake trace, gzip (by magic bytes) or plain JSONL."""
    p = Path(path)
    if not p.is_file():
        raise InvalidRequestError(f"trace file not found: {path}")
    try:
        with open_text(p) as fh:
            return parse_trace(fh)
    except (OSError, UnicodeDecodeError, EOFError, zlib.error) as exc:  # zlib: a corrupt gzip
        raise InvalidRequestError(f"cannot read trace file {path}") from exc


@dataclass(frozen=True, slots=True)
class Served:
    """What happened to one request on its replica under the model."""

    start_s: float
    hit_blocks: int
    cached_tokens: int
    prefill_s: float
    service_s: float
    ttft_s: float

    @property
    def finish_s(self) -> float:
        return self.start_s + self.service_s


class LRUBlocks:
    """An LRU set of block ids (OrderedDict; the front is the least recent)."""

    __slots__ = ("_d", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._d: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._d)

    def __contains__(self, block: int) -> bool:
        return block in self._d

    def leading_run(self, blocks: Sequence[int]) -> int:
        d = self._d
        n = 0
        for b in blocks:
            if b not in d:
                break
            n += 1
        return n

    def touch(self, blocks: Sequence[int]) -> list[int]:
        """Make ``blocks`` most recent in order (the last one ends up the most recent), then evict.

        Returns the evicted block ids, least recent first.
        """
        d = self._d
        for b in blocks:
            if b in d:
                d.move_to_end(b)
            else:
                d[b] = None
        evicted: list[int] = []
        while len(d) > self.capacity:
            evicted.append(d.popitem(last=False)[0])
        return evicted

    def discard(self, blocks: Iterable[int]) -> None:
        for b in blocks:
            self._d.pop(b, None)


class ReplicaServer:
    """One FIFO server with an LRU KV cache (the scoring model)."""

    __slots__ = ("busy_s", "cache", "cfg", "free_at_s")

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.cache = LRUBlocks(cfg.capacity)
        self.free_at_s = 0.0
        self.busy_s = 0.0

    def serve(self, req: TraceRequest) -> Served:
        """Append ``req`` to this server's FIFO queue; its whole fate is known at once."""
        cfg = self.cfg
        start = max(req.t_s, self.free_at_s)
        hit = self.cache.leading_run(req.hash_ids)
        cached = cached_tokens(hit, req.input_length, cfg.block_tokens)
        self.cache.touch(req.hash_ids)
        prefill = (req.input_length - cached) / cfg.prefill_rate
        service = prefill + req.output_length / cfg.decode_rate
        self.free_at_s = start + service
        self.busy_s += service
        return Served(start, hit, cached, prefill, service, start - req.t_s + prefill)


@dataclass
class Score:
    requests: int
    replicas: int
    token_hit_rate: float
    bound_hit_rate: float
    mean_ttft_s: float
    p50_ttft_s: float
    p99_ttft_s: float
    skew: float
    busy_s: list[float] = field(default_factory=list)

    @property
    def hit_fraction_of_bound(self) -> float:
        return self.token_hit_rate / self.bound_hit_rate if self.bound_hit_rate > 0 else 1.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "replicas": self.replicas,
            "token_hit_rate": round(self.token_hit_rate, 5), "bound_hit_rate": round(self.bound_hit_rate, 5),
            "hit_fraction_of_bound": round(self.hit_fraction_of_bound, 5),
            "mean_ttft_s": round(self.mean_ttft_s, 4), "p50_ttft_s": round(self.p50_ttft_s, 4),
            "p99_ttft_s": round(self.p99_ttft_s, 4), "skew": round(self.skew, 4),
        }


def unbounded_hit_rate(trace: Sequence[TraceRequest], block_tokens: int = BLOCK_TOKENS) -> float:
    """Token hit rate of one cache that never evicts and sees every request (the reuse upper bound)."""
    seen: set[int] = set()
    hit = total = 0
    for req in (trace[i] for i in arrival_order(trace)):
        k = 0
        for b in req.hash_ids:
            if b not in seen:
                break
            k += 1
        hit += cached_tokens(k, req.input_length, block_tokens)
        total += req.input_length
        seen.update(req.hash_ids)
    return hit / total if total else 0.0


def summarize(trace: Sequence[TraceRequest], served: Sequence[Served], busy: Sequence[float],
              block_tokens: int = BLOCK_TOKENS) -> Score:
    total = sum(r.input_length for r in trace)
    hit = sum(s.cached_tokens for s in served)
    ttft = np.asarray([s.ttft_s for s in served], dtype=float)
    mean_busy = float(np.mean(busy)) if len(busy) else 0.0
    return Score(
        requests=len(trace), replicas=len(busy),
        token_hit_rate=hit / total if total else 0.0,
        bound_hit_rate=unbounded_hit_rate(trace, block_tokens),
        mean_ttft_s=float(ttft.mean()) if ttft.size else 0.0,
        p50_ttft_s=float(np.percentile(ttft, 50)) if ttft.size else 0.0,
        p99_ttft_s=float(np.percentile(ttft, 99)) if ttft.size else 0.0,
        skew=max(busy) / mean_busy if mean_busy > 0 else 1.0,
        busy_s=[float(b) for b in busy],
    )


def score(trace: Sequence[TraceRequest], assignment: Sequence[int], replicas: int,
          cfg: SimConfig | None = None) -> Score:
    """Score a complete assignment (one replica index per request, in trace order)."""
    cfg = cfg or SimConfig()
    if replicas < 1:
        raise InvalidRequestError("replicas must be >= 1")
    if len(assignment) != len(trace):
        raise InvalidRequestError(f"assignment has {len(assignment)} entries for {len(trace)} requests")
    if any(not 0 <= r < replicas for r in assignment):
        raise InvalidRequestError(f"replica index out of range 0..{replicas - 1}")
    servers = [ReplicaServer(cfg) for _ in range(replicas)]
    served: list[Served] = [servers[assignment[i]].serve(trace[i]) for i in arrival_order(trace)]
    return summarize(trace, served, [s.busy_s for s in servers], cfg.block_tokens)


def _index(raw: object) -> int:
    """An integer as JSON writes it (``3`` or ``3.0``): ``0.7`` read as 0 or ``true`` as 1 would score another
    assignment than the one written."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    raise ValueError("not an integer")


def load_assignment(path: str | Path, n_requests: int) -> list[int]:
    """Read ``{"i", "replica"}`` lines; every request index 0..n-1 exactly once."""
    p = Path(path)
    if not p.is_file():
        raise InvalidRequestError(f"assignment file not found: {path}")
    try:
        with open_text(p) as fh:
            lines = fh.readlines()
    except (OSError, UnicodeDecodeError, EOFError, zlib.error) as exc:  # zlib: a corrupt gzip
        raise InvalidRequestError(f"cannot read assignment file {path}") from exc
    out: list[int | None] = [None] * n_requests
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            i, r = _index(obj["i"]), _index(obj["replica"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InvalidRequestError(f"assignment line {lineno}: expected {{\"i\": int, \"replica\": int}}") \
                from exc
        if not 0 <= i < n_requests or out[i] is not None:
            raise InvalidRequestError(f"assignment line {lineno}: index {i} out of range or repeated")
        out[i] = r
    missing = sum(1 for r in out if r is None)
    if missing:
        raise InvalidRequestError(f"assignment misses {missing} of {n_requests} requests")
    return [r for r in out if r is not None]
