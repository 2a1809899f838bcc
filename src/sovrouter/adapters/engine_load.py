"""What a deployment's engines say they are running, read from their Prometheus ``/metrics``.

The :class:`~sovrouter.adapters.inflight.InFlightBoard` counts the calls this gateway instance has in flight.
Behind a load balancer with several instances, or with other clients on the same engines, that is only a share
of the batch an engine decodes, and the batch is what decides whether speculative decoding still pays
(``Speculative.max_batch``). Serving engines publish it themselves:

- vLLM: ``vllm:num_requests_running`` (gauge, always on);
- SGLang: ``sglang:num_running_reqs`` (with ``--enable-metrics``);
- llama.cpp's server: ``llamacpp:requests_processing`` (with ``--metrics``).

:class:`EngineLoadPoller` scrapes each replica of each configured deployment every ``interval_s`` (one task per
deployment; the replicas concurrently, each scrape with its own deadline), sums the running requests of the
replicas that answered and reports the sum into the board, which carries it forward with this instance's own
calls until the next report (:class:`~sovrouter.adapters.inflight.InFlightBoard`). A deployment none of whose
replicas answers (down, slow, no such metric, unreadable text) has its report cleared: the count falls back to
this instance's own (fail open, counted in ``stats``). A scrape is a bare GET: no credentials, no request
content. Like llm-d's scheduler, which scores vLLM pods by the queue and KV-cache figures it scrapes, the
engine's word is the source, and the gateway's own calls cover part of the poll's lag (``bench/engine_load.py``).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from sovrouter.adapters.inflight import InFlightBoard
from sovrouter.contracts import Candidate

log = logging.getLogger(__name__)

RUNNING_GAUGES = ("vllm:num_requests_running", "sglang:num_running_reqs", "llamacpp:requests_processing")
"""The gauges read, in this order; the first one present in a scrape is summed over its samples (an engine with
several models or ranks publishes one sample each)."""


_WANTED_LINES = RUNNING_GAUGES + tuple(f"# {kind} {name} " for kind in ("HELP", "TYPE") for name in RUNNING_GAUGES)


def running_requests(text: str) -> int | None:
    """Requests an engine is running, from its Prometheus exposition text; ``None`` when no known gauge is there
    or the text does not parse (never an exception: an engine's metrics are not this gateway's to trust).

    Only the lines of the known gauges are parsed: a vLLM exposition is ~100 KB of histograms, which the parser
    takes ~20 ms to read whole, on the serving loop, several times a second (the line filter takes well under 1 ms).
    """
    wanted = "\n".join(line for line in text.splitlines() if line.startswith(_WANTED_LINES))
    try:
        families = {f.name: f for f in text_string_to_metric_families(wanted)}
    except (ValueError, TypeError, IndexError, KeyError):
        return None
    for name in RUNNING_GAUGES:
        family = families.get(name)
        if family is None:
            continue
        values = [s.value for s in family.samples if s.name == name]
        if not values or any(not math.isfinite(v) or v < 0 for v in values):
            return None
        return round(sum(values))
    return None


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
    """Where one deployment's replicas publish their metrics, and how often and how patiently to read them."""

    urls: tuple[str, ...]
    interval_s: float = 0.25
    timeout_s: float = 0.5


class EngineLoadPoller:
    """Scrapes each deployment's replicas (``targets``) every ``interval_s`` of its probe into ``board``.

    ``start()`` in the serving loop (one task per deployment), ``aclose()`` at shutdown (the reports are cleared);
    ``poll_once()`` is one round over every deployment (tests)."""

    def __init__(self, board: InFlightBoard, targets: Mapping[Candidate, EngineProbe],
                 client: httpx.AsyncClient, max_bytes: int = 8 << 20) -> None:
        self.board = board
        self.targets = {t: p for t, p in targets.items() if p.urls}
        self.client = client
        self.max_bytes = max_bytes  # a larger answer is not read on (and counts as no report)
        self.stats: Counter[str] = Counter()  # scrapes, failed, rounds
        self._tasks: list[asyncio.Task[None]] = []

    async def poll_once(self) -> None:
        await asyncio.gather(*(self._poll(t, p) for t, p in self.targets.items()))

    async def _poll(self, target: Candidate, probe: EngineProbe) -> None:
        answers = await asyncio.gather(*(self._scrape(u, probe.timeout_s) for u in probe.urls))
        running = [n for n in answers if n is not None]
        self.board.report(target, sum(running) if running else None)
        self.stats["rounds"] += 1

    async def _scrape(self, url: str, timeout_s: float) -> int | None:
        self.stats["scrapes"] += 1
        try:
            running = await self._read(url, timeout_s)
        except httpx.HTTPError as exc:
            log.debug("engine load: scrape of %s failed (%s)", url, type(exc).__name__)
            running = None
        if running is None:
            self.stats["failed"] += 1
        return running

    async def _read(self, url: str, timeout_s: float) -> int | None:
        async with self.client.stream("GET", url, timeout=timeout_s) as response:
            if response.status_code != 200:
                return None
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self.max_bytes:
                    return None
        return running_requests(body.decode("utf-8", errors="replace"))

    async def _run(self, target: Candidate, probe: EngineProbe) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                started = loop.time()
                await self._poll(target, probe)
                await asyncio.sleep(max(0.0, probe.interval_s - (loop.time() - started)))  # a round every interval
        finally:  # however the task ends, no report outlives it (a stale report would hold the count up)
            self.board.report(target, None)

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
        for target in self.targets:
            self.board.report(target, None)
