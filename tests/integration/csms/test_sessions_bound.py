"""What a hostile station can make the central system hold in sessions, over real sockets:
sessions in progress without bound (starts on invented connectors, never stopped)."""

from __future__ import annotations

from typing import Any

import pytest

from support import RunningServer, station_events
from support.client import RawClient

T0 = "2026-03-01T10:00:00Z"


async def start(c: RawClient, version: str, n: int) -> None:
    """Start a session on connector (EVSE) ``n`` with a tag nobody knows, never stopped."""
    if version == "ocpp1.6":
        r = await c.result("StartTransaction", {
            "connectorId": n, "idTag": f"X{n}", "meterStart": 1000, "timestamp": T0})
        assert isinstance(r["transactionId"], int)
        assert r["idTagInfo"]["status"] == "Invalid"
    else:
        r = await c.result("TransactionEvent", {
            "eventType": "Started", "timestamp": T0, "seqNo": 0,
            "triggerReason": "Authorized", "transactionInfo": {"transactionId": f"tx-{n}"},
            "idToken": {"idToken": f"X{n}", "type": "ISO14443"},
            "evse": {"id": n, "connectorId": 1}})
        assert r["idTokenInfo"]["status"] in ("Invalid", "Unknown")


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
async def test_a_station_holds_at_most_max_connectors_sessions_in_progress(
        csms_server: RunningServer, version: str) -> None:
    """A station starts sessions on ever new connectors (EVSEs) and stops none: every start
    is answered and stored, but the station keeps at most ``max_connectors`` sessions in
    progress. Each start beyond closes its oldest one, held (``stop_lost``) with a station
    event naming the cause; a real charger has no more sessions at once than connectors."""
    csms_server.central.service.max_connectors = 3
    await csms_server.add_station("HOST1")
    async with await RawClient.connect(csms_server.url, "HOST1", [version]) as c:
        for n in range(1, 9):
            await start(c, version, n)
    sessions = await csms_server.sessions("HOST1")
    assert len(sessions) == 8  # every start stored
    active = sorted(s["connector_id"] if version == "ocpp1.6" else s["evse_id"]
                    for s in sessions if s["status"] == "active")
    assert active == [6, 7, 8]
    closed = [s for s in sessions if s["status"] != "active"]
    assert all("stop_lost" in s["flags"] for s in closed)
    lost = await station_events(csms_server, "HOST1", "stop_lost")
    assert len(lost) == 5
    assert {e["cause"] for e in lost} == {"sessions_in_progress"}
    assert all(e["limit"] == 3 for e in lost)


async def test_a_charger_within_its_connectors_keeps_its_sessions(
        csms_server: RunningServer) -> None:
    """Two connectors, two sessions at once, stopped as usual: nothing closed."""
    csms_server.central.service.max_connectors = 2
    await csms_server.add_station("HOST2")
    await csms_server.add_tag("T1")
    async with await RawClient.connect(csms_server.url, "HOST2", ["ocpp1.6"]) as c:
        ids: list[Any] = []
        for n in (1, 2):
            r = await c.result("StartTransaction", {
                "connectorId": n, "idTag": "T1", "meterStart": 1000, "timestamp": T0})
            ids.append(r["transactionId"])
        for txid in ids:
            await c.result("StopTransaction", {"transactionId": txid, "meterStop": 2000,
                                               "timestamp": "2026-03-01T11:00:00Z"})
    sessions = await csms_server.sessions("HOST2")
    assert [s["energy_wh"] for s in sessions] == [1000, 1000]
    assert not any("stop_lost" in s["flags"] for s in sessions)
    assert await station_events(csms_server, "HOST2", "stop_lost") == []
