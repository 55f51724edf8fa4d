"""Payloads nested deep but within orjson's 1,024 levels, from a hostile station, through
real sockets.

2.0.1 lets a station put any JSON in a DataTransfer's ``data`` and in the ``customData``
of every object. Nested ~950 levels deep (2 KB of brackets), such a payload reached the
standard library's encoder measuring it against the station's quota, beyond the
interpreter's recursion limit: an InternalError and a logged traceback for every message,
before any quota. A frame nested deeper than ``MAX_FRAME_DEPTH`` (ten times the deepest
message the schemas describe) is now refused with FormatViolation under its own message
id, and the connection goes on.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest

from csms.protocol.frames import MAX_FRAME_DEPTH
from support import RunningServer, station_events
from support.admin import api
from support.client import RawClient

T = "2026-03-01T10:01:00Z"


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def frame(mid: str, action: str, payload: dict[str, object], deep: str) -> str:
    """A CALL whose payload holds ``deep`` (raw JSON text) where it says "@@"."""
    return orjson.dumps([2, mid, action, payload]).decode().replace('"@@"', deep)


CASES = [
    ("DataTransfer", {"vendorId": "V", "data": "@@"}),
    ("SecurityEventNotification", {"type": "X", "timestamp": T,
                                   "customData": {"vendorId": "V", "x": "@@"}}),
    ("NotifyEvent", {"generatedAt": T, "seqNo": 0, "eventData": [{
        "eventId": 1, "timestamp": T, "trigger": "Alerting", "actualValue": "1",
        "eventNotificationType": "HardWiredNotification", "component": {"name": "C"},
        "variable": {"name": "V"}, "customData": {"vendorId": "V", "x": "@@"}}]}),
]


@pytest.mark.parametrize(("action", "payload"), CASES, ids=[c[0] for c in CASES])
async def test_a_payload_nested_a_thousand_levels_is_refused_by_its_id(
    csms_server: RunningServer, caplog: pytest.LogCaptureFixture, action: str,
    payload: dict[str, object],
) -> None:
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", {"reason": "PowerUp",
                                            "chargingStation": {"vendorName": "V", "model": "M"}})
        for depth in (1000, 1015):  # orjson reads both (1,024 levels at most)
            answer = await c.send_raw(frame(f"deep{depth}", action, payload, nested(depth)),
                                      f"deep{depth}")
            assert answer is not None
            assert answer[:3] == [4, f"deep{depth}", "FormatViolation"], answer
            assert answer[3] == f"nested deeper than {MAX_FRAME_DEPTH} levels"
        # the connection goes on, and a payload nested as deep as allowed is taken
        assert "currentTime" in await c.result("Heartbeat", {})
        shallow = await c.send_raw(frame("shallow", action, payload,
                                         nested(MAX_FRAME_DEPTH - 6)), "shallow")
        assert shallow is not None and shallow[0] == 3, shallow
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    if action == "SecurityEventNotification":
        stored = await station_events(csms_server, "CP1", "security")
        assert [e["customData"]["vendorId"] for e in stored if e.get("type") == "X"] == ["V"]


async def test_an_answer_nested_too_deep_fails_its_command_at_once(
    csms_server: RunningServer,
) -> None:
    """A station answering a CALL with a result nested too deep: the operator's command
    fails with FormatViolation, from the answer (before: a 500 from the admin API)."""
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", {"reason": "PowerUp",
                                            "chargingStation": {"vendorName": "V", "model": "M"}})
        sent = asyncio.create_task(api(csms_server, "POST", "/stations/CP1/commands/clear-cache",
                                       {}))
        async with asyncio.timeout(10):
            _, msg_id, action, _ = await c.calls.get()
        assert action == "ClearCache"
        await c.ws.send(f'[3,"{msg_id}",{{"status":"Accepted","customData":'
                        f'{{"vendorId":"V","x":{nested(1000)}}}}}]')
        async with asyncio.timeout(10):
            status, body = await sent
        assert "FormatViolation" in str(body), (status, body)
        assert "currentTime" in await c.result("Heartbeat", {})
