"""A CALLRESULT or CALLERROR is never answered (OCPP-J 1.6 §4.2 / 2.0.1 §4.2.3: a
CALLERROR answers a CALL; csms.protocol.frames.FrameError: "answerable is False for
results and errors"), even when its message id cannot be read, over real sockets."""

from __future__ import annotations

import asyncio

import pytest

from support import RunningServer
from support.client import RawClient

ANSWERS_WITH_BAD_IDS = [
    '[3, 5, {}]',  # a number for an id
    '[3, null, {}]',
    '[3, "", {}]',  # empty
    '[3, "' + "x" * 37 + '", {}]',  # beyond 36 characters
    '[4, 7, "GenericError", "", {}]',
    '[3]',
]


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
@pytest.mark.parametrize("text", ANSWERS_WITH_BAD_IDS)
async def test_an_answer_with_an_unreadable_id_gets_no_callerror(
    csms_server: RunningServer, version: str, text: str,
) -> None:
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1", [f"ocpp{version}"]) as c:
        await c.send_raw(text)
        assert "currentTime" in await c.result("Heartbeat", {})
        await asyncio.sleep(0.05)
        assert c.unmatched == []
