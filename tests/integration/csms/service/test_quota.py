"""Quotas on stored station payloads, and room for transactions on a small disk.

A station floods DataTransfer, security events or status notifications over a
real socket; beyond its hourly quota they are answered, counted and dropped.
On a small disk (a real tmpfs where the machine allows mounting one, else
SQLite's page limit) a flood stops being stored at the reserve, and a whole
charging session is still stored and acknowledged afterwards.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from support import RunningServer
from support.client import RawClient

BIG = "x" * 60_000  # a DataTransfer just under the 64 KiB frame limit


async def restart(server: RunningServer, **changes: Any) -> None:
    await server.stop()
    server.settings = replace(server.settings, **changes)
    await server.start()


async def events(server: RunningServer, station: str, kind: str) -> list[dict[str, Any]]:
    async def work(tx: Any) -> list[dict[str, Any]]:
        return await tx.list_station_events(station, kind, limit=100_000)

    return await server.repo.read(work)


def dropped(server: RunningServer, kind: str, reason: str) -> int:
    metric = server.central.metrics.payloads_dropped.labels(kind, reason)
    return int(metric._value.get())


def db_bytes(server: RunningServer) -> int:
    db = Path(server.settings.db)
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
async def test_data_transfer_flood_is_capped_per_station(
    csms_server: RunningServer, version: str,
) -> None:
    await restart(csms_server, quota_data_transfer=256 * 1024, storage_reserve=0)
    await csms_server.add_station("CP1")
    await csms_server.add_station("CP2")
    before = db_bytes(csms_server)
    async with await RawClient.connect(csms_server.url, "CP1", [version]) as c:
        for i in range(100):
            answer = await c.result("DataTransfer", {"vendorId": "acme", "messageId": str(i),
                                                     "data": BIG})
            assert answer["status"] == "UnknownVendorId"  # answered, stored or not
    growth = db_bytes(csms_server) - before
    stored = await events(csms_server, "CP1", "data_transfer")
    print(f"\n{version}: 100 DataTransfers of 60 kB: {len(stored)} stored, "
          f"{dropped(csms_server, 'data_transfer', 'quota')} dropped, database +{growth} bytes")
    assert len(stored) == 4  # 256 KiB / 60 kB
    assert dropped(csms_server, "data_transfer", "quota") == 96
    [note] = await events(csms_server, "CP1", "quota")
    assert note["payload"]["kind"] == "data_transfer"
    assert growth < 1024 * 1024  # not 6 MB
    # another station's quota is its own
    async with await RawClient.connect(csms_server.url, "CP2", [version]) as c:
        await c.result("DataTransfer", {"vendorId": "acme", "data": BIG})
    assert len(await events(csms_server, "CP2", "data_transfer")) == 1


@pytest.mark.parametrize(("version", "action", "payload", "kind", "event"), [
    ("ocpp1.6", "SecurityEventNotification",
     {"type": "TamperDetectionActivated", "timestamp": "2026-01-01T00:00:00Z",
      "techInfo": "t" * 100}, "security", "security"),
    ("ocpp2.0.1", "SecurityEventNotification",
     {"type": "TamperDetectionActivated", "timestamp": "2026-01-01T00:00:00Z",
      "techInfo": "t" * 100}, "security", "security"),
    ("ocpp1.6", "FirmwareStatusNotification", {"status": "Installing"}, "notification",
     "firmware_status"),
    ("ocpp2.0.1", "LogStatusNotification", {"status": "Uploading"}, "notification",
     "log_status"),
    ("ocpp1.6", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"},
     "notification", "boot"),
])
async def test_security_events_and_notifications_are_capped(
    csms_server: RunningServer, version: str, action: str, payload: dict[str, Any],
    kind: str, event: str,
) -> None:
    await restart(csms_server, quota_security_events=10 * 256, quota_notifications=10 * 256,
                  storage_reserve=0)
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1", [version]) as c:
        for _ in range(60):
            answer = await c.call(action, payload)
            assert answer[0] == 3, answer  # every message is still answered
    stored = await events(csms_server, "CP1", event)
    assert len(stored) == 10
    assert dropped(csms_server, kind, "quota") == 50


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path | None]:
    """A 24 MiB tmpfs, or None where this machine does not let us mount one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


async def charge(server: RunningServer, station: str) -> list[Any]:
    """A whole 1.6 session with 20 meter values; every answer."""
    answers = []
    async with await RawClient.connect(server.url, station) as c:
        answers.append(start := await c.call("StartTransaction", {
            "connectorId": 1, "idTag": "T1", "meterStart": 1000,
            "timestamp": "2026-01-01T10:00:00Z"}))
        txid = start[2]["transactionId"]
        for i in range(20):
            answers.append(await c.call("MeterValues", {
                "connectorId": 1, "transactionId": txid, "meterValue": [{
                    "timestamp": f"2026-01-01T10:{i + 1:02d}:00Z",
                    "sampledValue": [{"value": str(1000 + 100 * (i + 1))}]}]}))
        answers.append(await c.call("StopTransaction", {
            "transactionId": txid, "meterStop": 3000, "timestamp": "2026-01-01T11:00:00Z"}))
    return answers


async def test_transactions_have_room_on_a_small_disk(
    csms_server: RunningServer, small_disk: Path | None, tmp_path: Path,
) -> None:
    reserve = 8 * 1024 * 1024
    if small_disk is not None:
        await restart(csms_server, db=str(small_disk / "csms.sqlite3"), storage_reserve=reserve,
                      quota_data_transfer=2**40)
    else:  # SQLite's page limit stands in for the disk
        await restart(csms_server, storage_reserve=reserve, quota_data_transfer=2**40)
        write = csms_server.repo._write
        pages = write.execute("PRAGMA page_count").fetchone()[0]
        size = write.execute("PRAGMA page_size").fetchone()[0]
        write.execute(f"PRAGMA max_page_count = {pages + (16 * 1024 * 1024) // size}")
    await csms_server.add_tag("T1")
    for n in range(5):
        await csms_server.add_station(f"FLOOD{n}")
    await csms_server.add_station("CP-TX")
    sent = 0
    flooders = [await RawClient.connect(csms_server.url, f"FLOOD{n}") for n in range(5)]
    try:
        while dropped(csms_server, "data_transfer", "reserve") < 50 and sent < 2000:
            for c in flooders:
                assert (await c.result("DataTransfer", {"vendorId": "a", "data": BIG}))[
                    "status"] == "UnknownVendorId"
                sent += 1
    finally:
        for c in flooders:
            with contextlib.suppress(Exception):
                await c.close()
    stored = sum([len(await events(csms_server, f"FLOOD{n}", "data_transfer"))
                  for n in range(5)])
    print(f"\n{'tmpfs 24 MiB' if small_disk else 'page limit 16 MiB'}: {sent} DataTransfers"
          f" sent, {stored} stored, {dropped(csms_server, 'data_transfer', 'reserve')} dropped"
          f" at the reserve; database {db_bytes(csms_server)} bytes")
    assert dropped(csms_server, "data_transfer", "reserve") >= 50
    answers = await charge(csms_server, "CP-TX")
    assert all(a[0] == 3 for a in answers), [a for a in answers if a[0] != 3]
    [session] = await csms_server.sessions("CP-TX")
    assert (session["status"], session["energy_wh"]) == ("completed", 2000)


def report_part(request_id: int, seq_no: int) -> dict[str, Any]:
    return {"requestId": request_id, "generatedAt": "2026-06-01T00:00:00Z", "seqNo": seq_no,
            "tbc": True, "reportData": [{
                "component": {"name": "SecurityCtrlr"}, "variable": {"name": "Identity"},
                "variableAttribute": [{"value": "v" * 100, "mutability": "ReadOnly"}]}]}


async def test_reports_never_asked_for_or_beyond_the_quota_are_capped(
    csms_server: RunningServer,
) -> None:
    """A 2.0.1 station sends NotifyReport and NotifyMonitoringReport parts for request
    ids it invents, then endless parts (tbc) of a report it was asked for. Each part for
    no request added an UnsolicitedReport security event, and each part beyond the
    notification quota a ReportDropped note: a row per message, without end. They are
    within the security quota, and one note per hour says the report's parts are dropped."""
    await restart(csms_server, quota_security_events=10 * 256, quota_notifications=10 * 256,
                  storage_reserve=0)
    await csms_server.add_station("CP1")

    async def asked(tx: Any) -> int:
        return int(await tx.add_report_request("CP1", "base", datetime.now(UTC)))

    request_id = await csms_server.repo.unit(asked)
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", {"reason": "PowerUp", "chargingStation": {
            "vendorName": "V", "model": "M"}})
        for n in range(60):
            assert await c.result("NotifyReport", report_part(1000 + n, 0)) == {}
            assert await c.result("NotifyMonitoringReport", {
                "requestId": 5000 + n, "generatedAt": "2026-06-01T00:00:00Z",
                "seqNo": 0}) == {}
        for n in range(60):
            assert await c.result("NotifyReport", report_part(request_id, n)) == {}
    security = await events(csms_server, "CP1", "security")
    notes = await events(csms_server, "CP1", "quota")
    print(f"\n120 reports for no request, 60 parts of one: {len(security)} security events,"
          f" {len(notes)} quota notes")
    assert len(security) == 10
    assert dropped(csms_server, "security", "quota") == 110

    async def parts(tx: Any) -> int:
        return int((await tx.get_report_request("CP1", request_id))["parts"])

    stored = await csms_server.repo.read(parts)
    assert 0 < stored < 10  # the boot and a few parts fill the notification quota
    assert dropped(csms_server, "notification", "quota") == 60 - stored  # one note for all
    assert sorted(n["payload"]["type"] for n in notes) == ["QuotaExceeded", "ReportDropped"]


@pytest.mark.parametrize("action", ["MeterValues", "StopTransaction"])
async def test_messages_naming_another_stations_transaction_are_capped(
    csms_server: RunningServer, action: str,
) -> None:
    """A hostile station naming another station's 1.6 transaction in every message: each
    is answered (transaction data is acknowledged) and was recorded as a security event
    outside any quota (a row a message); now within the station's security quota."""
    await restart(csms_server, quota_security_events=10 * 256, storage_reserve=0)
    for station in ("OWNER", "CP1"):
        await csms_server.add_station(station)
    async with await RawClient.connect(csms_server.url, "OWNER") as c:
        txid = (await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "T1", "meterStart": 0,
            "timestamp": "2026-01-01T10:00:00Z"}))["transactionId"]
    payload: dict[str, Any] = {
        "MeterValues": {"connectorId": 1, "transactionId": txid, "meterValue": [{
            "timestamp": "2026-01-01T10:01:00Z", "sampledValue": [{"value": "100"}]}]},
        "StopTransaction": {"transactionId": txid, "meterStop": 100,
                            "timestamp": "2026-01-01T10:01:00Z"}}[action]
    async with await RawClient.connect(csms_server.url, "CP1") as c:
        for _ in range(60):
            answer = await c.call(action, payload)
            assert answer[0] == 3, answer  # every message is still answered
    foreign = [e for e in await events(csms_server, "CP1", "security")
               if e["payload"].get("type") == "ForeignTransaction"]
    assert 1 <= len(foreign) <= 10, len(foreign)
    assert dropped(csms_server, "security", "quota") >= 50
