"""Heartbeats are answered at once; their "last seen" times are written together."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from csms.service.charging import ChargingService, new_station
from csms.service.ports import Tx
from csms.storage.sqlite import SqliteRepository

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


async def test_last_seen_is_written_in_one_unit_after_the_interval(tmp_path: Path) -> None:
    repo = SqliteRepository(tmp_path / "hb.sqlite3")
    ticks = iter(T0 + timedelta(seconds=i) for i in range(100))
    service = ChargingService(repo, clock=lambda: next(ticks), seen_flush_interval=0.2)

    async def setup(tx: Tx) -> None:
        for sid in ("A", "B"):
            await tx.insert_station(new_station(sid))

    await repo.unit(setup)

    async def seen() -> dict[str, datetime | None]:
        async def work(tx: Tx) -> dict[str, datetime | None]:
            return {s.id: s.last_seen_at for s in await tx.list_stations()}

        return await repo.read(work)

    try:
        units = repo.units
        answers = [await service.heartbeat(sid) for sid in ("A", "B", "A")]
        assert answers == [T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)]
        assert await seen() == {"A": None, "B": None}  # not yet: answered first
        await asyncio.sleep(0.4)
        assert await seen() == {"A": T0 + timedelta(seconds=2), "B": T0 + timedelta(seconds=1)}
        assert repo.units - units == 1  # one unit of work for all of them
        await service.heartbeat("B")
        await service.flush_seen()  # as the server does when it stops
        assert (await seen())["B"] == T0 + timedelta(seconds=3)
    finally:
        await repo.close()
