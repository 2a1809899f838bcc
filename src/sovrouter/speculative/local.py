"""In-process llama.cpp adapter (llama-cpp-python's ``Llama``), optionally with counted prompt lookup.

Used where acceptance must be measured: llama.cpp's server accepts ``--draft_model prompt-lookup-decoding`` but
reports no draft statistics, so the per-request ``spec_acceptance`` is only known in process. One ``Llama`` runs
one generation at a time (an asyncio lock serialises calls; the work runs in a thread). Greedy decoding by
default (``temperature`` 0 unless the request sets one) so plain and prompt-lookup runs give the same text.

Per-request switching uses a pair (:func:`load_llama_pair` + :class:`~sovrouter.speculative.switch.
SpeculativeSwitchAdapter`): the plain instance keeps ``logits_all`` off, which prompt lookup needs on.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np

from sovrouter.contracts import Candidate, ModelCall, ModelResult, NormalizedRequest, StreamChunk
from sovrouter.errors import ConfigError, UpstreamProtocolError
from sovrouter.speculative.lookup import CountingPromptLookup


def load_llama(model_path: str | Path, *, prompt_lookup: bool, n_threads: int = 1, n_ctx: int = 2048,
               num_pred_tokens: int = 10, max_ngram_size: int = 2) -> tuple[Any, CountingPromptLookup | None]:
    """A ``Llama`` for ``model_path`` and its counting draft model (``None`` without prompt lookup)."""
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise ConfigError("llama-cpp-python is not installed; pip install -e '.[models]'") from exc
    draft = CountingPromptLookup(max_ngram_size=max_ngram_size, num_pred_tokens=num_pred_tokens) \
        if prompt_lookup else None
    try:
        llm = Llama(str(model_path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                    verbose=False, draft_model=draft)
    except ValueError as exc:
        raise ConfigError(f"cannot load model {Path(model_path).name}: {exc}") from exc
    return llm, draft


def chat_messages(request: NormalizedRequest) -> list[dict[str, str]]:
    return [{"role": "system" if m.role == "developer" else m.role, "content": m.text} for m in request.messages]


class LlamaLocalAdapter:
    """``ModelAdapter`` over one in-process ``Llama``; ``draft`` is its counting prompt-lookup draft, if any."""

    def __init__(self, candidate: Candidate, llm: Any, draft: CountingPromptLookup | None = None, *,
                 default_max_tokens: int = 256, timer: Callable[[], float] = time.perf_counter) -> None:
        self.candidate = candidate
        self.llm = llm
        self.draft = draft
        self.default_max_tokens = default_max_tokens
        self.timer = timer
        self._lock = asyncio.Lock()  # callers queue here, off the thread pool
        # held by the worker thread for the whole generation: a call cancelled (a timeout) releases the asyncio
        # lock while its thread still generates, and the next call then ran on the same Llama at once (found in
        # review, 2026-11-28); llama.cpp's context is not thread-safe
        self._llm_lock = threading.Lock()

    @property
    def target(self) -> Candidate:
        return self.candidate

    def _run(self, request: NormalizedRequest) -> ModelResult:
        with self._llm_lock:
            return self._run_locked(request)

    def _run_locked(self, request: NormalizedRequest) -> ModelResult:
        p = request.parameters
        kwargs: dict[str, Any] = {
            "max_tokens": p.max_tokens or self.default_max_tokens,
            "temperature": 0.0 if p.temperature is None else p.temperature,
        }
        if p.top_p is not None:
            kwargs["top_p"] = p.top_p
        if p.stop:
            kwargs["stop"] = list(p.stop)
        if p.seed is not None:
            kwargs["seed"] = p.seed
        if p.frequency_penalty is not None:
            kwargs["frequency_penalty"] = p.frequency_penalty
        if p.presence_penalty is not None:
            kwargs["presence_penalty"] = p.presence_penalty
        if self.draft is not None:
            self.draft.reset()
        started = self.timer()
        out = self.llm.create_chat_completion(chat_messages(request), **kwargs)
        latency_ms = (self.timer() - started) * 1000.0
        try:
            choice = out["choices"][0]
            usage = out.get("usage") or {}
            acceptance, drafted = self._draft_stats(int(usage.get("prompt_tokens", 0))
                                                    + int(usage.get("completion_tokens", 0)))
            return ModelResult(
                candidate=self.candidate,
                text=choice["message"].get("content") or "",
                finish_reason=str(choice.get("finish_reason") or "stop"),
                input_tokens=int(usage.get("prompt_tokens", 0)),
                output_tokens=int(usage.get("completion_tokens", 0)),
                latency_ms=latency_ms,
                spec_acceptance=acceptance,
                spec_drafted_tokens=drafted,
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise UpstreamProtocolError(f"local model {self.candidate.key} returned a malformed completion") from exc

    def _draft_stats(self, used_tokens: int) -> tuple[float | None, int | None]:
        """Accepted / drafted and the tokens drafted for the generation just finished (``(None, None)`` without a
        draft model). The model's buffer also holds drafts that were evaluated but never verified once generation
        stopped: only the prompt + output tokens count. On with nothing proposed is ``(None, 0)``: no ratio (until
        2026-11-28 it was recorded as an acceptance of 0.0, as if every draft had been rejected, where the HTTP
        path records none)."""
        if self.draft is None:
            return None, None
        kept = np.asarray(self.llm.input_ids[: min(self.llm.n_tokens, used_tokens)], dtype=np.intc)
        stats = self.draft.finish(kept)
        return stats.acceptance, stats.drafted

    async def generate(self, call: ModelCall) -> ModelResult:
        async with self._lock:
            return await asyncio.to_thread(self._run, call.request)

    async def stream(self, call: ModelCall) -> AsyncIterator[StreamChunk]:
        """Generates the whole answer, then emits it as one chunk and the final result."""
        result = await self.generate(call)
        yield StreamChunk(candidate=self.candidate, delta=result.text)
        yield StreamChunk(candidate=self.candidate, final=result)
