"""One station identity connected to two nodes at once (a cloned station: its id and
password on a second device; or a station that reconnected through the balancer while
its old socket still stands): on one node the newer connection replaces the older one and
a ConnectionReplaced security event is stored; across two nodes both stay connected and
nothing is recorded."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from csms.service.charging import new_station
from csms.service.ports import Tx
from csms.storage import open_repository
from support import require_service
from support.client import RawClient

from .test_two_nodes import Node, until

BOOT = {"chargePointVendor": "Twin", "chargePointModel": "T1"}


async def test_a_station_connected_on_a_second_node_is_replaced_on_the_first(
    postgres_url: str, tmp_path: Path
) -> None:
    """The real device boots on node a; a second device with the same id and password
    connects and boots through node b. Node b is now the station's node (operator
    commands, a driver's remote start or stop go there), while the first device keeps
    charging and reporting through node a unseen: both devices' sessions are billed
    under one station, and no security event tells the operator. As on one node, the
    older connection should be closed (and the replacement recorded)."""
    require_service("Mosquitto", "127.0.0.1", 1883)
    repo = await open_repository(postgres_url)

    async def register(tx: Tx) -> None:
        await tx.insert_station(new_station("TWIN1"))

    await repo.unit(register)
    run = secrets.token_hex(3)
    a = Node(f"node-a-{run}", postgres_url, tmp_path)
    b = Node(f"node-b-{run}", postgres_url, tmp_path)
    first = second = None
    try:
        first = await RawClient.connect(a.url, "TWIN1")
        assert (await first.result("BootNotification", BOOT))["status"] == "Accepted"

        async def on_a() -> bool:
            status, listed = await a.api("GET", "/stations")
            return status == 200 and any(s["id"] == "TWIN1" and s["node"] == a.name
                                         for s in listed)

        await until(on_a)
        second = await RawClient.connect(b.url, "TWIN1")
        assert (await second.result("BootNotification", BOOT))["status"] == "Accepted"

        async def on_b() -> bool:
            status, listed = await b.api("GET", "/stations")
            return status == 200 and any(s["id"] == "TWIN1" and s["node"] == b.name
                                         for s in listed)

        await until(on_b)

        async def replaced(tx: Tx) -> list[dict[str, Any]]:
            return [e for e in await tx.list_station_events("TWIN1", "security")
                    if e["payload"].get("type") == "ConnectionReplaced"]

        async def first_closed() -> bool:
            return first is not None and first.ws.close_code is not None

        try:
            await until(first_closed, timeout=20)
        except TimeoutError:
            # still served by node a: a message of the first device is answered there
            answer = await first.result("Heartbeat", {})
            raise AssertionError(
                f"the first device is still connected through node a (Heartbeat answered:"
                f" {answer}), node b holds the station, ConnectionReplaced events:"
                f" {len(await repo.read(replaced))}") from None
        # recorded by node b, naming both nodes; the second device is the station's
        assert [(e["payload"]["node"], e["payload"]["previous_node"])
                for e in await repo.read(replaced)] == [(b.name, a.name)]
        assert second.ws.close_code is None
        assert "currentTime" in await second.result("Heartbeat", {})
        await until(on_b)
    finally:
        for client in (first, second):
            if client is not None:
                await client.close()
        a.stop()
        b.stop()
        await repo.close()
