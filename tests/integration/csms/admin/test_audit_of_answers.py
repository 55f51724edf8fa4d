"""The audit log keeps what an operator's command did, not a station's answer of any size:
a 1.6 station answers every GetConfiguration with a frame of thousands of keys (up to the
frame limit, 1 MiB by default), and each get-config an operator or a script ran wrote it
whole into an audit row, kept for ever and read back whole by the audit's pages."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from support import RunningServer
from support.admin import api
from support.client import RawClient

BOOT16 = {"chargePointVendor": "V", "chargePointModel": "M", "firmwareVersion": "1.0"}


async def _audit_rows(server: RunningServer) -> list[dict[str, Any]]:
    async def work(tx: Any) -> list[dict[str, Any]]:
        return list(await tx.fetchall(
            "SELECT action, length(result) AS size, result FROM audit_log ORDER BY id"))

    return await server.repo.read(work)


async def test_a_large_answer_is_not_kept_whole_in_the_audit_log(
        csms_server: RunningServer) -> None:
    server = csms_server
    await server.stop()
    server.settings = replace(server.settings, max_frame_bytes=1 << 20)
    await server.start()
    await server.add_station("CP-BIG")
    keys = [{"key": f"VendorKey{i:05}", "readonly": False, "value": "x" * 40}
            for i in range(8000)]
    async with await RawClient.connect(server.url, "CP-BIG") as c:
        await c.result("BootNotification", BOOT16)
        for answer in ({"configurationKey": keys},
                       {"configurationKey": keys[:3], "unknownKey": ["Nope"]}):
            command = asyncio.create_task(api(server, "POST",
                                              "/stations/CP-BIG/commands/get-config", {}))
            call = await asyncio.wait_for(c.calls.get(), 5)
            await c.answer(call[1], answer)
            status, body = await command
            # the operator's answer is whole
            assert status == 200 and body["response"] == answer
    big, small = await _audit_rows(server)
    assert big["action"] == small["action"] == "get-config"
    assert big["size"] < 4096, big["size"]  # it was ~590 KB
    assert '"status":"Accepted"' in big["result"] and "response_bytes" in big["result"]
    assert "VendorKey00002" in small["result"]  # a small answer is kept as it is
