"""``csms serve``'s retention task (csms.service.retention.run_retention): at start it
deletes the station events past ``event_retention_days``; with 0 it is not started."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from csms.domain.model import Session
from csms.service.ports import Tx
from csms.service.retention import RETENTION_LEASE
from support import RunningServer

pytestmark = pytest.mark.parametrize(
    "csms_db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True)


async def _flood(server: RunningServer, count: int, *, held: int = 0) -> None:
    """``count`` events 60 days old and more, one new, and ``held`` old ones naming a
    session still charging (kept past the retention)."""
    now = datetime.now(UTC)

    async def work(tx: Tx) -> None:
        for i in range(count):
            await tx.add_station_event("FLOOD", "data_transfer", {"i": i},
                                       now - timedelta(days=60, hours=i))
        await tx.add_station_event("FLOOD", "data_transfer", {"i": "new"}, now)
        if held:
            session_id = await tx.insert_session(Session(
                station_id="FLOOD", ocpp_version="ocpp1.6", transaction_id="1",
                started_at=now - timedelta(days=61), connector_id=1, evse_id=1,
                id_tag="T1", meter_start_wh=Decimal(0)))
            for i in range(held):
                await tx.add_station_event("FLOOD", "billing_mismatch",
                                           {"session_id": session_id, "i": i},
                                           now - timedelta(days=60, minutes=i))

    await server.repo.unit(work)


async def _left(server: RunningServer) -> int:
    return len(await server.repo.read(
        lambda tx: tx.list_station_events("FLOOD", limit=100_000)))


async def test_serve_deletes_events_past_retention_at_start(
        csms_server: RunningServer) -> None:
    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, event_retention_days=0)
    await csms_server.start()
    await csms_server.add_station("FLOOD")
    await _flood(csms_server, 2500, held=3)
    assert await _left(csms_server) == 2504
    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, event_retention_days=30)
    await csms_server.start()  # the task runs at start, then hourly
    assert csms_server.app is not None
    assert "event-retention" in csms_server.app.tasks.states()
    async with asyncio.timeout(30):
        while await _left(csms_server) != 4:
            await asyncio.sleep(0.1)
    # the node's metrics count what went and what a session still charging keeps
    async with asyncio.timeout(10):
        while "voltledger_station_events_kept 3.0" not in (
                text := csms_server.central.metrics.render().decode()):
            await asyncio.sleep(0.05)
    assert "voltledger_station_events_pruned_total 2500.0" in text
    # the lease is let go once the run is over: another node may take the next one
    async with asyncio.timeout(10):
        while await csms_server.repo.read(lambda tx: tx.lease_holder(RETENTION_LEASE)):
            await asyncio.sleep(0.1)


async def test_no_task_when_events_are_kept_for_ever(csms_server: RunningServer) -> None:
    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, event_retention_days=0)
    await csms_server.start()
    await csms_server.add_station("FLOOD")
    await _flood(csms_server, 10)
    assert csms_server.app is not None
    assert "event-retention" not in csms_server.app.tasks.states()
    assert await _left(csms_server) == 11
