"""Operator commands between nodes over MQTT: ask the node that holds a station's socket.

Several ``csms serve`` nodes share one database and one broker. An operator's
command may arrive at any node; when the station's socket is on another node,
the command is published to that node's topic and its answer comes back on the
asking node's reply topic (QoS 1 both ways):

    voltledger/nodes/<node>/commands          {"id", "reply_to", "station_id", "command",
                                               "args", "timeout"}
    voltledger/nodes/<node>/replies/<id>      {"status": <HTTP status>, "result": {...}}

The asking node waits for the reply with a deadline and answers the operator
exactly as it would for a local station. Messages carry no credential in the
clear beyond what the command needs (a new station password travels to the
node that must send it; neither node logs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiomqtt
import orjson

from csms.config import parse_mqtt_url

__all__ = ["CommandBus", "Handler", "NodeUnavailable"]

log = logging.getLogger("csms.bus")

# (station_id, command, args, timeout) -> (HTTP status, result)
Handler = Callable[[str, str, dict[str, Any], float | None], Awaitable[tuple[int, dict[str, Any]]]]


class NodeUnavailable(Exception):
    """The broker is down, or the other node did not answer in time."""


class CommandBus:
    def __init__(self, url: str, node_id: str, *, prefix: str = "voltledger") -> None:
        self.host, self.port = parse_mqtt_url(url)
        self.node_id = node_id
        self.prefix = prefix
        self._client: aiomqtt.Client | None = None
        self._waiting: dict[str, asyncio.Future[tuple[int, dict[str, Any]]]] = {}
        self._serving: set[asyncio.Task[None]] = set()
        self.connected = asyncio.Event()

    def _topic(self, node: str, *rest: str) -> str:
        # MQTT topic levels must not contain wildcards; node ids are host:port names
        safe = node.replace("+", "_").replace("#", "_").replace("/", "_")
        return "/".join((self.prefix, "nodes", safe, *rest))

    async def run(self, handler: Handler, stop: asyncio.Event) -> None:
        """Serve commands for this node and collect replies until ``stop``; a broker
        failure is raised (the node's supervisor reconnects with backoff)."""
        try:
            async with aiomqtt.Client(self.host, self.port, timeout=10,
                                      identifier=f"voltledger-cmd-{uuid.uuid4().hex[:12]}",
                                      ) as client:
                await client.subscribe(self._topic(self.node_id, "commands"), qos=1)
                await client.subscribe(self._topic(self.node_id, "replies", "+"), qos=1)
                self._client = client
                self.connected.set()
                log.info("= command bus on %s:%d as node %s", self.host, self.port,
                         self.node_id)
                reader = asyncio.create_task(self._read(client, handler))
                stopper = asyncio.create_task(stop.wait())
                try:
                    done, _ = await asyncio.wait({reader, stopper},
                                                 return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stopper.cancel()
                    if not reader.done():
                        reader.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await reader
                if reader in done:
                    reader.result()  # the broker went away: MqttError
        finally:
            self._client = None
            self.connected.clear()

    async def _read(self, client: aiomqtt.Client, handler: Handler) -> None:
        async for message in client.messages:
            try:
                body = orjson.loads(bytes(message.payload))
            except (orjson.JSONDecodeError, TypeError):
                log.warning("! command bus: unreadable message on %s", message.topic)
                continue
            if message.topic.matches(self._topic(self.node_id, "commands")):
                task = asyncio.create_task(self._serve(client, handler, body))
                self._serving.add(task)
                task.add_done_callback(self._serving.discard)
            else:
                waiter = self._waiting.get(str(message.topic).rsplit("/", 1)[-1])
                if waiter is not None and not waiter.done():
                    waiter.set_result((int(body["status"]), dict(body["result"])))

    async def _serve(self, client: aiomqtt.Client, handler: Handler,
                     body: dict[str, Any]) -> None:
        try:
            status, result = await handler(str(body["station_id"]), str(body["command"]),
                                           dict(body.get("args") or {}), body.get("timeout"))
        except Exception as exc:  # the asking node still gets an answer
            log.exception("! command %s for %s failed", body.get("command"),
                          body.get("station_id"))
            status, result = 500, {"error": f"node {self.node_id} failed: {exc}"}
        reply = orjson.dumps({"status": status, "result": result})
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(self._topic(str(body["reply_to"]), "replies", str(body["id"])),
                                 reply, qos=1)

    async def request(self, node: str, station_id: str, command: str, args: dict[str, Any],
                      timeout: float | None, wait: float) -> tuple[int, dict[str, Any]]:
        """Run a command on ``node`` and return its (status, result) within ``wait`` s."""
        client = self._client
        if client is None:
            raise NodeUnavailable("the MQTT broker is not connected")
        request_id = uuid.uuid4().hex
        future: asyncio.Future[tuple[int, dict[str, Any]]] = \
            asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        try:
            body = {"id": request_id, "reply_to": self.node_id, "station_id": station_id,
                    "command": command, "args": args, "timeout": timeout}
            try:
                await client.publish(self._topic(node, "commands"), orjson.dumps(body), qos=1)
            except aiomqtt.MqttError as exc:
                raise NodeUnavailable(f"the MQTT broker refused the command: {exc}") from None
            try:
                async with asyncio.timeout(wait):
                    return await future
            except TimeoutError:
                raise NodeUnavailable(f"node {node} did not answer in {wait:g} s") from None
        finally:
            self._waiting.pop(request_id, None)
