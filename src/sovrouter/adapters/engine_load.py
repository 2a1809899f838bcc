"""What a deployment's engines say they hold, read from their Prometheus ``/metrics``.

The :class:`~sovrouter.adapters.inflight.InFlightBoard` counts the calls this gateway instance has in flight,
and a replica chooser models the calls it sent. Behind a load balancer with several instances, or with other
clients on the same engines, that is only a share of what an engine serves. Serving engines publish it
themselves, requests running in the batch and requests waiting for a place in it:

- vLLM: ``vllm:num_requests_running`` and ``vllm:num_requests_waiting`` (always on);
- SGLang: ``sglang:num_running_reqs`` and ``sglang:num_queue_reqs`` (with ``--enable-metrics``);
- llama.cpp's server: ``llamacpp:requests_processing`` and ``llamacpp:requests_deferred`` (with ``--metrics``).

:class:`EngineLoadPoller` scrapes each replica of each configured deployment every ``interval_s`` (one task per
deployment; the replicas concurrently, each scrape with its own deadline). An engine *holds* its running plus its
waiting requests (a waiting request means the batch is full). Two readers:

- the deployment's count: the held requests of the replicas that answered, summed, go into the board, which
  carries the sum forward with this instance's own calls until the next report (the latency-aware deployment
  chooser compares it with a speculative deployment's ``max_batch``);
- each replica's count goes to the deployment's replica chooser through :class:`EngineReports`, so prefix
  affinity sees load it did not send (``reuse/prefix.py``).

A replica or deployment that does not answer (down, slow, no such metric, unreadable text) has its report
cleared: decisions fall back to this instance's own view (fail open, counted in ``stats``). A scrape is a bare
GET: no credentials, no request content. Like llm-d's scheduler, which scores vLLM pods by the queue and
KV-cache figures it scrapes, the engine's word is the source (``bench/engine_load.py``,
``bench/prefix_engine_load.py``).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from sovrouter.adapters.inflight import InFlightBoard
from sovrouter.contracts import Candidate

log = logging.getLogger(__name__)

RUNNING_GAUGES = ("vllm:num_requests_running", "sglang:num_running_reqs", "llamacpp:requests_processing")
"""The running gauges read, in this order; the first one present in a scrape is summed over its samples (an
engine with several models or ranks publishes one sample each)."""

WAITING_GAUGES = ("vllm:num_requests_waiting", "sglang:num_queue_reqs", "llamacpp:requests_deferred")
"""The same engines' waiting gauges, paired with ``RUNNING_GAUGES`` by position (absent: nothing waits)."""

_NAMES = RUNNING_GAUGES + WAITING_GAUGES
_WANTED_LINES = _NAMES + tuple(f"# {kind} {name} " for kind in ("HELP", "TYPE") for name in _NAMES)


def _values(family: Metric | None, name: str) -> list[float] | None:
    """The samples of gauge ``name`` (none when absent); ``None`` when one is not a finite count."""
    values = [] if family is None else [s.value for s in family.samples if s.name == name]
    return None if any(not math.isfinite(v) or v < 0 for v in values) else values


def _gauges(text: str) -> tuple[int, int] | None:
    """(running, waiting) from the first engine's gauges present; ``None`` when none is or a value is bad."""
    wanted = "\n".join(line for line in text.splitlines() if line.startswith(_WANTED_LINES))
    try:
        families = {f.name: f for f in text_string_to_metric_families(wanted)}
    except (ValueError, TypeError, IndexError, KeyError):
        return None
    for running_name, waiting_name in zip(RUNNING_GAUGES, WAITING_GAUGES, strict=True):
        if running_name not in families:
            continue
        running = _values(families[running_name], running_name)
        waiting = _values(families.get(waiting_name), waiting_name)
        if not running or waiting is None:
            return None
        return round(sum(running)), round(sum(waiting))
    return None


def running_requests(text: str) -> int | None:
    """Requests an engine is running, from its Prometheus exposition text; ``None`` when no known gauge is there
    or the text does not parse (never an exception: an engine's metrics are not this gateway's to trust).

    Only the lines of the known gauges are parsed: a vLLM exposition is ~100 KB of histograms, which the parser
    takes ~20 ms to read whole, on the serving loop, several times a second (the line filter takes well under 1 ms).
    """
    counts = _gauges(text)
    return None if counts is None else counts[0]


def held_requests(text: str) -> int | None:
    """Requests an engine holds: running plus waiting (``None`` as for :func:`running_requests`; an engine that
    publishes no waiting gauge counts as none waiting)."""
    counts = _gauges(text)
    return None if counts is None else counts[0] + counts[1]


class EngineReports:
    """Each replica's held requests, from the poller to whoever subscribed to its deployment (``stream``: the
    deployment's ``slot/deployment`` key). Synchronous fan-out on the serving loop; ``None`` withdraws a report."""

    def __init__(self) -> None:
        self._subscribers: dict[str, list[Callable[[str, int | None], None]]] = {}

    def subscribe(self, stream: str, callback: Callable[[str, int | None], None]) -> None:
        """``callback(replica base URL, held or None)`` for every report on ``stream``."""
        self._subscribers.setdefault(stream, []).append(callback)

    def publish(self, stream: str, replica: str, held: int | None) -> None:
        for callback in self._subscribers.get(stream, ()):
            callback(replica, held)


def metrics_url(base_url: str, path: str | None = None) -> str:
    """Where a replica's metrics are: ``path`` on its host if given, else the base URL's path without a trailing
    ``/v1``, then ``/metrics`` (``http://h:8000/v1`` -> ``http://h:8000/metrics``)."""
    url = httpx.URL(base_url)
    if path is None:
        root = url.path.rstrip("/")
        root = root[: -len("/v1")] if root.endswith("/v1") else root
        path = f"{root}/metrics"
    return str(url.copy_with(path=path, query=None, fragment=None))


@dataclass(frozen=True)
class EngineProbe:
    """Where one deployment's replicas publish their metrics (``urls``), the replicas' base URLs in the same
    order (``replicas``, the names their reports carry; default: the metrics URLs), and how often and how
    patiently to read them."""

    urls: tuple[str, ...]
    interval_s: float = 0.25
    timeout_s: float = 0.5
    replicas: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.replicas and len(self.replicas) != len(self.urls):
            raise ValueError("EngineProbe: replicas and urls must pair up")

    @property
    def names(self) -> tuple[str, ...]:
        return self.replicas or self.urls


class EngineLoadPoller:
    """Scrapes each deployment's replicas (``targets``) every ``interval_s`` of its probe; reports each
    deployment's sum into ``board`` and each replica's count on ``reports`` (stream: the deployment's key), either
    or both.

    ``start()`` in the serving loop (one task per deployment), ``aclose()`` at shutdown (the reports are cleared);
    ``poll_once()`` is one round over every deployment (tests)."""

    def __init__(self, board: InFlightBoard | None, targets: Mapping[Candidate, EngineProbe],
                 client: httpx.AsyncClient, max_bytes: int = 8 << 20, reports: EngineReports | None = None) -> None:
        self.board = board
        self.reports = reports
        self.targets = {t: p for t, p in targets.items() if p.urls}
        self.client = client
        self.max_bytes = max_bytes  # a larger answer is not read on (and counts as no report)
        self.stats: Counter[str] = Counter()  # scrapes, failed, rounds
        self._tasks: list[asyncio.Task[None]] = []
        self._warned: set[str] = set()  # URLs whose answer was told once (a misconfiguration, not a blip)

    async def poll_once(self) -> None:
        await asyncio.gather(*(self._poll(t, p) for t, p in self.targets.items()))

    def _publish(self, target: Candidate, probe: EngineProbe, answers: list[int | None]) -> None:
        held = [n for n in answers if n is not None]
        if self.board is not None:
            self.board.report(target, sum(held) if held else None)
        if self.reports is not None:
            for name, n in zip(probe.names, answers, strict=True):
                self.reports.publish(target.key, name, n)

    async def _poll(self, target: Candidate, probe: EngineProbe) -> None:
        answers = await asyncio.gather(*(self._scrape(u, probe.timeout_s) for u in probe.urls))
        self._publish(target, probe, list(answers))
        self.stats["rounds"] += 1

    async def _scrape(self, url: str, timeout_s: float) -> int | None:
        self.stats["scrapes"] += 1
        try:
            held = await self._read(url, timeout_s)
        except httpx.HTTPError as exc:
            log.debug("engine load: scrape of %s failed (%s)", url, type(exc).__name__)
            held = None
        if held is None:
            self.stats["failed"] += 1
        return held

    async def _read(self, url: str, timeout_s: float) -> int | None:
        async with self.client.stream("GET", url, timeout=timeout_s) as response:
            if response.status_code != 200:
                self._warn_once(url, f"answered HTTP {response.status_code}")
                return None
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self.max_bytes:
                    self._warn_once(url, f"answered more than {self.max_bytes} bytes")
                    return None
        held = held_requests(body.decode("utf-8", errors="replace"))
        if held is None:
            self._warn_once(url, "has no running/waiting request gauge this reader knows")
        return held

    def _warn_once(self, url: str, what: str) -> None:
        """A scrape that answers but cannot be read is a misconfiguration (a wrong ``engine_load.path``, an
        engine without metrics), not a network blip: said once per URL at warning level (until 2026-11-28 only
        at debug level, so the load simply never arrived). The URL is shown without any credentials."""
        if url in self._warned:
            return
        self._warned.add(url)
        parts = urlsplit(url)
        shown = f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"
        log.warning("engine load: %s %s; no load is read from it (check engine_load.path)", shown, what)

    async def _run(self, target: Candidate, probe: EngineProbe) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                started = loop.time()
                await self._poll(target, probe)
                await asyncio.sleep(max(0.0, probe.interval_s - (loop.time() - started)))  # a round every interval
        finally:  # however the task ends, no report outlives it (a stale report would hold the count up)
            self._publish(target, probe, [None] * len(probe.urls))

    async def start(self) -> None:
        if any(not t.done() for t in self._tasks):
            return
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run(t, p)) for t, p in self.targets.items()]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for target, probe in self.targets.items():
            self._publish(target, probe, [None] * len(probe.urls))
