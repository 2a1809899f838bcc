"""Test doubles shipped with the package: adapters that answer, fail, stall or break mid-stream, and an
in-memory record sink. Use them in your own tests of routing and reliability code."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterator, Callable, MutableMapping
from dataclasses import dataclass, field

from sovrouter.contracts import Candidate, ModelCall, ModelResult, RequestRecord, StreamChunk
from sovrouter.errors import UpstreamError


@dataclass
class FakeAdapter:
    """Answers with ``text`` (split into ``chunks`` when streaming) after ``delay_s``; counts its calls."""

    candidate: Candidate
    text: str = "ok"
    delay_s: float = 0.0
    chunks: int = 3
    calls: int = 0

    @property
    def target(self) -> Candidate:
        return self.candidate

    def _result(self) -> ModelResult:
        return ModelResult(candidate=self.candidate, text=self.text, input_tokens=5,
                           output_tokens=max(1, len(self.text) // 4), latency_ms=self.delay_s * 1000)

    async def generate(self, call: ModelCall) -> ModelResult:
        self.calls += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return self._result()

    async def stream(self, call: ModelCall) -> AsyncIterator[StreamChunk]:
        self.calls += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        n = max(1, self.chunks)
        step = max(1, -(-len(self.text) // n))
        for i in range(0, len(self.text), step):
            yield StreamChunk(candidate=self.candidate, delta=self.text[i : i + step])
        yield StreamChunk(candidate=self.candidate, final=self._result())


@dataclass
class FailingAdapter:
    """Fails every call with ``error`` (an UpstreamError subclass instance); counts its calls."""

    candidate: Candidate
    error: UpstreamError = field(default_factory=lambda: UpstreamError("upstream returned 500"))
    calls: int = 0

    @property
    def target(self) -> Candidate:
        return self.candidate

    async def generate(self, call: ModelCall) -> ModelResult:
        self.calls += 1
        raise self.error

    async def stream(self, call: ModelCall) -> AsyncIterator[StreamChunk]:
        self.calls += 1
        raise self.error
        yield  # pragma: no cover


@dataclass
class MidStreamFailingAdapter:
    """Streams ``first`` then fails; ``generate`` fails too (the connection drops mid-answer)."""

    candidate: Candidate
    first: str = "partial "
    calls: int = 0

    @property
    def target(self) -> Candidate:
        return self.candidate

    async def generate(self, call: ModelCall) -> ModelResult:
        self.calls += 1
        raise UpstreamError("connection dropped mid-answer")

    async def stream(self, call: ModelCall) -> AsyncIterator[StreamChunk]:
        self.calls += 1
        yield StreamChunk(candidate=self.candidate, delta=self.first)
        raise UpstreamError("connection dropped mid-stream")


@dataclass
class MemorySink:
    """Records in memory; like :class:`~sovrouter.store.records.SQLiteRecordStore`, a second record for the same
    request id is an error (a double that accepted it hid a batch-resume bug)."""

    records: list[RequestRecord] = field(default_factory=list)
    _ids: set[str] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        self._ids.update(r.request_id for r in self.records)

    def write(self, record: RequestRecord) -> None:
        if record.request_id in self._ids:
            raise ValueError("a record with this request id was already written")
        self._ids.add(record.request_id)
        self.records.append(record)


@dataclass
class FlakyAdapter:
    """Fails its first ``fail_times`` calls with ``error``, then answers ``text``; counts its calls.
    ``chunk_delay_s`` slows each streamed chunk (for total-timeout tests)."""

    candidate: Candidate
    fail_times: int = 1
    error: UpstreamError = field(default_factory=lambda: UpstreamError("upstream returned 503"))
    text: str = "ok"
    chunk_delay_s: float = 0.0
    calls: int = 0

    @property
    def target(self) -> Candidate:
        return self.candidate

    def _result(self) -> ModelResult:
        return ModelResult(candidate=self.candidate, text=self.text, input_tokens=5,
                           output_tokens=max(1, len(self.text) // 4))

    async def generate(self, call: ModelCall) -> ModelResult:
        self.calls += 1
        if self.calls <= self.fail_times:
            raise self.error
        return self._result()

    async def stream(self, call: ModelCall) -> AsyncIterator[StreamChunk]:
        self.calls += 1
        if self.calls <= self.fail_times:
            raise self.error
        for ch in self.text:
            if self.chunk_delay_s:
                await asyncio.sleep(self.chunk_delay_s)
            yield StreamChunk(candidate=self.candidate, delta=ch)
        yield StreamChunk(candidate=self.candidate, final=self._result())


def counts_read_race(stats: MutableMapping[str, int], read: Callable[[], object], names: int = 200_000) -> list[
        RuntimeError]:
    """Count up to ``names`` names never counted before into ``stats`` (as the event loop does) while another thread
    calls ``read`` in a loop (as ``/metrics`` does); returns the RuntimeErrors the reader met, empty when reading
    the counts is safe ("dictionary changed size during iteration" otherwise). The thread switch interval is made
    tiny for the run, so an unsafe read fails within a few thousand names."""
    failures: list[RuntimeError] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                read()
            except RuntimeError as exc:
                failures.append(exc)
                return

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(names):
            stats[f"new_{i}"] += 1
            if failures:
                break
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
    return failures
