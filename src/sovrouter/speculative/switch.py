"""Per-request choice between a plain and a speculative (prompt-lookup) path to the same deployment.

``SpeculativeSwitchAdapter(plain, lookup, predictor)`` is a ``ModelAdapter`` with the same target as its two
inner adapters. It asks the :class:`CopyPredictor` about each request and sends copy-heavy ones to ``lookup``.
The inner pair can be two in-process ``Llama`` instances (:mod:`sovrouter.speculative.local`, acceptance
measured) or two llama.cpp servers, one started with ``--draft_model prompt-lookup-decoding``
(:func:`prompt_lookup_server_args`; the server reports no acceptance).

With ``deployment`` given and its catalog entry declaring ``speculative``, a copy-heavy prediction is not
enough: the declared speed-up at the predicted copy fraction (:func:`~sovrouter.speculative.latency.
expected_speedup`) must also exceed 1, so a deployment measured to lose with prompt lookup (a small model on a
CPU, see docs/batching-and-speculation.md) never turns it on; and with ``max_batch`` declared, a request that
arrives while that many calls are already in flight through the switch (either path) decodes plainly, because a
loaded step is compute-bound and rejected drafts then cost time (``bench/speculative_gpu_batch.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from sovrouter.adapters.inflight import InFlightAdapter, InFlightBoard
from sovrouter.catalog import Deployment
from sovrouter.contracts import Candidate, ModelCall, ModelResult, StreamChunk
from sovrouter.errors import ConfigError
from sovrouter.protocols import ModelAdapter, closing_stream
from sovrouter.speculative.latency import expected_speedup
from sovrouter.speculative.predictor import CopyPredictor


def prompt_lookup_server_args(num_pred_tokens: int = 10) -> list[str]:
    """``extra_args`` for :class:`sovrouter.local_model.LlamaCppServer` to serve with prompt lookup on."""
    return ["--draft_model", "prompt-lookup-decoding", "--draft_model_num_pred_tokens", str(num_pred_tokens)]


class SpeculativeSwitchAdapter:
    def __init__(self, plain: ModelAdapter, lookup: ModelAdapter, predictor: CopyPredictor | None = None,
                 deployment: Deployment | None = None) -> None:
        if plain.target != lookup.target:
            raise ConfigError("speculative switch: both paths must serve the same deployment")
        self.plain = plain
        self.lookup = lookup
        self.predictor = predictor or CopyPredictor()
        self.deployment = deployment
        self.used_lookup = 0
        self.used_plain = 0
        self._load = InFlightBoard()  # both paths serve one target: one count of the calls running on either
        self._plain = InFlightAdapter(plain, self._load)
        self._lookup = InFlightAdapter(lookup, self._load)

    @property
    def target(self) -> Candidate:
        return self.plain.target

    @property
    def in_flight(self) -> int:
        """Calls running through either path now."""
        return self._load.count(self.target)

    def _pick(self, call: ModelCall) -> ModelAdapter:
        prediction = self.predictor.predict(call.request)
        worth_it = (self.deployment is None or self.deployment.speculative is None
                    or expected_speedup(self.deployment, prediction.copy_fraction, self.in_flight) > 1.0)
        if prediction.speculate and worth_it:
            self.used_lookup += 1
            return self._lookup
        self.used_plain += 1
        return self._plain

    async def generate(self, call: ModelCall) -> ModelResult:
        return await self._pick(call).generate(call)

    async def stream(self, call: ModelCall) -> AsyncIterator[StreamChunk]:
        async with closing_stream(self._pick(call).stream(call)) as chunks:
            async for chunk in chunks:
                yield chunk
