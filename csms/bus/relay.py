"""Outbox relay: publish the events written in the outbox table to MQTT.

Events are written in the same database transaction as the data they describe
(so none is lost and none describes data that was rolled back); this relay
publishes them with QoS 1 in id order and marks each batch published only
after the broker acknowledged it. Delivery is at least once: after a crash or
a broker restart an event may be published again, and consumers drop
duplicates by the ``event_id`` every payload carries. While the broker is down
events wait in the outbox and the server keeps serving stations; the relay
raises and is started again by the node's supervisor (csms.service.supervisor).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt

from csms.bus.broker import as_broker, connect
from csms.config import MqttBroker, parse_mqtt_url
from csms.service.ports import Repository, StorageError, Tx

__all__ = ["OUTAGES", "OutboxRelay", "parse_mqtt_url"]

# What the relay and the command bus raise while the broker or the database is down.
OUTAGES: tuple[type[BaseException], ...] = (aiomqtt.MqttError, StorageError, OSError)

log = logging.getLogger("csms.bus")


class OutboxRelay:
    def __init__(
        self, repo: Repository, broker: MqttBroker | str, *, client_id: str = "voltledger",
        batch: int = 200, poll_interval: float = 0.1, keep_published: timedelta = timedelta(days=1),
    ) -> None:
        self.repo = repo
        self.broker = as_broker(broker)  # a URL: mqtt://[user[:password]@]host[:port]
        self.client_id = client_id
        self.batch = batch
        self.poll_interval = poll_interval
        self.keep_published = keep_published
        self.published = 0
        self.connected = asyncio.Event()

    async def _pending(self) -> list[dict[str, Any]]:
        async def work(tx: Tx) -> list[dict[str, Any]]:
            return await tx.pending_outbox(self.batch)

        return await self.repo.read(work)

    async def _mark(self, ids: list[int]) -> None:
        now = datetime.now(UTC)

        async def work(tx: Tx) -> None:
            await tx.mark_outbox_published(ids, now)
            await tx.purge_outbox(now - self.keep_published)

        await self.repo.unit(work)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop``. A broker or database failure is raised: the node's
        supervisor starts the relay again with backoff (events wait in the outbox)."""
        try:
            async with connect(self.broker, self.client_id) as client:
                log.info("= MQTT connected to %s", self.broker.url)
                self.connected.set()
                gone = asyncio.create_task(_until_disconnected(client))
                stopped = asyncio.create_task(stop.wait())
                try:
                    while not stop.is_set():
                        if gone.done():
                            gone.result()  # the broker went away: MqttError
                        rows = await self._pending()
                        if not rows:
                            await asyncio.wait({gone, stopped}, timeout=self.poll_interval,
                                               return_when=asyncio.FIRST_COMPLETED)
                            continue
                        for row in rows:
                            await client.publish(row["topic"], row["payload"], qos=1)
                        # Published but not yet marked if this fails: sent again after the
                        # restart (at least once; consumers drop duplicates by event_id).
                        await self._mark([int(r["id"]) for r in rows])
                        self.published += len(rows)
                finally:
                    for task in (gone, stopped):
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                            await task
        finally:
            self.connected.clear()


async def _until_disconnected(client: aiomqtt.Client) -> None:
    """Return never; raise MqttError when the broker goes away. The relay subscribes to
    nothing, so no message comes: without this an idle relay learned of a lost broker only
    at its next publish, and the reason aiomqtt keeps for the disconnection was never read
    ("Future exception was never retrieved" when the client was collected)."""
    async for _ in client.messages:
        pass
