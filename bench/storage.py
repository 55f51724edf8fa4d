"""Storage alone: units of work per second through the repository's group commit.

No sockets, no OCPP: ``--callers`` concurrent callers each run ``--units`` / callers
units one after another, the way stations' messages reach the storage. A unit is what
a 1.6 MeterValues costs (find the session, four sample rows, the session updated, an
outbox event); with ``--reads`` each caller reads its session instead (a read
transaction, as an Authorize does). It prints units per second and the CPU time of
this process per unit (the server's side of the work; PostgreSQL's own is not in it).
Levers of the storage adapters are measured with it by running it in the checkouts
before and after, interleaved: the CPU per unit is steadier than the rate on a shared
machine.

    python -m bench.storage --db postgresql://postgres@127.0.0.1:5432/test --callers 200
    python -m bench.storage --db /tmp/storage.sqlite3 --callers 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import secrets
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from csms.domain.model import MeterSample, Session, Station
from csms.service.ports import Tx
from csms.storage import open_repository

__all__ = ["main", "measure"]

T0 = datetime(2026, 3, 1, tzinfo=UTC)
MEASURANDS = ("Energy.Active.Import.Register", "Power.Active.Import", "Current.Import",
              "Voltage")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def measure(db: str, callers: int, units: int, reads: bool = False) -> dict[str, Any]:
    repo = await open_repository(db)
    try:
        async def setup(tx: Tx) -> list[str]:
            ids = []
            for i in range(callers):
                await tx.insert_station(Station(f"ST{i}", created_at=T0))
                session = Session(station_id=f"ST{i}", ocpp_version="ocpp1.6",
                                  transaction_id="", started_at=T0, connector_id=1, evse_id=1,
                                  id_tag="TAG", meter_start_wh=Decimal(1000))
                await tx.insert_session(session)
                ids.append(session.transaction_id)
            return ids

        txids = await repo.unit(setup)
        per_caller = max(1, units // callers)

        async def caller(i: int) -> None:
            station, txid = f"ST{i}", txids[i]
            for k in range(per_caller):
                at = T0 + timedelta(seconds=k)
                if reads:
                    await repo.read(lambda tx: tx.find_session(station, txid))
                    continue
                samples = [MeterSample(at, value=str(1000 + k), measurand=m) for m in MEASURANDS]

                async def work(tx: Tx, k: int = k, at: datetime = at,
                               samples: list[MeterSample] = samples) -> None:
                    session = await tx.find_session(station, txid)
                    assert session is not None and session.id is not None
                    await tx.add_samples(station, samples, session_id=session.id, evse_id=1,
                                         connector_id=1, transaction_id=txid)
                    session.energy_wh = k
                    await tx.update_session(session)
                    await tx.add_outbox(f"voltledger/{station}/session/updated",
                                        {"id": session.id, "energy_wh": k}, at)

                await repo.unit(work)

        cpu0, t0 = _cpu(), time.perf_counter()
        await asyncio.gather(*(caller(i) for i in range(callers)))
        elapsed, cpu = time.perf_counter() - t0, _cpu() - cpu0
    finally:
        await repo.close()
    done = per_caller * callers
    return {"benchmark": "storage", "engine": repo.dialect, "callers": callers,
            "units": done, "kind": "read" if reads else "meter_value_unit",
            "units_per_s": round(done / elapsed), "cpu_us_per_unit": round(1e6 * cpu / done),
            "commits": repo.commits}


async def _on_fresh_database(db: str | None, callers: int, units: int,
                             reads: bool) -> dict[str, Any]:
    if db is None or not db.startswith("postgresql://"):
        with tempfile.TemporaryDirectory() as folder:
            return await measure(db or str(Path(folder) / "storage.sqlite3"), callers, units,
                                 reads)
    import asyncpg

    schema = f"vl_storage_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(db)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in db else "?"
        return await measure(f"{db}{sep}search_path={schema}", callers, units, reads)
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=None,
                        help="a SQLite file (default: a new one in a temporary folder) or a"
                             " postgresql:// URL (a new schema is made and dropped)")
    parser.add_argument("--callers", type=int, default=200, help="concurrent callers")
    parser.add_argument("--units", type=int, default=10000, help="units in all")
    parser.add_argument("--reads", action="store_true", help="read transactions instead")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(_on_fresh_database(args.db, args.callers, args.units,
                                                    args.reads))))


if __name__ == "__main__":
    main()
