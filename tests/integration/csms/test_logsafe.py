"""What a hostile station's text costs the log filter (csms.logsafe), over real sockets.

Every log line passes :class:`csms.logsafe.SecretFilter` on the event loop; a line may
quote what a station sent (a CALLERROR's description, an exception's text). Redacting it
must cost time in proportion to its length, or one station stalls every other."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

import pytest

from csms import logsafe
from support import RunningServer
from support.admin import api
from support.client import RawClient

BOOT16 = {"chargePointVendor": "V", "chargePointModel": "M", "firmwareVersion": "1.0"}


async def test_a_long_callerror_description_does_not_stall_other_stations(
        csms_server: RunningServer) -> None:
    """A 1.6 station answers the boot's GetConfiguration with a CALLERROR whose
    description is one frame of 'password' repeated: the warning that quotes it
    ('not answered: CallFailed(...)') is redacted with a regular expression that
    backtracks over every 'password' for each one, seconds of the event loop."""
    server = csms_server
    await server.stop()
    server.settings = replace(server.settings, boot_get_configuration=True)
    await server.start()
    await server.add_station("HOSTILE")
    await server.add_station("GOOD")
    async with await RawClient.connect(server.url, "GOOD") as good, \
            await RawClient.connect(server.url, "HOSTILE") as hostile:
        assert "currentTime" in await good.result("Heartbeat", {})
        await hostile.result("BootNotification", BOOT16)
        call = await asyncio.wait_for(hostile.calls.get(), 5)
        assert call[2] == "GetConfiguration"
        limit = server.settings.max_frame_bytes
        description = "password" * ((limit - 100) // 8)
        # the server runs in this process: the time from the hostile answer to the other
        # station's answer is what the server's loop was held
        started = time.perf_counter()
        await hostile.send_raw(f'[4,"{call[1]}","GenericError","{description}",{{}}]')
        answer = await good.call("Heartbeat", {}, timeout=120)
        waited = time.perf_counter() - started
        assert answer[0] == 3
    # a liveness bound, generous: 1.4-4.6 ms now, 7.4 s before
    assert waited < 1.0, f"another station's Heartbeat waited {waited:.2f} s"


async def test_a_station_s_line_breaks_and_escapes_write_no_line_of_their_own(
        csms_server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    """A 1.6 station ends a session with an idTag that is not the one that started it and
    that holds a line break and a terminal escape: the warning that names the tag wrote
    them as sent, a second line ("ERROR csms: ...") of the station's making and a
    sequence the operator's terminal (``csms serve`` in the foreground) obeyed. With the
    logging ``csms serve`` sets up, the line holds them escaped."""
    caplog.set_level(logging.INFO)
    logsafe.install()  # as csms serve does: the filter on every handler, caplog's too
    await csms_server.add_station("CP1")
    await csms_server.add_tag("OWNER")
    forged = "B\nERROR csms: \x1b[2J"  # 20 characters at most
    async with await RawClient.connect(csms_server.url, "CP1") as c:
        started = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "OWNER", "meterStart": 0,
            "timestamp": "2026-01-01T10:00:00Z"})
        await c.result("StopTransaction", {
            "transactionId": started["transactionId"], "idTag": forged, "meterStop": 10,
            "timestamp": "2026-01-01T10:05:00Z"})
    lines = [r.getMessage() for r in caplog.records if "ended session" in r.getMessage()]
    assert lines, "the stop by another tag was not logged"
    for line in lines:
        assert "\n" not in line and "\x1b" not in line, line
        assert "B\\x0aERROR csms: \\x1b[2J" in line, line
    written = [t for t in caplog.text.splitlines() if "ERROR csms: " in t]
    assert written and all("ended session" in t for t in written), caplog.text


async def test_a_credential_a_station_answers_in_its_own_order_is_not_logged(
        csms_server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    """Frames are logged at debug level, through the filter. A 1.6 station that answers
    GetConfiguration with AuthorizationKey's "value" before its "key", and a 2.0.1 station
    that reads its BasicAuthPassword back with the "attributeValue" first, had the
    credential written in clear (the filter looked for the value after the name)."""
    caplog.set_level(logging.DEBUG)
    logsafe.install()
    secret = "station-secret-0123456789"
    await csms_server.add_station("CP16")
    await csms_server.add_station("CP201")
    async with await RawClient.connect(csms_server.url, "CP16") as c:
        await c.result("BootNotification", BOOT16)
        command = asyncio.create_task(api(csms_server, "POST",
                                          "/stations/CP16/commands/get-config", {}))
        call = await asyncio.wait_for(c.calls.get(), 5)
        await c.send_raw(f'[3,"{call[1]}",{{"configurationKey":[{{"value":"{secret}",'
                         '"key":"AuthorizationKey","readonly":false}]}]')
        status, _ = await command
        assert status == 200
    async with await RawClient.connect(csms_server.url, "CP201", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", {"reason": "PowerUp", "chargingStation": {
            "vendorName": "V", "model": "M"}})
        command = asyncio.create_task(api(
            csms_server, "POST", "/stations/CP201/commands/get-variables",
            {"variables": ["SecurityCtrlr.BasicAuthPassword"]}))
        call = await asyncio.wait_for(c.calls.get(), 5)
        await c.send_raw(f'[3,"{call[1]}",{{"getVariableResult":[{{"attributeStatus":'
                         f'"Accepted","attributeValue":"{secret}","component":{{"name":'
                         '"SecurityCtrlr"},"variable":{"name":"BasicAuthPassword"}}]}]')
        status, _ = await command
        assert status == 200
    frames = [r.getMessage() for r in caplog.records if call[1] in r.getMessage()]
    assert any("attributeValue" in line for line in frames), frames  # it was logged
    assert secret not in caplog.text
