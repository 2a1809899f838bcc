"""The eval loop's per-request hook and its wiring: what the gateway calls after the pipeline has answered.

``EvalLoop.after(request, outcome)`` tracks regenerations, runs the automatic scorers and the shadow sampler.
:func:`build_observability` assembles metrics, traces, the signal store and the loop from :class:`EvalSettings`;
:meth:`Observability.mount` adds ``/metrics``, ``POST /v1/feedback`` and ``/dashboard`` to a FastAPI app.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncGenerator, Awaitable, Iterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Protocol

from fastapi import FastAPI
from opentelemetry.sdk.trace.export import SpanExporter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import SQLAlchemyError

from sovrouter.catalog import Catalog
from sovrouter.config import ApiKey, Settings, SharedRecordsSettings
from sovrouter.contracts import Candidate, NormalizedRequest, RequestRecord, StreamChunk
from sovrouter.errors import ConfigError, SovrouterError
from sovrouter.evalloop.feedback import feedback_router
from sovrouter.evalloop.regeneration import RegenerationIndex
from sovrouter.evalloop.scorers import AgreementJudge, FormatScorer, Judge, Scorer
from sovrouter.evalloop.shadow import ShadowSampler
from sovrouter.evalloop.signals import SharedSignalStore, SignalStore
from sovrouter.gateway.auth import KeyRing
from sovrouter.gateway.shared_slots import RedisTenantSlots
from sovrouter.pipeline import Outcome, Pipeline
from sovrouter.protocols import CacheGauges, ModelAdapter, RecordSink
from sovrouter.store.records import SQLiteRecordStore
from sovrouter.store.shared_records import SharedRecordStore
from sovrouter.store.sql import database_url
from sovrouter.telemetry.metrics import (
    CacheCollector,
    InFlightCollector,
    KeyFileCollector,
    RequestMetrics,
    SharedSlotsCollector,
    TenantLabels,
)
from sovrouter.telemetry.routes import metrics_router
from sovrouter.telemetry.sink import TelemetrySink
from sovrouter.telemetry.traces import RecordTracer, make_tracer_provider

log = logging.getLogger("sovrouter.evalloop")


class EvalSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shadow_fraction: float = Field(default=0.0, ge=0, le=1)
    regeneration_window_s: float = Field(default=600.0, gt=0)
    metric_tenants: list[str] = Field(default_factory=list, description="tenants with their own metric label")
    max_tenant_labels: int = Field(default=20, ge=1)
    otlp_endpoint: str | None = None
    format_scorer: bool = True
    signals_path: Path | None = Field(default=None, description="signal store (default: in memory)")


@dataclass
class EvalLoop:
    store: SignalStore
    regenerations: RegenerationIndex | None = None
    shadow: ShadowSampler | None = None
    scorers: Sequence[Scorer] = ()
    background: bool = True  # shadow calls run as tasks, never delaying the client's answer
    _tasks: set[asyncio.Task[object]] = field(default_factory=set)

    def without_regenerations(self) -> EvalLoop:
        """The same loop (store, scorers, shadow sampler, and the shadow tasks ``drain`` waits for) that tracks no
        regenerations: for batch lines, which are not a user asking again after an answer."""
        return replace(self, regenerations=None, _tasks=self._tasks)

    async def after(self, request: NormalizedRequest, outcome: Outcome) -> None:
        record = outcome.record
        follow_up = any(m.in_tool_loop for m in request.messages)
        if self.regenerations is not None and not follow_up:
            # an agent's next step repeats the user's turn with the call and its result added: not a re-ask (it
            # was counted as an exact regeneration of the step before; found in review)
            self.regenerations.observe(request, record)
        if outcome.result is None or request.uses_tools:
            # the scorers and the shadow judge read text answers: a call-only answer scored as a format error
            # against the deployment that gave it (found in review); tool use has no quality signal here yet
            return
        answer = outcome.result.text
        for scorer in self.scorers:
            signal = await scorer.score(request, record, answer)
            if signal is not None:
                self.store.add(signal)
        if self.shadow is not None:
            job = _logged(self.shadow.after(request, record, answer), "shadow sampling")
            if not self.background:
                await job
                return
            task: asyncio.Task[object] = asyncio.create_task(job)
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    async def drain(self) -> None:
        """Wait for the shadow calls in flight (shutdown, end of a replay, tests). One that fails unexpectedly does
        not stop the wait (``_finished`` logs it): until 2026-11-28 it raised out of here and the shutdown skipped
        its later steps (closing the HTTP client, the shared stores shipping their last rows)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _finished(self, task: asyncio.Task[object]) -> None:
        """A shadow task ended: an error ``_logged`` does not drop (a bug) is logged by type, never its text (it
        went unretrieved, or out of ``drain``)."""
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("shadow sampling failed: %s", type(exc).__name__)


@dataclass
class ObservedPipeline(Pipeline):
    """The pipeline, plus the eval loop's hook after each request (same interface: the gateway and replay use it
    unchanged). Built by :meth:`Observability.observe`."""

    loop: EvalLoop | None = None

    async def handle(self, request: NormalizedRequest) -> Outcome:
        outcome = await super().handle(request)
        if self.loop is not None:
            await _logged(self.loop.after(request, outcome), "eval loop")
        return outcome

    async def handle_stream(self, request: NormalizedRequest) -> AsyncGenerator[StreamChunk | Outcome, None]:
        # closed with this one: a reader that stops early gets its request_cancelled record at once, not when the
        # garbage collector finalises the inner stream (found in review, 2026-11-28)
        async with aclosing(super().handle_stream(request)) as items:
            async for item in items:
                if isinstance(item, Outcome) and self.loop is not None:
                    await _logged(self.loop.after(request, item), "eval loop")
                yield item


async def _logged(job: Awaitable[object], what: str) -> object:
    """The eval loop never fails a request that was served: its own errors are logged (type only) and dropped."""
    try:
        return await job
    except (SovrouterError, sqlite3.Error) as exc:
        log.warning("%s failed: %s", what, type(exc).__name__)
        return None


class RecordSource(Protocol):
    def get(self, request_id: str) -> RequestRecord: ...

    def recent(self, limit: int) -> Iterator[RequestRecord]: ...


@dataclass
class Observability:
    metrics: RequestMetrics
    tracer: RecordTracer | None
    signals: SignalStore
    loop: EvalLoop
    catalog: Catalog | None = None
    shadow_adapters: bool = False  # take the shadow sampler's adapters from the observed pipeline
    records: RecordSource | None = None
    _collectors_registered: bool = False
    _slots_registered: bool = False
    _keys_registered: bool = False

    def sink(self, inner: RecordSink) -> TelemetrySink:
        return TelemetrySink(inner, self.metrics, self.tracer)

    def observe(self, pipeline: Pipeline) -> ObservedPipeline:
        """The same pipeline with its record sink wrapped by telemetry and the eval hook after each request."""
        parts = {f.name: getattr(pipeline, f.name) for f in fields(Pipeline) if f.init}
        if not self._collectors_registered:  # once per registry
            if isinstance(pipeline.cache, CacheGauges):
                self.metrics.registry.register(CacheCollector(pipeline.cache))  # sizes and purges at each scrape
            if pipeline.load is not None:
                self.metrics.registry.register(InFlightCollector(pipeline.load))  # calls in flight per deployment
            self._collectors_registered = True
        if isinstance(pipeline.records, SQLiteRecordStore | SharedRecordStore):
            self.records = pipeline.records
        parts["records"] = self.sink(pipeline.records)
        if self.shadow_adapters and self.loop.shadow is not None:
            self.loop.shadow.adapters = pipeline.executor.adapters
        return ObservedPipeline(**parts, loop=self.loop)

    def mount(self, app: FastAPI, records: RecordSource | None = None) -> None:
        """Add ``GET /metrics``, ``POST /v1/feedback`` and ``GET /dashboard`` to ``app``; ``records`` is the
        record store (lookup by id for feedback, iteration for the dashboard), by default the SQLite store of
        the pipeline passed to :meth:`observe`."""
        from sovrouter.dashboard.routes import dashboard_router  # the dashboard imports the eval loop

        records = records if records is not None else self.records
        if records is None:
            raise ConfigError("the dashboard and feedback endpoints need a record store")
        gateway = getattr(app.state, "gateway", None)  # feedback takes chat's API keys
        if gateway is None:
            raise ConfigError("mount the eval loop on the gateway app (create_app): feedback needs its API keys")
        if isinstance(gateway.slots, RedisTenantSlots) and not self._slots_registered:  # once per registry
            # what the limit shared in Redis decided: invisible on /metrics until 2026-11-28
            self.metrics.registry.register(SharedSlotsCollector(gateway.slots, self.metrics.tenants))
            self._slots_registered = True
        if gateway.keys.source is not None and not self._keys_registered:  # reloads of api_keys_file
            self.metrics.registry.register(KeyFileCollector(gateway.keys))
            self._keys_registered = True
        operators = None
        if gateway.settings.operator_keys:  # the operators' pages show every tenant's ids, routes and costs
            operators = KeyRing([ApiKey(tenant="operators", key_sha256=k.key_sha256)
                                 for k in gateway.settings.operator_keys])
        app.include_router(metrics_router(self.metrics.registry, operators))
        app.include_router(feedback_router(self.signals, records, gateway.keys))
        app.include_router(dashboard_router(records, self.signals, self.catalog, operators))


def build_observability(settings: EvalSettings, catalog: Catalog | None = None,
                        adapters: Mapping[Candidate, ModelAdapter] | None = None, judge: Judge | None = None,
                        exporter: SpanExporter | None = None, shared: SharedRecordsSettings | None = None,
                        ) -> Observability:
    """``judge`` enables shadow sampling when ``shadow_fraction > 0``; the reference calls go through
    ``adapters`` (default: the executor's wired adapters of the pipeline passed to :meth:`Observability.observe`).
    ``shared``: the signals also go to that database, and are read from it (several gateway instances)."""
    metrics = RequestMetrics(tenants=TenantLabels(settings.metric_tenants, settings.max_tenant_labels))
    tracer = None
    if exporter is not None or settings.otlp_endpoint:
        tracer = RecordTracer(make_tracer_provider(exporter, settings.otlp_endpoint))
    store = SignalStore(settings.signals_path or ":memory:") if shared is None else _shared_signals(settings, shared)
    shadow = None
    if settings.shadow_fraction > 0 and judge is not None:
        shadow = ShadowSampler(adapters or {}, judge, store, settings.shadow_fraction, catalog=catalog,
                               metrics=metrics)
    loop = EvalLoop(store, RegenerationIndex(settings.regeneration_window_s * 1000.0, store=store, metrics=metrics),
                    shadow, [FormatScorer()] if settings.format_scorer else [])
    return Observability(metrics, tracer, store, loop, catalog, shadow_adapters=adapters is None)


def _shared_signals(settings: EvalSettings, shared: SharedRecordsSettings) -> SharedSignalStore:
    url = database_url(shared.url, shared.password_env, "records")
    try:
        return SharedSignalStore(settings.signals_path or ":memory:", url, ship_every_s=shared.ship_every_s)
    except SQLAlchemyError as exc:  # unreachable or refusing at start-up: a configuration problem
        raise ConfigError(f"records: cannot open the shared database ({type(exc).__name__})") from None


def observe_live(settings: Settings, pipeline: Pipeline,
                 eval_settings: EvalSettings | None = None) -> tuple[Observability, ObservedPipeline]:
    """For ``sovrouter serve``: signals in ``state_dir/signals.sqlite``, metrics and the eval hook on the live
    pipeline. Then ``create_app(observed, ...)`` and ``obs.mount(app)``."""
    cfg = eval_settings or EvalSettings(signals_path=settings.state_dir / "signals.sqlite")
    obs = build_observability(cfg, pipeline.catalog, judge=AgreementJudge(), shared=settings.records)
    return obs, obs.observe(pipeline)
