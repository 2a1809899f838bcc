"""The request path, assembled in one visible place.

    intake (gateway / replay) -> detect -> policy -> cache -> classify -> route -> execute -> record

The gateway and the replay harness both call :meth:`Pipeline.handle` (or :meth:`Pipeline.handle_stream`); there
is no second implementation. Everything is injected: swap a component by passing another implementation of its
Protocol (see ``protocols.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, field

from sovrouter.adapters.inflight import InFlightBoard
from sovrouter.catalog import Catalog, estimate_tokens
from sovrouter.contracts import (
    CacheOutcome,
    CallAttempt,
    Candidate,
    Detection,
    ModelCall,
    ModelResult,
    NormalizedRequest,
    PolicyVerdict,
    RequestRecord,
    RouteDecision,
    Signals,
    StreamChunk,
)
from sovrouter.errors import (
    AllCandidatesFailedError,
    NotFoundError,
    PolicyRefusalError,
    RequestCancelledError,
    SovrouterError,
    ToolsNotSupportedError,
    UnsupportedModalityError,
    UpstreamError,
)
from sovrouter.executor import Executor
from sovrouter.protocols import (
    Classifier,
    Clock,
    Detector,
    Policy,
    RecordSink,
    ResponseCache,
    Router,
    closing_stream,
)


@dataclass
class Outcome:
    """What the pipeline hands back to its caller (gateway or replay)."""

    record: RequestRecord
    result: ModelResult | None
    error: SovrouterError | None = None


@dataclass
class _Prepared:
    request: NormalizedRequest
    detection: Detection
    verdict: PolicyVerdict
    started_ms: float
    decision_ms: float = 0.0
    signals: Signals | None = None
    decision: RouteDecision | None = None
    cache: CacheOutcome = field(default_factory=CacheOutcome)
    cached: ModelResult | None = None


@dataclass
class Pipeline:
    catalog: Catalog
    detector: Detector
    policy: Policy
    classifier: Classifier
    router: Router
    executor: Executor
    cache: ResponseCache
    records: RecordSink
    clock: Clock
    timer: Callable[[], float] = time.perf_counter  # wall-clock for decision_ms, even in replay
    load: InFlightBoard | None = None  # calls in flight per deployment (read by the chooser and /metrics)
    _unrecorded: set[int] = field(default_factory=set, init=False, repr=False)  # id() of requests not yet recorded

    # ------------------------------------------------------------------ the request path
    async def handle(self, request: NormalizedRequest) -> Outcome:
        with self._one_record(request):
            return await self._handle(request)

    async def handle_stream(self, request: NormalizedRequest) -> AsyncGenerator[StreamChunk | Outcome, None]:
        """Yield chunks as they arrive, then the :class:`Outcome` last (also on failure)."""
        with self._one_record(request):
            async with aclosing(self._handle_stream(request)) as items:
                async for item in items:
                    yield item

    async def _handle(self, request: NormalizedRequest) -> Outcome:
        try:
            prep = await self._prepare(request)
        except SovrouterError as exc:
            return self._finish_error(request, exc, None)
        except asyncio.CancelledError:  # shutting down: the request still gets its one record
            self._finish_error(request, _cancelled(), None)
            raise
        if prep.cached is not None:
            return self._finish(prep, prep.cached, [])
        assert prep.decision is not None and prep.signals is not None
        call = ModelCall(request=request, allowed=prep.verdict.allowed)
        try:
            result = await self.executor.run(call, prep.decision, self._reviewer(prep))
            if not call.degraded:
                await self.cache.store(request, prep.detection, result)
            outcome = self._finish(prep, result, call.attempts)  # recorded before the release, which may await
        except UpstreamError as exc:
            outcome = self._finish_error(request, exc, prep, call.attempts)
        except asyncio.CancelledError:
            self._finish_error(request, _cancelled(), prep, call.attempts)
            raise
        finally:
            await self.cache.release(request)
        return outcome

    async def _handle_stream(self, request: NormalizedRequest) -> AsyncGenerator[StreamChunk | Outcome, None]:
        try:
            prep = await self._prepare(request)
        except SovrouterError as exc:
            yield self._finish_error(request, exc, None)
            return
        except asyncio.CancelledError:
            self._finish_error(request, _cancelled(), None)
            raise
        if prep.cached is not None:
            yield StreamChunk(candidate=prep.cached.candidate, delta=prep.cached.text)
            yield self._finish(prep, prep.cached, [])
            return
        assert prep.decision is not None
        call = ModelCall(request=request, allowed=prep.verdict.allowed)
        result: ModelResult | None = None
        try:
            # closed with this one: a reader that stops early (GeneratorExit here) ends the upstream call at once,
            # which logs it, so the record has the call and its cost, as a cancelled task's has (since 2026-11-28)
            async with closing_stream(self.executor.stream(call, prep.decision, self._reviewer(prep))) as chunks:
                async for chunk in chunks:
                    if chunk.final is not None:
                        result = chunk.final
                    yield chunk
            if result is None:  # never end silently truncated: no final chunk is an error
                raise AllCandidatesFailedError("upstream stream ended without completing")
            if not call.degraded:
                await self.cache.store(request, prep.detection, result)
            outcome = self._finish(prep, result, call.attempts)  # recorded before the release, which may await
        except UpstreamError as exc:
            outcome = self._finish_error(request, exc, prep, call.attempts)
        except (asyncio.CancelledError, GeneratorExit):
            self._finish_error(request, _cancelled(), prep, call.attempts)
            raise
        finally:
            await self.cache.release(request)
        yield outcome

    def check_requested_model(self, model: object, tenant: str) -> None:
        """A request's ``model`` (live chat and batch lines): the catalog's check (a 404 for an unknown model or one
        the tenant may not use), then that some deployment of it the tenant may use has an upstream here: a 404
        rather than a failed call for a model this gateway does not serve (until 2026-11-28 a 502 that OpenAI
        clients retried)."""
        named = self.catalog.check_requested_model(model, tenant)
        if named and not any(self.executor.wired(c) for c in named):
            raise NotFoundError("the model is not served by this gateway: no upstream is configured for it",
                                param="model")

    # ------------------------------------------------------------------ steps
    async def _prepare(self, request: NormalizedRequest) -> _Prepared:
        t0 = self.timer()
        started = self.clock.now_ms()
        servable = self._servable_candidates(request)
        # detection and classification are CPU work (spaCy, a sandboxed run of a shown snippet of up to 2 s CPU):
        # in a worker thread, so that one tenant's long request never holds every other request and /health
        detection = await asyncio.to_thread(self.detector.detect, request)
        verdict = self.policy.evaluate(request, detection, servable)
        prep = _Prepared(request, detection, verdict, started)
        allowed = verdict.allowed
        if not allowed:
            prep.decision_ms = (self.timer() - t0) * 1000
            raise _Refusal(prep, PolicyRefusalError("no deployment allowed by the tenant's policy can serve this"))
        prep.decision_ms = (self.timer() - t0) * 1000
        prep.cache, prep.cached = await self.cache.lookup(request, detection, allowed)
        if prep.cached is not None:
            return prep
        t1 = self.timer()
        try:  # the decision too: the latency-aware chooser's answer-shape features read the whole prompt
            prep.signals, prep.decision = await asyncio.to_thread(self._classify_and_decide, request, detection,
                                                                  allowed)
        except BaseException:  # a miss leads its key's single flight: never leave identical requests waiting
            await self.cache.release(request)
            raise
        prep.decision_ms += (self.timer() - t1) * 1000
        return prep

    def _classify_and_decide(self, request: NormalizedRequest, detection: Detection,
                             allowed: Sequence[Candidate]) -> tuple[Signals, RouteDecision]:
        """Steps 5 and 6, in a worker thread: CPU work over the whole prompt (until 2026-11-28 the decision ran on
        the event loop: 0.5 s for a 1 MB prompt with the latency-aware chooser, found in review)."""
        signals = self.classifier.classify(request, detection)
        return signals, self.router.decide(request, signals, allowed)

    def _servable_candidates(self, request: NormalizedRequest) -> list[Candidate]:
        """The deployments able to serve the request at all (tenant listing, modalities, requested model, tool
        calling), before any policy: a capability, not a permission."""
        wanted = request.modalities
        out: list[Candidate] = []
        with_tools: list[Candidate] = []
        for slot, dep in self.catalog.pairs():
            if not dep.available_for(request.tenant) or not wanted <= set(dep.modalities):
                continue
            if request.requested_model not in ("auto", slot.id, f"{slot.id}/{dep.id}"):
                continue
            out.append(Candidate(slot=slot.id, deployment=dep.id))
            if dep.tools:
                with_tools.append(out[-1])
        if not out:
            raise UnsupportedModalityError(
                "no configured deployment can serve this request (modality "
                + ",".join(sorted(wanted))
                + ")",
                param="messages",
            )
        if request.uses_tools:
            out = with_tools
            if not out:
                raise ToolsNotSupportedError("no deployment this request may use supports tool calling",
                                             param="tools" if request.tooling is not None else "messages")
        return out

    def _reviewer(
        self, prep: _Prepared
    ) -> Callable[[Sequence[ModelResult]], Candidate | None]:
        assert prep.decision is not None and prep.signals is not None
        decision, signals = prep.decision, prep.signals

        def review(results: Sequence[ModelResult]) -> Candidate | None:
            t0 = self.timer()
            try:
                return self.router.review(prep.request, signals, decision, results)
            finally:
                prep.decision_ms += (self.timer() - t0) * 1000

        return review

    # ------------------------------------------------------------------ record
    @contextmanager
    def _one_record(self, request: NormalizedRequest) -> Iterator[None]:
        """Every request handled gets its one record, also when something unexpected fails on its path (a bug in a
        component, which the gateway answers with a 500): then a record with status ``error`` and code
        ``internal_error`` is written on the way out, with what is known of the request (until 2026-11-28 such a
        request left no record at all). A stream its consumer stops reading before its outcome is recorded as
        ``request_cancelled``. Nothing is caught: the exception goes on to the caller's boundary."""
        key = id(request)  # a request object is handled once at a time (every caller builds its own)
        self._unrecorded.add(key)
        try:
            yield
        except BaseException as exc:
            if key in self._unrecorded:
                stopped = isinstance(exc, asyncio.CancelledError | GeneratorExit)
                self._finish_error(request, _cancelled() if stopped else SovrouterError("internal error"), None)
            raise
        finally:
            self._unrecorded.discard(key)

    def _write(self, request: NormalizedRequest, record: RequestRecord) -> None:
        self._unrecorded.discard(id(request))  # never a second record, even when this write fails
        self.records.write(record)

    def _finish(self, prep: _Prepared, result: ModelResult, attempts: list[CallAttempt]) -> Outcome:
        request = prep.request
        calls = [self._priced(request, a) for a in attempts]
        record = RequestRecord(
            request_id=request.request_id,
            external_id=request.external_id,
            tenant=request.tenant,
            data_class=request.data_class,
            effective_class=prep.verdict.effective_class,
            modalities=sorted(request.modalities),
            arrived_ms=request.arrived_ms,
            status="ok",
            final=result.candidate,
            calls=calls,
            cache=prep.cache,
            fallback_used=any(c.purpose == "fallback" for c in calls),
            escalated=any(c.purpose == "cascade" for c in calls),
            latency_ms=max(0.0, self.clock.now_ms() - prep.started_ms) or sum(c.latency_ms for c in calls),
            decision_ms=prep.decision_ms,
            cost_usd=sum(c.cost_usd for c in calls),
            detected_pii_types=list(prep.detection.pii_types),
            policy=prep.verdict.verdicts,
            decision=prep.decision,
            signals=prep.signals,
            response_text_chars=len(result.text),
        )
        self._write(request, record)
        return Outcome(record=record, result=result)

    def _finish_error(
        self,
        request: NormalizedRequest,
        exc: SovrouterError,
        prep: _Prepared | None,
        attempts: list[CallAttempt] | None = None,
    ) -> Outcome:
        if isinstance(exc, _Refusal):
            prep, exc = exc.prep, exc.error
        calls = [self._priced(request, a) for a in attempts or []]
        record = RequestRecord(
            request_id=request.request_id,
            external_id=request.external_id,
            tenant=request.tenant,
            data_class=request.data_class,
            effective_class=prep.verdict.effective_class if prep else request.data_class,
            modalities=sorted(request.modalities),
            arrived_ms=request.arrived_ms,
            status="refused" if isinstance(exc, PolicyRefusalError) else "error",
            error_code=exc.code,
            calls=calls,
            cache=prep.cache if prep else CacheOutcome(kind="bypass"),
            fallback_used=any(c.purpose == "fallback" for c in calls),
            latency_ms=max(0.0, self.clock.now_ms() - prep.started_ms) if prep else 0.0,
            decision_ms=prep.decision_ms if prep else 0.0,
            cost_usd=sum(c.cost_usd for c in calls),
            detected_pii_types=list(prep.detection.pii_types) if prep else [],
            policy=prep.verdict.verdicts if prep else [],
            decision=prep.decision if prep else None,
            signals=prep.signals if prep else None,
        )
        self._write(request, record)
        return Outcome(record=record, result=None, error=exc)

    def _priced(self, request: NormalizedRequest, attempt: CallAttempt) -> CallAttempt:
        return priced(self.catalog, request, attempt)


def priced(catalog: Catalog, request: NormalizedRequest, attempt: CallAttempt) -> CallAttempt:
    """``attempt`` with its catalog cost (and its prompt's tokens when the upstream reported none): what every
    call of a request's record carries, and the eval loop's shadow calls' tries too."""
    if attempt.outcome not in ("ok", "stream_error", "cancelled", "timeout"):
        return attempt  # refused before leaving, or failed without an answer: nothing billed
    # a timed-out or cancelled call had the prompt and may have generated: priced like a broken stream (its
    # prompt, and the output seen; until 2026-11-28 a timeout cost nothing, under-counting slow outages)
    c = attempt.candidate
    tokens_in = attempt.input_tokens or estimate_tokens(request.forwarded_text)  # every string sent upstream
    cost = catalog.cost_usd(c.slot, c.deployment, tokens_in, attempt.output_tokens)
    return attempt.model_copy(update={"input_tokens": tokens_in, "cost_usd": cost})


def _cancelled() -> RequestCancelledError:
    return RequestCancelledError("the request was cancelled before it finished")


class _Refusal(PolicyRefusalError):
    """Carries the prepared state out of ``_prepare`` so the refusal is recorded with its evidence."""

    def __init__(self, prep: _Prepared, error: PolicyRefusalError) -> None:
        super().__init__(error.message)
        self.prep = prep
        self.error = error
