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
the correction learns in the gateway and in replay alike. The report runs in a worker thread (the copy fraction reads
the whole prompt: 0.5 s for 1 MB, which until 2026-11-28 held the event loop after every answer), awaited, so replay
stays deterministic; the gateway puts the adapter outside the reliability stack (``build.assemble``), so that
learning is never counted against the upstream call's deadline. Bounded: ``window`` residuals per template, at most
``max_templates`` templates (least recently seen dropped), ``global_window`` overall.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable

import numpy as np

from sovrouter.catalog import estimate_tokens
from sovrouter.contracts import Candidate, ModelCall, ModelResult, NormalizedRequest, StreamChunk
from sovrouter.protocols import ModelAdapter, closing_stream
from sovrouter.speculative.answer_shape import MAX_LOG_TOKENS, AnswerShape, AnswerShapeEstimator, RecentShapes
from sovrouter.speculative.predictor import observed_copy_fraction

Residual = tuple[float, float, float]  # copy, log tokens - log p50, log tokens - log p90


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
        self._by_template: OrderedDict[str, deque[Residual]] = OrderedDict()
        self.global_window = global_window
        self._global: dict[str, deque[Residual]] = {}  # per tenant: no tenant's traffic shifts another's
        self._base_shapes = RecentShapes(recent)  # the base prediction again when the answer arrives
        self._lock = threading.Lock()

    def _base_shape(self, request: NormalizedRequest) -> AnswerShape:
        return self._base_shapes.get(request, self.base.shape)

    @staticmethod
    def _stats(rows: list[Residual]) -> tuple[float, float, float]:
        a = np.asarray(rows, dtype=np.float64)
        return float(a[:, 0].mean()), float(np.median(a[:, 1])), float(np.percentile(a[:, 2], 90))

    def shift(self, request: NormalizedRequest) -> tuple[float, float, float]:
        """The current correction for ``request``'s template: copy, log p50, log p90."""
        key = template_key(request)
        with self._lock:
            glob = list(self._global.get(request.tenant, ()))
            mine = list(self._by_template.get(key, ()))
        g = self._stats(glob) if glob else (0.0, 0.0, 0.0)
        gw = len(glob) / (len(glob) + self.global_prior)
        g = (g[0] * gw, g[1] * gw, g[2] * gw)
        if not mine:
            return g
        k, n = self._stats(mine), len(mine)
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
                rows = self._by_template[key] = deque(maxlen=self.window)
                if len(self._by_template) > self.max_templates:
                    self._by_template.popitem(last=False)
            else:
                self._by_template.move_to_end(key)
            rows.append(row)
            self._global.setdefault(request.tenant, deque(maxlen=self.global_window)).append(row)


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

    async def generate(self, call: ModelCall) -> ModelResult:
        result = await self.inner.generate(call)
        if _complete(result):
            await asyncio.to_thread(self.observe, call.request, result.text)
        return result

    async def stream(self, call: ModelCall) -> AsyncIterator[StreamChunk]:
        async with closing_stream(self.inner.stream(call)) as chunks:
            async for chunk in chunks:
                if chunk.final is not None and _complete(chunk.final):
                    await asyncio.to_thread(self.observe, call.request, chunk.final.text)
                yield chunk
