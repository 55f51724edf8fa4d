"""What the console's pages compute, on the in-memory fake of the storage port: power from
the latest readings (a total, or phases summed), the curve, the held filter, pagination."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from csms.admin.console import pages
from csms.domain.model import MeterSample, Session, SessionStatus
from csms.service.charging import new_station
from csms.service.ports import Tx
from support.memory import MemoryRepository

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(("value", "unit", "multiplier", "watts"), [
    ("7400", "W", 0, Decimal(7400)),
    ("7.4", "kW", 0, Decimal("7400.0")),
    ("74", "W", 2, Decimal(7400)),
    ("7400", None, 0, Decimal(7400)),
    ("7400", "Wh", 0, None),  # not a power unit
    ("abc", "W", 0, None),
    ("NaN", "W", 0, None),
    ("Infinity", "kW", 0, None),
    ("1", "W", 99, None),  # a hostile multiplier
])
def test_watts(value: str, unit: str | None, multiplier: int, watts: Decimal | None) -> None:
    assert pages.watts(value, unit, multiplier) == watts


def _session(station: str, *, tag: str = "T", status: SessionStatus = SessionStatus.ACTIVE,
             flags: list[str] | None = None, n: int = 0) -> Session:
    return Session(station, "ocpp1.6", f"{station}-{n}", T0 + timedelta(minutes=n),
                   connector_id=1, evse_id=1, id_tag=tag, meter_start_wh=Decimal(1000),
                   status=status, flags=flags or [],
                   stopped_at=None if status is SessionStatus.ACTIVE else T0 + timedelta(hours=1),
                   energy_wh=None if status is SessionStatus.ACTIVE else 100)


async def _repo() -> MemoryRepository:
    repo = MemoryRepository()

    async def work(tx: Tx) -> None:
        for sid in ("A", "B", "C"):
            await tx.insert_station(new_station(sid))
        await tx.set_station_connection("A", "node-1", T0)
        await tx.beat_node("node-1", T0)
        await tx.insert_sessions([_session("A", n=1), _session("B", n=2)])
        await tx.insert_sessions([
            _session("C", status=SessionStatus.COMPLETED, n=3 + i,
                     flags=["meter_went_backwards"] if i % 2 else [], tag=f"T{i % 3}")
            for i in range(10)])
        # A: a total and phases (the total counts); B: phases only (summed)
        await tx.add_samples("A", [
            MeterSample(T0, "1", "Power.Active.Import", "kW"),
            MeterSample(T0 + timedelta(seconds=30), "7.4", "Power.Active.Import", "kW"),
            MeterSample(T0 + timedelta(seconds=30), "2000", "Power.Active.Import", "W",
                        phase="L1"),
            MeterSample(T0 + timedelta(seconds=30), "1500", "Energy.Active.Import.Register"),
        ], session_id=1, evse_id=1, connector_id=1, transaction_id="A-1")
        await tx.add_samples("B", [
            MeterSample(T0, str(w), "Power.Active.Import", "W", phase=p)
            for p, w in (("L1", 1000), ("L2", 1100), ("L3", 1200))
        ], session_id=2, evse_id=1, connector_id=1, transaction_id="B-2")

    await repo.unit(work)
    return repo


async def test_the_overview_counts_and_sums() -> None:
    repo = await _repo()
    o = await repo.read(lambda tx: pages.overview(tx, T0 + timedelta(seconds=5)))
    assert (o["stations"], o["online"], o["offline"]) == (3, 1, 2)
    assert (o["active_sessions"], o["completed_sessions"]) == (2, 10)
    assert o["power_w"] == 7400 + 3300 and o["power_sessions"] == 2
    assert o["held"] == 5 and not o["held_more"]
    assert o["backlog"] == 0
    assert o["energy_today_wh"] == 1000  # ten sessions of 100 Wh stopped that day


async def test_the_overview_does_not_count_a_dead_node_s_stations_online() -> None:
    repo = await _repo()
    o = await repo.read(lambda tx: pages.overview(tx, T0 + timedelta(hours=1)))
    assert o["online"] == 0 and o["offline"] == 3


async def test_sessions_filter_and_page() -> None:
    repo = await _repo()

    async def page(**kw: object) -> pages.Page:
        args = {"station": None, "tag": None, "status": None, "before": None, **kw}
        return await repo.read(lambda tx: pages.sessions_page(tx, limit=4, **args))  # type: ignore[arg-type]

    first = await page()
    assert [r["id"] for r in first.rows] == [12, 11, 10, 9] and first.next_cursor == "9"
    second = await page(before=9)
    assert [r["id"] for r in second.rows] == [8, 7, 6, 5]
    held = await page(status="held")
    assert all(r["billing"] == "held" for r in held.rows) and len(held.rows) == 4
    assert held.next_cursor is not None
    assert [r["id"] for r in (await page(status="held", tag="T1")).rows] == [10, 4]
    assert [r["id"] for r in (await page(status="active")).rows] == [2, 1]
    assert [r["station_id"] for r in (await page(station="B")).rows] == ["B"]


async def test_a_session_s_curve_counts_from_its_meter_start() -> None:
    repo = await _repo()
    samples = await repo.read(lambda tx: tx.session_samples(1))
    curve = pages._curve(samples, T0, Decimal(1000))
    assert curve["t"] == [0.0, 30.0]
    assert curve["energy_wh"] == [None, 500.0]
    assert curve["power_w"] == [1000.0, 7400.0]  # the total, not the phase
    # without a meter start, from the first reading
    assert pages._curve(samples, T0, None)["energy_wh"] == [None, 0.0]
