"""Commands between nodes over a real Mosquitto: round trip, silence, failures."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from csms.bus.commands import CommandBus, NodeUnavailable
from support import require_service

URL = "mqtt://127.0.0.1:1883"


async def test_round_trip_timeout_and_failure() -> None:
    require_service("Mosquitto", "127.0.0.1", 1883)
    run = secrets.token_hex(4)
    asker, holder = CommandBus(URL, f"a-{run}"), CommandBus(URL, f"b-{run}")
    seen: list[tuple[str, str, dict[str, Any], float | None]] = []

    async def on_holder(station_id: str, command: str, args: dict[str, Any],
                        timeout: float | None) -> tuple[int, dict[str, Any]]:
        seen.append((station_id, command, args, timeout))
        if command == "explode":
            raise RuntimeError("boom")
        return 200, {"status": "Accepted", "echo": args}

    async def on_asker(*_: Any) -> tuple[int, dict[str, Any]]:
        return 500, {}

    stop = asyncio.Event()
    tasks = [asyncio.create_task(holder.run(on_holder, stop)),
             asyncio.create_task(asker.run(on_asker, stop))]
    try:
        async with asyncio.timeout(10):
            await holder.connected.wait()
            await asker.connected.wait()
        status, result = await asker.request(holder.node_id, "CP1", "trigger",
                                             {"message": "Heartbeat"}, 7.0, wait=5)
        assert (status, result) == (200, {"status": "Accepted",
                                          "echo": {"message": "Heartbeat"}})
        assert seen == [("CP1", "trigger", {"message": "Heartbeat"}, 7.0)]
        status, result = await asker.request(holder.node_id, "CP1", "explode", {}, None, 5)
        assert status == 500 and "boom" in result["error"]
        with pytest.raises(NodeUnavailable, match=r"did not answer in 0\.5 s"):
            await asker.request(f"gone-{run}", "CP1", "trigger", {}, None, wait=0.5)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
