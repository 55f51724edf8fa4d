"""NUL characters in a station's strings, through real sockets, on both backends.

PostgreSQL's text and jsonb cannot hold U+0000. A station whose firmware put one in an
idTag, a reading or a stop's transactionData got "temporarily unable to store" for ever
on PostgreSQL: its start or its stop was never stored, so the session was never
completed nor billed. Every NUL is now read as U+FFFD on both backends, and the data is
handled as the odd data it is: a tag that matches none, a reading that cannot be read.
"""

from __future__ import annotations

import pytest

from support import RunningServer
from support.client import RawClient

T0, T1 = "2026-03-01T10:01:00Z", "2026-03-01T11:01:00Z"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("csms_db", BACKENDS, indirect=True)
async def test_a_session_with_nul_characters_is_stored_and_completed(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_station("CP1")
    await csms_server.add_tag("T1")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        boot = await c.call("BootNotification", {"chargePointVendor": "V\u0000",
                                                 "chargePointModel": "M"})
        assert boot[0] == 3 and boot[2]["status"] == "Accepted", boot
        assert (await c.call("StatusNotification", {
            "connectorId": 1, "errorCode": "NoError", "status": "Available",
            "info": "a\u0000b"}))[0] == 3
        # a tag with a NUL is not T1 with a NUL dropped: it matches no tag
        assert await c.result("Authorize", {"idTag": "T1\u0000"}) == {
            "idTagInfo": {"status": "Invalid"}}
        refused = await c.result("StartTransaction", {
            "connectorId": 2, "idTag": "T1\u0000", "meterStart": 0, "timestamp": T0})
        assert refused["idTagInfo"]["status"] == "Invalid"
        start = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "T1", "meterStart": 1000, "timestamp": T0})
        tx = start["transactionId"]
        assert (await c.call("MeterValues", {
            "connectorId": 1, "transactionId": tx, "meterValue": [
                {"timestamp": T0, "sampledValue": [{"value": "1\u00002"}]}]}))[0] == 3
        stop = await c.call("StopTransaction", {
            "transactionId": tx, "meterStop": 1500, "timestamp": T1, "reason": "Local",
            "transactionData": [{"timestamp": T1, "sampledValue": [{"value": "\u0000"}]}]})
        assert stop[0] == 3, stop
        assert "currentTime" in await c.result("Heartbeat", {})
    sessions = {s["transaction_id"]: s for s in await csms_server.sessions("CP1")}
    billed = sessions[str(tx)]
    assert billed["status"] == "completed"
    assert billed["energy_wh"] == 500
    unauthorized = [s for key, s in sessions.items() if key != str(tx)]
    assert [s["id_tag"] for s in unauthorized] == ["T1\ufffd"]
