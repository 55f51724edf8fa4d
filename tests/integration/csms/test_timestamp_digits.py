"""dateTime values written with digits other than ASCII ones, over real sockets.

OCPP 1.6 §3.1.4 / 2.0.1 §2.13 dateTime is RFC 3339, whose DIGIT is %x30-39 (RFC 5234
§B.1): "٢٠٢٦-03-01T10:00:00Z" (Arabic-Indic digits) or fullwidth digits are no time.
csms.protocol.timestamps' pattern uses ``\\d``, which matches every Unicode decimal digit,
and ``int()`` reads them, so such a text is taken as a valid time."""

from __future__ import annotations

import pytest

from support import RunningServer
from support.client import RawClient

ARABIC = "\u0662\u0660\u0662\u0666-03-01T10:00:00Z"  # ٢٠٢٦
FULLWIDTH = "\uff12\uff10\uff12\uff16-03-01T10:00:00Z"  # fullwidth 2026


@pytest.mark.parametrize("ts", [ARABIC, FULLWIDTH])
async def test_a_status_with_non_ascii_digits_in_its_time_is_refused(
    csms_server: RunningServer, ts: str,
) -> None:
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        answer = await c.call("StatusNotification", {
            "connectorId": 1, "errorCode": "NoError", "status": "Available", "timestamp": ts})
        # the schema's "format": "date-time" refused: PropertyConstraintViolation, as for
        # any other unreadable time (csms.protocol.validation)
        assert answer[0] == 4 and answer[2] == "PropertyConstraintViolation", answer


@pytest.mark.parametrize("ts", [ARABIC, FULLWIDTH])
async def test_a_start_with_non_ascii_digits_in_its_time_is_noted_unreadable(
    csms_server: RunningServer, ts: str,
) -> None:
    await csms_server.add_station("CP1")
    await csms_server.add_tag("T1")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "T1", "meterStart": 1000, "timestamp": ts})
    [s] = await csms_server.sessions("CP1")
    # transaction messages are acknowledged; an unreadable time is noted and the session
    # held (csms.translate.common.Notes.time)
    assert "time_unreadable" in s["flags"], s
