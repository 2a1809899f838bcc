"""Run a parsed batch through the pipeline, a bounded number of lines at a time, writing results in input order.

Every line goes through :meth:`Pipeline.handle` (detection, policy, cache, routing, reliability, records): the
batch path has no way around sovereignty. :func:`deferrable` swaps the pipeline's router for its
:class:`DeferrableRouter` wrapper (the cheapest allowed capacity first). ``concurrency`` is how many lines are
in flight: it is what lets several llama.cpp slots or replicas of the local CPU model work at once (measured in
``bench/batching.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import IO, Any, Literal

from pydantic import ValidationError

from sovrouter.batch.fileio import LineError, ParsedLine, dumps_line, output_line
from sovrouter.batch.gate import FairGate
from sovrouter.batch.router import DeferrableRouter
from sovrouter.contracts import CacheOutcome, DataClass, RequestRecord
from sovrouter.errors import InvalidRequestError, NotFoundError, SovrouterError
from sovrouter.evalloop.loop import ObservedPipeline
from sovrouter.gateway.sse import ChatFormatter
from sovrouter.intake import normalize_chat
from sovrouter.pipeline import Pipeline


def deferrable(pipeline: Pipeline, scope: Literal["slot", "plan", "allowed"] = "slot") -> Pipeline:
    """The same pipeline with its router wrapped for deferrable work. An observed pipeline keeps its eval loop
    (scorers, shadow sampling) but tracks no regenerations: two lines of a batch file with the same prompt
    (samples, templated inputs) are not a user asking again, and counted as dissatisfaction against the route
    that answered the first (found in review, 2026-11-28); a large file also pushed the tenant's live prompts out
    of the bounded index."""
    out = dataclasses.replace(pipeline, router=DeferrableRouter(pipeline.router, pipeline.catalog, scope=scope))
    if isinstance(out, ObservedPipeline) and out.loop is not None:
        out = dataclasses.replace(out, loop=out.loop.without_regenerations())
    return out


@dataclass
class BatchSummary:
    lines: int = 0
    ok: int = 0
    failed: int = 0
    invalid: int = 0
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    routes: dict[str, int] = field(default_factory=dict)


@dataclass
class BatchRunner:
    pipeline: Pipeline
    tenant: str
    data_class: DataClass = "public"
    concurrency: int = 4
    batch_id: str = field(default_factory=lambda: "batch_" + uuid.uuid4().hex[:16])
    # the instance's line slots, shared by its running batches in turn by tenant (BatchService); None: this run's
    # own ``concurrency`` slots
    gate: FairGate | None = None
    timer: Callable[[], float] = time.perf_counter
    # One per run: a resumed batch re-runs the lines it had not stored, and each run of a line is its own request
    # with its own record (calls, cost), so record ids must not repeat across runs.
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    async def _one(self, line: ParsedLine, summary: BatchSummary) -> dict[str, Any]:
        line_id = f"{self.batch_id}_req_{line.line_no}"
        if line.error is not None or line.body is None:
            summary.invalid += 1
            return output_line(line_id, line.custom_id, error=line.error or LineError("invalid_batch_line", "empty"),
                               line_no=line.line_no)
        rid = f"{self.batch_id}-{line.line_no}-{self.run_id}"
        started = self.timer()
        try:
            self.pipeline.check_requested_model(line.body.get("model"), self.tenant)  # as live chat: a 404
            request = normalize_chat(line.body, tenant=self.tenant, request_id=rid, data_class=self.data_class,
                                     arrived_ms=self.pipeline.clock.now_ms(), external_id=line.custom_id)
        except (InvalidRequestError, NotFoundError, ValidationError) as exc:
            err: SovrouterError = exc if isinstance(exc, (InvalidRequestError, NotFoundError)) else \
                InvalidRequestError("invalid request body", param="messages")
            self._record_rejection(rid, err)
            summary.failed += 1
            return output_line(line_id, line.custom_id, status_code=err.status, request_id=rid, body=err.to_openai())
        request = request.model_copy(update={"stream": False})
        outcome = await self.pipeline.handle(request)
        summary.latencies_ms.append((self.timer() - started) * 1000.0)
        record = outcome.record
        if outcome.error is not None or outcome.result is None:
            summary.failed += 1
            failure = outcome.error or SovrouterError("no answer")
            return output_line(line_id, line.custom_id, status_code=failure.status, request_id=rid,
                               body=failure.to_openai())
        summary.ok += 1
        summary.cost_usd += record.cost_usd
        summary.input_tokens += outcome.result.input_tokens
        summary.output_tokens += outcome.result.output_tokens
        key = outcome.result.candidate.key
        summary.routes[key] = summary.routes.get(key, 0) + 1
        body = json.loads(ChatFormatter(rid, int(time.time())).completion(outcome.result, record))
        return output_line(line_id, line.custom_id, status_code=200, request_id=rid, body=body)

    def _record_rejection(self, request_id: str, exc: SovrouterError) -> None:
        self.pipeline.records.write(RequestRecord(
            request_id=request_id, tenant=self.tenant, data_class=self.data_class, effective_class=self.data_class,
            modalities=[], arrived_ms=self.pipeline.clock.now_ms(), status="error", error_code=exc.code,
            cache=CacheOutcome(kind="bypass"),
        ))

    async def run(self, lines: Sequence[ParsedLine], out: IO[str] | None = None,
                  sink: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
                  ) -> tuple[list[dict[str, Any]], BatchSummary]:
        """Results in input order (also written to ``out`` as they become ready in that order). ``sink`` gets each
        result as soon as its line is answered, before the line's slot goes to another line (so at most
        ``concurrency`` answered lines are ever unsunk); a sink that raises stops the whole run, and the run
        raises that error (not the cancellation it caused in the other lines)."""
        summary = BatchSummary(lines=len(lines))
        own = asyncio.Semaphore(max(1, self.concurrency))

        def slot() -> AbstractAsyncContextManager[Any]:
            return own if self.gate is None else self.gate.slot(self.tenant)
        tasks: list[asyncio.Task[dict[str, Any]]] = []
        failed: list[BaseException] = []

        async def guarded(line: ParsedLine) -> dict[str, Any]:
            async with slot():
                item = await self._one(line, summary)
                if sink is not None:
                    try:
                        await sink(item)
                    except BaseException as exc:
                        failed.append(exc)
                        for task in tasks:  # stop the other lines now, not when the in-order loop gets here
                            if task is not asyncio.current_task():
                                task.cancel()
                        raise
                return item

        started = self.timer()
        tasks.extend(asyncio.create_task(guarded(line)) for line in lines)
        results: list[dict[str, Any]] = []
        try:
            for task in tasks:
                # shielded: a cancel of the run wakes this loop at once (awaiting the task itself would first
                # cancel that one line and wait for it), so the finally below stops every line in the same step
                try:
                    item = await asyncio.shield(task)
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if failed and (current is None or not current.cancelling()):
                        raise failed[0] from None  # this line was stopped because a sink failed elsewhere
                    raise
                results.append(item)
                if out is not None:
                    out.write(dumps_line(item))
                    out.flush()
        finally:
            for task in tasks:
                task.cancel()
        summary.wall_s = self.timer() - started
        return results, summary
