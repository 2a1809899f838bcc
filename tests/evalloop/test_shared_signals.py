"""SharedSignalStore against a real PostgreSQL server: every instance's signals and regenerations readable from
any instance, copied once, this instance's alone while the shared database is down."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sovrouter.errors import ConfigError
from sovrouter.evalloop.signals import QualitySignal, Regeneration, SharedSignalStore, SignalStore
from sovrouter.store.sql import database_url
from sovrouter.testing_postgres import PostgresServer, postgres_bin_dir, postgres_server


def _store(tmp_path: Path, name: str, url: str) -> SharedSignalStore:
    return SharedSignalStore(tmp_path / name / "signals.sqlite", database_url(url, None, "records"),
                             ship_every_s=3600)


def _signal(rid: str, source: str = "feedback", score: float = 1.0, t: float = 1.0) -> QualitySignal:
    return QualitySignal(request_id=rid, source=source, score=score, created_ms=t)  # type: ignore[arg-type]


def test_every_instances_signals_are_read_everywhere_and_copied_once(tmp_path: Path,
                                                                     pg_srv: PostgresServer) -> None:
    url = pg_srv.new_database()
    a, b = _store(tmp_path, "a", url), _store(tmp_path, "b", url)
    a.add_many([_signal("r1", t=1.0), _signal("r2", "shadow", 0.5, t=3.0)])
    b.add(_signal("r1", "scorer", 0.0, t=2.0))  # same request, another instance, same local id 1 as a's first
    b.add_regeneration(Regeneration(request_id="r9", previous_request_id="r1", tenant="acme-us"))
    assert [s.request_id for s in a.signals()] == ["r1", "r2"]  # b's not copied yet (its shipper runs hourly)
    assert b.shipper.ship_all() == 2
    assert [(s.request_id, s.source) for s in a.signals()] == [("r1", "feedback"), ("r1", "scorer"),
                                                               ("r2", "shadow")]
    assert [s.source for s in b.signals("shadow")] == ["shadow"]
    assert [s.source for s in b.for_request("r1")] == ["feedback", "scorer"]
    assert [r.request_id for r in a.regenerations()] == ["r9"]
    with sqlite3.connect(tmp_path / "a" / "signals.sqlite") as db:  # a crash between the copy and the mark
        db.execute("UPDATE outbox_marks SET last = 0")
    assert len(list(a.signals())) == 3  # copied again, stored once
    a.add(QualitySignal(request_id="r3", source="feedback", score=0.0, comment="call me at 555-0100", created_ms=9))
    assert [s.comment for s in a.signals() if s.request_id == "r3"] == [None]  # free text never leaves the instance
    assert [s.comment for s in SignalStore.signals(a) if s.request_id == "r3"] == ["call me at 555-0100"]
    a.close()
    b.close()


def test_a_down_database_leaves_this_instances_signals(tmp_path: Path) -> None:
    if postgres_bin_dir() is None:
        pytest.skip("needs PostgreSQL")  # the session fixture makes CI fail loudly when it is missing
    with postgres_server() as pg:
        a = _store(tmp_path, "a", pg.new_database())
        a.add(_signal("r1", t=1.0))
        pg.stop()
        a.add(_signal("r2", t=2.0))  # writing never touches the shared database
        assert [s.request_id for s in a.signals()] == ["r1", "r2"]  # this instance's, from its own file
        pg.start()
        assert [s.request_id for s in a.signals()] == ["r1", "r2"]  # now from the shared table, both copied
        assert a.shipper.stats["shipped"] == 2
        a.close()


def test_a_memory_store_cannot_be_shared(pg_srv: PostgresServer) -> None:
    with pytest.raises(ConfigError):
        SharedSignalStore(":memory:", database_url(pg_srv.new_database(), None, "records"))


def test_comments_an_earlier_version_shipped_are_cleared_from_the_shared_database(
        tmp_path: Path, pg_srv: PostgresServer, caplog: pytest.LogCaptureFixture) -> None:
    """Between 447e3bf and 387e2fd (2026-11-26/27) the shipper copied every column, the free-text feedback
    comment too, into the shared table; since then comments never leave the instance, but the ones already copied
    stayed there and were read back by every instance (found in review, 2026-11-28). The rows are written here as
    that version's outbox wrote them."""
    import sqlalchemy as sa

    from sovrouter.evalloop.signals import SHARED_SIGNALS
    from sovrouter.store.sql import create_tables, make_engine

    url = pg_srv.new_database()
    engine = make_engine(database_url(url, None, "records"))
    create_tables(engine, SHARED_SIGNALS.metadata)
    with engine.begin() as db:
        db.execute(SHARED_SIGNALS.insert(), [
            {"origin": "old", "origin_id": 1, "request_id": "r1", "source": "feedback", "score": 0.0,
             "reference_score": None, "failure_mode": None, "slot": "frontier", "deployment": "d", "reference_slot":
             None, "cost_usd": 0.0, "comment": "call me at 555-0100", "created_ms": 1.0},
            {"origin": "old", "origin_id": 2, "request_id": "r2", "source": "scorer", "score": 1.0,
             "reference_score": None, "failure_mode": None, "slot": None, "deployment": None, "reference_slot": None,
             "cost_usd": 0.0, "comment": None, "created_ms": 2.0}])
    with caplog.at_level("WARNING", logger="sovrouter.signals"):
        a = _store(tmp_path, "a", url)
    assert "cleared 1 feedback comment(s)" in caplog.text
    assert [(s.request_id, s.comment) for s in a.signals()] == [("r1", None), ("r2", None)]  # the rows stay
    with engine.connect() as db:
        assert db.scalar(sa.select(sa.func.count()).where(SHARED_SIGNALS.c.comment.is_not(None))) == 0
    a.close()
    engine.dispose()
