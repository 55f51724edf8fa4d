"""A node's background tasks through a PostgreSQL and a broker outage, without a restart.

A private PostgreSQL cluster and a private Mosquitto are stopped in the middle
of a run. Meanwhile /health and /metrics say which tasks are down; once both
are back, every task runs again, every event of the outbox reaches a subscriber
and the sessions are settled, all in the same process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from csms.config import Settings
from support import RunningServer
from support.admin import api
from support.client import RawClient
from support.services import Broker, PrivatePostgres, Subscriber

TASKS = {"relay", "command-bus", "node-beat", "last-seen", "settlement", "cert-renewal"}
# tasks that touch the database only now and then (a round a minute): not down at once
OCCASIONAL = {"command-bus", "relay", "cert-renewal"}


@pytest.fixture
def pg() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    cluster.init()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.remove()


async def until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.2)


async def acked(client: RawClient, action: str, payload: dict[str, Any],
                mid: str) -> dict[str, Any]:
    """A station's retry: the same message (same id) until it is acknowledged."""
    while True:
        answer = await client.call(action, payload, timeout=15, message_id=mid)
        if answer[0] == 3:
            result: dict[str, Any] = answer[2]
            return result
        assert answer[2] == "InternalError", answer  # not stored: try again later
        await asyncio.sleep(0.5)


async def charge(client: RawClient, tag: str, n: int, start: int) -> None:
    started = await acked(client, "StartTransaction", {
        "connectorId": 1, "idTag": tag, "meterStart": start,
        "timestamp": f"2026-01-0{n}T10:00:00Z"}, f"start{n}")
    txid = started["transactionId"]
    await acked(client, "MeterValues", {"connectorId": 1, "transactionId": txid, "meterValue": [
        {"timestamp": f"2026-01-0{n}T10:30:00Z", "sampledValue": [{"value": str(start + 500)}]}]},
        f"meter{n}")
    await acked(client, "StopTransaction", {"transactionId": txid, "meterStop": start + 1000,
                                            "timestamp": f"2026-01-0{n}T11:00:00Z"}, f"stop{n}")


async def test_tasks_come_back_after_database_and_broker_outages(
    tmp_path: Path, pg: PrivatePostgres,
) -> None:
    broker = Broker(tmp_path)
    broker.start()
    server = RunningServer(Settings(
        db=pg.url, port=0, admin_port=0, data_dir=str(tmp_path / "data"), mqtt=broker.url,
        chain="memory", max_wait=0, call_timeout=5, heartbeat_interval=60))
    await server.start()
    sub = Subscriber(broker.port)
    try:
        await asyncio.wait_for(sub.ready.wait(), 10)
        for sid in ("CP1", "CP2"):
            await server.add_station(sid)
        await server.add_tag("T1")
        await server.add_tariff()
        c1 = await RawClient.connect(server.url, "CP1")
        c2 = await RawClient.connect(server.url, "CP2")

        # 1. the broker goes away: a session is stored, its events wait in the outbox
        broker.stop()
        await charge(c1, "T1", 1, 1000)

        # 2. the database goes away too
        pg.stop("fast")
        await c2.result("Heartbeat", {})  # answered at once, written later
        answer = await c2.call("StartTransaction", {
            "connectorId": 1, "idTag": "T1", "meterStart": 5000,
            "timestamp": "2026-01-02T10:00:00Z"}, message_id="start2")
        assert answer[0] == 4 and answer[2] == "InternalError"  # not acknowledged

        async def down() -> set[str]:
            status, health = await api(server, "GET", "/health", token=None)
            assert status == 200
            return set(health["down"]) if set(
                health["down"]) >= TASKS - OCCASIONAL else set()

        was_down = await until(down, 30, "every task down")
        status, metrics = await api(server, "GET", "/metrics")
        assert status == 200  # served without the database
        assert 'voltledger_task_up{task="relay"} 0.0' in metrics
        assert 'voltledger_task_up{task="node-beat"} 0.0' in metrics
        print(f"\ndown during the outage: {sorted(was_down)}")

        # 3. both come back; the process is not restarted
        pg.start()
        broker.start()
        await charge(c2, "T1", 2, 5000)

        async def all_up() -> bool:
            _, health = await api(server, "GET", "/health", token=None)
            return bool(health["status"] == "ok")

        await until(all_up, 60, "every task up again")
        _, health = await api(server, "GET", "/health", token=None)
        # and the running-cost sender, the queued-requests sweep, the session-limits
        # check and the event retention, which only read when their interval comes
        assert set(health["tasks"]) == TASKS | {"cost-updates", "queued-requests",
                                                 "session-limits", "event-retention"}
        restarts = {n: t["restarts"] for n, t in health["tasks"].items()}
        print(f"restarts: {restarts}")
        assert restarts["relay"] >= 1 and restarts["node-beat"] >= 1

        async def outbox() -> list[dict[str, Any]]:
            async def work(tx: Any) -> list[dict[str, Any]]:
                return await tx.fetchall("SELECT event_id, published_at FROM outbox")

            return await server.repo.read(work)

        async def all_published() -> bool:
            rows = await outbox()
            return all(r["published_at"] for r in rows)

        await until(all_published, 60, "the outbox published")
        expected = {r["event_id"] for r in await outbox()}

        async def all_received() -> bool:
            return expected <= {e["event_id"] for e in sub.events}

        await until(all_received, 60, "every event received")
        received = [e["event_id"] for e in sub.events]
        print(f"{len(expected)} events in the outbox, {len(received)} received,"
              f" {len(received) - len(set(received))} duplicates (dropped by event_id)")
        for sid in ("CP1", "CP2"):
            assert f"voltledger/{sid}/session/completed" in sub.topics

        # the settlement worker settled both sessions after the outage
        async def settled() -> bool:
            async def work(tx: Any) -> list[dict[str, Any]]:
                return await tx.fetchall("SELECT settlement_state FROM sessions")

            states = [r["settlement_state"] for r in await server.repo.read(work)]
            # recorded on chain; unpaid: tag T1 is no driver's card
            return len(states) == 2 and all(s == "unpaid" for s in states)

        await until(settled, 60, "both sessions settled")
        await c1.close()
        await c2.close()
    finally:
        await sub.close()
        await server.stop()
        broker.stop()
