"""The OpenAI Files and Batch APIs over the batch runner: upload a JSONL file, create a batch, poll it, download
the results, as with ``client.files.create(purpose="batch")`` and ``client.batches.create(...)``.

- **Storage** under one folder (the gateway's ``state_dir/batches``): file contents as files, metadata in SQLite.
  A file's bytes are written to a temporary name and renamed into place before its row exists, so a failed
  upload leaves nothing behind and a listed file is always complete.
- **Tenancy**: every file and batch belongs to the tenant of the key that created it; another tenant gets 404
  for it (existence is not revealed) and never sees it in a list.
- **Running**: batches run one at a time in the serving loop, in creation order, ``concurrency`` lines in
  flight, each line through the same :meth:`Pipeline.handle` as live traffic (sovereignty, cache, records), with
  the router wrapped by :class:`~sovrouter.batch.router.DeferrableRouter` (cheapest allowed capacity first: the
  "relaxed latency" of deferrable work). Results go to a partial file as they complete; when the batch ends,
  lines answered 200 go to the output file and the rest (unreadable lines, refusals, upstream failures) to the
  error file, as OpenAI splits them.
- **Restarts**: a batch that was running when the process stopped resumes at the next start, skipping the
  lines whose results are already in its partial file (no line is answered twice, except those in flight at
  the moment of the stop).
- **Cancel**: ``cancelling`` then ``cancelled``; lines already answered are kept in the output files.

- **Expiry**: a batch still running when its 24 h window ends is ``expired``: answered lines are kept, the rest
  go to the error file with ``batch_expired``.

Not built: endpoints other than ``/v1/chat/completions``, file deletion, a store shared between instances.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from sovrouter.batch.fileio import (
    CHAT_URL,
    LineError,
    ParsedLine,
    dumps_line,
    jsonl_lines,
    output_line,
    parse_lines,
)
from sovrouter.batch.runner import BatchRunner, deferrable
from sovrouter.contracts import DataClass
from sovrouter.errors import InvalidRequestError, NotFoundError, RequestTooLargeError
from sovrouter.pipeline import Pipeline

BatchStatus = Literal["validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling",
                      "cancelled"]
BatchEnd = Literal["completed", "cancelled", "failed", "expired"]
MAX_LINES = 50_000
DEFAULT_MAX_FILE_BYTES = 100 * 1024 * 1024
WINDOW_S = 24 * 3600
log = logging.getLogger("sovrouter.batch")


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: Literal["batch", "batch_output"]
    status: Literal["processed"] = "processed"


class RequestCounts(BaseModel):
    total: int = 0
    completed: int = 0
    failed: int = 0


class BatchError(BaseModel):
    code: str
    message: str
    line: int | None = None
    param: str | None = None


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError] = Field(default_factory=list)


class BatchObject(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    expired_at: int | None = None
    request_counts: RequestCounts = RequestCounts()
    metadata: dict[str, str] | None = None
    data_class: DataClass = Field(default="public", exclude=True)


class CreateBatch(BaseModel):
    """The body of ``POST /v1/batches``."""

    input_file_id: str = Field(min_length=1, max_length=200)
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = Field(default=None, max_length=16)


class BatchStore:
    """Files (bytes on disk, a row each) and batches (a JSON row each), by tenant. Thread-safe."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files_dir = root / "files"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(root / "batches.sqlite", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS files (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, "
                         "created REAL NOT NULL, meta TEXT NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS batches (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, "
                         "created REAL NOT NULL, meta TEXT NOT NULL)")
        self._lock = threading.Lock()

    def path(self, file_id: str) -> Path:
        return self.files_dir / f"{file_id}.jsonl"

    def add_file(self, tenant: str, obj: FileObject, data: bytes) -> None:
        tmp = self.files_dir / f".{obj.id}.tmp"
        try:
            tmp.write_bytes(data)
            os.replace(tmp, self.path(obj.id))
        finally:
            tmp.unlink(missing_ok=True)
        with self._lock:
            self._db.execute("INSERT INTO files VALUES (?, ?, ?, ?)",
                             (obj.id, tenant, time.time(), obj.model_dump_json()))

    def file(self, tenant: str, file_id: str) -> FileObject:
        with self._lock:
            row = self._db.execute("SELECT meta FROM files WHERE id = ? AND tenant = ?", (file_id, tenant)).fetchone()
        if row is None:
            raise NotFoundError("no such file", param="file_id")
        return FileObject.model_validate_json(row[0])

    def files(self, tenant: str) -> list[FileObject]:
        with self._lock:
            rows = self._db.execute("SELECT meta FROM files WHERE tenant = ? ORDER BY created DESC, id",
                                    (tenant,)).fetchall()
        return [FileObject.model_validate_json(r[0]) for r in rows]

    def put_batch(self, tenant: str, batch: BatchObject) -> None:
        meta = json.dumps({**batch.model_dump(mode="json"), "data_class": batch.data_class})
        with self._lock:
            self._db.execute("INSERT INTO batches VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET meta = "
                             "excluded.meta", (batch.id, tenant, time.time(), meta))

    def batch(self, tenant: str, batch_id: str) -> BatchObject:
        with self._lock:
            row = self._db.execute("SELECT meta FROM batches WHERE id = ? AND tenant = ?",
                                   (batch_id, tenant)).fetchone()
        if row is None:
            raise NotFoundError("no such batch", param="batch_id")
        return BatchObject.model_validate_json(row[0])

    def batches(self, tenant: str | None = None) -> list[tuple[str, BatchObject]]:
        """(tenant, batch), newest first; all tenants' when ``tenant`` is None (the worker's resume)."""
        query = "SELECT tenant, meta FROM batches" + (" WHERE tenant = ?" if tenant is not None else "")
        with self._lock:
            rows = self._db.execute(query + " ORDER BY created DESC, id", (tenant,) if tenant is not None else ())
            found = rows.fetchall()
        return [(r[0], BatchObject.model_validate_json(r[1])) for r in found]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class BatchService:
    """See the module docstring. ``start()`` in the serving loop before use, ``aclose()`` at shutdown."""

    def __init__(self, root: Path, pipeline: Pipeline, *, concurrency: int = 4,
                 max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, now: Callable[[], float] = time.time,
                 window_s: float = WINDOW_S) -> None:
        self.store = BatchStore(root)
        self.pipeline = deferrable(pipeline)
        self.concurrency = max(1, concurrency)
        self.max_file_bytes = max_file_bytes
        self.now = now
        self.window_s = window_s
        self._queue: asyncio.Queue[tuple[str, str]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: asyncio.Task[None] | None = None
        self._running: dict[str, asyncio.Task[None]] = {}
        self._finishing: set[asyncio.Future[None]] = set()
        self._closing = False

    def _ts(self) -> int:
        return int(self.now())

    # ------------------------------------------------------------------ files
    def upload(self, tenant: str, filename: str, purpose: str, data: bytes) -> FileObject:
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
        obj = FileObject(id="file-" + uuid.uuid4().hex[:24], bytes=len(data), created_at=self._ts(), filename=name,
                         purpose="batch")
        self.store.add_file(tenant, obj, data)
        return obj

    def file(self, tenant: str, file_id: str) -> FileObject:
        return self.store.file(tenant, file_id)

    def content(self, tenant: str, file_id: str) -> bytes:
        obj = self.store.file(tenant, file_id)
        return self.store.path(obj.id).read_bytes()

    def files(self, tenant: str) -> list[FileObject]:
        return self.store.files(tenant)

    # ------------------------------------------------------------------ batches
    def create(self, tenant: str, body: CreateBatch, data_class: DataClass = "public") -> BatchObject:
        if body.endpoint not in (CHAT_URL, "/chat/completions"):
            raise InvalidRequestError("endpoint must be /v1/chat/completions", param="endpoint")
        if body.completion_window != "24h":
            raise InvalidRequestError("completion_window must be '24h'", param="completion_window")
        source = self.store.file(tenant, body.input_file_id)  # 404 for another tenant's file too
        if source.purpose != "batch":
            raise InvalidRequestError("input_file_id must be a file uploaded with purpose 'batch'",
                                      param="input_file_id")
        now = self._ts()
        batch = BatchObject(id="batch_" + uuid.uuid4().hex[:24], endpoint=CHAT_URL, input_file_id=source.id,
                            completion_window="24h", status="validating", created_at=now,
                            expires_at=now + int(self.window_s), metadata=body.metadata, data_class=data_class)
        lines = self._lines(batch)
        failure = ("empty_file", "the input file has no requests") if not lines else (
            ("too_many_lines", f"the input file has more than {MAX_LINES} requests") if len(lines) > MAX_LINES
            else None)
        if failure is not None:
            batch.status, batch.failed_at = "failed", now
            batch.errors = BatchErrors(data=[BatchError(code=failure[0], message=failure[1], param="input_file_id")])
        else:
            batch.status, batch.in_progress_at = "in_progress", now
            batch.request_counts = RequestCounts(total=len(lines))
        self.store.put_batch(tenant, batch)
        if batch.status == "in_progress":
            self._enqueue(tenant, batch.id)
        return batch

    def get(self, tenant: str, batch_id: str) -> BatchObject:
        return self.store.batch(tenant, batch_id)

    def list_batches(self, tenant: str, limit: int = 20, after: str | None = None) -> tuple[list[BatchObject], bool]:
        items = [b for _, b in self.store.batches(tenant)]
        if after is not None:
            ids = [b.id for b in items]
            items = items[ids.index(after) + 1:] if after in ids else []
        return items[:limit], len(items) > limit

    def cancel(self, tenant: str, batch_id: str) -> BatchObject:
        batch = self.store.batch(tenant, batch_id)
        if batch.status not in ("validating", "in_progress"):
            return batch  # finished, failed or already cancelling: nothing to do (as OpenAI answers)
        batch.status, batch.cancelling_at = "cancelling", self._ts()
        self.store.put_batch(tenant, batch)
        task = self._running.get(batch_id)
        if task is not None:
            task.cancel()
        else:  # queued, not started: it ends now
            self._finish(tenant, batch, end="cancelled")
        return self.store.batch(tenant, batch_id)

    # ------------------------------------------------------------------ running
    def _lines(self, batch: BatchObject) -> list[ParsedLine]:
        text = self.store.path(batch.input_file_id).read_text(encoding="utf-8")
        return parse_lines(jsonl_lines(text))

    def _partial(self, batch_id: str) -> Path:
        return self.store.root / f"{batch_id}.partial.jsonl"

    def _enqueue(self, tenant: str, batch_id: str) -> None:
        """Queue a batch for the worker; safe from any thread (the routes run ``create`` in a worker thread)."""
        if self._queue is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (tenant, batch_id))

    async def start(self) -> None:
        """Start the worker in the running loop and queue the batches a previous process left unfinished."""
        self._queue = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._worker = asyncio.create_task(self._work())
        for tenant, batch in reversed(self.store.batches()):
            if batch.status == "in_progress":
                self._enqueue(tenant, batch.id)
            elif batch.status in ("cancelling", "finalizing"):
                self._finish(tenant, batch, end="cancelled" if batch.status == "cancelling" else "completed")

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            tenant, batch_id = await self._queue.get()
            batch = self.store.batch(tenant, batch_id)
            if batch.status != "in_progress":
                continue
            task = asyncio.create_task(self._run(tenant, batch))
            self._running[batch_id] = task
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if self._closing:
                    raise  # the worker itself is being stopped (the batch resumes at the next start)
                await self._end(tenant, batch_id, "cancelled")  # cancelled before its own handler ran
            except Exception:  # the worker's boundary: one batch's failure never stops the queue
                log.exception("batch %s stopped on an internal error", batch_id)
                await self._end(tenant, batch_id, "failed")
            finally:
                self._running.pop(batch_id, None)

    async def _run(self, tenant: str, batch: BatchObject) -> None:
        end: BatchEnd = "completed"
        try:
            todo = await asyncio.to_thread(self._todo, batch)  # file work off the serving loop
            runner = BatchRunner(self.pipeline, tenant=tenant, data_class=batch.data_class,
                                 concurrency=self.concurrency, batch_id=batch.id)
            with self._partial(batch.id).open("a", encoding="utf-8") as out:
                await asyncio.wait_for(runner.run(todo, out=out), timeout=max(0.0, batch.expires_at - self.now()))
        except TimeoutError:
            end = "expired"  # the completion window ran out: what was answered is kept
        except asyncio.CancelledError:
            if self._closing or self.store.batch(tenant, batch.id).status != "cancelling":
                raise  # shutdown: the batch stays in progress and resumes at the next start
            end = "cancelled"
        await self._end(tenant, batch.id, end)

    async def _end(self, tenant: str, batch_id: str, end: BatchEnd) -> None:
        """:meth:`_finish` in a worker thread; a shutdown waits for it (it writes the result files)."""
        job = asyncio.ensure_future(asyncio.to_thread(self._finish, tenant, self.store.batch(tenant, batch_id),
                                                      end=end))
        self._finishing.add(job)
        job.add_done_callback(self._finishing.discard)
        await asyncio.shield(job)

    def _todo(self, batch: BatchObject) -> list[ParsedLine]:
        """The lines still to answer; a resumed batch keeps the whole lines it answered before the stop."""
        partial = self._partial(batch.id)
        kept = _read_lines(partial)
        partial.write_text("".join(dumps_line(x) for x in kept), encoding="utf-8")
        done = {x.get("id") for x in kept}
        return [line for line in self._lines(batch) if _line_id(batch.id, line.line_no) not in done]

    def _finish(self, tenant: str, batch: BatchObject, *, end: BatchEnd) -> None:
        """Split the partial results into the output and error files and close the batch (what was answered
        is kept whatever the end)."""
        batch.status, batch.finalizing_at = "finalizing", self._ts()
        self.store.put_batch(tenant, batch)
        ok: list[dict[str, Any]] = []
        bad: list[dict[str, Any]] = []
        partial = self._partial(batch.id)
        for line in _read_lines(partial):
            response = line.get("response") or {}
            (ok if line.get("error") is None and response.get("status_code") == 200 else bad).append(line)
        if end == "expired":  # as OpenAI: every line not answered in the window is an error line
            answered = {x.get("id") for x in ok + bad}
            bad += [output_line(_line_id(batch.id, line.line_no), line.custom_id, line_no=line.line_no,
                                error=LineError("batch_expired", "the batch's completion window ended first"))
                    for line in self._lines(batch) if _line_id(batch.id, line.line_no) not in answered]
        order = {_line_id(batch.id, line.line_no): line.line_no for line in self._lines(batch)}
        for group in (ok, bad):
            group.sort(key=lambda x: order.get(str(x.get("id")), len(order) + 1))
        if ok:
            batch.output_file_id = self._result_file(tenant, f"{batch.id}_output.jsonl", ok).id
        if bad:
            batch.error_file_id = self._result_file(tenant, f"{batch.id}_error.jsonl", bad).id
        batch.request_counts = RequestCounts(total=batch.request_counts.total, completed=len(ok), failed=len(bad))
        now = self._ts()
        if end == "cancelled":
            batch.status, batch.cancelled_at = "cancelled", now
        elif end == "expired":
            batch.status, batch.expired_at = "expired", now
        elif end == "failed":
            batch.status, batch.failed_at = "failed", now
            batch.errors = BatchErrors(data=[BatchError(code="internal_error",
                                                        message="the batch stopped on an internal error")])
        else:
            batch.status, batch.completed_at = "completed", now
        self.store.put_batch(tenant, batch)
        partial.unlink(missing_ok=True)

    def _result_file(self, tenant: str, name: str, lines: list[dict[str, Any]]) -> FileObject:
        data = "".join(dumps_line(x) for x in lines).encode("utf-8")
        obj = FileObject(id="file-" + uuid.uuid4().hex[:24], bytes=len(data), created_at=self._ts(), filename=name,
                         purpose="batch_output")
        self.store.add_file(tenant, obj, data)
        return obj

    async def wait_idle(self) -> None:
        """Until every queued batch has ended (tests, benchmarks)."""
        while self._queue is not None and (not self._queue.empty() or self._running):
            await asyncio.sleep(0.02)

    async def aclose(self) -> None:
        """Stop the worker and the running batch (it stays in progress and resumes at the next start), let
        result files being written finish, close the store."""
        self._closing = True
        if self._worker is not None:
            running = list(self._running.values())
            self._worker.cancel()
            for task in running:
                task.cancel()
            await asyncio.gather(self._worker, *running, return_exceptions=True)
            self._worker = None
        if self._finishing:
            await asyncio.gather(*list(self._finishing), return_exceptions=True)
        self.store.close()


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """The complete JSON lines of a partial file (a line cut by a crash is dropped, so it is run again)."""
    if not path.exists():
        return []
    out = []
    for text in jsonl_lines(path.read_text(encoding="utf-8")):
        try:
            item = json.loads(text)
        except ValueError:
            continue
        if isinstance(item, dict):
            out.append(item)
    return out


def _line_id(batch_id: str, line_no: int) -> str:
    """The output line id :class:`BatchRunner` gives line ``line_no`` of batch ``batch_id``."""
    return f"{batch_id}_req_{line_no}"
