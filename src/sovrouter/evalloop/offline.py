"""Offline quality signals: join a replay's per-request records with the workload's score file.

The served answer's score is the score of the slot that produced it (a cache hit is credited with the score of
the slot that answered the source request, which is ``record.final``); the reference score is the score of the
reference route the record's own policy verdicts allowed (frontier-first). Only the score file is read (never
labels); responses, when given, let the failure modes be classified from the answer text.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from sovrouter.adapters.replay import RecordedResponse
from sovrouter.contracts import CacheOutcome, CallAttempt, Candidate, CandidateVerdict, RequestRecord
from sovrouter.errors import ConfigError
from sovrouter.evalloop.failures import classify_failure
from sovrouter.evalloop.shadow import REFERENCE_ORDER, reference_candidate
from sovrouter.evalloop.signals import QualitySignal
from sovrouter.replay.decisions import Decision
from sovrouter.report.reference import Facts, allowed
from sovrouter.store.records import SQLiteRecordStore
from sovrouter.workload import ReplayInputs


def offline_signals(records: Iterable[RequestRecord], scores: Mapping[tuple[str, str], float],
                    responses: Mapping[tuple[str, str], RecordedResponse] | None = None,
                    order: tuple[str, ...] = REFERENCE_ORDER) -> Iterator[QualitySignal]:
    for rec in records:
        wid = rec.request_id if rec.external_id is None else rec.external_id  # "" is an id too
        if rec.status != "ok" or rec.final is None:
            mode = classify_failure(rec)
            if mode is not None:
                yield QualitySignal(request_id=rec.request_id, source="offline", failure_mode=mode,
                                    created_ms=rec.arrived_ms or 1.0)
            continue
        score = scores.get((wid, rec.final.slot))
        if score is None:
            continue
        ref = reference_candidate(rec, order)
        ref_score = scores.get((wid, ref.slot)) if ref is not None else None
        resp = responses.get((wid, rec.final.slot)) if responses is not None else None
        mode = classify_failure(rec, resp.response if resp is not None else None, score)
        yield QualitySignal(request_id=rec.request_id, source="offline", score=score, reference_score=ref_score,
                            failure_mode=mode, slot=rec.final.slot, deployment=rec.final.deployment,
                            reference_slot=ref.slot if ref is not None else None, created_ms=rec.arrived_ms or 1.0)


def load_records(db: Path | None = None, jsonl: Path | None = None) -> list[RequestRecord]:
    """Records from a record store (SQLite, opened read-only) or a JSONL export (``sovrouter replay --records``)."""
    if db is not None:
        store = SQLiteRecordStore(db, read_only=True)  # a missing file or another SQLite file: a ConfigError
        try:
            return list(store)
        finally:
            store.close()
    if jsonl is not None:
        try:
            with open(jsonl, encoding="utf-8") as fh:
                return [RequestRecord.model_validate_json(line) for line in fh if line.strip()]
        except OSError as exc:
            raise ConfigError(f"cannot read records {jsonl}: {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError(f"records {jsonl}: invalid record line ({type(exc).__name__})") from None
    raise ConfigError("give --db (record store) or --records (records JSONL)")


def records_from_decisions(decisions: Iterable[Decision], inputs: ReplayInputs) -> list[RequestRecord]:
    """Minimal records rebuilt from a replay's decision file (when the replay kept no records): route, cost
    (catalog prices, the workload's token counts), cache, and the policy verdicts of the README's policy
    reading applied with the system's *own* personal-data detection (``detected.pii_types``), never the labels.
    They carry no router classification, so the weakness slices are per slot only."""
    out: list[RequestRecord] = []
    known = {(s.id, dep.id) for s, dep in inputs.catalog.pairs()}
    pairs = [Candidate(slot=s.id, deployment=d.id) for s, d in inputs.catalog.pairs()]
    for d in decisions:
        req = inputs.requests.get(d.workload_id)
        if req is None:  # an event replay could not serve (its request is not in the workload): nothing to observe
            if d.final is not None:
                raise ConfigError(f"decisions: seq {d.seq} names request {d.request_id} absent from the workload")
            continue
        facts = Facts(tenant=req.tenant, data_class=req.data_class, personal_data=bool(d.detected.pii_types))
        verdicts = [CandidateVerdict(candidate=c, allowed=allowed(inputs.catalog, c.slot, c.deployment, facts),
                                     rule="readme.policy") for c in pairs]
        if any((r.model, r.deployment) not in known for r in [*d.calls, *([d.final] if d.final else [])]):
            raise ConfigError(f"decisions: seq {d.seq} names a deployment the workload's catalog does not have")
        calls = []
        for r in d.calls:
            resp = inputs.responses.get((d.workload_id, r.model))
            tin, tout = (resp.input_tokens, resp.output_tokens) if resp is not None else (0, 0)
            calls.append(CallAttempt(candidate=Candidate(slot=r.model, deployment=r.deployment), outcome="ok",
                                     input_tokens=tin, output_tokens=tout,
                                     cost_usd=inputs.catalog.cost_usd(r.model, r.deployment, tin, tout)))
        final = Candidate(slot=d.final.model, deployment=d.final.deployment) if d.final is not None else None
        out.append(RequestRecord(
            request_id=f"{d.workload_id}#{d.seq}", external_id=d.workload_id, tenant=req.tenant,
            data_class=req.data_class, effective_class=req.data_class, modalities=["text"], arrived_ms=0.0,
            status="ok" if final is not None else "refused",
            error_code=None if final is not None else "no_allowed_deployment", final=final, calls=calls,
            cache=CacheOutcome(kind="exact" if d.cache is not None else "miss"),
            cost_usd=sum(c.cost_usd for c in calls), detected_pii_types=list(d.detected.pii_types),
            policy=verdicts, decision_ms=d.decision_ms,
        ))
    return out
