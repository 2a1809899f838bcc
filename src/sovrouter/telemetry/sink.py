"""``TelemetrySink``: a RecordSink wrapper that writes the record to the inner sink, then derives metrics and
spans from that same record (so metrics, traces and the record store agree)."""

from __future__ import annotations

from dataclasses import dataclass

from sovrouter.contracts import RequestRecord
from sovrouter.protocols import RecordSink
from sovrouter.telemetry.metrics import RequestMetrics
from sovrouter.telemetry.traces import RecordTracer


@dataclass
class TelemetrySink:
    inner: RecordSink
    metrics: RequestMetrics | None = None
    tracer: RecordTracer | None = None

    def write(self, record: RequestRecord) -> None:
        self.inner.write(record)  # the record is the source of truth: a failed write emits nothing
        if self.metrics is not None:
            self.metrics.observe(record)
        if self.tracer is not None:
            self.tracer.emit(record)
