"""`csms audit` against an entry the admin API keeps exactly: one table, never a
traceback."""

from __future__ import annotations

import asyncio
import json

from support import RunningServer, csms_cli
from support.admin import api
from support.client import RawClient


async def test_an_audited_argument_beyond_64_bits_is_shown_not_a_traceback(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V",
                                            "chargePointModel": "M"})
        await csms_server.wait_connected("CP1")
        status, _ = await api(csms_server, "POST", "/stations/CP1/commands/stop",
                              {"session": 2**70})
    assert status == 400
    # --json already falls back for such an integer: the entry is there
    r = await asyncio.to_thread(csms_cli, csms_server, "audit", "--json")
    assert r.returncode == 0, r.stderr[-400:]
    assert json.loads(r.stdout)[0]["request"] == {"session": 2**70}
    for args in (("audit",), ("audit", "--wide")):
        r = await asyncio.to_thread(csms_cli, csms_server, *args)
        assert "Traceback" not in r.stderr, r.stderr[-400:]
        assert r.returncode == 0, r.stderr[-400:]
    assert "1180591620717411303424" in r.stdout  # --wide: every column, whole
