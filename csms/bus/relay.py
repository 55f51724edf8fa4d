"""Outbox relay: publish the events written in the outbox table to MQTT.

Events are written in the same database transaction as the data they describe
(so none is lost and none describes data that was rolled back); this relay
publishes them with QoS 1 in id order and marks each batch published only
after the broker acknowledged it. Delivery is at least once: after a crash or
a broker restart an event may be published again, and consumers drop
duplicates by the ``event_id`` every payload carries. While the broker is down
events wait in the outbox and the server keeps serving stations; the relay
raises and is started again by the node's supervisor (csms.service.supervisor).

An event the broker will not take must not hold back every later one (events are
published in order, so one refused event at the head stopped the outbox for good). An
event the MQTT client itself refuses (a topic it calls invalid: only rows written before
station ids were encoded in topics, csms.service.topics) is skipped at once; one whose
publish failed :data:`MAX_ATTEMPTS` times (the broker closes the connection on a topic or
a payload it refuses, which looks like an outage) is skipped at its next turn. A skipped
event is marked published, logged with its id and topic, and counted (``skipped``,
``on_skipped``: ``voltledger_outbox_skipped_total``). A broker outage costs no event: a
connection that cannot be made counts against none, and only the event whose publish
was under way when the broker went away counts one failed attempt (it would take
:data:`MAX_ATTEMPTS` outages in a row, each in the middle of that event, to skip it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
import orjson

from csms.bus.broker import as_broker, connect
from csms.config import MqttBroker, parse_mqtt_url
from csms.service.ports import Repository, StorageError, Tx

__all__ = ["MAX_ATTEMPTS", "OUTAGES", "OutboxRelay", "parse_mqtt_url"]

# What the relay and the command bus raise while the broker or the database is down.
OUTAGES: tuple[type[BaseException], ...] = (aiomqtt.MqttError, StorageError, OSError)

log = logging.getLogger("csms.bus")

MAX_ATTEMPTS = 5  # failed publishes of one event (in this process) before it is skipped


class OutboxRelay:
    def __init__(
        self, repo: Repository, broker: MqttBroker | str, *, client_id: str = "voltledger",
        batch: int = 200, poll_interval: float = 0.1, keep_published: timedelta = timedelta(days=1),
        on_skipped: Callable[[], None] | None = None,
    ) -> None:
        self.repo = repo
        self.broker = as_broker(broker)  # a URL: mqtt://[user[:password]@]host[:port]
        self.client_id = client_id
        self.batch = batch
        self.poll_interval = poll_interval
        self.keep_published = keep_published
        self.published = 0
        self.skipped = 0  # events the broker or its client refused, marked published unsent
        self.on_skipped = on_skipped
        self._failures: dict[int, int] = {}  # outbox id -> its failed publishes
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
                        done = await self._publish(client, rows, gone)
                        # Published but not yet marked if this fails: sent again after the
                        # restart (at least once; consumers drop duplicates by event_id).
                        await self._mark(done)
                finally:
                    for task in (gone, stopped):
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                            await task
        finally:
            self.connected.clear()

    async def _publish(self, client: aiomqtt.Client, rows: list[dict[str, Any]],
                       gone: asyncio.Task[None]) -> list[int]:
        """Publish ``rows`` in order; the ids of those done (published or skipped). A
        failed publish is raised (MqttError) once the ones before it are marked."""
        done: list[int] = []
        for row in rows:
            row_id = int(row["id"])
            if self._failures.get(row_id, 0) >= MAX_ATTEMPTS:
                self._skip(row, f"its publish failed {MAX_ATTEMPTS} times")
                done.append(row_id)
                continue
            try:
                await _publish_unless_gone(client, row, gone)
            except ValueError as exc:  # the client refuses it (a topic with a wildcard...)
                self._skip(row, f"the MQTT client refused it: {exc}")
            except aiomqtt.MqttError:
                self._failures[row_id] = self._failures.get(row_id, 0) + 1
                if done:
                    with contextlib.suppress(*OUTAGES):
                        await self._mark(done)
                raise
            else:
                self._failures.pop(row_id, None)
                self.published += 1
            done.append(row_id)
        return done

    def _skip(self, row: dict[str, Any], why: str) -> None:
        self._failures.pop(int(row["id"]), None)
        self.skipped += 1
        if self.on_skipped is not None:
            self.on_skipped()
        try:
            event_id = orjson.loads(row["payload"]).get("event_id")
        except (orjson.JSONDecodeError, TypeError, AttributeError):
            event_id = None
        log.warning("! outbox: event %s (outbox row %s) on topic %r skipped, %s (%d skipped"
                    " so far)", event_id, row["id"], str(row["topic"])[:200], why,
                    self.skipped)


async def _publish_unless_gone(client: aiomqtt.Client, row: dict[str, Any],
                               gone: asyncio.Task[None]) -> None:
    """Publish ``row`` (QoS 1); MqttError as soon as the broker goes away. The broker
    closes the connection on an event it refuses (a topic or payload it calls invalid),
    and the publish alone would wait its whole timeout for an acknowledgement that
    cannot come."""
    sending = asyncio.ensure_future(client.publish(row["topic"], row["payload"], qos=1))
    try:
        await asyncio.wait({sending, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not sending.done():
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await sending
    if sending.cancelled():
        gone.result()  # the broker went away: MqttError
        raise aiomqtt.MqttError("the broker closed the connection")
    sending.result()


async def _until_disconnected(client: aiomqtt.Client) -> None:
    """Return never; raise MqttError when the broker goes away. The relay subscribes to
    nothing, so no message comes: without this an idle relay learned of a lost broker only
    at its next publish, and the reason aiomqtt keeps for the disconnection was never read
    ("Future exception was never retrieved" when the client was collected)."""
    async for _ in client.messages:
        pass
