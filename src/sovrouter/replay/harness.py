"""Replay harness: drive every stream event of a workload through the gateway's request path.

The pipeline is the one the gateway runs, built by :func:`sovrouter.build.assemble` from the same settings (so
whatever detector, policy, router and cache the settings select appear here too); only the edges differ:

- the adapters are :class:`~sovrouter.adapters.replay.ReplayAdapter` (one per catalog deployment), which serve
  the recorded response of the slot they are asked for, and only that one;
- the clock is a :class:`~sovrouter.clock.SimClock` set to each event's ``t_ms`` before the event runs;
- replay stands in for the authenticated client: tenant and declared data class come from the workload request;
- the exact cache and the record store are in memory, other state lives under a temporary ``state_dir``.

Events run one after another, in ``seq`` order, so a replay is deterministic: same inputs, same decisions
(only ``decision_ms``, a wall-clock measurement, varies). Scores and labels are never read.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sovrouter.adapters.replay import ReplayAdapter
from sovrouter.build import assemble
from sovrouter.clock import SimClock
from sovrouter.config import Settings
from sovrouter.contracts import Candidate, RequestRecord
from sovrouter.errors import ReplayError, SovrouterError
from sovrouter.intake import normalize_chat
from sovrouter.protocols import ModelAdapter, RecordSink
from sovrouter.replay.decisions import CacheRef, Decision, Detected, Route
from sovrouter.store.records import SQLiteRecordStore
from sovrouter.workload import ReplayInputs

# Call-log outcomes that never left the control plane: they are not upstream calls.
NOT_CALLED = frozenset({"guard_refused", "circuit_open"})
REPLAY_DETECTOR_TIMEOUT_MS = 3_600_000.0


@dataclass
class ReplayResult:
    decisions: list[Decision]
    wall_s: float
    records: SQLiteRecordStore | None = None
    statuses: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        ms = sorted(d.decision_ms for d in self.decisions)
        n = len(self.decisions)
        return {
            "events": n,
            "refused": sum(d.final is None for d in self.decisions),
            "errors": self.statuses.get("error", 0),
            "cache_hits": sum(d.cache is not None for d in self.decisions),
            "calls": sum(len(d.calls) for d in self.decisions),
            "decision_ms_p50": _quantile(ms, 0.50),
            "decision_ms_p99": _quantile(ms, 0.99),
            "decision_ms_mean": statistics.fmean(ms) if ms else 0.0,
            "wall_s": self.wall_s,
            "events_per_s": n / self.wall_s if self.wall_s > 0 else 0.0,
        }


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    idx = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[idx]


def replay_settings(inputs: ReplayInputs, config: str | Path | None = None) -> Settings:
    """The shipped configuration (``Settings`` defaults), or ``config``; catalog and tenants always come from
    the workload."""
    base = Settings.load(config) if config is not None else Settings(
        catalog=inputs.paths.catalog, tenants=inputs.paths.tenants
    )
    # Replay is offline and must be deterministic: a wall-clock detection or policy deadline would make a loaded
    # machine fail closed on some events and not others, so replay lifts both (the gateway keeps them).
    # Its caches are its own: with a config's cache.shared, replay read the live instances' entries (expiring by
    # the wall clock, fresh on the simulated one) and wrote its answers into their stream (found in review).
    cache = base.cache.model_copy(update={"shared": None})
    return base.model_copy(update={"catalog": inputs.paths.catalog, "tenants": inputs.paths.tenants, "cache": cache,
                                   "detector_timeout_ms": REPLAY_DETECTOR_TIMEOUT_MS,
                                   "policy_timeout_ms": REPLAY_DETECTOR_TIMEOUT_MS})


def replay_adapters(inputs: ReplayInputs) -> dict[Candidate, ModelAdapter]:
    """One :class:`ReplayAdapter` per catalog deployment; each can only serve its own slot's answer."""
    return {
        c: ReplayAdapter(candidate=c, catalog=inputs.catalog, responses=inputs.responses)
        for c in (Candidate(slot=s.id, deployment=d.id) for s, d in inputs.catalog.pairs())
    }


async def replay_async(
    inputs: ReplayInputs,
    settings: Settings,
    records: RecordSink,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[Decision], dict[str, int]]:
    clock = SimClock()
    pipeline = assemble(settings, inputs.catalog, inputs.tenants, replay_adapters(inputs), clock, records)
    seq_of: dict[str, int] = {}  # pipeline request id -> seq of the event that produced (served) it
    decisions: list[Decision] = []
    statuses: dict[str, int] = {}
    total = len(inputs.stream)
    for i, event in enumerate(inputs.stream):
        wreq = inputs.requests.get(event.request_id)
        if wreq is None:  # the requests file lacks it: the event still gets its (error) decision
            decisions.append(Decision(seq=event.order, request_id=event.written_request_id))
            statuses["error"] = statuses.get("error", 0) + 1
            continue
        clock.set(event.at_ms)
        request_id = f"{wreq.id}#{event.seq}"
        try:
            request = normalize_chat(
                wreq.chat_body(),
                tenant=wreq.tenant,
                request_id=request_id,
                data_class=wreq.data_class,
                arrived_ms=event.at_ms,
                external_id=wreq.id,
                recorded=True,
            )
        except SovrouterError:  # a request the gateway would refuse with a 400: its event still gets a decision
            decisions.append(Decision(seq=event.order, request_id=wreq.written_id))
            statuses["error"] = statuses.get("error", 0) + 1
            continue
        outcome = await pipeline.handle(request)
        decisions.append(_decision(event.order, wreq.written_id, outcome.record, seq_of))
        statuses[outcome.record.status] = statuses.get(outcome.record.status, 0) + 1
        if outcome.record.status == "ok":
            seq_of[request_id] = event.order
        if progress is not None:
            progress(i + 1, total)
    return decisions, statuses


def _decision(seq: int, workload_id: str | int, record: RequestRecord, seq_of: dict[str, int]) -> Decision:
    cache: CacheRef | None = None
    if record.status == "ok" and record.cache.kind in ("exact", "semantic"):
        src = record.cache.source_request_id
        if src is None or src not in seq_of:
            raise ReplayError(f"event {seq}: cache hit names a source that no earlier event served")
        cache = CacheRef(source_seq=seq_of[src])
    return Decision(
        seq=seq,
        request_id=workload_id,
        calls=[Route.of(c.candidate) for c in record.calls if c.outcome not in NOT_CALLED],
        final=Route.of(record.final) if record.status == "ok" and record.final is not None else None,
        cache=cache,
        detected=Detected(pii_types=sorted(set(record.detected_pii_types))),
        decision_ms=max(0.0, record.decision_ms),
    )


def run_replay(
    inputs: ReplayInputs,
    settings: Settings,
    keep_records: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Replay the whole stream. State other than the in-memory cache and records goes to a temp ``state_dir``."""
    with tempfile.TemporaryDirectory(prefix="sovrouter-replay-") as state:
        settings = settings.model_copy(update={"state_dir": Path(state)})
        store = SQLiteRecordStore(":memory:")
        t0 = time.perf_counter()
        decisions, statuses = asyncio.run(replay_async(inputs, settings, store, progress))
        wall = time.perf_counter() - t0
    if not keep_records:
        store.close()
    return ReplayResult(decisions=decisions, wall_s=wall, records=store if keep_records else None,
                        statuses=statuses)
