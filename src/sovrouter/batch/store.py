"""Where files and batches live: one SQL database through SQLAlchemy Core, SQLite for one instance (the default,
``state_dir/batches/batches.sqlite``) or PostgreSQL shared by every gateway instance (``batches.store``).

Everything a batch needs is in the database, so any instance can answer for it and take it over:

- ``batch_files``: each file's metadata and bytes in one row (inserted in one statement, so a listed file is always
  complete); reads are by tenant, so another tenant's id is "not found". A file is deleted only while no unfinished
  batch reads it, and a batch is created only while its input file exists: each transaction writes first and then
  checks the other table, so whichever of a delete and a create comes second sees the first (on PostgreSQL the
  create also key-share-locks the file row, which the delete waits for).
- ``batch_jobs``: each batch as its JSON object, with its status, a version (every update is a compare-and-set on
  it, so two instances never overwrite each other's change: a cancel and the owner's finish meet in order), and a
  **lease** (``owner``, ``lease_until``): only the instance holding an unexpired lease runs or finishes a batch.
  The owner renews it while it works; if it dies the lease lapses and another instance claims the batch.
- ``batch_results``: one row per answered line, keyed by its line id (a line is stored at most once whichever
  instance answered it); a resumed batch skips these lines. Finishing writes the output and error files, the
  batch's final state and deletes its result rows in one transaction.

**Upgrade** (since 2026-11-28): a local ``batches.sqlite`` still in the layout of the versions before this store
(2026-11-26: tables ``files`` and ``batches``, bytes in ``files/<id>.jsonl``, a running batch's answered lines in
``<batch id>.partial.jsonl``) is imported at open, in one transaction, and that layout is then removed: until then
those files and batches were 404s, a batch in progress never ran again and their prompts stayed on disk out of
reach of the retention purge (found in review).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from sovrouter.errors import ConflictError, NotFoundError
from sovrouter.store.sql import create_tables, database_url, insert_ignoring_duplicates, make_engine

log = logging.getLogger("sovrouter.batch")
_META = sa.MetaData()
FILES = sa.Table(
    "batch_files", _META,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("meta", sa.Text, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Index("batch_files_tenant", "tenant", "created"),
)
JOBS = sa.Table(
    "batch_jobs", _META,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("meta", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("owner", sa.String(64), nullable=True),
    sa.Column("lease_until", sa.Float, nullable=True),
    sa.Index("batch_jobs_tenant", "tenant", "created"),
    sa.Index("batch_jobs_status", "status"),
)
RESULTS = sa.Table(
    "batch_results", _META,
    sa.Column("batch_id", sa.String(64), primary_key=True),
    sa.Column("line_id", sa.String(200), primary_key=True),
    sa.Column("line", sa.Text, nullable=False),
)
EXPIRY = sa.Table(  # files uploaded with ``expires_after`` (or a batch's ``output_expires_after``): when they go
    "batch_file_expiry", _META,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("expires", sa.Float, nullable=False, index=True),
)
#: statuses in which a batch still needs an owner (to run it, or to write its result files)
OPEN = ("in_progress", "cancelling", "finalizing")
#: statuses of a batch not closed yet (``validating`` only while it is being created)
NOT_CLOSED = (*OPEN, "validating")


@dataclass(frozen=True)
class StoredBatch:
    tenant: str
    meta: dict[str, Any]
    version: int


def _insert_file(db: sa.Connection, tenant: str, file_id: str, meta: str, data: bytes, created: float) -> None:
    db.execute(FILES.insert().values(id=file_id, tenant=tenant, created=created, meta=meta, data=data))
    expires = json.loads(meta).get("expires_at")
    if expires is not None:
        db.execute(EXPIRY.insert().values(id=file_id, expires=float(expires)))


def store_url(url: str | None, root: Path, password_env: str | None = None) -> sa.URL:
    """The database URL: the given one (see :func:`~sovrouter.store.sql.database_url`) or the local SQLite file
    under ``root``."""
    if url is None:
        root.mkdir(parents=True, exist_ok=True)
        return sa.URL.create("sqlite", database=str(root / "batches.sqlite"))
    return database_url(url, password_env, "batches.store")


class BatchStore:
    """See the module docstring. Thread-safe (a connection pool); every method is one short transaction."""

    def __init__(self, url: sa.URL | str) -> None:
        self.engine = make_engine(url)
        self.shared = self.engine.dialect.name != "sqlite"
        create_tables(self.engine, _META)  # once, whatever the number of instances starting together
        folder = self.engine.url.database
        if not self.shared and folder and folder != ":memory:":
            _import_file_layout(self.engine, Path(folder).parent)

    # ------------------------------------------------------------------ files
    def add_file(self, tenant: str, file_id: str, meta: str, data: bytes, created: float) -> None:
        """Store a file; its ``expires_at`` (epoch seconds in ``meta``), if any, is when the purge deletes it."""
        with self.engine.begin() as db:
            _insert_file(db, tenant, file_id, meta, data, created)

    def file_meta(self, tenant: str, file_id: str) -> str:
        return str(self._file_column(FILES.c.meta, tenant, file_id))

    def file_data(self, tenant: str, file_id: str) -> bytes:
        return bytes(self._file_column(FILES.c.data, tenant, file_id))

    def _file_column(self, column: sa.Column[Any], tenant: str, file_id: str) -> Any:
        with self.engine.connect() as db:
            value = db.scalar(sa.select(column).where(FILES.c.id == file_id, FILES.c.tenant == tenant))
        if value is None:
            raise NotFoundError("no such file", param="file_id")
        return value

    def files(self, tenant: str) -> list[str]:
        query = sa.select(FILES.c.meta).where(FILES.c.tenant == tenant).order_by(FILES.c.created.desc(), FILES.c.id)
        with self.engine.connect() as db:
            return [str(m) for m in db.scalars(query)]

    def delete_file(self, tenant: str, file_id: str) -> None:
        """Delete the tenant's file (bytes included). :class:`NotFoundError` if there is none;
        :class:`ConflictError` (nothing deleted) while a batch not yet closed reads it."""
        with self.engine.begin() as db:
            gone = db.execute(FILES.delete().where(FILES.c.id == file_id, FILES.c.tenant == tenant)).rowcount
            if gone != 1:
                raise NotFoundError("no such file", param="file_id")
            db.execute(EXPIRY.delete().where(EXPIRY.c.id == file_id))
            for meta in db.scalars(sa.select(JOBS.c.meta).where(JOBS.c.tenant == tenant,
                                                                JOBS.c.status.in_(NOT_CLOSED))):
                if json.loads(meta).get("input_file_id") == file_id:
                    raise ConflictError("the file is the input of a batch that has not finished; cancel the batch "
                                        "or wait for it to end", param="file_id")  # rolls the delete back

    # ------------------------------------------------------------------ batches
    def add_batch(self, tenant: str, batch_id: str, status: str, meta: dict[str, Any], created: float) -> None:
        """Insert a batch; when ``meta`` names an ``input_file_id``, only while that file still exists (else
        :class:`NotFoundError`, nothing inserted): a concurrent delete cannot leave a batch without its input."""
        source = meta.get("input_file_id")
        with self.engine.begin() as db:
            db.execute(JOBS.insert().values(id=batch_id, tenant=tenant, created=created, status=status,
                                            meta=json.dumps(meta), version=0))
            if source is not None and db.scalar(
                    sa.select(FILES.c.id).where(FILES.c.id == source, FILES.c.tenant == tenant)
                    .with_for_update(read=True, key_share=True)) is None:
                raise NotFoundError("no such file", param="input_file_id")  # rolls the insert back

    def batch(self, tenant: str | None, batch_id: str) -> StoredBatch:
        """The batch (any tenant's when ``tenant`` is None: the worker's own use)."""
        query = sa.select(JOBS.c.tenant, JOBS.c.meta, JOBS.c.version).where(JOBS.c.id == batch_id)
        if tenant is not None:
            query = query.where(JOBS.c.tenant == tenant)
        with self.engine.connect() as db:
            row = db.execute(query).first()
        if row is None:
            raise NotFoundError("no such batch", param="batch_id")
        return StoredBatch(row.tenant, json.loads(row.meta), row.version)

    def batches(self, tenant: str) -> list[dict[str, Any]]:
        """The tenant's batches, newest first."""
        query = sa.select(JOBS.c.meta).where(JOBS.c.tenant == tenant).order_by(JOBS.c.created.desc(), JOBS.c.id)
        with self.engine.connect() as db:
            return [json.loads(m) for m in db.scalars(query)]

    def update(self, batch_id: str, change: Callable[[dict[str, Any]], dict[str, Any] | None],
               *, owner: str | None = None) -> dict[str, Any] | None:
        """Compare-and-set: apply ``change`` to the current object and write it if nobody wrote in between
        (else read again and retry). ``change`` returning None writes nothing. With ``owner``, only while that
        owner holds the batch's lease. Returns what was written, or None."""
        while True:
            current = self.batch(None, batch_id)
            new = change(dict(current.meta))
            if new is None:
                return None
            cond = [JOBS.c.id == batch_id, JOBS.c.version == current.version]
            if owner is not None:
                cond.append(JOBS.c.owner == owner)
            with self.engine.begin() as db:
                done = db.execute(JOBS.update().where(*cond).values(
                    meta=json.dumps(new), status=new["status"], version=current.version + 1)).rowcount
            if done == 1:
                return new
            if owner is not None and self.owner(batch_id) != owner:
                return None  # the lease went to another instance: it is theirs to write now

    # ------------------------------------------------------------------ leases
    def claim(self, batch_id: str, owner: str, now: float, lease_s: float) -> bool:
        """Take (or renew) the batch's lease if it is free, lapsed or already ours."""
        free = sa.or_(JOBS.c.owner.is_(None), JOBS.c.owner == owner, JOBS.c.lease_until < now)
        with self.engine.begin() as db:
            done = db.execute(JOBS.update().where(JOBS.c.id == batch_id, free)
                              .values(owner=owner, lease_until=now + lease_s)).rowcount
        return bool(done == 1)

    def renew(self, batch_id: str, owner: str, now: float, lease_s: float) -> str | None:
        """Extend our lease; the batch's status, or None when the lease is no longer ours."""
        with self.engine.begin() as db:
            done = db.execute(JOBS.update().where(JOBS.c.id == batch_id, JOBS.c.owner == owner)
                              .values(lease_until=now + lease_s)).rowcount
            if done != 1:
                return None
            return str(db.scalar(sa.select(JOBS.c.status).where(JOBS.c.id == batch_id)))

    def release(self, batch_id: str, owner: str) -> None:
        with self.engine.begin() as db:
            db.execute(JOBS.update().where(JOBS.c.id == batch_id, JOBS.c.owner == owner)
                       .values(owner=None, lease_until=None))

    def release_all(self) -> None:
        """Forget every lease (one instance over its own SQLite file, at start: the owner that held them is
        this process's predecessor)."""
        with self.engine.begin() as db:
            db.execute(JOBS.update().where(JOBS.c.owner.is_not(None)).values(owner=None, lease_until=None))

    def owner(self, batch_id: str) -> str | None:
        with self.engine.connect() as db:
            value = db.scalar(sa.select(JOBS.c.owner).where(JOBS.c.id == batch_id))
        return None if value is None else str(value)

    def unowned(self, now: float) -> list[str]:
        """Open batches nobody holds, oldest first."""
        return [batch_id for batch_id, _ in self.unowned_of(now)]

    def unowned_of(self, now: float) -> list[tuple[str, str]]:
        """(batch id, tenant) of the open batches nobody holds, oldest first."""
        query = (sa.select(JOBS.c.id, JOBS.c.tenant).where(JOBS.c.status.in_(OPEN),
                                                           sa.or_(JOBS.c.owner.is_(None), JOBS.c.lease_until < now))
                 .order_by(JOBS.c.created, JOBS.c.id))
        with self.engine.connect() as db:
            return [(str(batch_id), str(tenant)) for batch_id, tenant in db.execute(query)]

    # ------------------------------------------------------------------ results
    def add_result(self, batch_id: str, line_id: str, line: str, owner: str) -> bool:
        """Store an answered line once (a second answer of the same line is dropped), only while ``owner`` holds
        the batch. The owner check and the insert are one statement (``INSERT ... SELECT ... WHERE`` the job row
        names ``owner``), so no takeover or finish slips in between on either database (on PostgreSQL the job row
        is also locked, which a finish's update waits for). False when the lease is another instance's: the
        caller has lost the batch and should stop."""
        held = sa.select(JOBS.c.id).where(JOBS.c.id == batch_id, JOBS.c.owner == owner)
        if self.shared:
            held = held.with_for_update()
        row = sa.select(sa.literal(batch_id, sa.String), sa.literal(line_id, sa.String),
                        sa.literal(line, sa.Text)).where(held.exists())
        insert = insert_ignoring_duplicates(self.engine, RESULTS).from_select(["batch_id", "line_id", "line"], row)
        with self.engine.begin() as db:
            if db.execute(insert).rowcount == 1:
                return True
        return self.owner(batch_id) == owner  # nothing inserted: a line stored before, or the batch is not ours

    def progress(self, batch_id: str) -> tuple[int, int]:
        """(completed, failed) among the lines answered so far, counted in the database: a line is completed when
        its response's status is 200. The lines are our own compact JSON (``dumps_line``), in which
        ``"response":{"status_code":200,`` can only be that field (inside a string the quotes are escaped)."""
        done = sa.func.count().filter(RESULTS.c.line.like('%"response":{"status_code":200,%'))
        with self.engine.connect() as db:
            row = db.execute(sa.select(done, sa.func.count()).where(RESULTS.c.batch_id == batch_id)).one()
        return int(row[0]), int(row[1]) - int(row[0])

    def results(self, batch_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as db:
            rows = db.scalars(sa.select(RESULTS.c.line).where(RESULTS.c.batch_id == batch_id))
            return [json.loads(x) for x in rows]

    def finish(self, batch_id: str, owner: str, version: int, meta: dict[str, Any],
               files: list[tuple[str, str, str, bytes, float]], answered: int) -> bool:
        """One transaction: insert the result files ``(tenant, id, meta, data, created)``, write the batch's final
        state (if still at ``version`` and ours), drop its result rows and its lease. ``answered`` is the number
        of result rows the files were built from: a line stored since (a line in flight when its batch was
        cancelled) makes the finish write nothing, so that no answered line is dropped; the caller reads again.
        False (nothing written) when another instance changed the batch, took the lease, or a line came in."""
        with self.engine.connect() as db, db.begin() as tx:
            done = db.execute(JOBS.update().where(JOBS.c.id == batch_id, JOBS.c.version == version,
                                                  JOBS.c.owner == owner)
                              .values(meta=json.dumps(meta), status=meta["status"], version=version + 1,
                                      owner=None, lease_until=None)).rowcount
            # the job row is now write-locked (the whole file on SQLite): no line can be added until the commit
            stored = db.scalar(sa.select(sa.func.count()).select_from(RESULTS).where(RESULTS.c.batch_id == batch_id))
            if done != 1 or stored != answered:
                tx.rollback()
                return False  # nothing was written
            for tenant, file_id, file_meta, data, created in files:
                _insert_file(db, tenant, file_id, file_meta, data, created)
            db.execute(RESULTS.delete().where(RESULTS.c.batch_id == batch_id))
        return True

    def purge(self, before: float | None, now: float | None = None) -> tuple[int, int]:
        """Delete closed batches created before ``before`` (epoch seconds; None: none), and files created before it
        or past their own expiry at ``now``, unless an open batch reads them. Returns (files, batches) deleted. Safe
        on any instance at any time (plain deletes); if a batch was created meanwhile on a file being deleted,
        nothing is deleted this time."""
        with self.engine.begin() as db:
            batches = 0 if before is None else db.execute(JOBS.delete().where(
                JOBS.c.created < before, JOBS.c.status.not_in(NOT_CLOSED))).rowcount
            due: list[sa.ColumnElement[bool]] = []
            if before is not None:
                due.append(FILES.c.created < before)
            if now is not None:
                due.append(FILES.c.id.in_(sa.select(EXPIRY.c.id).where(EXPIRY.c.expires <= now)))
            if not due:
                return 0, int(batches)
            doomed = sa.or_(*due)
            read = self._open_inputs(db)
            if read:
                doomed = sa.and_(doomed, FILES.c.id.not_in(read))
            deleted = set(db.scalars(FILES.delete().where(doomed).returning(FILES.c.id)))
            if deleted & self._open_inputs(db):  # a create committed between the two reads: roll back, retry later
                db.rollback()
                return 0, 0
            if deleted:
                db.execute(EXPIRY.delete().where(EXPIRY.c.id.in_(deleted)))
        return len(deleted), int(batches)

    @staticmethod
    def _open_inputs(db: sa.Connection) -> set[str]:
        return {str(json.loads(m).get("input_file_id")) for m in db.scalars(
            sa.select(JOBS.c.meta).where(JOBS.c.status.in_(NOT_CLOSED)))}

    def close(self) -> None:
        self.engine.dispose()


_LEGACY_COLUMNS = {"id", "tenant", "created", "meta"}


def _import_file_layout(engine: sa.Engine, root: Path) -> None:
    """Import what the versions before this store (until 2026-11-26) kept in ``root``, then remove that layout
    (module docstring). A file row whose bytes are missing cannot be served and is left out, said in the log."""
    with engine.begin() as db:
        tables = sa.inspect(db).get_table_names()
        if "files" not in tables or "batches" not in tables:
            return
        for name in ("files", "batches"):
            if not {c["name"] for c in sa.inspect(db).get_columns(name)} >= _LEGACY_COLUMNS:
                log.warning("batch store: %s holds a table %r that is not the earlier layout's; left as it is",
                            root / "batches.sqlite", name)
                return
        moved: list[Path] = []
        missing = 0
        old_files = db.execute(sa.text("SELECT id, tenant, created, meta FROM files")).all()
        for file_id, tenant, created, meta in old_files:
            path = root / "files" / f"{file_id}.jsonl"
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                missing += 1
                continue
            if db.scalar(sa.select(FILES.c.id).where(FILES.c.id == file_id)) is None:
                _insert_file(db, str(tenant), str(file_id), str(meta), data, float(created))
            moved.append(path)
        old_batches = db.execute(sa.text("SELECT id, tenant, created, meta FROM batches")).all()
        lines = imported = 0
        for batch_id, tenant, created, meta in old_batches:
            try:
                status = str(json.loads(meta)["status"])
            except (ValueError, KeyError, TypeError):
                continue  # a row that never read back, in that version either (counted in the log)
            db.execute(insert_ignoring_duplicates(engine, JOBS).values(
                id=batch_id, tenant=tenant, created=float(created), status=status, meta=meta, version=0))
            imported += 1
            partial = root / f"{batch_id}.partial.jsonl"
            if partial.is_file():
                rows = _answered_lines(str(batch_id), partial.read_text(encoding="utf-8"))
                if rows:
                    db.execute(insert_ignoring_duplicates(engine, RESULTS), rows)
                lines += len(rows)
                moved.append(partial)
        db.execute(sa.text("DROP TABLE files"))
        db.execute(sa.text("DROP TABLE batches"))
    for path in moved:  # imported and committed: the earlier copies go (a batch file holds prompts)
        path.unlink(missing_ok=True)
    if (root / "files").is_dir() and not any((root / "files").iterdir()):
        (root / "files").rmdir()
    log.info("batch store: imported %d files and %d batches (%d answered lines) from the layout of versions "
             "before 2026-11-26 in %s", len(old_files) - missing, imported, lines, root)
    if missing or imported < len(old_batches):
        log.warning("batch store: left out of the import (unusable): %d files of the earlier layout without their "
                    "bytes on disk, %d batch rows that do not read", missing, len(old_batches) - imported)


def _answered_lines(batch_id: str, text: str) -> list[dict[str, str]]:
    """The result rows of an earlier version's partial file: each complete JSON line (one cut by a crash is
    dropped, so it is asked again, as that version did)."""
    rows = []
    for raw in text.split("\n"):
        try:
            item = json.loads(raw)
        except ValueError:
            continue
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            rows.append({"batch_id": batch_id, "line_id": item["id"], "line": raw + "\n"})
    return rows
