"""Request coalescing for the local CPU model: continuous batching over one in-process llama.cpp context.

llama-cpp-python's server runs one generation at a time (a global lock), so concurrent requests to it only
queue. :class:`CoalescingLlamaAdapter` instead keeps up to ``slots`` sequences in one llama.cpp context
(``n_seq_max = slots``, one KV stream of ``ctx_per_seq`` cells per slot) and advances all of them with one
``llama_decode`` per step: new requests join between steps (each prompt prefilled in its own call), finished
ones leave and free their KV cells. Where a decode step is memory-bound (a GPU, a large model), one step for k
sequences costs about one step; on this project's CPU with a 135M model it is compute-bound and coalescing does
not raise tokens/s (measured in ``bench/batching.py``, see docs/batching-and-speculation.md).

A worker thread owns the context; callers await an asyncio future. Sampling is greedy unless the request sets
a temperature (then temperature + top-p with the request's seed). Stops: end-of-generation tokens, the
request's ``stop`` strings, ``max_tokens``, and the per-sequence context budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sovrouter.contracts import Candidate, ModelCall, ModelResult, NormalizedRequest, StreamChunk
from sovrouter.errors import ConfigError, UpstreamProtocolError, UpstreamUnavailableError
from sovrouter.speculative.local import chat_messages

PENALTY_LAST_N = 64  # llama-cpp-python's last_n_tokens_size: the window its penalties count tokens in


@dataclass
class _Seq:
    request: NormalizedRequest
    future: asyncio.Future[ModelResult]
    loop: asyncio.AbstractEventLoop
    prompt: list[int]
    max_tokens: int
    started: float
    seq_id: int = -1
    pos: int = 0
    out: list[int] = field(default_factory=list)
    rng: np.random.Generator | None = None
    first_token_s: float | None = None
    abandoned: bool = False  # the caller stopped waiting (cancelled, its deadline passed): free the slot


class CoalescingLlamaAdapter:
    """``ModelAdapter`` for one local GGUF model that batches concurrent requests (see the module docstring)."""

    def __init__(self, candidate: Candidate, model_path: str | Path, *, slots: int = 4, ctx_per_seq: int = 2048,
                 n_threads: int = 1, default_max_tokens: int = 256,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        try:
            from llama_cpp import Llama, llama_chat_format, llama_cpp
            from llama_cpp._internals import LlamaBatch, LlamaContext
        except ImportError as exc:
            raise ConfigError("llama-cpp-python is not installed; pip install -e '.[models]'") from exc
        self.candidate = candidate
        self.slots = max(1, slots)
        self.ctx_per_seq = ctx_per_seq
        self.default_max_tokens = default_max_tokens
        self.timer = timer
        self._lib = llama_cpp
        try:
            self._llm = Llama(str(model_path), n_ctx=256, n_threads=n_threads, n_threads_batch=n_threads,
                              verbose=False)
        except ValueError as exc:
            raise ConfigError(f"cannot load model {Path(model_path).name}: {exc}") from exc
        params = self._llm.context_params
        params.n_ctx = self.slots * ctx_per_seq
        params.n_batch = params.n_ctx
        params.n_ubatch = min(512, params.n_ctx)
        params.n_seq_max = self.slots
        params.kv_unified = False  # one KV stream per slot: attention never spans other sequences' cells
        self._ctx = LlamaContext(model=self._llm._model, params=params, verbose=False)
        self._batch = LlamaBatch(n_tokens=params.n_ctx, embd=0, n_seq_max=self.slots, verbose=False)
        self._n_batch = int(params.n_ctx)
        self._n_vocab = self._llm.n_vocab()
        model = self._llm._model
        eos_id, bos_id = self._llm.token_eos(), self._llm.token_bos()
        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ConfigError("the local model has no chat template")
        self._format = llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos_id) if eos_id != -1 else "",
            bos_token=model.token_get_text(bos_id) if bos_id != -1 else "",
        )
        self._queue: queue.Queue[_Seq | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self.steps = 0
        self.batched_tokens = 0

    @property
    def target(self) -> Candidate:
        return self.candidate

    # ------------------------------------------------------------------ caller side
    def _tokenize(self, request: NormalizedRequest) -> list[int]:
        formatted = self._format(messages=chat_messages(request))  # type: ignore[arg-type]
        return list(self._llm.tokenize(formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special,
                                       special=True))

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._loop, name="coalescing-llama", daemon=True)
                self._worker.start()

    async def generate(self, call: ModelCall) -> ModelResult:
        request = call.request
        prompt = self._tokenize(request)
        max_tokens = request.parameters.max_tokens or self.default_max_tokens
        if len(prompt) + 1 > self.ctx_per_seq:
            raise UpstreamProtocolError(f"prompt too long for local model {self.candidate.key}")
        loop = asyncio.get_running_loop()
        seq = _Seq(request=request, future=loop.create_future(), loop=loop, prompt=prompt,
                   max_tokens=min(max_tokens, self.ctx_per_seq - len(prompt)), started=self.timer())
        if request.parameters.temperature:
            seq.rng = _rng(request.parameters.seed)
        self._ensure_worker()
        self._queue.put(seq)
        try:
            return await seq.future
        except asyncio.CancelledError:
            seq.abandoned = True  # read by the worker between steps: a queued one never starts, a running one leaves
            raise

    async def stream(self, call: ModelCall) -> AsyncIterator[StreamChunk]:
        """Generates the whole answer, then emits it as one chunk and the final result."""
        result = await self.generate(call)
        yield StreamChunk(candidate=self.candidate, delta=result.text)
        yield StreamChunk(candidate=self.candidate, final=result)

    def close(self) -> None:
        if self._worker is not None and self._worker.is_alive():
            self._queue.put(None)
            self._worker.join(timeout=30)

    # ------------------------------------------------------------------ worker side
    def _loop(self) -> None:
        """The worker. However it ends (``close``, or an error nothing below expected), every sequence it still
        holds is failed and its cells freed: until 2026-11-28 a ValueError in one request's sampling killed the
        thread and left every caller batched with it waiting forever, and the next worker started with cells
        still held (found in review)."""
        active: list[_Seq] = []
        pending: list[_Seq] = []
        try:
            self._serve(active, pending)
        finally:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    pending.append(item)
            for seq in active + pending:  # the callers first: freeing cells of a broken context may raise too
                self._fail(seq, UpstreamUnavailableError(f"local model {self.candidate.key} stopped"))
            for seq in active:
                self._ctx.kv_cache_seq_rm(seq.seq_id, -1, -1)

    def _serve(self, active: list[_Seq], pending: list[_Seq]) -> None:
        """Runs until ``close``; ``active`` and ``pending`` are updated in place (the caller fails what is left)."""
        free = list(range(self.slots))
        while True:
            if not active and not pending:
                item = self._queue.get()
                if item is None:
                    return
                pending.append(item)
            while True:  # take everything queued now (joins the next step)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    return
                pending.append(item)
            pending[:] = [seq for seq in pending if not seq.abandoned]
            for seq in [seq for seq in active if seq.abandoned]:
                self._ctx.kv_cache_seq_rm(seq.seq_id, -1, -1)
                free.append(seq.seq_id)
                active.remove(seq)
            if not active and not pending:
                continue
            joining: list[_Seq] = []
            budget = self._n_batch - len(active)
            while pending and free and len(pending[0].prompt) <= budget:
                seq = pending.pop(0)
                seq.seq_id = free.pop(0)
                budget -= len(seq.prompt)
                joining.append(seq)
            try:
                self._step(active, joining)
            except (RuntimeError, ValueError, ArithmeticError) as exc:  # decode or sampling failed: fail this
                for seq in active + joining:  # step's sequences, keep serving the others
                    self._ctx.kv_cache_seq_rm(seq.seq_id, -1, -1)
                    free.append(seq.seq_id)
                    self._fail(seq, UpstreamUnavailableError(
                        f"local model {self.candidate.key} failed ({type(exc).__name__})"))
                active.clear()
                continue
            except BaseException:
                active += joining  # held now: the worker's end fails them with the others
                raise
            active += joining
            still: list[_Seq] = []
            for seq in active:
                if self._finished(seq):
                    self._ctx.kv_cache_seq_rm(seq.seq_id, -1, -1)
                    free.append(seq.seq_id)
                    self._complete(seq)
                else:
                    still.append(seq)
            active[:] = still

    def _step(self, active: list[_Seq], joining: list[_Seq]) -> None:
        """Prefill each joining prompt on its own (a batch mixing sequences is split into equal per-sequence
        micro-batches with per-slot KV streams, which would prefill one token at a time), then one decode step
        with one token per active sequence."""
        for seq in joining:
            rows = self._fill([(seq, tok, i, i == len(seq.prompt) - 1) for i, tok in enumerate(seq.prompt)])
            seq.pos = len(seq.prompt)
            self._decode_and_sample(rows)
        if active:
            rows = self._fill([(seq, seq.out[-1], seq.pos, True) for seq in active])
            for seq in active:
                seq.pos += 1
            self._decode_and_sample(rows)

    def _fill(self, tokens: list[tuple[_Seq, int, int, bool]]) -> list[tuple[_Seq, int]]:
        b = self._batch.batch
        rows: list[tuple[_Seq, int]] = []
        for n, (seq, tok, pos, want_logits) in enumerate(tokens):
            b.token[n], b.pos[n], b.n_seq_id[n], b.logits[n] = tok, pos, 1, want_logits
            b.seq_id[n][0] = seq.seq_id
            if want_logits:
                rows.append((seq, n))
        b.n_tokens = len(tokens)
        return rows

    def _decode_and_sample(self, rows: list[tuple[_Seq, int]]) -> None:
        self._ctx.decode(self._batch)
        self.steps += 1
        self.batched_tokens += int(self._batch.batch.n_tokens)
        now = self.timer()
        for seq, row in rows:
            logits = np.ctypeslib.as_array(self._ctx.get_logits_ith(row), shape=(self._n_vocab,))
            seq.out.append(self._sample(seq, logits))
            if seq.first_token_s is None:
                seq.first_token_s = now

    def _sample(self, seq: _Seq, logits: np.ndarray[Any, Any]) -> int:
        params = seq.request.parameters
        if params.frequency_penalty or params.presence_penalty:  # as llama.cpp: over the last 64 generated tokens
            logits = logits.copy()
            ids, counts = np.unique(np.asarray(seq.out[-PENALTY_LAST_N:], dtype=np.int64), return_counts=True)
            logits[ids] -= counts * (params.frequency_penalty or 0.0) + (params.presence_penalty or 0.0)
        if seq.rng is None or not params.temperature:
            return int(np.argmax(logits))
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            z = logits.astype(np.float64) / params.temperature
            p = np.exp(z - z.max())
            p /= p.sum()
        if not np.isfinite(p).all():  # a temperature so small the scaled logits overflow: greedy is its limit
            return int(np.argmax(logits))
        if params.top_p is not None and params.top_p < 1.0:
            order = np.argsort(-p)
            keep = order[: int(np.searchsorted(np.cumsum(p[order]), params.top_p)) + 1]
            q = np.zeros_like(p)
            q[keep] = p[keep]
            p = q / q.sum()
        return int(seq.rng.choice(len(p), p=p))

    def _is_eog(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self._llm._model.vocab, token))

    def _text(self, seq: _Seq) -> tuple[str, str]:
        tokens = seq.out[:-1] if seq.out and self._is_eog(seq.out[-1]) else seq.out
        text = self._llm.detokenize(tokens).decode("utf-8", errors="ignore")
        for stop in seq.request.parameters.stop:
            cut = text.find(stop)
            if cut >= 0:
                return text[:cut], "stop"
        if seq.out and self._is_eog(seq.out[-1]):
            return text, "stop"
        return text, "length"

    def _finished(self, seq: _Seq) -> bool:
        if self._is_eog(seq.out[-1]) or len(seq.out) >= seq.max_tokens:
            return True
        stops = seq.request.parameters.stop
        if stops:
            tail = self._llm.detokenize(seq.out[-16:]).decode("utf-8", errors="ignore")
            return any(s in tail for s in stops)
        return False

    def _complete(self, seq: _Seq) -> None:
        text, finish = self._text(seq)
        now = self.timer()
        result = ModelResult(
            candidate=self.candidate, text=text, finish_reason=finish, input_tokens=len(seq.prompt),
            output_tokens=len(seq.out) - (1 if seq.out and self._is_eog(seq.out[-1]) else 0),
            latency_ms=(now - seq.started) * 1000.0,
            ttft_ms=((seq.first_token_s or now) - seq.started) * 1000.0,
        )
        _notify(seq, result, None)

    def _fail(self, seq: _Seq, exc: Exception) -> None:
        _notify(seq, None, exc)


def _rng(seed: int | None) -> np.random.Generator:
    """The request's sampler; a negative seed (llama.cpp's -1: "random") is no seed. numpy refuses negative seeds
    with a ValueError, which was not an upstream error: no fallback, no record of the call."""
    return np.random.default_rng(seed if seed is not None and seed >= 0 else None)


def _notify(seq: _Seq, result: ModelResult | None, exc: Exception | None) -> None:
    """Hand the outcome to the caller's loop; a caller whose loop has closed is waiting for nothing, and must not
    take the worker (and every other caller's sequence) down with it."""
    with contextlib.suppress(RuntimeError):  # "Event loop is closed"
        seq.loop.call_soon_threadsafe(_resolve, seq.future, result, exc)


def _resolve(future: asyncio.Future[ModelResult], result: ModelResult | None, exc: Exception | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    elif result is not None:
        future.set_result(result)
