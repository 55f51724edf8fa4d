"""PostgreSQL round trips per message: batches in rounds against units one by one.

The charging use cases of a 1.6 session (StatusNotification, Authorize, StartTransaction,
ten MeterValues, StopTransaction) run against PostgreSQL twice in the same run: with the
repository's batches in rounds (``in_rounds``, the default) and unit by unit (the
baseline, as every batch ran before rounds). Round trips are counted where they happen,
at each call of the asyncpg connection. ``--stations`` stations charge at once, each
waiting for its answers; with ``--stations 1`` every batch holds one unit, which gives
each message type's own cost. Latency does not enter: the counts are the same on an idle
or a loaded machine.

    python -m bench.round_trips --db postgresql://postgres@127.0.0.1:5432/test --stations 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from csms.domain.model import IdTag, MeterSample, Station
from csms.service.charging import ChargingService
from csms.service.messages import StopInfo
from csms.storage.postgres import PostgresRepository

__all__ = ["main", "measure"]

MEASURANDS = ("Energy.Active.Import.Register", "Power.Active.Import", "Current.Import",
              "Voltage")
COUNT: Counter[str] = Counter()


def _count_round_trips() -> None:
    """Count every call of an asyncpg connection that waits for the server."""
    if COUNT["installed"]:
        return
    COUNT["installed"] = 1
    for name in ("execute", "executemany", "fetch", "fetchrow", "fetchval", "prepare"):
        original = getattr(asyncpg.Connection, name)

        def counted(original: Any = original) -> Callable[..., Awaitable[Any]]:
            async def call(self: Any, *args: Any, **kwargs: Any) -> Any:
                COUNT["rt"] += 1
                return await original(self, *args, **kwargs)
            return call

        setattr(asyncpg.Connection, name, counted())


async def _one_mode(url: str, stations: int, in_rounds: bool) -> dict[str, Any]:
    repo = await PostgresRepository.open(url)
    repo.in_rounds = in_rounds
    service = ChargingService(repo)
    t0 = datetime.now(UTC) - timedelta(hours=1)
    per_kind: dict[str, list[int]] = {}
    try:
        async def setup(tx: Any) -> None:
            await tx.put_tag(IdTag("LOADTAG", "Accepted"))
            for i in range(stations):
                await tx.insert_station(Station(f"RT{i}", created_at=t0 - timedelta(days=1)))

        await repo.unit(setup)

        async def timed(kind: str, call: Awaitable[Any]) -> Any:
            before = COUNT["rt"]
            result = await call
            if stations == 1:
                per_kind.setdefault(kind, []).append(COUNT["rt"] - before)
            return result

        async def station(i: int) -> None:
            sid = f"RT{i}"
            for s in range(2):
                at = t0 + timedelta(minutes=20 * s)
                await timed("StatusNotification",
                            service.status(sid, 1, 1, "Preparing", None, None))
                await timed("Authorize", service.authorize("LOADTAG", sid))
                txid, _, _ = await timed("StartTransaction", service.start_transaction(
                    sid, 1, "LOADTAG", Decimal(1000 * s), at))
                for k in range(10):
                    samples = [MeterSample(at + timedelta(minutes=k), str(1000 * s + k), m)
                               for m in MEASURANDS]
                    await timed("MeterValues", service.meter_values(sid, 1, str(txid), samples))
                await timed("StopTransaction", service.stop_transaction(sid, StopInfo(
                    transaction_id=txid, meter_stop_wh=Decimal(1000 * s + 10),
                    timestamp=at + timedelta(minutes=11), id_tag="LOADTAG")))

        before, commits = COUNT["rt"], repo.commits
        await asyncio.gather(*(station(i) for i in range(stations)))
        trips, batches = COUNT["rt"] - before, repo.commits - commits
    finally:
        await repo.close()
    messages = stations * 2 * 14
    out: dict[str, Any] = {
        "round_trips": trips, "messages": messages, "batches": batches,
        "round_trips_per_message": round(trips / messages, 2),
        "batches_fallen_back_to_unit_by_unit": repo.round_stats.in_sequence}
    if per_kind:
        # the cheapest call of each kind: its first also prepares statements
        out["round_trips_per_message_type"] = {k: min(v) for k, v in per_kind.items()}
    return out


async def measure(db: str, stations: int) -> dict[str, Any]:
    _count_round_trips()
    results: dict[str, Any] = {}
    for mode in (False, True):
        schema = f"vl_rt_{secrets.token_hex(4)}"
        conn = await asyncpg.connect(db)
        try:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
            sep = "&" if "?" in db else "?"
            results["in_rounds" if mode else "unit_by_unit"] = await _one_mode(
                f"{db}{sep}search_path={schema}", stations, mode)
        finally:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await conn.close()
    base, new = results["unit_by_unit"], results["in_rounds"]
    return {"benchmark": "round_trips", "stations": stations, **results,
            "ratio": round(new["round_trips"] / base["round_trips"], 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="a postgresql:// URL (a new schema is made and dropped)")
    parser.add_argument("--stations", type=int, default=200, help="stations charging at once")
    args = parser.parse_args(argv)
    if not args.db.startswith(("postgresql://", "postgres://")):
        parser.error("--db must be a postgresql:// URL")
    if args.stations < 1:
        parser.error("--stations must be at least 1")
    try:
        print(json.dumps(asyncio.run(measure(args.db, args.stations))))
    except (OSError, asyncpg.PostgresError) as exc:
        parser.exit(1, f"round_trips: PostgreSQL not usable at {args.db}: {exc}\n")


if __name__ == "__main__":
    main()
