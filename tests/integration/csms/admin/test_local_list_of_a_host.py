"""``send-local-list`` to a station of a host, over real sockets and the admin API.

The local list carried every id tag of the central system: a hostile host asked for it
(or a station of its answering SendLocalList) collected every driver's card tag, and could
start card sessions at its station under any driver's standing terms. A station with a
host gets the tags already used at that station only (its sessions); one of the operator's
(no host) every tag, as before.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import BACKENDS

from csms.service.ports import Tx
from support import RunningServer
from support.admin import api
from support.client import RawClient

pytestmark = pytest.mark.parametrize("csms_db", BACKENDS, indirect=True)

HOST = "0x" + "ab" * 20
BOOT16 = {"chargePointVendor": "V", "chargePointModel": "M"}


async def set_host(server: RunningServer, station_id: str) -> None:
    async def work(tx: Tx) -> None:
        station = await tx.get_station(station_id)
        assert station is not None
        station.host_address = HOST
        await tx.update_station(station)

    await server.repo.unit(work)


async def send_local_list(server: RunningServer, c: RawClient, station: str) -> dict[str, str]:
    """The tags (and their statuses) the station is sent."""
    request = asyncio.create_task(
        api(server, "POST", f"/stations/{station}/commands/send-local-list", {}))
    call = await asyncio.wait_for(c.calls.get(), 5)
    assert call[2] == "SendLocalList", call
    await c.answer(call[1], {"status": "Accepted"})
    assert (await request)[0] == 200
    payload: dict[str, Any] = call[3]
    return {e["idTag"]: e["idTagInfo"]["status"]
            for e in payload.get("localAuthorizationList", [])}


async def session_with(c: RawClient, tag: str) -> None:
    now = datetime.now(UTC).isoformat()
    started = await c.result("StartTransaction", {
        "connectorId": 1, "idTag": tag, "meterStart": 0, "timestamp": now})
    await c.result("StopTransaction", {"transactionId": started["transactionId"],
                                       "meterStop": 10, "timestamp": now})


@pytest.fixture
async def server(csms_server: RunningServer) -> RunningServer:
    for station in ("HOSTED", "OWN"):
        await csms_server.add_station(station)
    await set_host(csms_server, "HOSTED")
    for tag in ("MINE", "USED_HERE", "ELSEWHERE", "NEVER"):
        await csms_server.add_tag(tag)
    await csms_server.add_tag("BLOCKED_HERE", "blocked")
    return csms_server


async def test_a_hosted_station_gets_only_the_tags_used_there(server: RunningServer) -> None:
    async with await RawClient.connect(server.url, "OWN", ["ocpp1.6"]) as own:
        await own.result("BootNotification", BOOT16)
        await session_with(own, "ELSEWHERE")
        async with await RawClient.connect(server.url, "HOSTED", ["ocpp1.6"]) as hosted:
            await hosted.result("BootNotification", BOOT16)
            for tag in ("USED_HERE", "BLOCKED_HERE", "STRANGER"):
                await session_with(hosted, tag)
            # an Authorize alone does not put a tag on the list
            await hosted.result("Authorize", {"idTag": "MINE"})
            assert await send_local_list(server, hosted, "HOSTED") == {
                "USED_HERE": "Accepted", "BLOCKED_HERE": "Blocked"}
        # the operator's own station: every tag, as before
        assert await send_local_list(server, own, "OWN") == {
            "MINE": "Accepted", "USED_HERE": "Accepted", "ELSEWHERE": "Accepted",
            "NEVER": "Accepted", "BLOCKED_HERE": "Blocked"}


async def test_a_new_hosted_station_gets_an_empty_list(server: RunningServer) -> None:
    async with await RawClient.connect(server.url, "HOSTED", ["ocpp1.6"]) as hosted:
        await hosted.result("BootNotification", BOOT16)
        assert await send_local_list(server, hosted, "HOSTED") == {}
