"""OpenTelemetry spans built from the per-request record, with the GenAI semantic conventions.

One ``SERVER`` span per request (``gen_ai.operation.name="chat"``) and one ``CLIENT`` child per upstream call
(``gen_ai.request.model`` = the slot, ``gen_ai.usage.*`` = the call's tokens). Timestamps come from the record:
the request span starts at ``arrived_ms`` and lasts ``latency_ms``; the record does not carry per-call start
times, so the calls are laid out one after another from ``arrived_ms + decision_ms`` with their own
``latency_ms`` (exact for sequential fallbacks and cascades, which is how the executor runs them).

The tracer provider belongs to the instance (never the global one). :func:`make_tracer_provider` wires an OTLP
exporter when ``opentelemetry-exporter-otlp`` is installed and an endpoint is given, or any exporter passed in
(``InMemorySpanExporter`` in tests).
"""

from __future__ import annotations

import importlib
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from sovrouter.contracts import CallAttempt, RequestRecord
from sovrouter.errors import ConfigError

GEN_AI_SYSTEM = "sovrouter"


def make_tracer_provider(exporter: SpanExporter | None = None, otlp_endpoint: str | None = None,
                         service_name: str = "sovrouter", batch: bool = True) -> TracerProvider:
    """A private provider. ``exporter`` wins; else OTLP (gRPC) to ``otlp_endpoint`` if the exporter package is
    installed (a clear ConfigError if not); else no exporter (spans are dropped)."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter is None and otlp_endpoint:
        try:
            mod = importlib.import_module("opentelemetry.exporter.otlp.proto.grpc.trace_exporter")
        except ImportError as exc:
            raise ConfigError("OTLP tracing needs the opentelemetry-exporter-otlp package") from exc
        exporter = mod.OTLPSpanExporter(endpoint=otlp_endpoint)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    return provider


def _ns(ms: float) -> int:
    return round(ms * 1_000_000)


class RecordTracer:
    """Emits the spans of one record. ``epoch_offset_ms`` is added to record times (records from a monotonic or
    simulated clock can be placed on the wall-clock axis)."""

    def __init__(self, provider: TracerProvider, epoch_offset_ms: float = 0.0) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("sovrouter.telemetry")
        self.epoch_offset_ms = epoch_offset_ms

    def emit(self, record: RequestRecord) -> None:
        start_ms = record.arrived_ms + self.epoch_offset_ms
        model = record.final.slot if record.final is not None else "none"
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": GEN_AI_SYSTEM,
            "gen_ai.request.model": record.decision.plan[0].slot if record.decision and record.decision.plan
            else "auto",
            "gen_ai.response.id": record.request_id,
            "gen_ai.usage.input_tokens": sum(c.input_tokens for c in record.calls),
            "gen_ai.usage.output_tokens": sum(c.output_tokens for c in record.calls),
            "sovrouter.tenant": record.tenant,
            "sovrouter.status": record.status,
            "sovrouter.cache": record.cache.kind,
            "sovrouter.cost_usd": record.cost_usd,
            "sovrouter.fallback_used": record.fallback_used,
            "sovrouter.escalated": record.escalated,
            "sovrouter.decision_ms": record.decision_ms,
            "sovrouter.data_class": record.effective_class,
        }
        if record.final is not None:
            attrs["gen_ai.response.model"] = model
            attrs["sovrouter.deployment"] = record.final.deployment
        if record.decision is not None:
            attrs["sovrouter.router"] = record.decision.router
        if record.error_code:
            attrs["error.type"] = record.error_code
        root = self._tracer.start_span(f"chat {model}", kind=SpanKind.SERVER, start_time=_ns(start_ms),
                                       attributes=attrs)
        if record.status != "ok":
            root.set_status(Status(StatusCode.ERROR, record.error_code or record.status))
        ctx = trace.set_span_in_context(root)
        t = start_ms + record.decision_ms
        for i, call in enumerate(record.calls):
            self._call_span(ctx, call, t, i)
            t += call.latency_ms
        root.end(end_time=_ns(start_ms + max(record.latency_ms, t - start_ms if record.calls else 0.0)))

    def _call_span(self, ctx: Any, call: CallAttempt, start_ms: float, index: int) -> None:
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": GEN_AI_SYSTEM,
            "gen_ai.request.model": call.candidate.slot,
            "gen_ai.usage.input_tokens": call.input_tokens,
            "gen_ai.usage.output_tokens": call.output_tokens,
            "server.address": call.candidate.deployment,
            "sovrouter.deployment": call.candidate.deployment,
            "sovrouter.purpose": call.purpose,
            "sovrouter.outcome": call.outcome,
            "sovrouter.cost_usd": call.cost_usd,
            "sovrouter.call_index": index,
        }
        if call.outcome == "ok":
            attrs["gen_ai.response.model"] = call.candidate.slot
        if call.ttft_ms is not None:
            attrs["sovrouter.ttft_ms"] = call.ttft_ms
        if call.outcome != "ok":
            attrs["error.type"] = call.error or call.outcome
        span = self._tracer.start_span(f"chat {call.candidate.slot}", context=ctx, kind=SpanKind.CLIENT,
                                       start_time=_ns(start_ms), attributes=attrs)
        if call.outcome != "ok":
            span.set_status(Status(StatusCode.ERROR, call.error or call.outcome))
        span.end(end_time=_ns(start_ms + call.latency_ms))
