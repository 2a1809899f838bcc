"""BatchService without HTTP: storage, restart and resume, cancel of a queued batch."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from batch_helpers import CHAT, batch_file, make_pipeline
from sqlalchemy.exc import OperationalError

from sovrouter.batch.objects import CreateBatch, ExpiresAfter
from sovrouter.batch.service import BatchService
from sovrouter.catalog import Catalog, Tenants
from sovrouter.errors import InvalidRequestError, NotFoundError, RequestTooLargeError


async def _until(service: BatchService, batch_id: str, states: tuple[str, ...], timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if service.get("acme-us", batch_id).status in states:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("batch did not reach " + "/".join(states))


async def test_a_stopped_batch_resumes_without_answering_a_line_twice(tmp_path: Path, catalog: Catalog,
                                                                      tenants: Tenants) -> None:
    pipeline, adapters = make_pipeline(catalog, tenants, delay_s=0.02)
    first = BatchService(tmp_path, pipeline, concurrency=2)
    await first.start()
    f = first.upload("acme-us", "in.jsonl", "batch", batch_file(30))
    batch = first.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT))
    for _ in range(1000):  # until part of it is answered (not a fixed sleep: a cold machine may take longer)
        if len(first.store.results(batch.id)) >= 3:
            break
        await asyncio.sleep(0.01)
    await first.aclose()  # process stops mid-batch
    calls_before = sum(a.calls for a in adapters)
    probe = BatchService(tmp_path, pipeline)
    done_before = len(probe.store.results(batch.id))
    probe.store.close()
    assert 0 < done_before < 30

    second = BatchService(tmp_path, pipeline, concurrency=2)
    assert second.get("acme-us", batch.id).status == "in_progress"
    await second.start()
    await _until(second, batch.id, ("completed",))
    done = second.get("acme-us", batch.id)
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (30, 30, 0)
    out = [json.loads(x) for x in second.content("acme-us", done.output_file_id or "").decode().splitlines()]
    assert [x["custom_id"] for x in out] == [f"r{i}" for i in range(30)]
    calls_after = sum(a.calls for a in adapters) - calls_before
    assert calls_after <= 30 - done_before + 2  # only what was not answered (plus what was in flight)
    assert second.store.results(batch.id) == []  # the stored answers went into the output file
    await second.aclose()


async def test_cancel_of_a_queued_batch_ends_it_at_once(tmp_path: Path, catalog: Catalog, tenants: Tenants) -> None:
    pipeline, _ = make_pipeline(catalog, tenants, delay_s=0.05)
    service = BatchService(tmp_path, pipeline, concurrency=1)
    await service.start()
    f = service.upload("acme-us", "in.jsonl", "batch", batch_file(20))
    running = service.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT))
    queued = service.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT))
    await _until(service, running.id, ("in_progress",))
    out = service.cancel("acme-us", queued.id)
    assert out.status == "cancelled" and out.request_counts.completed == 0 and out.output_file_id is None
    service.cancel("acme-us", running.id)
    await _until(service, running.id, ("cancelled",))
    await service.aclose()


def test_store_checks_and_tenancy(tmp_path: Path, catalog: Catalog, tenants: Tenants) -> None:
    pipeline, _ = make_pipeline(catalog, tenants)
    service = BatchService(tmp_path, pipeline, max_file_bytes=2048)
    with pytest.raises(RequestTooLargeError):
        service.upload("acme-us", "big.jsonl", "batch", batch_file(40))
    with pytest.raises(InvalidRequestError):
        service.upload("acme-us", "x.jsonl", "assistants", batch_file(1))
    f = service.upload("acme-us", "../../etc/passwd", "batch", batch_file(1))
    assert f.filename == "passwd" and service.content("acme-us", f.id) == batch_file(1)
    with pytest.raises(NotFoundError):
        service.file("eurobank", f.id)
    batch = service.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT))  # not started: stays queued
    with pytest.raises(NotFoundError):
        service.get("eurobank", batch.id)
    items, more = service.list_batches("acme-us", limit=1)
    assert [b.id for b in items] == [batch.id] and more is False
    assert service.list_batches("acme-us", after=batch.id) == ([], False)
    service.store.close()


async def test_a_batch_that_breaks_fails_alone_and_the_queue_goes_on(tmp_path: Path, catalog: Catalog,
                                                                      tenants: Tenants,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline, _ = make_pipeline(catalog, tenants)
    service = BatchService(tmp_path, pipeline)
    await service.start()
    f = service.upload("acme-us", "in.jsonl", "batch", batch_file(3))
    real_run = BatchService._run
    broken: set[str] = set()

    async def flaky(self: BatchService, tenant: str, batch: object) -> None:
        if not broken:
            broken.add(batch.id)  # type: ignore[attr-defined]
            raise RuntimeError("disk on fire")
        await real_run(self, tenant, batch)  # type: ignore[arg-type]

    monkeypatch.setattr(BatchService, "_run", flaky)
    first = service.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT))
    second = service.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT))
    await _until(service, second.id, ("completed",))
    failed = service.get("acme-us", first.id)
    assert failed.status == "failed" and failed.errors is not None
    assert failed.errors.data[0].code == "internal_error" and "fire" not in failed.model_dump_json()
    assert service.get("acme-us", second.id).request_counts.completed == 3
    await service.aclose()


async def test_a_batch_that_outlives_its_window_expires_keeping_what_was_answered(
        tmp_path: Path, catalog: Catalog, tenants: Tenants) -> None:
    pipeline, _ = make_pipeline(catalog, tenants, delay_s=0.1)
    service = BatchService(tmp_path, pipeline, concurrency=1, window_s=2)
    await service.start()
    f = service.upload("acme-us", "in.jsonl", "batch", batch_file(60))
    batch = service.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT))
    await _until(service, batch.id, ("expired",), timeout_s=15)
    done = service.get("acme-us", batch.id)
    counts = done.request_counts
    assert done.expired_at is not None and 0 < counts.completed < 60 and counts.completed + counts.failed == 60
    errors = [json.loads(x) for x in service.content("acme-us", done.error_file_id or "").decode().splitlines()]
    assert {e["error"]["code"] for e in errors} == {"batch_expired"} and len(errors) == counts.failed
    await service.aclose()


async def test_close_never_hangs_whatever_the_worker_is_doing(tmp_path: Path, catalog: Catalog, tenants: Tenants,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A shutdown that lands while a batch's task has just finished must still stop the worker (a worker
    that took its own cancellation for the batch's kept waiting on the queue, and close hung)."""
    pipeline, _ = make_pipeline(catalog, tenants)

    async def quick(self: BatchService, tenant: str, batch: object) -> None:
        return None

    monkeypatch.setattr(BatchService, "_run", quick)
    for spins in range(8):
        service = BatchService(tmp_path / str(spins), pipeline)
        await service.start()
        f = service.upload("acme-us", "in.jsonl", "batch", batch_file(1))
        service.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT))
        for _ in range(spins):
            await asyncio.sleep(0)
        started = time.monotonic()
        await asyncio.wait_for(service.aclose(), 5)
        assert time.monotonic() - started < 2, f"close hung (after {spins} loop turns)"


async def test_closed_batches_and_their_files_go_after_the_retention(tmp_path: Path, catalog: Catalog,
                                                                     tenants: Tenants) -> None:
    pipeline, _ = make_pipeline(catalog, tenants)
    clock = [1_000_000.0]
    service = BatchService(tmp_path, pipeline, now=lambda: clock[0], poll_s=0.02, retention_s=3600,
                           purge_every_s=0)
    await service.start()
    f = service.upload("acme-us", "in.jsonl", "batch", batch_file(2))
    batch = service.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT))
    await _until(service, batch.id, ("completed",))
    out = service.get("acme-us", batch.id).output_file_id
    await asyncio.sleep(0.1)
    assert service.get("acme-us", batch.id).status == "completed"  # within the retention: kept
    clock[0] += 3601
    for _ in range(200):
        if not service.list_batches("acme-us")[0]:
            break
        await asyncio.sleep(0.01)
    assert service.list_batches("acme-us") == ([], False) and service.files("acme-us") == []
    with pytest.raises(NotFoundError):
        service.content("acme-us", out or "")
    await service.aclose()


async def test_a_store_outage_pauses_a_batch_it_does_not_fail_it(tmp_path: Path, catalog: Catalog,
                                                                  tenants: Tenants,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline, _ = make_pipeline(catalog, tenants)
    service = BatchService(tmp_path, pipeline, lease_s=1.0, poll_s=0.05)
    real_add = service.store.add_result
    outages = [1]

    def flaky_add(*args: str) -> bool:
        if outages[0]:
            outages[0] -= 1
            raise OperationalError("INSERT ...", None, ConnectionError("database went away"))
        return real_add(*args)

    monkeypatch.setattr(service.store, "add_result", flaky_add)
    await service.start()
    f = service.upload("acme-us", "in.jsonl", "batch", batch_file(5))
    batch = service.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT))
    await _until(service, batch.id, ("completed", "failed"), timeout_s=15)
    done = service.get("acme-us", batch.id)
    assert done.status == "completed" and done.request_counts.completed == 5 and outages == [0]
    await service.aclose()


async def test_a_cancel_starts_no_new_line_upstream(tmp_path: Path, catalog: Catalog, tenants: Tenants) -> None:
    """When a batch is cancelled (or its instance shuts down), only the lines already holding one of the
    ``concurrency`` slots may still reach the upstream; none that was waiting. Several rounds, because which line
    a freed slot would go to is a matter of scheduling order."""
    pipeline, adapters = make_pipeline(catalog, tenants, delay_s=0.02)
    service = BatchService(tmp_path, pipeline, concurrency=2)
    await service.start()
    for round_ in range(8):
        before = sum(a.calls for a in adapters)
        f = service.upload("acme-us", "in.jsonl", "batch", batch_file(40))
        batch = service.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT))
        for _ in range(1000):
            if len(service.store.results(batch.id)) >= 5 + round_:
                break
            await asyncio.sleep(0.005)
        service.cancel("acme-us", batch.id)
        await _until(service, batch.id, ("cancelled",))
        done = service.get("acme-us", batch.id).request_counts
        sent = sum(a.calls for a in adapters) - before
        assert sent - done.completed <= 2, (round_, sent, done.completed)  # at most the two lines in flight
    await service.aclose()


async def test_files_expire_when_asked_and_only_then(tmp_path: Path, catalog: Catalog, tenants: Tenants) -> None:
    """``expires_after`` on an upload and ``output_expires_after`` on a batch: gone from the API at the
    expiry, deleted from the store by the next purge (retention off, so only the expiry deletes anything)."""
    pipeline, _ = make_pipeline(catalog, tenants)
    clock = [1_000_000.0]
    service = BatchService(tmp_path, pipeline, now=lambda: clock[0], poll_s=0.02, retention_s=None,
                           purge_every_s=0)
    await service.start()
    hour = ExpiresAfter(anchor="created_at", seconds=3600)
    short = service.upload("acme-us", "a.jsonl", "batch", batch_file(2), expires_after=hour)
    kept = service.upload("acme-us", "b.jsonl", "batch", batch_file(2))
    assert short.expires_at == 1_000_000 + 3600 and kept.expires_at is None
    batch = service.create("acme-us", CreateBatch(input_file_id=kept.id, **CHAT, output_expires_after=ExpiresAfter(
        anchor="created_at", seconds=7200)))
    await _until(service, batch.id, ("completed",))
    out = service.file("acme-us", service.get("acme-us", batch.id).output_file_id or "")
    assert out.expires_at == out.created_at + 7200
    clock[0] += 3600
    with pytest.raises(NotFoundError):
        service.content("acme-us", short.id)  # expired: gone for the API at once
    with pytest.raises(NotFoundError):
        service.create("acme-us", CreateBatch(input_file_id=short.id, **CHAT))
    assert {f.id for f in service.files("acme-us")} == {kept.id, out.id}
    for _ in range(200):  # the idle worker's purge deletes the row itself
        try:
            service.store.file_data("acme-us", short.id)
        except NotFoundError:
            break
        await asyncio.sleep(0.01)
    with pytest.raises(NotFoundError):
        service.store.file_data("acme-us", short.id)
    clock[0] += 3600
    assert {f.id for f in service.files("acme-us")} == {kept.id}  # the output went after its own 2 h
    assert service.get("acme-us", batch.id).status == "completed"  # the batch stays, retention is off
    await service.aclose()


async def test_a_transient_store_error_with_lines_in_flight_does_not_cancel_the_batch(
        tmp_path: Path, catalog: Catalog, tenants: Tenants, monkeypatch: pytest.MonkeyPatch) -> None:
    """With several lines in flight, one failed store used to close the batch as "cancelled" (nobody cancelled
    it; the lines not yet answered never ran). It pauses and resumes instead."""
    pipeline, _ = make_pipeline(catalog, tenants, delay_s=0.02)
    service = BatchService(tmp_path, pipeline, concurrency=4, lease_s=0.6, poll_s=0.05)
    real_add = service.store.add_result
    outages = [1]

    def flaky_add(batch_id: str, line_id: str, line: str, owner: str) -> bool:
        if line_id.endswith("_req_3") and outages[0]:
            outages[0] -= 1
            raise OperationalError("INSERT ...", None, ConnectionError("database is locked"))
        if line_id.endswith("_req_2"):
            time.sleep(0.2)  # an earlier line is still being stored when line 3's store fails
        return real_add(batch_id, line_id, line, owner)

    monkeypatch.setattr(service.store, "add_result", flaky_add)
    await service.start()
    f = service.upload("acme-us", "in.jsonl", "batch", batch_file(20))
    batch = service.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT))
    await _until(service, batch.id, ("completed", "failed", "cancelled"), timeout_s=15)
    done = service.get("acme-us", batch.id)
    assert done.status == "completed" and done.cancelling_at is None and outages == [0]
    assert (done.request_counts.total, done.request_counts.completed) == (20, 20)
    await service.aclose()


async def test_a_batch_that_waited_past_its_window_expires_without_calling_upstream(
        tmp_path: Path, catalog: Catalog, tenants: Tenants) -> None:
    pipeline, adapters = make_pipeline(catalog, tenants)
    service = BatchService(tmp_path, pipeline, concurrency=4, window_s=1)
    f = service.upload("acme-us", "in.jsonl", "batch", batch_file(8))
    batch = service.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT))
    await asyncio.sleep(1.2)  # queued (no worker yet) until its window has run out
    await service.start()
    await _until(service, batch.id, ("expired",), timeout_s=10)
    assert sum(a.calls for a in adapters) == 0  # a zero timeout still let `concurrency` lines reach upstream
    assert service.get("acme-us", batch.id).request_counts.failed == 8
    await service.aclose()


async def test_a_tenant_delisted_from_the_store_gets_no_more_lines_stored(tmp_path: Path, catalog: Catalog,
                                                                         tenants: Tenants) -> None:
    """Uploads and creates checked the store's tenant list, running did not: a batch queued before the tenant was
    delisted still ran after a restart and wrote its answers into a store its policy no longer allows."""
    pipeline, adapters = make_pipeline(catalog, tenants, delay_s=0.02)
    first = BatchService(tmp_path, pipeline, concurrency=2, tenants=["acme-us"])
    f = first.upload("acme-us", "in.jsonl", "batch", batch_file(5))
    batch = first.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT))  # queued: this instance never runs it
    first.store.close()
    second = BatchService(tmp_path, pipeline, concurrency=2, tenants=["eurobank"])  # acme-us delisted
    await second.start()
    await _until(second, batch.id, ("failed",))
    failed = second.get("acme-us", batch.id)
    assert failed.errors is not None and [e.code for e in failed.errors.data] == ["store_not_allowed"]
    assert sum(a.calls for a in adapters) == 0 and failed.output_file_id is None
    await second.aclose()


async def test_the_counts_move_as_lines_are_answered(tmp_path: Path, catalog: Catalog, tenants: Tenants) -> None:
    """request_counts stayed at 0 until the batch closed: a client's progress bar sat at 0% for the whole run."""
    pipeline, _ = make_pipeline(catalog, tenants, delay_s=0.05)
    service = BatchService(tmp_path, pipeline, concurrency=2)
    await service.start()
    data = batch_file(12) + b'{"custom_id": "bad", "method": "POST", "url": "/v1/embeddings", "body": {}}\n'
    f = service.upload("acme-us", "in.jsonl", "batch", data)
    batch = service.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT))
    seen: list[tuple[int, int]] = []
    for _ in range(1000):
        now = service.get("acme-us", batch.id)
        if now.status != "in_progress":
            break
        seen.append((now.request_counts.completed, now.request_counts.failed))
        await asyncio.sleep(0.01)
    await _until(service, batch.id, ("completed",))
    done = service.get("acme-us", batch.id).request_counts
    assert (done.total, done.completed, done.failed) == (13, 12, 1)
    assert any(0 < c < 12 for c, _ in seen)  # seen moving while the batch ran
    assert seen == sorted(seen) and all(c + f <= 13 for c, f in seen)
    listed, _ = service.list_batches("acme-us")
    assert listed[0].request_counts == done
    await service.aclose()


async def test_a_batchs_declared_class_survives_its_storage(tmp_path: Path, catalog: Catalog,
                                                            tenants: Tenants) -> None:
    """The class a batch was created with is stored with it (the API object does not show it) and read back by
    whichever run answers its lines, on this instance after a restart or on another: read back as ``public``,
    eurobank's confidential lines were routed as public ones."""
    pipeline, _ = make_pipeline(catalog, tenants)
    first = BatchService(tmp_path, pipeline)
    f = first.upload("eurobank", "in.jsonl", "batch", batch_file(3))
    batch = first.create("eurobank", CreateBatch(input_file_id=f.id, **CHAT), "confidential")
    first.store.close()  # created, not started: the next process runs it
    second = BatchService(tmp_path, pipeline)
    assert second.get("eurobank", batch.id).data_class == "confidential"
    await second.start()
    for _ in range(1000):
        if second.get("eurobank", batch.id).status == "completed":
            break
        await asyncio.sleep(0.01)
    assert second.get("eurobank", batch.id).request_counts.completed == 3
    await second.aclose()
    records = pipeline.records.records  # type: ignore[attr-defined]
    assert len(records) == 3 and all(r.data_class == "confidential" for r in records)
    on_premises_or_eu = {"local-small/edge", "sovereign-large/eu-sov", "hosted-mini/eu-zone"}
    assert all({v.candidate.key for v in r.policy if v.allowed} <= on_premises_or_eu for r in records)
