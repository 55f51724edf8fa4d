"""What a station's connections, boots and statuses make us store, publish and log, over
real sockets and a real SQLite file (csms.service.stations, csms.service.quota,
csms.server).

A station that connects and disconnects in a loop, or two devices with one identity that
replace each other again and again, wrote an ``online`` and an ``offline`` station event
(and a bus event each) and log lines for every connection, with no bound: rows grew as
fast as the station could reconnect. Beyond the station's hourly quota of connection
events they are counted and dropped with one note; the station's state (its row: online
or not) stays right, and an honest station gets every event stored.

Every BootNotification and every StatusNotification (the same status again and again
included) wrote a bus event to the outbox, kept a day after it is published and without
end while the broker is down; a status for a connector beyond the station's limit wrote
a warning each. A repeated status is no new bus event, changes and boots are published
within the station's notification quota, and the warning comes with its (metered)
security event.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import replace
from typing import Any

import pytest

from support import RunningServer, until
from support.client import RawClient

LOOPS = 120


def count_rows(server: RunningServer, table: str, where: str = "1 = 1",
               *args: Any) -> int:
    """Rows in the server's SQLite file, read apart from the server."""
    with sqlite3.connect(server.settings.db) as db:
        return int(db.execute(f"SELECT count(*) FROM {table} WHERE {where}", args)
                   .fetchone()[0])


def events(server: RunningServer, station: str, *kinds: str) -> int:
    marks = ", ".join("?" for _ in kinds)
    return count_rows(server, "station_events", f"station_id = ? AND kind IN ({marks})",
                      station, *kinds)


def dropped(server: RunningServer, kind: str) -> int:
    return int(server.central.metrics.payloads_dropped.labels(kind, "quota")._value.get())


async def restart(server: RunningServer, **changes: Any) -> None:
    await server.stop()
    server.settings = replace(server.settings, **changes)
    await server.start()


async def online(server: RunningServer, station: str) -> bool:
    async def work(tx: Any) -> bool:
        row = await tx.get_station(station)
        return row is not None and row.connected_node is not None

    return bool(await server.repo.read(work))


async def offline_now(server: RunningServer, station: str) -> None:
    async def gone() -> bool:
        return station not in server.central.connections and not await online(server, station)

    await until(gone, f"{station} recorded offline")


async def test_a_reconnecting_station_stores_and_logs_a_bounded_number_of_events(
        csms_server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    await restart(csms_server, quota_connection_events=20 * 256)
    csms_server.central.service.publish_events = True  # the bus events a station causes
    await csms_server.add_station("CP1")
    caplog.set_level(logging.INFO)
    for _ in range(LOOPS):
        async with await RawClient.connect(csms_server.url, "CP1"):
            pass
        await offline_now(csms_server, "CP1")
    rows = events(csms_server, "CP1", "online", "offline")
    outbox = count_rows(csms_server, "outbox", "topic LIKE ?", "%/CP1/%line")
    lines = sum("CP1" in r.getMessage() for r in caplog.records)
    print(f"\n{LOOPS} connections: {rows} online/offline rows, {outbox} bus events,"
          f" {lines} log lines, {dropped(csms_server, 'connection')} dropped")
    assert rows == 20
    assert outbox <= 20 + 1
    assert dropped(csms_server, "connection") == 2 * LOOPS - 20
    assert events(csms_server, "CP1", "quota") == 1  # one note for the hour
    assert lines < 3 * 20 + 5, lines
    # the station's state stays right beyond the quota
    assert not await online(csms_server, "CP1")
    async with await RawClient.connect(csms_server.url, "CP1") as c:
        assert "currentTime" in await c.result("Heartbeat", {})
        assert await online(csms_server, "CP1")
    await offline_now(csms_server, "CP1")


async def test_two_devices_replacing_each_other_store_a_bounded_number_of_events(
        csms_server: RunningServer) -> None:
    await restart(csms_server, quota_connection_events=20 * 256,
                  quota_security_events=10 * 256)
    await csms_server.add_station("CP1")
    clients = []
    for _ in range(LOOPS):
        clients.append(await RawClient.connect(csms_server.url, "CP1"))
        if len(clients) > 2:
            await clients.pop(0).close()
    async with clients[-1] as last:  # the latest device is the one served
        assert "currentTime" in await last.result("Heartbeat", {})
        assert await online(csms_server, "CP1")
    await clients[0].close()
    await offline_now(csms_server, "CP1")
    rows = events(csms_server, "CP1", "online", "offline")
    replaced = events(csms_server, "CP1", "security")
    print(f"\n{LOOPS} replacing connections: {rows} online/offline rows,"
          f" {replaced} security events")
    assert rows == 20
    assert replaced == 10


async def test_an_honest_station_gets_every_connection_recorded(
        csms_server: RunningServer) -> None:
    await csms_server.add_station("CP1")
    for _ in range(5):
        async with await RawClient.connect(csms_server.url, "CP1") as c:
            assert "currentTime" in await c.result("Heartbeat", {})
        await offline_now(csms_server, "CP1")
    assert events(csms_server, "CP1", "online") == 5
    assert events(csms_server, "CP1", "offline") == 5
    assert events(csms_server, "CP1", "quota") == 0
    assert dropped(csms_server, "connection") == 0


def presence(server: RunningServer, station: str) -> tuple[str, str] | None:
    """The station's last ``online`` / ``offline`` bus event (the outbox): its topic's
    last level and ``connected_at``."""
    with sqlite3.connect(server.settings.db) as db:
        row = db.execute("SELECT topic, payload FROM outbox WHERE topic LIKE ? ORDER BY id"
                         " DESC LIMIT 1", (f"%/{station}/%line",)).fetchone()
    return None if row is None else (row[0].rsplit("/", 1)[1],
                                     json.loads(row[1])["connected_at"])


@pytest.mark.parametrize("stays", ["online", "offline"])
async def test_the_bus_learns_where_a_station_over_its_quota_ended_up(
        csms_server: RunningServer, stays: str) -> None:
    """A station over its quota of connection events publishes none of them: the bus's
    last word on it is whatever the last published one said. A station that reconnects
    until the quota is spent and then stays connected, or goes away, showed the opposite
    of its state on the bus for good: monitoring fed by it saw a charging station offline,
    or a dead one online. Once the quota has room again (the next hour), its state is
    published."""
    loops = 2 if stays == "online" else 1
    # online's dropped after ``loops`` connections; offline's after one more online
    await restart(csms_server, quota_connection_events=(2 * loops + (stays == "offline")) * 256)
    service = csms_server.central.service
    service.publish_events = True
    await csms_server.add_station("CP1")
    for _ in range(loops):
        async with await RawClient.connect(csms_server.url, "CP1"):
            pass
        await offline_now(csms_server, "CP1")
    c = await RawClient.connect(csms_server.url, "CP1")
    try:
        assert "currentTime" in await c.result("Heartbeat", {})
        if stays == "offline":
            await c.close()
            await offline_now(csms_server, "CP1")
        assert dropped(csms_server, "connection") == 1
        assert await online(csms_server, "CP1") is (stays == "online")
        last = presence(csms_server, "CP1")
        assert last is not None and last[0] != stays  # what the bus says until then

        async def connected_at() -> str | None:
            async def work(tx: Any) -> str | None:
                row = await tx.get_station("CP1")
                return None if row.connected_at is None else str(row.connected_at.isoformat())

            return await csms_server.repo.read(work)  # type: ignore[no-any-return]

        since = await connected_at() if stays == "online" else None
        real = service.quota.clock
        service.quota.clock = lambda: real() + 3600  # the next hour
        try:
            async def told() -> bool:
                last = presence(csms_server, "CP1")
                return last is not None and last[0] == stays \
                    and (since is None or last[1] == since)

            await until(told, f"the bus told CP1 is {stays}")
            # stored too, within the new hour's quota
            assert events(csms_server, "CP1", stays) == loops + 1
        finally:
            service.quota.clock = real
    finally:
        await c.close()
    await offline_now(csms_server, "CP1")


def status16(status: str, connector: int = 1) -> dict[str, Any]:
    return {"connectorId": connector, "errorCode": "NoError", "status": status}


def status_events(server: RunningServer, station: str) -> list[str]:
    """The statuses published for the station (the outbox), in order."""
    with sqlite3.connect(server.settings.db) as db:
        return [json.loads(p)["status"] for (p,) in db.execute(
            "SELECT payload FROM outbox WHERE topic LIKE ? ORDER BY id",
            (f"%/{station}/status",))]


async def test_a_repeated_or_flipping_status_publishes_a_bounded_number_of_events(
        csms_server: RunningServer) -> None:
    await restart(csms_server, quota_notifications=20 * 256)
    csms_server.central.service.publish_events = True
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1") as c:
        for _ in range(LOOPS):
            await c.result("StatusNotification", status16("Available"))
        repeated = len(status_events(csms_server, "CP1"))
        for i in range(LOOPS):
            await c.result("StatusNotification",
                           status16("Charging" if i % 2 else "SuspendedEV"))
        published = status_events(csms_server, "CP1")
    print(f"\n{LOOPS} identical statuses: {repeated} bus events; {LOOPS} flips:"
          f" {len(published) - repeated} more, {dropped(csms_server, 'notification')}"
          " dropped")
    assert repeated == 1
    assert len(published) == 20
    # beyond the quota, a change from the status last published is dropped (the flips
    # back to it are no change of what the bus said)
    assert dropped(csms_server, "notification") == (LOOPS - 19 + 1) // 2
    # the connector's state is the latest all the same
    assert count_rows(csms_server, "connectors", "station_id = ? AND status = ?", "CP1",
                      "Charging") == 1


async def test_repeated_boots_publish_a_bounded_number_of_events(
        csms_server: RunningServer) -> None:
    await restart(csms_server, quota_notifications=20 * 256)
    csms_server.central.service.publish_events = True
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1") as c:
        for _ in range(LOOPS):
            answer = await c.result("BootNotification", {"chargePointVendor": "V",
                                                         "chargePointModel": "M"})
            assert answer["status"] == "Accepted"
    boots = count_rows(csms_server, "outbox", "topic LIKE ?", "%/CP1/boot")
    print(f"\n{LOOPS} boots: {boots} bus events, {events(csms_server, 'CP1', 'boot')} rows")
    assert events(csms_server, "CP1", "boot") == 20
    assert boots == 20


async def test_statuses_beyond_the_connectors_write_a_bounded_number_of_log_lines(
        csms_server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    await restart(csms_server, quota_security_events=10 * 256, max_connectors=2)
    await csms_server.add_station("CP1")
    caplog.set_level(logging.WARNING)
    async with await RawClient.connect(csms_server.url, "CP1") as c:
        for i in range(LOOPS):
            await c.result("StatusNotification", status16("Available", 100 + i))
    lines = sum("beyond its" in r.getMessage() for r in caplog.records)
    print(f"\n{LOOPS} statuses beyond the connectors: {lines} warnings")
    assert lines == 10
    assert events(csms_server, "CP1", "security") == 10


async def test_an_honest_station_gets_every_status_and_boot_published(
        csms_server: RunningServer) -> None:
    csms_server.central.service.publish_events = True
    await csms_server.add_station("CP1")
    sequence = ["Available", "Preparing", "Charging", "SuspendedEV", "Charging",
                "Finishing", "Available"]
    async with await RawClient.connect(csms_server.url, "CP1") as c:
        await c.result("BootNotification", {"chargePointVendor": "V",
                                             "chargePointModel": "M"})
        for status in sequence:
            await c.result("StatusNotification", status16(status))
    await offline_now(csms_server, "CP1")
    # on its next connection, its status is published again, the same as before or not
    async with await RawClient.connect(csms_server.url, "CP1") as c:
        await c.result("StatusNotification", status16("Available"))
    assert status_events(csms_server, "CP1") == [*sequence, "Available"]
    assert count_rows(csms_server, "outbox", "topic LIKE ?", "%/CP1/boot") == 1
    assert dropped(csms_server, "notification") == 0
