"""Exact cache keyed by tenant and the normalized request, with TTL and single-flight. Embedded store: SQLite.

- The key is ``sha256(tenant, messages, parameters, requested model)``: two tenants never share an entry.
- An entry remembers the candidate (slot/deployment) that produced it and is served only if that candidate is in
  the current request's allowed set.
- Single-flight: while the first request for a key is being answered, identical requests wait for it instead of
  calling upstream; if the leader fails, one waiter becomes the next leader.
- Fails open: a write the database refuses (disk full, locked past the busy timeout) or a row that no longer
  reads back (a damaged row, a schema change across an upgrade) is logged and counted, never an error for the
  request: the answer is still served, the row is deleted and counts as a miss.
- Retention: an answer is kept no longer than its TTL. Expired rows are deleted at most ``purge_every_s`` apart
  (checked on lookup and store), and with ``max_entries`` the table never holds more rows than that after a
  store: the oldest rows go first, down to 90% of the bound so that eviction is not paid on every store.
  SQLite runs on the event loop here, so one lookup or store deletes at most about ``DELETE_BATCH`` rows (30 ms):
  eviction goes down to 90% of the bound or one batch below it, whichever is more, and a purge that finds more
  expired rows goes on at the next lookup or store. A file already over the bound at open (a lowered bound) is
  cut at open, before any request. Until 2026-11-28 one statement evicted 10% of the bound
  (0.6 s for 20,000 rows, every request and /health waiting meanwhile; found in review).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from sovrouter.contracts import CacheOutcome, Candidate, Detection, ModelResult, NormalizedRequest
from sovrouter.protocols import Clock

_SCHEMA = """
CREATE TABLE IF NOT EXISTS exact_cache (
  key TEXT PRIMARY KEY,
  tenant TEXT NOT NULL,
  created_ms REAL NOT NULL,
  expires_ms REAL NOT NULL,
  source_request_id TEXT NOT NULL,
  result_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS exact_cache_created ON exact_cache (created_ms);
CREATE INDEX IF NOT EXISTS exact_cache_expires ON exact_cache (expires_ms);
"""
_LOW_WATER = 0.9  # eviction brings the table down to this share of max_entries (at most a batch below it)
DELETE_BATCH = 1000  # rows one lookup or store deletes at most (purge), or past the bound (eviction)

log = logging.getLogger(__name__)


def cache_key(request: NormalizedRequest, scope: str = "") -> str:
    """``scope``: the catalog's :meth:`~sovrouter.catalog.Catalog.policy_fingerprint` (entries stored under
    another catalog never match); empty, the key of earlier versions."""
    body = {
        "tenant": request.tenant,
        "messages": [m.key_fields() for m in request.messages],
        "parameters": request.parameters.key_fields(),
        "model": request.requested_model,
        **({"tools": request.tooling.model_dump(mode="json")} if request.tooling is not None else {}),
        **({"catalog": scope} if scope else {}),
    }
    # surrogatepass: intake refuses lone surrogates, but a key must never be what fails a request
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogatepass")
                          ).hexdigest()


def worth_keeping(result: ModelResult) -> bool:
    """An answer a cache may serve again: it says something (text, or calls for the client to run). An empty
    answer (an upstream's ``200`` with ``content: null``) is served once and never stored: until 2026-11-28 a
    client that retried for a real answer got the same empty one for the whole TTL (found in review)."""
    return bool(result.text or result.tool_calls)


class ExactCache:
    def __init__(self, clock: Clock, path: str | Path = ":memory:", ttl_s: float = 3600.0,
                 enabled: bool = True, *, max_entries: int | None = None, purge_every_s: float = 60.0,
                 scope: str = "") -> None:
        if max_entries is not None and max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.clock = clock
        self.scope = scope
        self.ttl_ms = ttl_s * 1000.0
        self.enabled = enabled
        self.max_entries = max_entries
        self.purge_every_ms = purge_every_s * 1000.0
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: no fsync per commit; crash-safe
        self._db.executescript(_SCHEMA)
        self._next_purge_ms = -1.0  # the first call purges what an earlier run left behind
        self._purged = self._evicted = self._errors = 0
        self._rows_at_most = self._count()  # an upper bound on the row count, exact after each check
        # a file over the bound (a lowered exact_max_entries, an earlier run's rows) is cut here, before any
        # request: the first store cut it in one statement on the event loop until 2026-11-28 (found in review)
        self._bound()
        # key -> the leader's flight; its result: True when the leader stored an answer (look again), False when it
        # gave up (its waiters go upstream at once, side by side: handing the lead to one waiter after another
        # made k identical requests during an outage take k times one request's worst case, one after another)
        self._flights: dict[str, asyncio.Future[bool]] = {}
        self._leading: dict[str, str] = {}  # request id of a flight's leader -> its key (hashed once per miss)

    async def lookup(self, request: NormalizedRequest, detection: Detection,
                     allowed: Sequence[Candidate]) -> tuple[CacheOutcome, ModelResult | None]:
        if not self.enabled:
            return CacheOutcome(kind="bypass"), None
        self._purge_expired_if_due()
        key = cache_key(request, self.scope)
        while True:
            hit = self._get(key, allowed)
            if hit is not None:
                return hit
            flight = self._flights.get(key)
            if flight is None:
                self._flights[key] = asyncio.get_running_loop().create_future()
                self._leading[request.request_id] = key
                return CacheOutcome(kind="miss"), None
            if not await asyncio.shield(flight):
                return CacheOutcome(kind="miss"), None  # the leader gave up: go upstream now, without leading

    def _get(self, key: str, allowed: Sequence[Candidate]) -> tuple[CacheOutcome, ModelResult] | None:
        row = self._db.execute(
            "SELECT expires_ms, source_request_id, result_json FROM exact_cache WHERE key = ?", (key,)
        ).fetchone()
        if row is None or row[0] <= self.clock.now_ms():
            return None
        try:
            result = ModelResult.model_validate_json(row[2])
        except (ValidationError, ValueError):
            self._errors += 1
            log.warning("exact cache: dropped a row that does not read back")
            self._db.execute("DELETE FROM exact_cache WHERE key = ?", (key,))
            return None
        if not worth_keeping(result):  # stored by a version before 2026-11-28 (b352843): never served again
            self._errors += 1
            log.warning("exact cache: dropped an empty answer an earlier version stored")
            self._db.execute("DELETE FROM exact_cache WHERE key = ?", (key,))
            return None
        if result.candidate not in allowed:
            return None  # produced on a deployment this request may not use: never served
        outcome = CacheOutcome(kind="exact", source_request_id=row[1], source_candidate=result.candidate)
        return outcome, result

    async def store(self, request: NormalizedRequest, detection: Detection, result: ModelResult) -> None:
        if not self.enabled:
            return
        key = self._leading.get(request.request_id) or cache_key(request, self.scope)
        if not worth_keeping(result):
            self._land(key, stored=False)
            return
        now = self.clock.now_ms()
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO exact_cache VALUES (?, ?, ?, ?, ?, ?)",
                (key, request.tenant, now, now + self.ttl_ms, request.request_id, result.model_dump_json()),
            )
        except (sqlite3.Error, ValueError) as exc:  # ValueError: an answer that does not serialise
            self._errors += 1
            log.warning("exact cache: an answer was not stored (%s)", type(exc).__name__)
            self._land(key, stored=False)
            return
        self._rows_at_most += 1  # a replaced row counts too: an over-estimate, corrected by _bound
        self._purge_expired_if_due()
        self._bound()
        self._land(key, stored=True)

    def entry_count(self) -> int:
        """Rows held, expired ones not yet purged included."""
        return self._count()

    def cache_gauges(self) -> dict[str, float]:
        return {"exact_entries": self._count(), "exact_purged_total": self._purged,
                "exact_evicted_total": self._evicted, "exact_errors_total": self._errors}

    def _count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM exact_cache").fetchone()[0])

    def _purge_expired_if_due(self) -> None:
        now = self.clock.now_ms()
        if now < self._next_purge_ms:
            return
        purged = self._db.execute(
            "DELETE FROM exact_cache WHERE key IN "
            "(SELECT key FROM exact_cache WHERE expires_ms <= ? LIMIT ?)", (now, DELETE_BATCH)).rowcount
        self._purged += purged
        if purged < DELETE_BATCH:  # else more may have expired: the next lookup or store goes on
            self._next_purge_ms = now + self.purge_every_ms
        self._rows_at_most = self._count()

    def _bound(self) -> None:
        if self.max_entries is None or self._rows_at_most <= self.max_entries:
            return
        rows = self._count()  # the estimate passed the bound; once counted, evict down to the low-water mark so
        keep = max(1, int(self.max_entries * _LOW_WATER),  # that replaced rows do not make every store count,
                   self.max_entries - DELETE_BATCH)  # in a batch a store can afford
        if rows > keep:
            self._evicted += self._db.execute(
                "DELETE FROM exact_cache WHERE key IN "
                "(SELECT key FROM exact_cache ORDER BY created_ms, key LIMIT ?)", (rows - keep,)).rowcount
            rows = keep
        self._rows_at_most = rows

    async def release(self, request: NormalizedRequest) -> None:
        """The request's lead ends; if it stored nothing (it failed), its waiters go upstream themselves. A request
        that did not lead (it went upstream after a failed lead) releases nothing."""
        key = self._leading.pop(request.request_id, None)
        if key is not None:
            self._land(key, stored=False)

    def _land(self, key: str, *, stored: bool) -> None:
        flight = self._flights.pop(key, None)
        if flight is not None and not flight.done():
            flight.set_result(stored)

    def close(self) -> None:
        self._db.close()
