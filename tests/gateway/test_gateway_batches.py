"""``/v1/files`` and ``/v1/batches`` through the official ``openai`` client against the live gateway."""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from gateway_harness import ACME_KEY, EURO_KEY, Live, live_gateway

from sovrouter.config import ApiKey, BatchSettings, BatchStoreSettings, hash_key
from sovrouter.testing_postgres import PostgresServer, postgres_bin_dir, postgres_server


def _line(cid: str, text: str, **body: Any) -> str:
    return json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": "auto", "messages": [{"role": "user", "content": text}], **body}})


def _upload(client: openai.OpenAI, lines: list[str]) -> str:
    data = ("\n".join(lines) + "\n").encode()
    return client.files.create(file=("batch.jsonl", io.BytesIO(data)), purpose="batch").id


def _wait(client: openai.OpenAI, batch_id: str, timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
            return batch
        time.sleep(0.05)


def _jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def test_a_batch_runs_end_to_end_with_the_official_client(live: Live) -> None:
    client = live.client()
    lines = [_line(f"req-{i}", f"question {i}") for i in range(5)]
    lines.insert(2, "{not json")
    lines.append(_line("req-1", "a repeated custom_id"))
    file_id = _upload(client, lines)
    meta = client.files.retrieve(file_id)
    assert meta.purpose == "batch" and meta.filename == "batch.jsonl" and meta.bytes > 0
    assert client.files.content(file_id).text.splitlines()[0] == lines[0]
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h",
                                  metadata={"job": "nightly"})
    assert batch.status in ("in_progress", "completed") and batch.metadata == {"job": "nightly"}
    done = _wait(client, batch.id)
    assert done.status == "completed" and done.completed_at is not None
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (7, 5, 2)
    assert done.output_file_id and done.error_file_id
    out = _jsonl(client.files.content(done.output_file_id).text)
    assert [x["custom_id"] for x in out] == [f"req-{i}" for i in range(5)]  # input order
    for x in out:
        body = x["response"]["body"]
        assert x["response"]["status_code"] == 200 and x["error"] is None
        assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
    errors = _jsonl(client.files.content(done.error_file_id).text)
    assert [e["error"]["code"] for e in errors] == ["invalid_json", "duplicate_custom_id"]
    assert "not json" not in json.dumps(errors)  # messages name the problem, never echo the line
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"
    # every answered line left its one record, through the same pipeline as live traffic
    ids = {x["response"]["request_id"] for x in out}
    assert ids <= {r.request_id for r in live.records()}
    listed = client.batches.list(limit=5)
    assert listed.data[0].id == batch.id
    assert any(f.id == file_id for f in client.files.list().data)


def test_tenants_never_see_each_others_files_or_batches(live: Live) -> None:
    acme, euro = live.client(ACME_KEY), live.client(EURO_KEY)
    file_id = _upload(acme, [_line("a", "hello")])
    batch = acme.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    for call in (lambda: euro.files.retrieve(file_id), lambda: euro.files.content(file_id),
                 lambda: euro.batches.retrieve(batch.id), lambda: euro.batches.cancel(batch.id),
                 lambda: euro.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                             completion_window="24h")):
        with pytest.raises(openai.NotFoundError):
            call()
    assert euro.batches.list().data == [] and all(f.id != file_id for f in euro.files.list().data)
    assert _wait(acme, batch.id).status == "completed"


@pytest.mark.parametrize("kwargs,param", [
    ({"endpoint": "/v1/embeddings", "completion_window": "24h"}, "endpoint"),
    ({"endpoint": "/v1/chat/completions", "completion_window": "1h"}, "completion_window"),
])
def test_bad_batch_requests_are_clear_errors(live: Live, kwargs: dict[str, str], param: str) -> None:
    client = live.client()
    file_id = _upload(client, [_line("a", "hello")])
    with pytest.raises(openai.BadRequestError) as err:
        client.batches.create(input_file_id=file_id, **kwargs)  # type: ignore[arg-type]
    assert err.value.body["param"] == param  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")
    assert client.batches.list().data == []  # nothing half-created


def test_bad_uploads_store_nothing(live: Live) -> None:
    client = live.client()
    with pytest.raises(openai.BadRequestError) as err:
        client.files.create(file=("x.jsonl", io.BytesIO(b'{"a": 1}\n')), purpose="fine-tune")
    assert err.value.body["param"] == "purpose"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("x.jsonl", io.BytesIO(b"\xff\xfe\x00")), purpose="batch")
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("x.jsonl", io.BytesIO(b"   \n")), purpose="batch")
    raw = httpx.post(live.url + "/v1/files", headers={"authorization": f"Bearer {ACME_KEY}"}, json={"a": 1})
    assert raw.status_code == 400 and raw.json()["error"]["message"]
    missing = httpx.post(live.url + "/v1/files", headers={"authorization": f"Bearer {ACME_KEY}"},
                         files={"purpose": (None, "batch")})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "file"
    assert httpx.get(live.url + "/v1/files").status_code == 401
    assert client.files.list().data == []
    with sqlite3.connect(live.state_dir / "batches" / "batches.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM batch_files").fetchone() == (0,)  # nothing half-stored


def test_unreadable_lines_all_go_to_the_error_file(live: Live) -> None:
    client = live.client()
    file_id = client.files.create(file=("x.jsonl", io.BytesIO(b"\n{}\n[1]\n"), ), purpose="batch").id
    batch = _wait(client, client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                                completion_window="24h").id)
    assert batch.status == "completed" and batch.output_file_id is None and batch.error_file_id
    assert batch.request_counts is not None and (batch.request_counts.total, batch.request_counts.failed) == (2, 2)
    lines = _jsonl(client.files.content(batch.error_file_id).text)
    assert [x["error"]["line"] for x in lines] == [2, 3]


def test_cancel_keeps_what_was_answered(tmp_path: Path) -> None:
    with live_gateway(tmp_path / "state") as live:
        live.primary.first_token_delay_s = live.backup.first_token_delay_s = 0.3
        client = live.client()
        file_id = _upload(client, [_line(f"r{i}", f"q {i}") for i in range(40)])
        batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                      completion_window="24h")
        deadline = time.monotonic() + 10
        while live.primary.calls + live.backup.calls < 8 and time.monotonic() < deadline:
            time.sleep(0.02)  # some lines answered (4 in flight at a time), most still to go
        cancelling = client.batches.cancel(batch.id)
        assert cancelling.status in ("cancelling", "cancelled")
        done = _wait(client, batch.id)
        assert done.status == "cancelled" and done.request_counts is not None
        assert 0 < done.request_counts.completed < 40
        if done.output_file_id:
            assert len(_jsonl(client.files.content(done.output_file_id).text)) == done.request_counts.completed
        assert client.batches.cancel(batch.id).status == "cancelled"  # idempotent on a finished batch


def _batch_under_way(gw: Any, key: str, calls: int) -> Any:
    """A batch of 40 slow lines created with ``key`` on ``gw``, once at least ``calls`` upstream calls have started."""
    gw.primary.first_token_delay_s = gw.backup.first_token_delay_s = 0.3
    client = gw.client(key)
    batch = client.batches.create(input_file_id=_upload(client, [_line(f"r{i}", f"q {i}") for i in range(40)]),
                                  endpoint="/v1/chat/completions", completion_window="24h")
    deadline = time.monotonic() + 10
    while gw.primary.calls + gw.backup.calls < calls and time.monotonic() < deadline:
        time.sleep(0.02)
    return batch


def test_a_batch_whose_key_is_revoked_stops_at_the_restart(tmp_path: Path) -> None:
    """The operator removes a key and restarts: its batch ran to completion anyway, spending on behalf of a
    withdrawn credential. Now it fails before any further line, keeping what was answered; the tenant's other key
    still sees it (files and batches are the tenant's), the revoked key is a 401."""
    second_key = "sk-acme-test-key-0003"
    keys = [ApiKey(tenant="acme-us", key_sha256=hash_key(k)) for k in (ACME_KEY, second_key)]
    with live_gateway(tmp_path / "state", api_keys=[*keys, ApiKey(tenant="eurobank", key_sha256=hash_key(EURO_KEY))]
                      ) as before:
        batch = _batch_under_way(before, second_key, calls=8)
    with live_gateway(tmp_path / "state") as after:  # second_key is no longer configured; ACME_KEY still is
        done = _wait(after.client(ACME_KEY), batch.id)
        assert done.status == "failed" and done.errors is not None and done.errors.data is not None
        assert [e.code for e in done.errors.data] == ["api_key_revoked"]
        counts = done.request_counts
        assert counts is not None and counts.completed > 0 and counts.completed + counts.failed < 40
        assert after.primary.calls + after.backup.calls == 0  # nothing ran after the restart
        assert done.output_file_id is not None
        assert len(_jsonl(after.client().files.content(done.output_file_id).text)) == counts.completed
        raw = httpx.get(f"{after.url}/v1/batches/{batch.id}", headers={"authorization": f"Bearer {ACME_KEY}"})
        assert hash_key(second_key) not in raw.text and "key_sha256" not in raw.text
        with pytest.raises(openai.AuthenticationError):
            after.client(second_key).batches.retrieve(batch.id)


def test_two_gateway_instances_share_files_and_batches_through_postgresql(tmp_path: Path,
                                                                         pg_srv: PostgresServer) -> None:
    shared = BatchSettings(store=BatchStoreSettings(url=pg_srv.new_database(), poll_s=0.2, tenants=["acme-us"]))
    with live_gateway(tmp_path / "a", batches=shared) as a, live_gateway(tmp_path / "b", batches=shared) as b:
        ca, cb = a.client(), b.client()
        file_id = _upload(ca, [_line(f"r{i}", f"q {i}") for i in range(6)])
        assert cb.files.retrieve(file_id).bytes > 0  # uploaded on A, seen on B
        batch = cb.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
        done = _wait(ca, batch.id)  # created on B, polled on A
        assert done.status == "completed" and done.request_counts is not None
        assert (done.request_counts.completed, done.request_counts.failed) == (6, 0)
        assert done.output_file_id is not None
        out = _jsonl(cb.files.content(done.output_file_id).text)
        assert [x["custom_id"] for x in out] == [f"r{i}" for i in range(6)]
        assert sum(u.calls for u in (a.primary, a.backup, b.primary, b.backup)) == 6  # each line once
        with pytest.raises(openai.NotFoundError):
            a.client(EURO_KEY).batches.retrieve(batch.id)
        # eurobank is not listed for the shared store: its prompts are never written there (fail closed)
        with pytest.raises(openai.PermissionDeniedError) as refused:
            b.client(EURO_KEY).files.create(file=("b.jsonl", io.BytesIO(b'{"a": 1}\n')), purpose="batch")
        assert refused.value.body["code"] == "store_not_allowed"  # type: ignore[index]
        assert a.client(EURO_KEY).files.list().data == []


def test_a_revoked_keys_batch_also_stops_with_a_shared_batch_store(tmp_path: Path, pg_srv: PostgresServer) -> None:
    """The shared (PostgreSQL) store is wired apart from the local one: it must be told the configured keys too,
    or a revoked key's batch taken from it runs to completion on every instance (no test held this until a mutation
    review, 2026-11-28)."""
    shared = BatchSettings(store=BatchStoreSettings(url=pg_srv.new_database(), poll_s=0.2, tenants=["acme-us"],
                                                    key_grace_s=0))  # the grace for new keys: test_batch_shared
    second_key = "sk-acme-test-key-0003"
    keys = [ApiKey(tenant="acme-us", key_sha256=hash_key(k)) for k in (ACME_KEY, second_key)]
    with live_gateway(tmp_path / "a", api_keys=keys, batches=shared) as before:
        batch = _batch_under_way(before, second_key, calls=4)
    with live_gateway(tmp_path / "b", batches=shared) as after:  # second_key is no longer configured
        done = _wait(after.client(ACME_KEY), batch.id)
        assert done.status == "failed" and done.errors is not None and done.errors.data is not None
        assert [e.code for e in done.errors.data] == ["api_key_revoked"]
        assert after.primary.calls + after.backup.calls == 0


def test_a_lost_batch_store_is_a_clear_503_and_chat_goes_on(tmp_path: Path) -> None:
    if postgres_bin_dir() is None:
        pytest.skip("needs PostgreSQL")  # the session fixture makes CI fail loudly when it is missing
    with postgres_server() as pg:
        url = pg.new_database()
        shared = BatchSettings(store=BatchStoreSettings(url=url, poll_s=0.2, tenants=["acme-us"]))
        with live_gateway(tmp_path / "a", batches=shared) as live:
            client = live.client()
            file_id = _upload(client, [_line("r0", "q 0")])
            pg.stop()
            raw = httpx.get(live.url + f"/v1/files/{file_id}", headers={"authorization": f"Bearer {ACME_KEY}"})
            assert raw.status_code == 503
            error = raw.json()["error"]
            assert error["code"] == "store_unavailable" and "127.0.0.1" not in raw.text and "psycopg" not in raw.text
            chat = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
            assert chat.choices[0].message.content  # live traffic does not depend on the batch store


def test_deleting_files_with_the_official_client(tmp_path: Path) -> None:
    with live_gateway(tmp_path / "state") as live:
        live.primary.first_token_delay_s = live.backup.first_token_delay_s = 0.2
        client, euro = live.client(), live.client(EURO_KEY)
        file_id = _upload(client, [_line(f"r{i}", f"zebra-quokka {i}") for i in range(8)])
        batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                      completion_window="24h")
        with pytest.raises(openai.ConflictError) as busy:  # a running batch still reads it
            client.files.delete(file_id)
        assert busy.value.status_code == 409 and busy.value.body["code"] == "conflict"  # type: ignore[index]
        assert client.files.content(file_id).text  # nothing was deleted
        with pytest.raises(openai.NotFoundError):
            euro.files.delete(file_id)  # another tenant's file: not found, and kept
        done = _wait(client, batch.id)
        assert done.status == "completed" and done.output_file_id is not None
        deleted = client.files.delete(file_id)
        assert (deleted.id, deleted.deleted, deleted.object) == (file_id, True, "file")
        for call in (lambda: client.files.retrieve(file_id), lambda: client.files.content(file_id),
                     lambda: client.files.delete(file_id)):
            with pytest.raises(openai.NotFoundError):
                call()
        assert client.batches.retrieve(batch.id).input_file_id == file_id  # the batch keeps its history
        assert client.files.delete(done.output_file_id).deleted  # results may go too, the batch still reads
        assert client.batches.retrieve(batch.id).status == "completed"
        assert client.files.list().data == []
        path = live.state_dir / "batches" / "batches.sqlite"
        with contextlib.closing(sqlite3.connect(path)) as db:
            assert db.execute("SELECT COUNT(*) FROM batch_files").fetchone() == (0,)
    # once the gateway has stopped (its last connection checkpoints the write-ahead log into the file), the
    # prompts are overwritten on disk, not only unlinked from the table
    on_disk = b"".join(p.read_bytes() for p in path.parent.glob("batches.sqlite*"))
    assert b"zebra-quokka" not in on_disk


def test_listing_files_pages_like_openai(live: Live) -> None:
    client = live.client()
    ids = [_upload(client, [_line(f"r{i}", f"q {i}")]) for i in range(3)]
    page = client.files.list(limit=2)
    assert len(page.data) == 2 and page.has_more
    assert [f.id for f in client.files.list(limit=2)] == ids[::-1]  # the client follows the cursor; newest first
    assert [f.id for f in client.files.list(order="asc")] == ids
    batch = _wait(client, client.batches.create(input_file_id=ids[0], endpoint="/v1/chat/completions",
                                                completion_window="24h").id)
    outputs = client.files.list(purpose="batch_output").data
    assert [f.id for f in outputs] == [batch.output_file_id]
    assert len(client.files.list(purpose="batch").data) == 3
    for bad in ({"limit": "0"}, {"limit": "x"}, {"order": "up"}):
        raw = httpx.get(live.url + "/v1/files", params=bad, headers={"authorization": f"Bearer {ACME_KEY}"})
        assert raw.status_code == 400 and raw.json()["error"]["param"] in bad


def test_expiry_with_the_official_client(live: Live) -> None:
    client = live.client()
    data = ("\n".join([_line("r0", "q 0")]) + "\n").encode()
    f = client.files.create(file=("a.jsonl", io.BytesIO(data)), purpose="batch",
                            expires_after={"anchor": "created_at", "seconds": 3600})
    assert f.expires_at == f.created_at + 3600
    assert client.files.retrieve(f.id).expires_at == f.created_at + 3600
    for bad in ({"anchor": "created_at", "seconds": 60}, {"anchor": "last_active_at", "seconds": 3600}):
        with pytest.raises(openai.BadRequestError) as err:
            client.files.create(file=("b.jsonl", io.BytesIO(data)), purpose="batch",
                                expires_after=bad)  # type: ignore[arg-type]
        assert err.value.body["param"] == "expires_after"  # type: ignore[index]
    batch = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h",
                                  output_expires_after={"anchor": "created_at", "seconds": 7200})
    done = _wait(client, batch.id)
    assert done.status == "completed" and done.output_file_id is not None
    out = client.files.retrieve(done.output_file_id)
    assert out.expires_at == out.created_at + 7200
    assert len(client.files.list().data) == 2  # nothing half-stored by the refused uploads


def test_malformed_multipart_and_odd_limits_are_400s(live: Live) -> None:
    auth = {"authorization": f"Bearer {ACME_KEY}"}
    no_boundary = httpx.post(live.url + "/v1/files", content=b"--x\r\n\r\n",
                             headers={**auth, "content-type": "multipart/form-data"})
    assert no_boundary.status_code == 400 and no_boundary.json()["error"]["code"] == "invalid_request"
    two_files = httpx.post(live.url + "/v1/files", headers=auth, data={"purpose": "batch"},
                           files=[("file", ("a.jsonl", b"{}\n")), ("file", ("b.jsonl", b"{}\n"))])
    assert two_files.status_code == 400
    for path in ("/v1/files?limit=%C2%B2", "/v1/batches?limit=%C2%B9"):  # superscript digits: isdigit() is True
        r = httpx.get(live.url + path, headers=auth)
        assert r.status_code == 400 and r.json()["error"]["param"] == "limit"
    assert live.client().files.list().data == []


def test_batch_errors_do_not_echo_metadata_keys(live: Live) -> None:
    client = live.client()
    file_id = _upload(client, [_line("a", "hello")])
    r = httpx.post(live.url + "/v1/batches", headers={"authorization": f"Bearer {ACME_KEY}"},
                   json={"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h",
                         "metadata": {"jane.doe@example.com": 5}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "metadata"
    assert "jane.doe" not in r.text
    for metadata in ({"k" * 65: "v"}, {"k": "v" * 513}):  # OpenAI's limits: keys 64 characters, values 512
        r = httpx.post(live.url + "/v1/batches", headers={"authorization": f"Bearer {ACME_KEY}"},
                       json={"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                             "completion_window": "24h", "metadata": metadata})
        assert r.status_code == 400 and r.json()["error"]["param"] == "metadata"


def test_a_file_with_a_byte_order_mark_loses_no_line(live: Live) -> None:
    """Windows tools write a BOM: the first request failed as invalid JSON."""
    client = live.client()
    data = ("\ufeff" + _line("a", "hello") + "\n").encode()
    file_id = client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch").id
    created = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    batch = _wait(client, created.id)
    counts = batch.request_counts
    assert batch.status == "completed" and counts is not None and (counts.completed, counts.failed) == (1, 0)


@pytest.mark.parametrize("path", ["/v1/batches", "/v1/files"])
def test_oversized_chunked_bodies_are_refused_while_they_stream(tmp_path: Path, path: str) -> None:
    """No Content-Length: the body is counted as it arrives and refused past the limit, not read in full first
    (it was: 20 MB read, or spooled to disk, before the 413)."""
    import asyncio

    from gateway_harness import make_settings

    from sovrouter.gateway.app import create_app
    from sovrouter.gateway.wiring import build_live_pipeline, make_batch_service
    from sovrouter.testing_upstream import closed_port_url

    pulled = 0

    async def body() -> Any:
        nonlocal pulled
        if path == "/v1/files":
            yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n\r\n'
        for _ in range(2000):  # 20 MB
            pulled += 10_000
            yield b"x" * 10_000

    async def go() -> httpx.Response:
        settings = make_settings(tmp_path / "state", closed_port_url(), closed_port_url(),
                                 batches=BatchSettings(max_file_bytes=1024))
        pipeline = build_live_pipeline(settings)
        app = create_app(pipeline, settings, batches=make_batch_service(settings, pipeline))
        ctype = "multipart/form-data; boundary=b" if path == "/v1/files" else "application/json"
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await client.post(path, content=body(), headers={"authorization": f"Bearer {ACME_KEY}",
                                                                     "content-type": ctype})

    r = asyncio.run(go())
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert pulled < 1_000_000
