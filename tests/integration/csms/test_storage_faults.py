"""Storage faults: a locked SQLite file and a full disk never lose an acknowledged message."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest

from csms.service.ports import StorageError
from support import RunningServer
from support.client import RawClient

START = {"connectorId": 1, "idTag": "T1", "meterStart": 1000,
         "timestamp": "2026-01-01T10:00:00Z"}


async def test_locked_database_delays_but_loses_nothing(csms_server: RunningServer) -> None:
    await csms_server.add_station("CP1")
    await csms_server.add_station("CP2")
    await csms_server.add_tag("T1")
    async with await RawClient.connect(csms_server.url, "CP1") as c, \
            await RawClient.connect(csms_server.url, "CP2") as c2:
        await c.result("Heartbeat", {})
        await c2.result("Heartbeat", {})
        other = sqlite3.connect(csms_server.settings.db, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        pending = asyncio.create_task(c.call("StartTransaction", START, timeout=30))
        await asyncio.sleep(0.5)
        assert not pending.done()  # not acknowledged while the data cannot be written
        # the event loop is not blocked meanwhile: a read-only answer still comes
        authorized = await c2.result("Authorize", {"idTag": "T1"})
        assert authorized["idTagInfo"]["status"] == "Accepted"
        other.execute("COMMIT")
        other.close()
        answer = await pending
        assert answer[0] == 3
    [s] = await csms_server.sessions()
    assert s["transaction_id"] == str(answer[2]["transactionId"])


async def test_disk_full_gets_no_ack_and_the_retry_is_stored(csms_server: RunningServer) -> None:
    await csms_server.add_station("CP1")
    await csms_server.add_tag("T1")
    write = csms_server.repo._write  # the one write connection of the SQLite adapter
    pages = write.execute("PRAGMA page_count").fetchone()[0]
    write.execute(f"PRAGMA max_page_count = {pages + 2}")
    # fill every last byte of the sessions table, as a full disk would be
    n = 0
    for size in (4000, 500, 50, 1):
        while True:
            n += 1
            try:
                write.execute(
                    "INSERT INTO sessions (station_id, ocpp_version, transaction_id, started_at,"
                    " status, stop_reason, created_at, updated_at)"
                    " VALUES ('filler', 'x', ?, 'x', 'completed', ?, 'x', 'x')",
                    (f"f{n}", "x" * size))
            except sqlite3.OperationalError as exc:
                assert "full" in str(exc)
                break
    async with await RawClient.connect(csms_server.url, "CP1") as c:
        txid = None
        answer = await c.call("StartTransaction", START)
        assert answer[0] == 4 and answer[2] == "InternalError"  # no ack: the station retries
        assert await csms_server.sessions("CP1") == []
        write.execute("PRAGMA max_page_count = 1073741823")  # space freed
        answer = await c.call("StartTransaction", START)  # the station's retry
        assert answer[0] == 3
        txid = answer[2]["transactionId"]
    [s] = await csms_server.sessions("CP1")
    assert s["transaction_id"] == str(txid)


async def test_failed_unit_does_not_spoil_the_batch(csms_server: RunningServer) -> None:
    await csms_server.add_station("CP1")

    async def bad(tx: Any) -> None:
        await tx.execute("INSERT INTO nowhere VALUES (1)")

    async def good(tx: Any) -> str:
        await tx.add_station_event("CP1", "note", {"n": 1}, __import__("datetime").datetime.now())
        return "ok"

    results = await asyncio.gather(
        csms_server.repo.unit(good), csms_server.repo.unit(bad), csms_server.repo.unit(good),
        return_exceptions=True)
    assert results[0] == "ok" and results[2] == "ok"
    assert isinstance(results[1], Exception)

    async def count(tx: Any) -> int:
        return len(await tx.list_station_events("CP1", "note"))

    assert await csms_server.repo.read(count) == 2


def _fill(write: sqlite3.Connection) -> None:
    """Every last byte of the file's room taken, as on a full disk."""
    pages = write.execute("PRAGMA page_count").fetchone()[0]
    write.execute(f"PRAGMA max_page_count = {pages + 2}")
    n = 0
    for insert in (
            "INSERT INTO sessions (station_id, ocpp_version, transaction_id, started_at,"
            " status, stop_reason, created_at, updated_at)"
            " VALUES ('filler', 'x', ?, 'x', 'completed', ?, 'x', 'x')",
            "INSERT INTO station_events (station_id, kind, ts, payload)"
            " VALUES ('filler', ?, 'x', ?)"):
        for size in (4000, 500, 50, 1):
            while True:
                n += 1
                try:
                    write.execute(insert, (f"f{n}", "x" * size))
                except sqlite3.OperationalError as exc:
                    assert "full" in str(exc)
                    break


async def test_a_station_connecting_again_while_the_disk_is_full_is_served(
    csms_server: RunningServer,
) -> None:
    """A station connects again while the disk is full: its ConnectionReplaced event is
    not stored (the disk reserve keeps the room for transactions), the new connection is
    served and the old one closed."""
    await csms_server.add_station("CP1")
    _fill(csms_server.repo._write)
    await _connect_again(csms_server, lambda: csms_server.repo._write.execute(
        "PRAGMA max_page_count = 1073741823"))  # space freed


async def test_a_station_connecting_again_while_the_database_fails_is_served(
    csms_server: RunningServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A station connects again while the database refuses its ConnectionReplaced event
    (a StorageError: the database unreachable). The new connection was registered as the
    station's, then the error ended its handler there: never served, the old connection
    left open, and every command for the station sent to a connection nobody read. Now
    the event is lost (logged), the new connection served and the old one closed."""
    await csms_server.add_station("CP1")
    service = csms_server.central.service
    stored = service.station_event

    async def refused(station_id: str, kind: str, payload: dict[str, Any]) -> bool:
        if payload.get("type") == "ConnectionReplaced":
            raise StorageError("database unreachable")
        return await stored(station_id, kind, payload)

    monkeypatch.setattr(service, "station_event", refused)
    await _connect_again(csms_server, lambda: None)


async def _connect_again(csms_server: RunningServer, recover: Callable[[], object]) -> None:
    """CP1 connects, then again; after ``recover`` the new connection answers and the
    operator's commands reach it."""
    old = await RawClient.connect(csms_server.url, "CP1")
    await csms_server.wait_connected("CP1")
    first = csms_server.central.connections["CP1"]
    new = await RawClient.connect(csms_server.url, "CP1")
    try:
        await asyncio.wait_for(old.ws.wait_closed(), 5)
        recover()
        assert "currentTime" in await new.result("Heartbeat", {})
        current = csms_server.central.connections["CP1"]
        assert current is not first
        task = asyncio.create_task(csms_server.call("CP1", "Reset", {"type": "Soft"}))
        msg = await asyncio.wait_for(new.calls.get(), 5)
        await new.answer(msg[1], {"status": "Accepted"})
        assert await task == {"status": "Accepted"}
    finally:
        await new.close()
        await old.close()
