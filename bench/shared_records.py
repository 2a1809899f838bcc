"""Records shared by gateway instances (`records`): what the request path pays, how fast rows reach the shared
database, and how an outage is absorbed.

    python bench/shared_records.py [--records 5000] [--rounds 3]

Needs Debian's PostgreSQL (a throwaway cluster on loopback). Written to bench/results/shared_records.json:

1. **Write cost** (median of single ``write`` calls, the request path): the SQLite store alone (the baseline, one
   instance) against the shared store with its shipper running every 0.1 s, same records, arms interleaved.
2. **Shipping**: rows per second the shipper copies (batches of 500), and the lag from a write to the row being
   readable on another instance with ``ship_every_s`` 0.1 and 1.0.
3. **Outage**: the database stopped while records are written, then started: writes keep their cost, every row
   arrives once.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sovrouter.contracts import Candidate, RequestRecord
from sovrouter.errors import NotFoundError
from sovrouter.store.records import SQLiteRecordStore
from sovrouter.store.shared_records import SharedRecordStore
from sovrouter.store.sql import database_url
from sovrouter.testing_postgres import PostgresServer, postgres_server

OUT = Path(__file__).parent / "results" / "shared_records.json"


def record(i: int, tag: str) -> RequestRecord:
    return RequestRecord(request_id=f"{tag}-{i}", tenant="acme-us", data_class="public", effective_class="public",
                         modalities=["text"], arrived_ms=float(i), status="ok",
                         final=Candidate(slot="sovereign-large", deployment="eu-sov"), latency_ms=812.0,
                         cost_usd=0.0004, response_text_chars=900)


def write_costs(store: SQLiteRecordStore | SharedRecordStore, n: int, tag: str) -> list[float]:
    out = []
    for i in range(n):
        r = record(i, tag)
        t0 = time.perf_counter()
        store.write(r)
        out.append(time.perf_counter() - t0)
    return out


def shared(folder: Path, name: str, pg: PostgresServer, db: str, ship_every_s: float) -> SharedRecordStore:
    local = SQLiteRecordStore(folder / name / "records.sqlite")
    return SharedRecordStore(local, database_url(db, None, "records"), ship_every_s=ship_every_s)


def lag(folder: Path, pg: PostgresServer, ship_every_s: float, samples: int = 20) -> list[float]:
    db = pg.new_database()
    writer, reader = shared(folder, f"w{ship_every_s}", pg, db, ship_every_s), shared(folder, f"r{ship_every_s}",
                                                                                        pg, db, 3600)
    out = []
    for i in range(samples):
        writer.write(record(i, "lag"))
        t0 = time.perf_counter()
        while True:
            try:
                reader.get(f"lag-{i}")
                break
            except NotFoundError:
                time.sleep(0.005)
        out.append(time.perf_counter() - t0)
        time.sleep(ship_every_s * 0.37)  # land at different points of the shipping cycle
    writer.close()
    reader.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    result: dict[str, Any] = {"machine": f"{platform.node()} {platform.machine()} {platform.python_version()}",
                              "args": vars(args)}
    with postgres_server() as pg, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        costs: dict[str, list[float]] = {"sqlite": [], "shared": []}
        for r in range(args.rounds):
            local = SQLiteRecordStore(folder / f"base{r}" / "records.sqlite")
            costs["sqlite"].append(statistics.median(write_costs(local, args.records, f"s{r}")) * 1e6)
            local.close()
            store = shared(folder, f"shared{r}", pg, pg.new_database(), 0.1)
            costs["shared"].append(statistics.median(write_costs(store, args.records, f"p{r}")) * 1e6)
            store.close()
            print(f"round {r}: write median {costs['sqlite'][-1]:.1f} us (SQLite alone) vs "
                  f"{costs['shared'][-1]:.1f} us (shared, shipper every 0.1 s)", flush=True)
        result["write_us_median_per_round"] = costs
        # shipping throughput: a backlog of rows shipped in a loop
        store = shared(folder, "backlog", pg, pg.new_database(), 3600)
        for i in range(args.records):
            store.local.write(record(i, "b"))
        t0 = time.perf_counter()
        while store.ship():
            pass
        rate = args.records / (time.perf_counter() - t0)
        store.close()
        result["ship_rows_per_s"] = rate
        print(f"shipping: {rate:,.0f} rows/s (batches of 500)")
        for every in (0.1, 1.0):
            lags = lag(folder, pg, every)
            result[f"lag_s_ship_every_{every}"] = {"median": statistics.median(lags), "max": max(lags)}
            print(f"lag write -> readable elsewhere, ship_every_s {every}: median {statistics.median(lags):.3f} s, "
                  f"max {max(lags):.3f} s")
        # outage
        db = pg.new_database()
        store = shared(folder, "outage", pg, db, 0.1)
        pg.stop()
        during = statistics.median(write_costs(store, 1000, "o")) * 1e6
        time.sleep(0.5)
        failures = store.stats["failures"]
        pg.start()
        deadline = time.monotonic() + 30
        while store.stats["shipped"] < 1000 and time.monotonic() < deadline:
            time.sleep(0.05)
        arrived = store.count()
        store.close()
        result["outage"] = {"write_us_median_while_down": during, "ship_failures_while_down": failures,
                            "rows_arrived_after": arrived, "rows_written": 1000}
        print(f"outage: write median {during:.1f} us while the database was down ({failures} failed ship tries); "
              f"{arrived} / 1000 rows arrived once it was back")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
