"""The OpenAI Files and Batch APIs over the batch runner: upload a JSONL file, create a batch, poll it, download
the results, as with ``client.files.create(purpose="batch")`` and ``client.batches.create(...)``.

- **Storage**: one database (:mod:`sovrouter.batch.store`): SQLite under ``state_dir/batches`` for one instance,
  or PostgreSQL shared by several gateway instances (``batches.store``), so that an upload on one instance, the
  batch created on a second and the poll on a third all see the same files and batches. A file (metadata and
  bytes) is one row written in one statement: a failed upload leaves nothing behind, a listed file is complete.
- **Tenancy**: every file and batch belongs to the tenant of the key that created it; another tenant gets 404
  for it (existence is not revealed) and never sees it in a list. A revoked key's batches fail (``revocation.py``).
- **Running**: each instance runs one batch per tenant at a time (its oldest open one nobody holds a **lease**
  on; the creating instance is woken at once, the others look every ``poll_s``), tenants side by side sharing
  ``concurrency`` line slots in turn (:class:`~sovrouter.batch.gate.FairGate`), each line through the same
  :meth:`Pipeline.handle` as live traffic, the router wrapped by :class:`~sovrouter.batch.router.DeferrableRouter`
  (cheapest allowed capacity first). It renews each lease while it works, and stops a batch whose lease it loses.
  Each answered line is stored as it completes; when the batch ends, lines answered 200 go to the output file and
  the rest (unreadable lines, refusals, upstream failures) to the error file, as OpenAI splits them, in one
  transaction with the batch's final state.
- **Restarts and lost instances**: a batch whose instance stopped resumes where it was, skipping the lines
  already stored (no line is answered twice, except those in flight at the moment of the stop): at the next start
  of a single instance, or on another instance once the stopped one's lease lapses (``lease_s``; a clean
  shutdown hands its lease back at once).
- **Cancel**, on any instance: ``cancelling`` then ``cancelled`` (the owner sees it at its next lease renewal,
  or at once when it is the instance asked); lines already answered are kept in the output files.
- **Expiry**: a batch still running when its 24 h window ends is ``expired``: answered lines are kept, the rest
  go to the error file with ``batch_expired``.

- **Deleting a file**: its bytes are gone at once, on every instance; a file an open batch reads is a 409
  ``conflict``. Output and error files may go any time (the batch keeps their ids; reading them is a 404).
- **Expiry** (``expires_after`` on an upload, ``output_expires_after`` on a batch, 1 h to 30 days): past its
  ``expires_at`` a file is a 404 at once, and the next purge deletes it (unless an unfinished batch reads it).

Not built: endpoints other than ``/v1/chat/completions``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
import uuid
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from sovrouter.batch.fileio import (
    CHAT_URL,
    LineError,
    ParsedLine,
    dumps_line,
    jsonl_lines,
    output_line,
    parse_lines,
)
from sovrouter.batch.gate import FairGate
from sovrouter.batch.objects import (
    BatchEnd,
    BatchError,
    BatchErrors,
    BatchObject,
    CreateBatch,
    ExpiresAfter,
    FileObject,
    RequestCounts,
)
from sovrouter.batch.revocation import KEY_REVOKED, Refusal, refusal
from sovrouter.batch.runner import BatchRunner, deferrable
from sovrouter.batch.store import BatchStore, store_url
from sovrouter.contracts import DataClass
from sovrouter.errors import (
    InvalidRequestError,
    NotFoundError,
    RequestTooLargeError,
    SovrouterError,
    StoreNotAllowedError,
)
from sovrouter.pipeline import Pipeline

MAX_LINES = 50_000
DEFAULT_MAX_FILE_BYTES = 100 * 1024 * 1024
WINDOW_S = 24 * 3600
log = logging.getLogger("sovrouter.batch")


class BatchService:
    """See the module docstring. ``start()`` in the serving loop before use, ``aclose()`` at shutdown.

    ``store``: a :class:`BatchStore`, or a folder for a local SQLite one. ``lease_s``: how long a batch stays held
    by an instance that stopped renewing (it renews every third of it); ``poll_s``: how often an idle worker looks
    for batches other instances created or left; ``keys``: the key digests in force, or what reads them now
    (:meth:`~sovrouter.gateway.auth.KeyRing.digests`, which follows ``api_keys_file``; :mod:`.revocation`)."""

    def __init__(self, store: BatchStore | Path, pipeline: Pipeline, *, concurrency: int = 4,
                 max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, now: Callable[[], float] = time.time,
                 window_s: float = WINDOW_S, lease_s: float = 30.0, poll_s: float = 2.0,
                 retention_s: float | None = 30 * 86_400, purge_every_s: float = 3600.0,
                 tenants: Collection[str] | None = None,
                 keys: Collection[str] | Callable[[], Collection[str]] | None = None, key_grace_s: float = 0.0) -> None:
        self.store = store if isinstance(store, BatchStore) else BatchStore(store_url(None, store))
        self.pipeline = deferrable(pipeline)
        self.concurrency = max(1, concurrency)
        self.max_file_bytes = max_file_bytes
        self.now = now
        self.window_s = window_s
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.retention_s = retention_s
        self.purge_every_s = purge_every_s
        self.tenants = None if tenants is None else frozenset(tenants)
        self.keys = keys if keys is None or callable(keys) else frozenset(keys)
        self._revoked: dict[str, Refusal] = {}  # running batches stopped because their key went
        self.key_grace_s = key_grace_s
        self._deferred: dict[str, float] = {}  # batch id -> when to look at it again (its key unknown here yet)
        self._purged_at = float("-inf")
        self.instance = "gw-" + uuid.uuid4().hex[:16]  # this process's name on the leases it holds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._running: dict[str, asyncio.Task[None]] = {}
        self._owning: dict[str, tuple[str, asyncio.Task[None]]] = {}  # batch id -> (tenant, its _own task)
        self._gate = FairGate(self.concurrency)  # the instance's line slots, shared by tenants in turn
        self._lost: set[str] = set()  # batches whose lease another instance took while we ran them
        self._finishing: set[asyncio.Future[None]] = set()
        self._closing = False

    def _ts(self) -> int:
        return int(self.now())

    def _may_store(self, tenant: str) -> None:
        """Fail closed: a tenant not listed for the (shared) store keeps nothing in it."""
        if self.tenants is not None and tenant not in self.tenants:
            raise StoreNotAllowedError("this tenant's policy does not allow its batch data in the shared batch store")

    # ------------------------------------------------------------------ files
    def upload(self, tenant: str, filename: str, purpose: str, data: bytes,
               expires_after: ExpiresAfter | None = None) -> FileObject:
        self._may_store(tenant)
        if purpose != "batch":
            raise InvalidRequestError("purpose must be 'batch' (the only purpose this gateway stores)",
                                      param="purpose")
        if len(data) > self.max_file_bytes:
            raise RequestTooLargeError(f"file exceeds {self.max_file_bytes} bytes")
        if not data.strip():
            raise InvalidRequestError("the file is empty", param="file")
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequestError("the file is not UTF-8 text (JSONL expected)", param="file") from None
        name = os.path.basename(filename.replace("\\", "/"))[:255] or "upload.jsonl"
        now = self._ts()
        obj = FileObject(id="file-" + uuid.uuid4().hex[:24], bytes=len(data), created_at=now, filename=name,
                         purpose="batch", expires_at=None if expires_after is None else now + expires_after.seconds)
        self.store.add_file(tenant, obj.id, obj.model_dump_json(), data, self.now())
        return obj

    def _live(self, obj: FileObject) -> bool:
        """Not past its ``expires_at`` (the purge deletes it at most ``purge_every_s`` later; until then it is
        already gone for the API)."""
        return obj.expires_at is None or self.now() < obj.expires_at

    def file(self, tenant: str, file_id: str) -> FileObject:
        obj = FileObject.model_validate_json(self.store.file_meta(tenant, file_id))
        if not self._live(obj):
            raise NotFoundError("no such file", param="file_id")
        return obj

    def content(self, tenant: str, file_id: str) -> bytes:
        self.file(tenant, file_id)  # 404 once expired
        return self.store.file_data(tenant, file_id)

    def delete_file(self, tenant: str, file_id: str) -> dict[str, Any]:
        self.store.delete_file(tenant, file_id)
        return {"id": file_id, "object": "file", "deleted": True}

    def files(self, tenant: str) -> list[FileObject]:
        return [f for f in (FileObject.model_validate_json(m) for m in self.store.files(tenant)) if self._live(f)]

    def list_files(self, tenant: str, *, purpose: str | None = None, limit: int = 10_000, order: str = "desc",
                   after: str | None = None) -> tuple[list[FileObject], bool]:
        """``files.list``: the tenant's files newest first (``order="asc"``: oldest first), of one ``purpose`` if
        given, ``limit`` of them after the file ``after``; and whether more follow."""
        items = [f for f in self.files(tenant) if purpose is None or f.purpose == purpose]
        if order == "asc":
            items.reverse()
        if after is not None:
            ids = [f.id for f in items]
            items = items[ids.index(after) + 1:] if after in ids else []
        return items[:limit], len(items) > limit

    # ------------------------------------------------------------------ batches
    def create(self, tenant: str, body: CreateBatch, data_class: DataClass = "public",
               key_sha256: str | None = None) -> BatchObject:
        self._may_store(tenant)
        if body.endpoint not in (CHAT_URL, "/chat/completions"):
            raise InvalidRequestError("endpoint must be /v1/chat/completions", param="endpoint")
        if body.completion_window != "24h":
            raise InvalidRequestError("completion_window must be '24h'", param="completion_window")
        source = self.file(tenant, body.input_file_id)  # 404 for another tenant's file too
        if source.purpose != "batch":
            raise InvalidRequestError("input_file_id must be a file uploaded with purpose 'batch'",
                                      param="input_file_id")
        now = self._ts()
        batch = BatchObject(id="batch_" + uuid.uuid4().hex[:24], endpoint=CHAT_URL, input_file_id=source.id,
                            completion_window="24h", status="validating", created_at=now,
                            expires_at=now + int(self.window_s), metadata=body.metadata, data_class=data_class,
                            output_expires_s=None if body.output_expires_after is None
                            else body.output_expires_after.seconds, key_sha256=key_sha256)
        lines = self._lines(tenant, batch)
        failure = ("empty_file", "the input file has no requests") if not lines else (
            ("too_many_lines", f"the input file has more than {MAX_LINES} requests") if len(lines) > MAX_LINES
            else None)
        if failure is not None:
            batch.status, batch.failed_at = "failed", now
            batch.errors = BatchErrors(data=[BatchError(code=failure[0], message=failure[1], param="input_file_id")])
        else:
            batch.status, batch.in_progress_at = "in_progress", now
            batch.request_counts = RequestCounts(total=len(lines))
        self.store.add_batch(tenant, batch.id, batch.status, _meta(batch), self.now())
        if batch.status == "in_progress":
            self._poke()
        return batch

    def get(self, tenant: str, batch_id: str) -> BatchObject:
        return self._with_progress(BatchObject.model_validate(self.store.batch(tenant, batch_id).meta))

    def list_batches(self, tenant: str, limit: int = 20, after: str | None = None) -> tuple[list[BatchObject], bool]:
        items = [BatchObject.model_validate(m) for m in self.store.batches(tenant)]
        if after is not None:
            ids = [b.id for b in items]
            items = items[ids.index(after) + 1:] if after in ids else []
        return [self._with_progress(b) for b in items[:limit]], len(items) > limit

    def _with_progress(self, batch: BatchObject) -> BatchObject:
        """An open batch's counts as its lines are answered (they were 0 until it closed: OpenAI's move as lines
        finish, and clients draw progress from them)."""
        if batch.status not in ("in_progress", "finalizing", "cancelling"):
            return batch
        completed, failed = self.store.progress(batch.id)
        counts = RequestCounts(total=batch.request_counts.total, completed=completed, failed=failed)
        return batch.model_copy(update={"request_counts": counts})

    def cancel(self, tenant: str, batch_id: str) -> BatchObject:
        """Mark the batch ``cancelling``. Running here: stop it now. Held by another instance: that one ends it
        at its next lease renewal. Held by nobody (queued): end it here, now."""
        self.store.batch(tenant, batch_id)  # 404 for another tenant's batch

        def mark(meta: dict[str, Any]) -> dict[str, Any] | None:
            if meta["status"] not in ("validating", "in_progress"):
                return None  # finished, failed or already cancelling: nothing to do (as OpenAI answers)
            return {**meta, "status": "cancelling", "cancelling_at": self._ts()}

        if self.store.update(batch_id, mark) is not None:
            task = self._running.get(batch_id)
            if task is not None and self._loop is not None:
                self._loop.call_soon_threadsafe(task.cancel)
            elif (self.store.owner(batch_id) != self.instance  # else our worker is just starting it: it sees
                  and self.store.claim(batch_id, self.instance, self.now(), self.lease_s)):  # the cancel itself
                self._finish(batch_id, end="cancelled")
        return self.get(tenant, batch_id)

    # ------------------------------------------------------------------ running
    def _lines(self, tenant: str, batch: BatchObject) -> list[ParsedLine]:
        text = self.store.file_data(tenant, batch.input_file_id).decode("utf-8")
        return parse_lines(jsonl_lines(text))

    def _poke(self) -> None:
        """Wake this instance's worker (a batch was created); safe from any thread."""
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def start(self) -> None:
        """Start the worker in the running loop. One instance over its own SQLite file first forgets the leases
        its predecessor held, so what that process left unfinished resumes at once."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if not self.store.shared:
            await asyncio.to_thread(self.store.release_all)
        self._worker = asyncio.create_task(self._work())

    async def _work(self) -> None:
        assert self._wake is not None
        while not self._closing:  # (wait_for may swallow a cancel that lands as it is woken: Python < 3.12)
            self._wake.clear()
            try:
                took = await self._take()
            except asyncio.CancelledError:
                raise
            except Exception:  # the worker's boundary: a store outage never stops it
                log.exception("batch worker: pass failed; trying again in %.1f s", self.poll_s)
                took = False
            if not took:
                await self._purge()
            with contextlib.suppress(TimeoutError):  # woken by a new batch, a batch that ended, or time to look
                await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def _take(self) -> bool:
        """Claim the oldest open batch of each tenant with none running here (tenants share slots: FairGate)."""
        busy = {tenant for tenant, _ in self._owning.values()}
        took = False
        now = self.now()
        self._deferred = {b: t for b, t in self._deferred.items() if t > now}
        for batch_id, tenant in await asyncio.to_thread(self.store.unowned_of, now):
            if tenant in busy or self._closing or batch_id in self._deferred:
                continue
            if await asyncio.to_thread(self.store.claim, batch_id, self.instance, self.now(), self.lease_s):
                busy.add(tenant)
                took = True
                task = asyncio.create_task(self._own(batch_id))
                self._owning[batch_id] = (tenant, task)
                task.add_done_callback(functools.partial(self._owned, batch_id))
        return took

    def _owned(self, batch_id: str, task: asyncio.Task[None]) -> None:
        self._owning.pop(batch_id, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("batch %s: its run stopped on %s", batch_id, type(exc).__name__)
        if not self._closing:
            self._poke()  # the tenant's next batch may start

    async def _purge(self) -> None:
        """Delete closed batches and unused files older than ``retention_s``, and files past their own expiry
        (``expires_after``), at most every ``purge_every_s``
        (from an idle worker; any instance may, deletes are idempotent)."""
        now = self.now()
        if now - self._purged_at < self.purge_every_s:
            return
        self._purged_at = now
        before = None if self.retention_s is None else now - self.retention_s
        try:
            files, batches = await asyncio.to_thread(self.store.purge, before, now)
        except SQLAlchemyError:
            log.warning("batch store: purge failed (store unreachable); next try in %.0f s", self.purge_every_s)
            return
        if files or batches:
            log.info("batch store: deleted %d files and %d batches past retention", files, batches)

    async def _own(self, batch_id: str) -> None:
        """Run or close a batch whose lease this instance holds."""
        stored = await asyncio.to_thread(self.store.batch, None, batch_id)
        batch, tenant = BatchObject.model_validate(stored.meta), stored.tenant
        if batch.status in ("cancelling", "finalizing"):  # its owner stopped before closing it: close it
            await self._end(batch_id, "cancelled" if batch.status == "cancelling" else "completed")
            return
        if batch.status != "in_progress":  # closed meanwhile (a cancel on this instance)
            await asyncio.to_thread(self.store.release, batch_id, self.instance)
            return
        refused = self._refusal(tenant, batch)
        if refused is not None and refused.code == KEY_REVOKED and self.now() - batch.created_at < self.key_grace_s:
            # a key so new that this instance's file may not hold it yet: left for one that knows it, or for later
            log.info("batch %s: its key is not known here (yet); left for %.0f s", batch_id, self.poll_s * 5)
            self._deferred[batch_id] = self.now() + self.poll_s * 5
            await asyncio.to_thread(self.store.release, batch_id, self.instance)
            return
        # fail closed, before any line starts; the lines answered before go to its files
        if refused is not None:
            log.warning("batch %s: %s; failed", batch_id, refused.code)
            await self._end(batch_id, "failed", BatchError(code=refused.code, message=refused.message))
            return
        task = asyncio.create_task(self._run(tenant, batch))
        self._running[batch_id] = task
        beat = asyncio.create_task(self._heartbeat(batch_id, task, tenant, batch))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if self._closing:
                raise  # shutdown: the batch resumes later
            # else, lease lost: another instance holds it now, and goes on with it; only a batch marked
            # cancelling ends as cancelled (cancelled before its own handler ran); anything else resumes. A
            # revocation its run did not take was one that landed as the run closed the batch (it goes on)
            if batch_id not in self._lost and batch_id not in self._revoked and await self._marked_cancelling(batch_id):
                await self._end(batch_id, "cancelled")
        except SQLAlchemyError:  # the store went away: not the batch's fault; it resumes once the lease lapses
            log.warning("batch %s paused: the batch store is unreachable", batch_id)
        except Exception:  # one batch's failure ends that batch only (the worker's boundary)
            log.exception("batch %s stopped on an internal error", batch_id)
            await self._end(batch_id, "failed")
        finally:
            beat.cancel()
            self._running.pop(batch_id, None)
            self._lost.discard(batch_id)
            self._revoked.pop(batch_id, None)  # a revocation that landed as the run ended (its close under way)

    async def _marked_cancelling(self, batch_id: str) -> bool:
        stored = await asyncio.to_thread(self.store.batch, None, batch_id)
        if BatchObject.model_validate(stored.meta).status == "cancelling":
            return True
        log.warning("batch %s stopped without a cancel; it resumes when its lease lapses", batch_id)
        return False

    def _refusal(self, tenant: str, batch: BatchObject) -> Refusal | None:
        keys = self.keys() if callable(self.keys) else self.keys
        return refusal(tenant, batch.key_sha256, tenants=self.tenants, keys=keys)

    async def _heartbeat(self, batch_id: str, task: asyncio.Task[None], tenant: str, batch: BatchObject) -> None:
        """Renew the lease every third of it; stop the run when the batch was cancelled (on any instance), the
        lease went to another instance, or the key that created it was revoked (the batch fails)."""
        while not task.done():
            await asyncio.sleep(self.lease_s / 3)
            try:
                status = await asyncio.to_thread(self.store.renew, batch_id, self.instance, self.now(), self.lease_s)
            except SQLAlchemyError:
                log.warning("batch %s: lease renewal failed (store unreachable); retrying", batch_id)
                continue
            if status is None:
                self._lost.add(batch_id)
                task.cancel()
                return
            if status == "cancelling":
                task.cancel()
                return
            if (refused := self._refusal(tenant, batch)) is not None:
                self._revoked[batch_id] = refused
                task.cancel()
                return

    async def _run(self, tenant: str, batch: BatchObject) -> None:
        end: BatchEnd = "completed"
        try:
            todo = await asyncio.to_thread(self._todo, tenant, batch)  # database work off the serving loop
            runner = BatchRunner(self.pipeline, tenant=tenant, data_class=batch.data_class,
                                 concurrency=self.concurrency, batch_id=batch.id, gate=self._gate)

            async def keep(item: dict[str, Any]) -> None:
                if not await asyncio.to_thread(self.store.add_result, batch.id, str(item["id"]), dumps_line(item),
                                               self.instance):
                    self._lost.add(batch.id)  # before the other lines' tasks see their cancellation
                    raise _LeaseLost(batch.id)

            left_s = batch.expires_at - self.now()
            if left_s <= 0:  # it waited in the queue past its window: no line starts (a zero timeout let
                raise TimeoutError  # ``concurrency`` lines reach upstream before it fired)
            # in this task (not wait_for's inner one): a cancel reaches the lines at once, before a freed slot
            # can start another line upstream
            async with asyncio.timeout(left_s):
                await runner.run(todo, sink=keep)
        except TimeoutError:
            end = "expired"  # the completion window ran out: what was answered is kept
        except _LeaseLost:
            self._lost.add(batch.id)
            return  # another instance holds the batch now and goes on with it
        except asyncio.CancelledError:
            if (refused := self._revoked.pop(batch.id, None)) is not None and not self._closing:
                log.warning("batch %s: %s; failed", batch.id, refused.code)
                await self._end(batch.id, "failed", BatchError(code=refused.code, message=refused.message))
                return
            if self._closing or batch.id in self._lost or self.get(tenant, batch.id).status != "cancelling":
                raise  # shutdown or lease lost: the batch stays in progress and resumes (here or elsewhere)
            end = "cancelled"
        await self._end(batch.id, end)

    async def _end(self, batch_id: str, end: BatchEnd, error: BatchError | None = None) -> None:
        """:meth:`_finish` in a worker thread; a shutdown waits for it (it writes the result files)."""
        job = asyncio.ensure_future(asyncio.to_thread(self._finish, batch_id, end=end, error=error))
        self._finishing.add(job)
        job.add_done_callback(self._finishing.discard)
        await asyncio.shield(job)

    def _todo(self, tenant: str, batch: BatchObject) -> list[ParsedLine]:
        """The lines still to answer (a resumed batch keeps the lines it answered before)."""
        done = {x.get("id") for x in self.store.results(batch.id)}
        return [line for line in self._lines(tenant, batch) if _line_id(batch.id, line.line_no) not in done]

    def _finish(self, batch_id: str, *, end: BatchEnd, error: BatchError | None = None) -> None:
        """Split the stored results into the output and error files and close the batch, in one transaction
        (what was answered is kept whatever the end). Does nothing once the lease is another instance's."""
        for _ in range(8):  # a concurrent change (a cancel, a line stored late) refuses the finish: read again
            stored = self.store.batch(None, batch_id)
            if self.store.owner(batch_id) != self.instance:
                return
            tenant, batch = stored.tenant, BatchObject.model_validate(stored.meta)
            now = self._ts()
            batch.finalizing_at = now
            ok: list[dict[str, Any]] = []
            bad: list[dict[str, Any]] = []
            stored_lines = self.store.results(batch_id)
            for line in stored_lines:
                response = line.get("response") or {}
                (ok if line.get("error") is None and response.get("status_code") == 200 else bad).append(line)
            lines = self._lines(tenant, batch)
            if end == "expired":  # as OpenAI: every line not answered in the window is an error line
                answered = {x.get("id") for x in ok + bad}
                bad += [output_line(_line_id(batch_id, line.line_no), line.custom_id, line_no=line.line_no,
                                    error=LineError("batch_expired", "the batch's completion window ended first"))
                        for line in lines if _line_id(batch_id, line.line_no) not in answered]
            order = {_line_id(batch_id, line.line_no): line.line_no for line in lines}
            for group in (ok, bad):
                group.sort(key=lambda x: order.get(str(x.get("id")), len(order) + 1))
            files: list[tuple[str, str, str, bytes, float]] = []
            if ok:
                batch.output_file_id = self._result_file(tenant, f"{batch_id}_output.jsonl", ok, files,
                                                         batch.output_expires_s)
            if bad:
                batch.error_file_id = self._result_file(tenant, f"{batch_id}_error.jsonl", bad, files,
                                                        batch.output_expires_s)
            batch.request_counts = RequestCounts(total=batch.request_counts.total, completed=len(ok),
                                                 failed=len(bad))
            if end == "cancelled":
                batch.status, batch.cancelled_at = "cancelled", now
            elif end == "expired":
                batch.status, batch.expired_at = "expired", now
            elif end == "failed":
                batch.status, batch.failed_at = "failed", now
                batch.errors = BatchErrors(data=[error or BatchError(code="internal_error",
                                                                     message="the batch stopped on an internal error")])
            else:
                batch.status, batch.completed_at = "completed", now
            if self.store.finish(batch_id, self.instance, stored.version, _meta(batch), files, len(stored_lines)):
                return
        log.warning("batch %s: could not be closed (changed under every attempt); it stays open", batch_id)

    def _result_file(self, tenant: str, name: str, lines: list[dict[str, Any]],
                     files: list[tuple[str, str, str, bytes, float]], expires_s: int | None) -> str:
        data = "".join(dumps_line(x) for x in lines).encode("utf-8")
        now = self._ts()
        obj = FileObject(id="file-" + uuid.uuid4().hex[:24], bytes=len(data), created_at=now, filename=name,
                         purpose="batch_output", expires_at=None if expires_s is None else now + expires_s)
        files.append((tenant, obj.id, obj.model_dump_json(), data, self.now()))
        return obj.id

    async def aclose(self) -> None:
        """Stop the worker and the running batch (it stays in progress: its lease is handed back so that it
        resumes at the next start or on another instance), let result files being written finish, close the
        store."""
        self._closing = True
        if self._worker is not None:
            running = dict(self._running)
            owning = [task for _, task in self._owning.values()]
            self._worker.cancel()
            for task in (*running.values(), *owning):
                task.cancel()
            await asyncio.gather(self._worker, *running.values(), *owning, return_exceptions=True)
            self._worker = None
            if self._finishing:
                await asyncio.gather(*list(self._finishing), return_exceptions=True)
            for batch_id in running:
                await asyncio.to_thread(self.store.release, batch_id, self.instance)
        elif self._finishing:
            await asyncio.gather(*list(self._finishing), return_exceptions=True)
        self.store.close()


class _LeaseLost(SovrouterError):
    """Internal: this instance no longer holds the batch it was running (never leaves the service)."""


def _meta(batch: BatchObject) -> dict[str, Any]:
    """The stored form of a batch (its data class, output expiry and creating key's digest included, which the
    API object does not show)."""
    return {**batch.model_dump(mode="json"), "data_class": batch.data_class,
            "output_expires_s": batch.output_expires_s, "key_sha256": batch.key_sha256}


def _line_id(batch_id: str, line_no: int) -> str:
    """The output line id :class:`BatchRunner` gives line ``line_no`` of batch ``batch_id``."""
    return f"{batch_id}_req_{line_no}"
