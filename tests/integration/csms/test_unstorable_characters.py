"""Characters no backend stores in a station's strings, through real sockets, on both
backends.

PostgreSQL's text and jsonb cannot hold U+0000, and no backend takes a lone surrogate
(an escaped \\ud800 without its pair: not UTF-8). A station whose firmware put one in an
idTag, a reading or a stop's transactionData got an error for ever (SQLite: "internal
error" for the surrogate; PostgreSQL: "temporarily unable to store" for both): its start
or its stop was never stored, so the session was never completed nor billed. Both are
now read as U+FFFD on both backends, and the data is handled as the odd data it is: a
tag that matches none, a reading that cannot be read.
"""

from __future__ import annotations

import pytest

from support import RunningServer
from support.client import RawClient

T0, T1 = "2026-03-01T10:01:00Z", "2026-03-01T11:01:00Z"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


async def assert_billed_and_refused(server: RunningServer, tx: int) -> None:
    """The session ``tx`` completed with its 500 Wh; the other one, started with the tag
    holding the unstorable character, stored under ``T1\ufffd``."""
    sessions = {s["transaction_id"]: s for s in await server.sessions("CP1")}
    billed = sessions[str(tx)]
    assert billed["status"] == "completed"
    assert billed["energy_wh"] == 500
    unauthorized = [s for key, s in sessions.items() if key != str(tx)]
    assert [s["id_tag"] for s in unauthorized] == ["T1\ufffd"]


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
    await assert_billed_and_refused(csms_server, tx)


@pytest.mark.parametrize("csms_db", BACKENDS, indirect=True)
async def test_a_session_with_lone_surrogates_is_stored_and_completed(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_station("CP1")
    await csms_server.add_tag("T1")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        # written by hand: no JSON encoder writes a lone surrogate
        boot = await c.send_raw('[2,"b","BootNotification",{"chargePointVendor":"V\\ud800",'
                                '"chargePointModel":"M"}]', "b")
        assert boot is not None and boot[0] == 3, boot
        refused = await c.send_raw(f'[2,"s","StartTransaction",{{"connectorId":2,'
                                   f'"idTag":"T1\\udc00","meterStart":0,"timestamp":"{T0}"}}]',
                                   "s")
        assert refused is not None and refused[2]["idTagInfo"]["status"] == "Invalid"
        start = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "T1", "meterStart": 1000, "timestamp": T0})
        tx = start["transactionId"]
        meter = await c.send_raw(
            f'[2,"m","MeterValues",{{"connectorId":1,"transactionId":{tx},"meterValue":'
            f'[{{"timestamp":"{T0}","sampledValue":[{{"value":"\\ud83d"}}]}}]}}]', "m")
        assert meter is not None and meter[0] == 3, meter
        stop = await c.send_raw(
            f'[2,"e","StopTransaction",{{"transactionId":{tx},"meterStop":1500,'
            f'"timestamp":"{T1}","transactionData":[{{"timestamp":"{T1}",'
            f'"sampledValue":[{{"value":"\\udfff"}}]}}]}}]', "e")
        assert stop is not None and stop[0] == 3, stop
        # a valid pair is one character, read as sent
        assert (await c.send_raw('[2,"p","StatusNotification",{"connectorId":1,'
                                 '"errorCode":"NoError","status":"Available",'
                                 '"info":"\\ud83d\\ude00"}]', "p") or [0])[0] == 3
    await assert_billed_and_refused(csms_server, tx)
