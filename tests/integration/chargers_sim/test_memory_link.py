"""A real simulated station against the real server handling code (routes, charging
service, SQLite storage) over an in-memory channel pair: no sockets, no handshake."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chargers_sim import Station
from csms.bootstrap import build
from csms.config import Settings
from csms.link import Channel, memory_pair
from csms.protocol import OcppVersion
from support import RunningServer


@pytest.fixture
async def central(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """The central system's handling code without its listener: nothing is bound."""
    settings = Settings(db=str(tmp_path / "csms.sqlite3"), host="127.0.0.1", port=-1,
                        data_dir=str(tmp_path / "data"), call_timeout=2, admin_port=-1)
    server = RunningServer(settings)
    server.app = await build(settings)
    try:
        yield server
    finally:
        await server.app.close()


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_station_charges_over_an_in_memory_pair(central: RunningServer,
                                                      version: str) -> None:
    await central.add_station("MEM1")
    await central.add_tag("SIMTAG")
    served: set[asyncio.Task[None]] = set()

    async def dial() -> Channel:
        station_end, server_end = memory_pair()
        task = asyncio.create_task(central.central.attach(
            server_end, "MEM1", OcppVersion.parse(version), "memory"))
        served.add(task)
        return station_end

    st = Station("memory://", "MEM1", version, seed=3, meter_interval=0.05,
                 call_timeout=2, retry_interval=0.1, dial=dial)
    try:
        await st.start(5)
        assert st.boot_status == "Accepted"
        await st.run_sessions(1, 0.3)
        await st.drain(5)
        [s] = await central.sessions("MEM1")
        assert (s["status"], s["energy_wh"]) == ("completed", st.completed[0].energy_wh)
        assert st.completed[0].energy_wh > 0
        # and the central system's own CALL over the same pair
        answer = await central.call("MEM1", "DataTransfer", {"vendorId": "x"}, timeout=2)
        assert answer == {"status": "UnknownVendorId"}
        assert ("DataTransfer", {"vendorId": "x"}) in st.received_calls
    finally:
        await st.close()
        async with asyncio.timeout(5):
            await asyncio.gather(*served)
    assert "MEM1" not in central.central.connections


async def test_dropped_pair_reconnects_and_the_queue_is_delivered(
        central: RunningServer) -> None:
    await central.add_station("MEM2")
    await central.add_tag("SIMTAG")
    served: set[asyncio.Task[None]] = set()

    async def dial() -> Channel:
        station_end, server_end = memory_pair()
        served.add(asyncio.create_task(central.central.attach(
            server_end, "MEM2", OcppVersion.V201, "memory")))
        return station_end

    st = Station("memory://", "MEM2", "2.0.1", seed=4, meter_interval=0.05,
                 call_timeout=2, retry_interval=0.1, dial=dial)
    try:
        await st.start(5)
        await st.start_session(1, "SIMTAG")
        await asyncio.sleep(0.15)
        await st.drop_connection()
        await asyncio.sleep(0.1)
        await st.start(5)
        done = await st.stop_session(1)
        await st.drain(5)
        [s] = await central.sessions("MEM2")
        assert s["energy_wh"] == done.energy_wh
        assert st.connections >= 2
    finally:
        await st.close()
        async with asyncio.timeout(5):
            await asyncio.gather(*served)
