"""A batch remembers the digest of the key that created it, and is failed, not run, once that key is revoked."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from batch_helpers import CHAT, batch_file, make_pipeline

from sovrouter.batch.objects import CreateBatch
from sovrouter.batch.revocation import KEY_REVOKED, STORE_NOT_ALLOWED, refusal
from sovrouter.batch.service import BatchService
from sovrouter.catalog import Catalog, Tenants
from sovrouter.config import hash_key

OLD, KEPT = hash_key("sk-acme-revoked"), hash_key("sk-acme-kept")


async def _until(service: BatchService, batch_id: str, states: tuple[str, ...]) -> None:
    for _ in range(1000):
        if service.get("acme-us", batch_id).status in states:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("batch did not reach " + "/".join(states))


async def _answered(service: BatchService, batch_id: str, lines: int) -> None:
    """Until at least ``lines`` of the batch are answered and stored (the run is under way)."""
    for _ in range(1000):
        if len(service.store.results(batch_id)) >= lines:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"fewer than {lines} lines answered")


def test_refusal_judges_the_key_only_when_both_are_known() -> None:
    assert refusal("acme-us", OLD, tenants=None, keys=None) is None  # a service used without keys
    assert refusal("acme-us", None, tenants=None, keys=[KEPT]) is None  # stored before the digest was kept
    assert refusal("acme-us", KEPT, tenants=None, keys=[KEPT]) is None
    revoked = refusal("acme-us", OLD, tenants=None, keys=[KEPT])
    assert revoked is not None and revoked.code == KEY_REVOKED and OLD not in revoked.message
    delisted = refusal("acme-us", OLD, tenants=["eurobank"], keys=[KEPT])
    assert delisted is not None and delisted.code == STORE_NOT_ALLOWED


async def test_a_queued_batch_of_a_revoked_key_fails_without_a_call(tmp_path: Path, catalog: Catalog,
                                                                   tenants: Tenants) -> None:
    """The tenant keeps another key: the batch still stops, the credential that asked for it was withdrawn.
    Before, it ran to completion after the restart that revoked its key."""
    pipeline, adapters = make_pipeline(catalog, tenants)
    first = BatchService(tmp_path, pipeline, keys=[OLD, KEPT])
    f = first.upload("acme-us", "in.jsonl", "batch", batch_file(5))
    batch = first.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT), key_sha256=OLD)
    assert first.store.batch("acme-us", batch.id).meta["key_sha256"] == OLD  # remembered, the digest only
    assert OLD not in batch.model_dump_json()  # and never shown
    first.store.close()  # created, not started: the next process (without the key) takes it
    second = BatchService(tmp_path, pipeline, keys=[KEPT])
    await second.start()
    await _until(second, batch.id, ("failed",))
    failed = second.get("acme-us", batch.id)  # what any key of the tenant sees
    assert failed.errors is not None and [e.code for e in failed.errors.data] == [KEY_REVOKED]
    assert failed.failed_at is not None and failed.output_file_id is None and failed.error_file_id is None
    counts = failed.request_counts
    assert (counts.total, counts.completed, counts.failed) == (5, 0, 0)
    assert sum(a.calls for a in adapters) == 0
    assert OLD not in failed.model_dump_json()
    await second.aclose()


async def test_a_batch_whose_key_is_revoked_mid_run_keeps_its_answers_and_calls_no_more(
        tmp_path: Path, catalog: Catalog, tenants: Tenants) -> None:
    pipeline, adapters = make_pipeline(catalog, tenants, delay_s=0.02)
    first = BatchService(tmp_path, pipeline, concurrency=2, keys=[OLD])
    await first.start()
    f = first.upload("acme-us", "in.jsonl", "batch", batch_file(30))
    batch = first.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT), key_sha256=OLD)
    await _answered(first, batch.id, 3)
    await first.aclose()  # the restart that revokes the key
    calls_before = sum(a.calls for a in adapters)

    second = BatchService(tmp_path, pipeline, concurrency=2, keys=[])
    answered = {x["custom_id"] for x in second.store.results(batch.id)}
    assert 0 < len(answered) < 30
    await second.start()
    await _until(second, batch.id, ("failed",))
    failed = second.get("acme-us", batch.id)
    assert failed.errors is not None and failed.errors.data[0].code == KEY_REVOKED
    assert sum(a.calls for a in adapters) == calls_before  # no line started after the restart
    assert (failed.request_counts.completed, failed.request_counts.failed) == (len(answered), 0)
    out = [json.loads(x) for x in second.content("acme-us", failed.output_file_id or "").decode().splitlines()]
    assert {x["custom_id"] for x in out} == answered  # what was answered (and paid for) is kept, in order
    assert [x["custom_id"] for x in out] == sorted(answered, key=lambda c: int(c[1:]))
    assert second.store.results(batch.id) == []  # closed in one transaction: nothing half-written
    await second.aclose()


async def test_batches_stored_before_the_digest_was_kept_run_under_their_tenant(
        tmp_path: Path, catalog: Catalog, tenants: Tenants) -> None:
    pipeline, _ = make_pipeline(catalog, tenants)
    first = BatchService(tmp_path, pipeline)
    f = first.upload("acme-us", "in.jsonl", "batch", batch_file(3))
    legacy = first.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT), key_sha256=OLD)
    first.store.update(legacy.id, lambda meta: {k: v for k, v in meta.items() if k != "key_sha256"})  # an old row
    kept = first.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT), key_sha256=KEPT)
    first.store.close()
    second = BatchService(tmp_path, pipeline, keys=[KEPT])
    await second.start()
    for batch_id in (legacy.id, kept.id):
        await _until(second, batch_id, ("completed", "failed"))
        assert second.get("acme-us", batch_id).status == "completed"
        assert second.get("acme-us", batch_id).request_counts.completed == 3
    await second.aclose()


async def test_a_running_batch_fails_at_the_next_renewal_once_its_key_is_revoked(
        tmp_path: Path, catalog: Catalog, tenants: Tenants) -> None:
    """Before ``api_keys_file`` a key was revoked by a restart, which the batch path checked when it took the
    batch again; a key revoked while the gateway runs must stop its batches too."""
    pipeline, adapters = make_pipeline(catalog, tenants, delay_s=0.05)
    live_keys = {OLD, KEPT}
    service = BatchService(tmp_path, pipeline, concurrency=2, lease_s=0.3, keys=lambda: live_keys)
    await service.start()
    f = service.upload("acme-us", "in.jsonl", "batch", batch_file(200))
    batch = service.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT), key_sha256=OLD)
    await _answered(service, batch.id, 4)
    live_keys.discard(OLD)
    await _until(service, batch.id, ("failed",))
    failed = service.get("acme-us", batch.id)
    assert failed.status == "failed" and failed.errors is not None
    assert [e.code for e in failed.errors.data] == [KEY_REVOKED]
    calls = sum(a.calls for a in adapters)
    assert 0 < failed.request_counts.completed < 200 and failed.request_counts.completed <= calls
    await asyncio.sleep(0.3)
    assert sum(a.calls for a in adapters) == calls  # no line starts after the failure
    out = service.content("acme-us", failed.output_file_id or "").decode().splitlines()
    assert len(out) == failed.request_counts.completed  # what was answered is kept
    await service.aclose()


async def test_a_key_just_added_to_the_file_is_honoured_by_another_instance_at_once(
        tmp_path: Path, catalog: Catalog, tenants: Tenants) -> None:
    """Instance A reads the file and accepts a key just added; instance B, which takes the batch from the shared
    store, had read the file less than ``api_keys_reload_s`` before: it judged the batch on its stale keys and
    failed it as revoked, for good (found in review, 2026-11-28). Failing a batch reads the file first."""
    from sovrouter.gateway.auth import KeyRing
    from sovrouter.gateway.keyfile import KeyFile

    known = {t.id for t in tenants.tenants}
    path = tmp_path / "keys.json"
    path.write_text(json.dumps([{"tenant": "acme-us", "key_sha256": KEPT}]), encoding="utf-8")
    now = [0.0]
    b = KeyRing([], KeyFile(path, known, reload_s=5.0, clock=lambda: now[0]))
    path.write_text(json.dumps([{"tenant": "acme-us", "key_sha256": KEPT},
                                {"tenant": "acme-us", "key_sha256": hash_key("sk-acme-new")}]), encoding="utf-8")
    now[0] = 1.0
    a = KeyRing([], KeyFile(path, known, reload_s=5.0, clock=lambda: now[0]))
    caller = a.caller("Bearer sk-acme-new")
    pipeline, _ = make_pipeline(catalog, tenants)
    service = BatchService(tmp_path / "store", pipeline, keys=b.digests)
    await service.start()
    f = service.upload("acme-us", "in.jsonl", "batch", batch_file(3))
    batch = service.create(caller.tenant, CreateBatch(input_file_id=f.id, **CHAT), key_sha256=caller.key_sha256)
    await _until(service, batch.id, ("completed", "failed"))
    assert service.get("acme-us", batch.id).status == "completed"
    await service.aclose()


async def test_a_revocation_landing_as_the_batch_completes_leaves_nothing_behind(
        tmp_path: Path, catalog: Catalog, tenants: Tenants, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The renewal that saw the key gone came while the completed batch was being closed: the batch completes
    (every line was answered), its revocation was kept in ``_revoked`` for good (found in review), and no
    warning says the batch stopped without a cancel and resumes."""
    pipeline, _ = make_pipeline(catalog, tenants)
    live = {OLD}
    service = BatchService(tmp_path, pipeline, lease_s=0.15, keys=lambda: live)
    finish = service.store.finish

    def slow_finish(*args: Any, **kwargs: Any) -> bool:
        live.discard(OLD)  # revoked while the batch closes; a renewal (every 0.05 s) comes in meanwhile
        time.sleep(0.2)
        return finish(*args, **kwargs)

    monkeypatch.setattr(service.store, "finish", slow_finish)
    with caplog.at_level(logging.WARNING, logger="sovrouter.batch"):
        await service.start()
        f = service.upload("acme-us", "in.jsonl", "batch", batch_file(2))
        batch = service.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT), key_sha256=OLD)
        await _until(service, batch.id, ("completed", "failed"))
        await asyncio.sleep(0.1)
    assert service.get("acme-us", batch.id).status == "completed"
    assert service._revoked == {}
    assert "resumes" not in caplog.text and "stopped without a cancel" not in caplog.text
    await service.aclose()


async def test_a_cancel_seen_at_the_same_renewal_as_a_revocation_ends_the_batch_cancelled(
        tmp_path: Path, catalog: Catalog, tenants: Tenants, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client asked for the cancel (on another instance): the batch ends ``cancelled`` as asked, not
    ``failed`` with ``api_key_revoked``; the renewal judges the lease and the cancel before the key."""
    pipeline, _ = make_pipeline(catalog, tenants, delay_s=0.05)
    live = {OLD}
    service = BatchService(tmp_path, pipeline, concurrency=2, lease_s=0.3, keys=lambda: live)
    renew, armed = service.store.renew, [False]

    def renew_after_both(batch_id: str, *args: Any) -> str | None:
        if armed[0] and OLD in live:  # another instance's cancel and the key's removal, before this renewal
            service.store.update(batch_id, lambda meta: {**meta, "status": "cancelling",
                                                         "cancelling_at": int(time.time())})
            live.discard(OLD)
        return renew(batch_id, *args)

    monkeypatch.setattr(service.store, "renew", renew_after_both)
    await service.start()
    f = service.upload("acme-us", "in.jsonl", "batch", batch_file(200))
    batch = service.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT), key_sha256=OLD)
    await _answered(service, batch.id, 2)
    armed[0] = True
    await _until(service, batch.id, ("cancelled", "failed"))
    ended = service.get("acme-us", batch.id)
    assert ended.status == "cancelled" and ended.errors is None and OLD not in live
    await service.aclose()


async def test_a_revoked_batch_is_logged_as_failed_not_as_resuming(
        tmp_path: Path, catalog: Catalog, tenants: Tenants, caplog: pytest.LogCaptureFixture) -> None:
    """The run that failed the batch returns: its owner must not take the stop for a lost lease and log that the
    batch resumes (an operator would wait for a batch that is closed)."""
    pipeline, _ = make_pipeline(catalog, tenants, delay_s=0.05)
    live = {OLD}
    service = BatchService(tmp_path, pipeline, concurrency=2, lease_s=0.3, keys=lambda: live)
    await service.start()
    f = service.upload("acme-us", "in.jsonl", "batch", batch_file(200))
    batch = service.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT), key_sha256=OLD)
    await _answered(service, batch.id, 2)
    with caplog.at_level(logging.WARNING, logger="sovrouter.batch"):
        live.discard(OLD)
        await _until(service, batch.id, ("failed",))
        await asyncio.sleep(0.2)
    assert f"batch {batch.id}: {KEY_REVOKED}; failed" in caplog.text and "resumes" not in caplog.text
    await service.aclose()



async def test_a_young_batch_of_a_key_unknown_here_waits_out_the_grace_then_fails(
        tmp_path: Path, catalog: Catalog, tenants: Tenants) -> None:
    """With a shared store a key just added may not have reached this instance's file: its batch is left alone
    for ``key_grace_s`` (no line runs), then failed as revoked if the key is still unknown."""
    pipeline, adapters = make_pipeline(catalog, tenants)
    service = BatchService(tmp_path, pipeline, poll_s=0.05, keys=lambda: {KEPT}, key_grace_s=2.0)  # created_at: s
    f = service.upload("acme-us", "in.jsonl", "batch", batch_file(3))
    batch = service.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT), key_sha256=OLD)
    await service.start()
    await asyncio.sleep(0.3)
    assert service.get("acme-us", batch.id).status == "in_progress" and sum(a.calls for a in adapters) == 0
    assert service.store.owner(batch.id) is None  # left for another instance
    await _until(service, batch.id, ("failed",))
    failed = service.get("acme-us", batch.id)
    assert failed.errors is not None and [e.code for e in failed.errors.data] == [KEY_REVOKED]
    assert sum(a.calls for a in adapters) == 0
    await service.aclose()


async def test_a_key_that_arrives_within_the_grace_runs_its_batch(tmp_path: Path, catalog: Catalog,
                                                                  tenants: Tenants) -> None:
    pipeline, adapters = make_pipeline(catalog, tenants)
    live = {KEPT}
    service = BatchService(tmp_path, pipeline, poll_s=0.05, keys=lambda: live, key_grace_s=60)
    f = service.upload("acme-us", "in.jsonl", "batch", batch_file(3))
    batch = service.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT), key_sha256=OLD)
    await service.start()
    await asyncio.sleep(0.2)
    assert service.get("acme-us", batch.id).status == "in_progress" and sum(a.calls for a in adapters) == 0
    live.add(OLD)  # the instance's api_keys_file caught up
    await _until(service, batch.id, ("completed", "failed"))
    assert service.get("acme-us", batch.id).status == "completed" and sum(a.calls for a in adapters) == 3
    await service.aclose()
