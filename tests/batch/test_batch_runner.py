from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Sequence

import pytest
from batch_helpers import make_pipeline

from sovrouter.batch.fileio import parse_lines
from sovrouter.batch.runner import BatchRunner, deferrable
from sovrouter.build import assemble
from sovrouter.catalog import Catalog, Tenants
from sovrouter.clock import WallClock
from sovrouter.config import CacheSettings, Settings
from sovrouter.contracts import Candidate, CandidateVerdict, Detection, NormalizedRequest, PolicyVerdict
from sovrouter.testing import FakeAdapter, MemorySink


class NoLocalNoUSPolicy:
    """Excludes local-small everywhere and every US deployment; refuses requests that say 'forbidden'."""

    def evaluate(self, request: NormalizedRequest, detection: Detection,
                 candidates: Sequence[Candidate]) -> PolicyVerdict:
        refuse = "forbidden" in request.user_text
        verdicts = [CandidateVerdict(candidate=c, allowed=not refuse and c.slot != "local-small"
                                     and c.deployment not in ("us", "us-east"), rule="test")
                    for c in candidates]
        return PolicyVerdict(verdicts=verdicts)


def _line(cid: str, text: str, **body: object) -> str:
    return json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                       "body": {"messages": [{"role": "user", "content": text}], **body}})


def _pipeline(catalog: Catalog, tenants: Tenants, sink: MemorySink) -> tuple[object, dict[Candidate, FakeAdapter]]:
    adapters = {Candidate(slot=s.id, deployment=d.id): FakeAdapter(Candidate(slot=s.id, deployment=d.id),
                                                                     text=f"answer from {s.id}/{d.id}")
                for s, d in catalog.pairs()}
    settings = Settings(catalog="x", tenants="y", detector="none", router="baseline",  # type: ignore[arg-type]
                        cache=CacheSettings(exact_enabled=False))
    base = assemble(settings, catalog, tenants, adapters, WallClock(), sink)
    base.policy = NoLocalNoUSPolicy()
    return base, adapters


async def test_batch_runs_every_line_through_policy_in_order(catalog: Catalog, tenants: Tenants) -> None:
    sink = MemorySink()
    base, adapters = _pipeline(catalog, tenants, sink)
    pipeline = deferrable(base, scope="plan")  # type: ignore[arg-type]
    lines = [
        _line("a", "summarise this"),
        "not json",
        _line("b", "this is forbidden"),
        json.dumps({"custom_id": "c", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"messages": []}}),
        _line("d", "another question", max_tokens=50),
        _line("a", "duplicate id"),
    ]
    out = io.StringIO()
    results, summary = await BatchRunner(pipeline, tenant="acme-us", concurrency=3).run(parse_lines(lines), out)
    assert [r["custom_id"] for r in results] == ["a", None, "b", "c", "d", "a"]
    assert [json.loads(x) for x in out.getvalue().splitlines()] == results
    ok = [r for r in results if r["response"] and r["response"]["status_code"] == 200]
    assert [r["custom_id"] for r in ok] == ["a", "d"]
    for r in ok:
        body = r["response"]["body"]
        assert body["object"] == "chat.completion"
        # cheapest allowed: hosted-mini on its only allowed deployment (eu-zone); never local-small or US
        assert body["choices"][0]["message"]["content"] == "answer from hosted-mini/eu-zone"
    assert results[1]["response"] is None and results[1]["error"]["code"] == "invalid_json"
    assert results[2]["response"]["status_code"] == 403
    assert results[2]["response"]["body"]["error"]["code"] == "no_allowed_deployment"
    assert results[3]["response"]["status_code"] == 400
    assert results[5]["error"]["code"] == "duplicate_custom_id"
    assert summary.ok == 2 and summary.invalid == 2 and summary.failed == 2 and summary.lines == 6
    for cand, adapter in adapters.items():
        if cand.slot == "local-small" or cand.deployment in ("us", "us-east"):
            assert adapter.calls == 0
    # one record per request that reached the pipeline (ok, refused, rejected body)
    assert sorted(r.status for r in sink.records) == ["error", "ok", "ok", "refused"]
    assert all(r.decision is None or r.decision.router.startswith("deferrable(") for r in sink.records)


async def test_records_carry_cost_and_the_deferrable_evidence(catalog: Catalog, tenants: Tenants) -> None:
    sink = MemorySink()
    base, _ = _pipeline(catalog, tenants, sink)
    normal_sink = MemorySink()
    normal, _ = _pipeline(catalog, tenants, normal_sink)
    lines = parse_lines([_line(str(i), f"question {i}") for i in range(4)])
    _, batch = await BatchRunner(deferrable(base, scope="plan"), tenant="acme-us").run(lines)  # type: ignore[arg-type]
    _, one_by_one = await BatchRunner(normal, tenant="acme-us", concurrency=1).run(lines)  # type: ignore[arg-type]
    assert batch.ok == one_by_one.ok == 4
    assert batch.cost_usd < one_by_one.cost_usd  # normal route: sovereign-large first
    assert all(r.decision is not None and r.decision.evidence.get("deferrable") for r in sink.records)


async def test_a_failing_sink_surfaces_its_own_error_not_a_cancellation(catalog: Catalog, tenants: Tenants) -> None:
    """Line 3's sink fails while line 2 is still being sunk: the in-order loop waits on line 2, which the
    failure cancelled. The run used to raise that CancelledError, so the service closed the batch as
    "cancelled" though nobody cancelled it (a transient database error must pause it instead)."""
    pipeline, _ = make_pipeline(catalog, tenants)

    class Transient(Exception):
        pass

    async def sink(item: dict[str, object]) -> None:
        if str(item["id"]).endswith("_req_2"):
            await asyncio.sleep(0.2)  # still being stored when line 3 fails
        if str(item["id"]).endswith("_req_3"):
            raise Transient("database is locked")

    runner = BatchRunner(pipeline, tenant="acme-us", concurrency=4)
    with pytest.raises(Transient):
        await runner.run(parse_lines([_line(f"r{i}", f"q {i}") for i in range(8)]), sink=sink)


async def test_each_run_of_a_line_has_its_own_record(catalog: Catalog, tenants: Tenants) -> None:
    """A resumed batch re-runs the lines it had not stored; the second run is a new request with its own calls
    and cost, and the record store refuses a second record under one id (it failed the whole batch)."""
    pipeline, _ = make_pipeline(catalog, tenants)
    lines = parse_lines([_line("a", "q")])
    for _ in range(2):
        await BatchRunner(pipeline, tenant="acme-us", batch_id="batch_x").run(lines)
    sink = pipeline.records
    assert isinstance(sink, MemorySink)
    ids = [r.request_id for r in sink.records]
    assert len(ids) == 2 and len(set(ids)) == 2 and all(i.startswith("batch_x-1-") for i in ids)


async def test_a_line_naming_an_unknown_model_is_a_404_on_the_model(catalog: Catalog, tenants: Tenants) -> None:
    """Live chat answers 404 ``param: model``; a batch line fell through to the pipeline and blamed the modality
    (400 ``unsupported_modality``, ``param: messages``), so a file written for OpenAI (``gpt-4o-mini``) failed
    every line with the wrong reason."""
    sink = MemorySink()
    base, _ = _pipeline(catalog, tenants, sink)
    lines = [_line("a", "hi", model="gpt-4o-mini"), _line("b", "hi", model="sovereign-large/gov-onprem"),
             _line("c", "hi", model="hosted-mini")]
    results, _ = await BatchRunner(base, tenant="acme-us", concurrency=1).run(parse_lines(lines))  # type: ignore[arg-type]
    for r in results[:2]:
        assert r["response"]["status_code"] == 404
        assert (r["response"]["body"]["error"]["code"], r["response"]["body"]["error"]["param"]) == ("not_found",
                                                                                                      "model")
    assert results[2]["response"]["status_code"] == 200
    assert [r.error_code for r in sink.records if r.status == "error"] == ["not_found", "not_found"]


EU_OR_PREMISES = {"local-small/edge", "sovereign-large/eu-sov", "hosted-mini/eu-zone"}


@pytest.mark.parametrize("scope", ["slot", "plan", "allowed"])
async def test_every_line_keeps_the_batchs_declared_class(catalog: Catalog, tenants: Tenants, scope: str) -> None:
    """A batch's ``x-data-class`` is each line's class: eurobank's confidential lines may be processed only in the
    EU or on premises (Cedar, as live chat), whichever deployment is cheapest."""
    pipeline, _ = make_pipeline(catalog, tenants)
    lines = parse_lines([_line(str(i), f"question {i}") for i in range(3)])
    runner = BatchRunner(deferrable(pipeline, scope=scope), tenant="eurobank",  # type: ignore[arg-type]
                         data_class="confidential")
    _, summary = await runner.run(lines)
    assert summary.ok == 3
    records = pipeline.records.records  # type: ignore[attr-defined]
    assert len(records) == 3
    for record in records:
        assert record.data_class == "confidential" and record.effective_class == "confidential"
        assert record.final is not None and record.final.key in EU_OR_PREMISES
        assert {v.candidate.key for v in record.policy if v.allowed} <= EU_OR_PREMISES
