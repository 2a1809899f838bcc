"""ExactCache retention: expired rows are deleted, the row bound holds after every store (oldest first), and rows
an earlier run left behind are purged once they expire."""

from __future__ import annotations

from pathlib import Path

import pytest

from sovrouter.cache.exact import ExactCache
from sovrouter.clock import SimClock, WallClock
from sovrouter.contracts import Candidate, ContentPart, Detection, Message, ModelResult, NormalizedRequest

A = Candidate(slot="frontier", deployment="us")
NONE = Detection()


def req(text: str, rid: str, tenant: str = "acme") -> NormalizedRequest:
    return NormalizedRequest(request_id=rid, tenant=tenant,
                             messages=(Message(role="user", parts=(ContentPart(modality="text", text=text),)),))


async def produce(cache: ExactCache, text: str, rid: str) -> None:
    lead = req(text, rid)
    outcome, _ = await cache.lookup(lead, NONE, [A])
    assert outcome.kind == "miss"
    await cache.store(lead, NONE, ModelResult(candidate=A, text=f"answer {rid}"))
    await cache.release(lead)


async def served(cache: ExactCache, text: str) -> str | None:
    probe = req(text, "probe")
    _, result = await cache.lookup(probe, NONE, [A])
    if result is None:
        await cache.release(probe)
    return None if result is None else result.text


async def test_expired_rows_are_deleted_when_the_purge_is_due() -> None:
    clock = SimClock()
    cache = ExactCache(clock, ttl_s=10, purge_every_s=60)
    await produce(cache, "hello", "r1")
    await produce(cache, "bye", "r2")
    clock.set(30_000)  # expired: never served, still held until the next purge
    assert await served(cache, "hello") is None and cache.entry_count() == 2
    clock.set(61_000)
    await produce(cache, "new", "r3")
    assert cache.entry_count() == 1 and await served(cache, "new") == "answer r3"


async def test_the_row_bound_holds_after_every_store_and_drops_the_oldest() -> None:
    clock = SimClock()
    cache = ExactCache(clock, max_entries=10)
    for i in range(25):
        clock.set(i * 1000.0)
        await produce(cache, f"question {i}", f"r{i}")
        assert cache.entry_count() <= 10
    held = {i for i in range(25) if await served(cache, f"question {i}") is not None}
    assert held == set(range(16, 25))  # 11 rows -> 9 (90%), 10, 11 -> 9, ...: after the 25th store, the newest 9


async def test_replacing_a_row_does_not_count_twice() -> None:
    cache = ExactCache(SimClock(), max_entries=3)
    for rid in ("r1", "r2", "r3", "r4"):  # the same key, replaced each time
        lead = req("same", rid)
        await cache.store(lead, NONE, ModelResult(candidate=A, text=rid))
        await cache.release(lead)
    await produce(cache, "other", "r5")
    await produce(cache, "third", "r6")
    assert cache.entry_count() == 3 and await served(cache, "same") == "r4"


async def test_rows_an_earlier_run_left_are_purged_once_expired(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    first = ExactCache(SimClock(), path, ttl_s=10)
    await produce(first, "hello", "r1")
    first.close()
    again = ExactCache(SimClock(5_000), path, ttl_s=10)
    assert await served(again, "hello") == "answer r1" and again.entry_count() == 1
    again.close()
    later = ExactCache(SimClock(20_000), path, ttl_s=10)
    assert await served(later, "hello") is None and later.entry_count() == 0
    later.close()


async def test_rows_keep_their_ttl_across_restarts_on_the_gateway_clock(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    # A file an earlier version wrote: its clock was the monotonic one (here three days of uptime), so its expiry
    # times sit far below any epoch time and read as expired, never as living on for the old uptime.
    old = ExactCache(SimClock(3 * 86_400_000.0), path, ttl_s=3600)
    await produce(old, "hello", "r1")
    old.close()
    now = ExactCache(WallClock(), path, ttl_s=3600)
    assert await served(now, "hello") is None and now.entry_count() == 0
    await produce(now, "bye", "r2")
    now.close()
    restarted = ExactCache(WallClock(), path, ttl_s=3600)  # a new process: the same epoch clock
    assert await served(restarted, "bye") == "answer r2"
    restarted.close()


def test_the_bound_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ExactCache(SimClock(), max_entries=0)


async def test_replacements_at_the_bound_do_not_count_the_table_on_every_store(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ExactCache(SimClock(), max_entries=100)
    for i in range(100):
        await produce(cache, f"question {i}", f"r{i}")
    counted = 0
    real = cache._count

    def counting() -> int:
        nonlocal counted
        counted += 1
        return real()

    monkeypatch.setattr(cache, "_count", counting)
    for j in range(200):  # answers to questions already held, stored again: the row count does not grow
        lead = req(f"question {99 - j % 50}", f"again{j}")
        await cache.store(lead, NONE, ModelResult(candidate=A, text="again"))
        await cache.release(lead)
    assert cache.entry_count() <= 100 and counted <= 200 // 10 + 2  # about once per 10% of the bound


async def test_writes_the_database_refuses_fail_open_and_wake_the_waiters(tmp_path: Path) -> None:
    """A full disk (or a lock past the busy timeout) failed the request after its answer was paid for."""
    import asyncio

    cache = ExactCache(WallClock(), tmp_path / "c.sqlite")
    pages = cache._db.execute("PRAGMA page_count").fetchone()[0]
    cache._db.execute(f"PRAGMA max_page_count = {pages}")  # nothing more fits: inserts fail as on a full disk
    lead, waiter = req("hello", "r1"), req("hello", "r2")
    assert (await cache.lookup(lead, NONE, [A]))[0].kind == "miss"
    waiting = asyncio.ensure_future(cache.lookup(waiter, NONE, [A]))
    await asyncio.sleep(0)
    await cache.store(lead, NONE, ModelResult(candidate=A, text="x" * 20_000))  # no error for the request
    assert (await asyncio.wait_for(waiting, 5))[0].kind == "miss"  # the waiter goes upstream now, not stuck
    assert cache.cache_gauges()["exact_errors_total"] == 1


async def test_a_row_that_does_not_read_back_is_a_miss_and_is_deleted() -> None:
    cache = ExactCache(WallClock())
    await produce(cache, "hello", "r1")
    cache._db.execute("UPDATE exact_cache SET result_json = '{\"not\": \"a result\"}'")
    assert await served(cache, "hello") is None  # was a ValidationError on every lookup: a 500 until the TTL
    assert cache.entry_count() == 0 and cache.cache_gauges()["exact_errors_total"] == 1


async def test_a_failed_leaders_waiters_all_go_upstream_at_once() -> None:
    """The lead went to one waiter after another: four identical requests during an outage took four times one
    request's worst case, one after another (a review measured 12, 24, 36 and 48 s)."""
    import asyncio

    cache = ExactCache(WallClock())
    lead = req("hello", "r1")
    await cache.lookup(lead, NONE, [A])
    waiters = [asyncio.ensure_future(cache.lookup(req("hello", f"w{i}"), NONE, [A])) for i in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    await cache.release(lead)  # its upstream calls failed: nothing stored
    outs = await asyncio.wait_for(asyncio.gather(*waiters), 5)  # all at once, none waiting for another
    assert [o.kind for o, _ in outs] == ["miss"] * 3
    await cache.store(req("hello", "w0"), NONE, ModelResult(candidate=A, text="answer"))
    for i in range(3):
        await cache.release(req("hello", f"w{i}"))  # they did not lead: nothing to release
    assert not cache._flights and not cache._leading
    assert await served(cache, "hello") == "answer"  # what one of them stored serves the next request


async def test_an_empty_answer_is_served_once_and_never_stored() -> None:
    """An upstream's 200 with ``content: null`` was stored: a client retrying for a real answer got the empty one
    for the whole TTL. A waiter on that key goes upstream itself."""
    import asyncio

    from sovrouter.contracts import ToolCall

    cache = ExactCache(WallClock())
    lead = req("hello", "r1")
    await cache.lookup(lead, NONE, [A])
    waiting = asyncio.ensure_future(cache.lookup(req("hello", "r2"), NONE, [A]))
    await asyncio.sleep(0)
    await cache.store(lead, NONE, ModelResult(candidate=A, text=""))
    assert (await asyncio.wait_for(waiting, 5))[0].kind == "miss"
    await cache.release(lead)
    await cache.release(req("hello", "r2"))
    assert cache.entry_count() == 0
    called = req("call", "r3")
    await cache.lookup(called, NONE, [A])
    await cache.store(called, NONE, ModelResult(candidate=A, text="", tool_calls=(ToolCall(id="c", name="f"),)))
    await cache.release(called)
    assert cache.entry_count() == 1  # an answer that only calls functions says something



async def test_an_empty_answer_an_earlier_version_stored_is_dropped_not_served(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Versions before b352843 (2026-11-28) stored an upstream's empty answer, under the key this version computes
    (same catalog fingerprint): after the upgrade it was served for the rest of its TTL (up to a year). The row is
    written as ``ExactCache.store`` of that version wrote it."""
    import sqlite3

    from sovrouter.cache.exact import cache_key

    path = tmp_path / "cache.sqlite"
    ExactCache(WallClock(), path).close()  # the schema, unchanged since the first version
    now = WallClock().now_ms()
    with sqlite3.connect(path) as db:
        db.execute("INSERT OR REPLACE INTO exact_cache VALUES (?, ?, ?, ?, ?, ?)",
                   (cache_key(req("hello", "old")), "acme", now, now + 3_600_000.0, "old",
                    ModelResult(candidate=A, text="").model_dump_json()))
    cache = ExactCache(WallClock(), path)
    with caplog.at_level("WARNING", logger="sovrouter.cache.exact"):
        assert await served(cache, "hello") is None
    assert "an empty answer" in caplog.text and cache.entry_count() == 0  # dropped, said in the log
    cache.close()


async def test_one_lookup_or_store_deletes_a_bounded_number_of_rows() -> None:
    """The cache's SQLite runs on the event loop, and one store at the bound evicted 10% of it in one statement
    (0.6 s for the 20,000 rows of a 200,000 bound, measured; 50,000 rows at the default 500,000), as one purge
    deleted every expired row at once: every request and /health waited meanwhile (found in review, 2026-11-28).
    Now one lookup or store deletes about ``DELETE_BATCH`` rows at most; what is left goes at the next ones."""
    from itertools import pairwise

    from sovrouter.cache.exact import DELETE_BATCH

    clock = SimClock()
    bound = 20 * DELETE_BATCH  # 10% of it is twice a batch
    cache = ExactCache(clock, ttl_s=10, max_entries=bound, purge_every_s=60)
    cache._db.executemany("INSERT INTO exact_cache VALUES (?, 't', ?, 10000.0, 'x', '{}')",
                          ((f"k{i}", i / 1000) for i in range(bound)))  # a full table, stored before 5 s
    cache._rows_at_most = bound
    clock.set(5_000)
    await produce(cache, "over the bound", "r1")
    assert bound - DELETE_BATCH - 1 <= cache.entry_count() <= bound  # one batch evicted (not 10%), the bound holds
    assert await served(cache, "over the bound") == "answer r1"  # the oldest went, not the newest
    clock.set(70_000)  # every row has expired, a purge is due: they go a batch at a time, lookup after lookup
    held = [cache.entry_count()]
    while held[-1] and len(held) < 30:
        await served(cache, f"probe {len(held)}")
        held.append(cache.entry_count())
    assert held[-1] == 0 and all(0 < a - b <= DELETE_BATCH for a, b in pairwise(held))


async def test_a_lowered_bound_is_applied_at_open_not_in_one_store(tmp_path: Path) -> None:
    """A restart with a lower ``exact_max_entries`` (or on a file an earlier run filled further) left the whole
    excess to the first store, on the event loop, in one statement: 29,100 rows for a file of 30,000 under a bound
    of 1,000, though one store deletes about ``DELETE_BATCH`` rows at most (found in review, 2026-11-28). The
    excess goes at open now, before any request; the bound holds after every store, as before."""
    from sovrouter.cache.exact import DELETE_BATCH

    path = tmp_path / "cache.sqlite"
    full = ExactCache(WallClock(), path)
    now = WallClock().now_ms()
    full._db.executemany("INSERT INTO exact_cache VALUES (?, 't', ?, ?, 'x', '{}')",
                         ((f"k{i}", now + i, now + 3_600_000.0) for i in range(3 * DELETE_BATCH)))
    full.close()
    cache = ExactCache(WallClock(), path, max_entries=DELETE_BATCH // 2)
    evicted = cache.cache_gauges()["exact_evicted_total"]
    await produce(cache, "after the restart", "r1")
    assert cache.cache_gauges()["exact_evicted_total"] - evicted <= DELETE_BATCH
    assert cache.entry_count() <= DELETE_BATCH // 2
    cache.close()
