"""Correct the answer-shape model online from the answers the gateway sees.

:class:`~sovrouter.speculative.answer_shape.AnswerShapeModel` knows the prompt families it was fitted on and
misjudges new ones (``bench/deployment_latency.py``: on a source benchmark it never saw, copy fractions rank
*inversely* and the p90 length covers 72% of answers). Every answer that comes back is a free label, so
:class:`OnlineAnswerShape` keeps, per prompt template, the recent residuals of the base model (observed minus
predicted: copy fraction, log length against the p50 and against the p90) and shifts its predictions by
their mean / median / 90th percentile, shrunk towards the same statistics over all recent traffic (and those
towards no shift) with a weight of ``prior`` observations. The template is generic: the first line (at most 24
characters) and the last 48 characters of the last user message (a templated prompt's fixed header and
instruction suffix; a one-off prompt is its own template and gets only the global shift).

:class:`ShapeObservingAdapter` wraps a deployment's adapter (same Protocol) and reports each successful answer, so
the correction learns in the gateway and in replay alike. The report is awaited, so replay stays deterministic. It
runs in a worker thread (the copy fraction reads the whole prompt: 0.5 s for 1 MB, which until 2026-11-28 held the
event loop after every answer) unless prompt and answer together are at most ``INLINE_CHARS`` long: then the whole
report costs less than the hop to a thread and back (~60 us on the 2-core box), so it runs where it is. The gateway
puts the adapter outside the reliability stack (``build.assemble``), so that learning is never counted against the
upstream call's deadline. Bounded: ``window`` residuals per template, at most
``max_templates`` templates (least recently seen dropped), ``global_window`` overall.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import math
import threading
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable

import numpy as np

from sovrouter.catalog import estimate_tokens
from sovrouter.contracts import Candidate, ModelCall, ModelResult, NormalizedRequest, StreamChunk
from sovrouter.protocols import ModelAdapter, closing_stream
from sovrouter.speculative.answer_shape import MAX_LOG_TOKENS, AnswerShape, AnswerShapeEstimator, RecentShapes
from sovrouter.speculative.predictor import observed_copy_fraction

INLINE_CHARS = 1000  # prompt + answer: ~45 us of copy-fraction work, under a worker-thread hop (module docstring)
Residual = tuple[float, float, float]  # copy, log tokens - log p50, log tokens - log p90
Stats = tuple[float, float, float]  # mean copy residual, median log-p50 residual, 90th percentile log-p90 residual


def _lerp(a: float, b: float, t: float) -> float:
    """numpy's linear interpolation for quantiles (the same two-sided formula, so the same floats)."""
    diff = b - a
    return b - diff * (1.0 - t) if t >= 0.5 else a + diff * t


class ResidualWindow:
    """The latest ``size`` residuals and their statistics, kept up to date as rows arrive: the two order
    statistics from sorted copies of their columns (an insertion and a removal per row), so reading them costs
    no sort. Until 2026-11-28 every decision turned the whole window into an array and sorted it (~0.1 ms per
    request at the default 512 rows, on the gateway's request path). A NaN is counted, not sorted (it has no
    place in a sorted list): while one is in the window its column's statistic is NaN, as numpy's. A window of
    ``size`` 0 keeps nothing (as the ``deque(maxlen=0)`` it replaced). Not thread-safe (the owner locks)."""

    def __init__(self, size: int) -> None:
        self.rows: deque[Residual] = deque(maxlen=max(0, size))
        self._p50: list[float] = []
        self._p90: list[float] = []
        self._nans = [0, 0]  # NaNs in the p50 and p90 columns

    def __len__(self) -> int:
        return len(self.rows)

    def _add(self, i: int, column: list[float], value: float) -> None:
        if math.isnan(value):
            self._nans[i] += 1
        else:
            bisect.insort(column, value)

    def _remove(self, i: int, column: list[float], value: float) -> None:
        if math.isnan(value):
            self._nans[i] -= 1
        else:
            del column[bisect.bisect_left(column, value)]

    def append(self, row: Residual) -> None:
        if self.rows.maxlen == 0:
            return
        if len(self.rows) == self.rows.maxlen:
            old = self.rows[0]
            self._remove(0, self._p50, old[1])
            self._remove(1, self._p90, old[2])
        self.rows.append(row)
        self._add(0, self._p50, row[1])
        self._add(1, self._p90, row[2])

    def stats(self) -> Stats:
        """Mean of the copy residuals (correctly rounded, whatever the order), median of the p50 residuals and
        90th percentile (linear, as numpy's default) of the p90 residuals; the window must not be empty."""
        n = len(self.rows)
        try:
            mean = math.fsum(r[0] for r in self.rows) / n
        except (OverflowError, ValueError):  # inf - inf, or a sum past the float range: numpy's NaN or inf
            mean = sum(r[0] for r in self.rows) / n
        if self._nans[0]:
            median = math.nan
        else:
            mid = self._p50
            median = mid[n // 2] if n % 2 else (mid[n // 2 - 1] + mid[n // 2]) / 2.0
        if self._nans[1]:
            return mean, median, math.nan
        at = 0.9 * (n - 1)
        lo = int(at)
        hi = min(lo + 1, n - 1)
        return mean, median, _lerp(self._p90[lo], self._p90[hi], at - lo)


def template_key(request: NormalizedRequest) -> str:
    users = [m.text for m in request.messages if m.role == "user"]
    last = users[-1] if users else request.prompt_text
    head = last.split("\n", 1)[0][:24]
    # per tenant: one tenant's answers never shift another's estimates (and so its deployment or its cost)
    return hashlib.blake2b(f"{request.tenant}\x00{head}\x00{last[-48:]}".encode("utf-8", "replace"),
                           digest_size=12).hexdigest()


class OnlineAnswerShape:
    """An :class:`~sovrouter.routing.deployments.AnswerShapeEstimator` that corrects ``base`` from observed
    answers (module docstring)."""

    def __init__(self, base: AnswerShapeEstimator, *, prior: float = 3.0, global_prior: float = 50.0, window: int = 64,
                 max_templates: int = 4096, global_window: int = 512, recent: int = 1024) -> None:
        self.base = base
        self.prior = prior
        self.global_prior = global_prior
        self.window = window
        self.max_templates = max_templates
        self._by_template: OrderedDict[str, ResidualWindow] = OrderedDict()
        self.global_window = global_window
        self._global: dict[str, ResidualWindow] = {}  # per tenant: no tenant's traffic shifts another's
        self._base_shapes = RecentShapes(recent)  # the base prediction again when the answer arrives
        self._lock = threading.Lock()

    def _base_shape(self, request: NormalizedRequest) -> AnswerShape:
        return self._base_shapes.get(request, self.base.shape)

    @staticmethod
    def _read(window: ResidualWindow | None) -> tuple[Stats, int]:
        return (window.stats(), len(window)) if window else ((0.0, 0.0, 0.0), 0)

    def shift(self, request: NormalizedRequest) -> tuple[float, float, float]:
        """The current correction for ``request``'s template: copy, log p50, log p90."""
        key = template_key(request)
        with self._lock:
            g, n_glob = self._read(self._global.get(request.tenant))
            k, n = self._read(self._by_template.get(key))
        gw = n_glob / (n_glob + self.global_prior)
        g = (g[0] * gw, g[1] * gw, g[2] * gw)
        if not n:
            return g
        w = n + self.prior
        return ((n * k[0] + self.prior * g[0]) / w, (n * k[1] + self.prior * g[1]) / w,
                (n * k[2] + self.prior * g[2]) / w)

    def shape(self, request: NormalizedRequest) -> AnswerShape:
        base = self._base_shape(request)
        dc, d50, d90 = self.shift(request)
        l50 = min(MAX_LOG_TOKENS, max(0.0, float(np.log1p(base.tokens_p50)) + d50))
        l90 = max(l50, min(MAX_LOG_TOKENS, max(0.0, float(np.log1p(base.tokens_p90)) + d90)))
        return AnswerShape(round(min(1.0, max(0.0, base.copy_fraction + dc)), 4), max(1, round(float(np.expm1(l50)))),
                           max(1, round(float(np.expm1(l90)))), base.kind)

    def observe(self, request: NormalizedRequest, answer: str) -> None:
        """Learn from one answer to ``request`` (any model's)."""
        base = self._base_shape(request)
        tokens = float(np.log1p(estimate_tokens(answer)))
        row = (observed_copy_fraction(request.prompt_text, answer) - base.copy_fraction,
               tokens - float(np.log1p(base.tokens_p50)), tokens - float(np.log1p(base.tokens_p90)))
        key = template_key(request)
        with self._lock:
            rows = self._by_template.get(key)
            if rows is None:
                rows = self._by_template[key] = ResidualWindow(self.window)
                if len(self._by_template) > self.max_templates:
                    self._by_template.popitem(last=False)
            else:
                self._by_template.move_to_end(key)
            rows.append(row)
            glob = self._global.get(request.tenant)
            if glob is None:
                glob = self._global[request.tenant] = ResidualWindow(self.global_window)
            glob.append(row)


def _complete(result: ModelResult) -> bool:
    """A natural end of a text answer: not cut by ``max_tokens`` ("length"), not a call-only turn (its text is
    empty), so its length and copy fraction are labels for the request's shape."""
    return result.finish_reason == "stop" and not result.tool_calls


class ShapeObservingAdapter:
    """A :class:`ModelAdapter` that reports each successful answer to ``observe`` (then returns it unchanged);
    ``observe`` runs in a worker thread and must be thread-safe (:meth:`OnlineAnswerShape.observe` is)."""

    def __init__(self, inner: ModelAdapter, observe: Callable[[NormalizedRequest, str], None]) -> None:
        self.inner = inner
        self.observe = observe

    @property
    def target(self) -> Candidate:
        return self.inner.target

    async def _report(self, request: NormalizedRequest, answer: str) -> None:
        if len(request.prompt_text) + len(answer) <= INLINE_CHARS:
            self.observe(request, answer)
        else:
            await asyncio.to_thread(self.observe, request, answer)

    async def generate(self, call: ModelCall) -> ModelResult:
        result = await self.inner.generate(call)
        if _complete(result):
            await self._report(call.request, result.text)
        return result

    async def stream(self, call: ModelCall) -> AsyncIterator[StreamChunk]:
        async with closing_stream(self.inner.stream(call)) as chunks:
            async for chunk in chunks:
                if chunk.final is not None and _complete(chunk.final):
                    await self._report(call.request, chunk.final.text)
                yield chunk
