"""Operator commands between nodes over MQTT: ask the node that holds a station's socket.

Several ``csms serve`` nodes share one database and one broker. An operator's
command may arrive at any node; when the station's socket is on another node,
the command is published to that node's topic and its answer comes back on the
asking node's reply topic (QoS 1 both ways):

    voltledger/nodes/<node>/commands          {"kind": "command", "id", "from", "to",
                                               "sent_at", "wait", "reply_to", "station_id",
                                               "command", "args", "timeout", "sig"}
    voltledger/nodes/<node>/replies/<id>      {"kind": "reply", "id", "from", "to",
                                               "sent_at", "status": <HTTP status>,
                                               "result": {...}, "sig"}

The asking node waits for the reply with a deadline and answers the operator
exactly as it would for a local station. ``<node>`` and ``<id>`` are written as topic
levels by csms.service.topics (a node id holds ``/`` with ``--workers``: ``<node>/<k>``).

Every message is signed: ``sig`` is the HMAC-SHA256 (hex) of the message without
``sig``, serialized as JSON with sorted keys, keyed by the cluster's secret (made
once in the shared database, :func:`csms.service.cluster.bus_secret`). A node drops,
logs and counts (``dropped``, ``on_dropped``) a message that is unsigned or badly
signed, addressed to another node, sent more than its wait window ago or in the
future (``CLOCK_SKEW`` allowed), a command whose id it has already served (ids are
kept until their window has passed: in memory, and in the shared database when the bus
has one, so that a node that restarted still refuses a command captured on the broker
and published again: csms.service.ports.Tx.claim_bus_command), and an answer that is
not from the node asked for that request id. A command that arrived while its node was
down, or whose node stopped while running it, gets no answer: the asking node's wait
ends (:class:`NodeUnavailable`, 504 to the operator) and the operator may send it again
(a new request id). A node that cannot record a command's id in the database does not
run it and answers 503.

A dropped message is counted by reason; only the first of each reason and every
thousandth after it are logged (whoever may publish on the broker would otherwise decide
how fast the node's log grows).

What a command carries and what it answers (``args``, ``result``: a station's new
password, a configuration read back) travel sealed: AES-256-GCM under a key derived
from the same secret, bound to the request id, as ``sealed`` (base64) in place of the
two fields, inside the signed message. A listener on the broker sees who asks which
node for what command on which station, and when; not its arguments or its answer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiomqtt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from csms.bus.broker import as_broker, connect
from csms.config import MqttBroker
from csms.protocol.frames import dumps, loads
from csms.service.ports import Repository, Tx
from csms.service.repeats import worth_logging
from csms.service.topics import NODES_LEVEL, topic_level

__all__ = ["CLOCK_SKEW", "MAX_WAIT", "CommandBus", "Handler", "NodeUnavailable", "sign",
           "unseal", "verify"]

log = logging.getLogger("csms.bus")

# (station_id, command, args, timeout) -> (HTTP status, result)
Handler = Callable[[str, str, dict[str, Any], float | None], Awaitable[tuple[int, dict[str, Any]]]]

CLOCK_SKEW = 10.0  # s the nodes' clocks may differ by
MAX_WAIT = 600.0  # s: the longest wait window a command may ask for (timeouts are <= 300 s)
MAX_SERVED = 10_000  # request ids kept at once; beyond, commands are dropped until some expire
SWEEP_SECONDS = 60.0  # the most often a node drops the expired ids it kept in the database
# The key of buses made without one: shared by the buses of this process only (tests, a
# process on its own). A serving node is given the cluster's secret (csms.bootstrap).
_PROCESS_SECRET = secrets.token_bytes(32)


def _canonical(body: dict[str, Any]) -> bytes:
    return dumps({k: v for k, v in body.items() if k != "sig"}, sort_keys=True).encode()


_SEALED = ("args", "result")  # the fields of a message that travel sealed


def _sealing_key(secret: bytes) -> AESGCM:
    return AESGCM(hmac.new(secret, b"voltledger bus sealing key", hashlib.sha256).digest())


def sign(secret: bytes, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` as it travels (JSON values only): its ``args`` and ``result`` sealed
    (``sealed``), and its ``sig``."""
    plain: dict[str, Any] = loads(dumps(body))  # what the receiver parses
    inner = {k: plain.pop(k) for k in _SEALED if k in plain}
    if inner:
        nonce = secrets.token_bytes(12)
        box = _sealing_key(secret).encrypt(nonce, dumps(inner).encode(),
                                           str(plain.get("id")).encode())
        plain["sealed"] = base64.b64encode(nonce + box).decode()
    plain["sig"] = hmac.new(secret, _canonical(plain), hashlib.sha256).hexdigest()
    return plain


def unseal(secret: bytes, body: dict[str, Any]) -> dict[str, Any] | None:
    """A signed ``body`` with its sealed fields opened, or None when they cannot be (not
    sealed under this secret for this request id, or not an object of those fields)."""
    sealed = body.get("sealed")
    if sealed is None:
        return body
    try:
        raw = base64.b64decode(str(sealed), validate=True)
        inner = loads(_sealing_key(secret).decrypt(raw[:12], raw[12:],
                                                   str(body.get("id")).encode()))
    except (binascii.Error, ValueError, InvalidTag):
        return None
    if not isinstance(inner, dict) or not set(inner) <= set(_SEALED):
        return None
    opened = {k: v for k, v in body.items() if k != "sealed"}
    opened.update(inner)
    return opened


def verify(secret: bytes, body: dict[str, Any]) -> bool:
    sig = body.get("sig")
    if not isinstance(sig, str):
        return False
    expected = hmac.new(secret, _canonical(body), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, sig)


class NodeUnavailable(Exception):
    """The broker is down, or the other node did not answer in time."""


class CommandBus:
    def __init__(self, broker: MqttBroker | str, node_id: str, *, prefix: str = "voltledger",
                 secret: bytes | None = None,
                 on_dropped: Callable[[str], None] | None = None,
                 repo: Repository | None = None) -> None:
        self.broker = as_broker(broker)  # a URL: mqtt://[user[:password]@]host[:port]
        self.node_id = node_id
        self.prefix = prefix
        self.secret = _PROCESS_SECRET if secret is None else secret
        self.on_dropped = on_dropped
        self.repo = repo  # where the served request ids outlive the process (None: memory)
        self.dropped: Counter[str] = Counter()  # messages dropped, by reason
        self._client: aiomqtt.Client | None = None
        # request id -> (the node asked, its answer)
        self._waiting: dict[str, tuple[str, asyncio.Future[tuple[int, dict[str, Any]]]]] = {}
        self._served: dict[str, float] = {}  # request id -> until when it is kept
        self._swept_at: float | None = None  # time.monotonic() of the last database sweep
        self._serving: set[asyncio.Task[None]] = set()
        self.connected = asyncio.Event()

    def _topic(self, node: str, *rest: str) -> str:
        """``<prefix>/nodes/<node>/<rest>``: ``node`` as one topic level (any node id gives
        a valid topic, never another node's); ``rest`` as given."""
        return "/".join((self.prefix, NODES_LEVEL, topic_level(node), *rest))

    async def run(self, handler: Handler, stop: asyncio.Event) -> None:
        """Serve commands for this node and collect replies until ``stop``; a broker
        failure is raised (the node's supervisor reconnects with backoff)."""
        try:
            async with connect(self.broker,
                               f"voltledger-cmd-{uuid.uuid4().hex[:12]}") as client:
                await client.subscribe(self._topic(self.node_id, "commands"), qos=1)
                await client.subscribe(self._topic(self.node_id, "replies", "+"), qos=1)
                self._client = client
                self.connected.set()
                log.info("= command bus on %s as node %s", self.broker.url, self.node_id)
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

    def _drop(self, reason: str, topic: object, body: dict[str, Any] | None = None) -> None:
        self.dropped[reason] += 1
        if self.on_dropped is not None:
            self.on_dropped(reason)
        count = self.dropped[reason]
        if worth_logging(count):  # anyone on the broker may send junk
            body = body or {}
            log.warning("! command bus: dropped a message on %s (%s; id %r from %r; %d"
                        " dropped for this reason so far)", str(topic)[:200], reason,
                        str(body.get("id"))[:64], str(body.get("from"))[:64], count)

    def _check(self, kind: str, body: dict[str, Any], window: float) -> str | None:
        """Why a message of ``kind`` cannot be taken, or None."""
        if "sig" not in body:
            return "unsigned"
        if not verify(self.secret, body):
            return "bad-signature"
        if body.get("kind") != kind:
            return "wrong-kind"
        if body.get("to") != self.node_id:
            return "other-node"
        if not isinstance(body.get("id"), str) or not isinstance(body.get("from"), str):
            return "malformed"
        sent_at = body.get("sent_at")
        if not isinstance(sent_at, int | float) or isinstance(sent_at, bool):
            return "malformed"
        age = time.time() - float(sent_at)
        if age < -CLOCK_SKEW or age > window + CLOCK_SKEW:
            return "stale"
        return None

    async def _read(self, client: aiomqtt.Client, handler: Handler) -> None:
        async for message in client.messages:
            try:
                body = loads(bytes(message.payload))
            except (ValueError, TypeError):
                self._drop("unreadable", message.topic)
                continue
            if not isinstance(body, dict):
                self._drop("unreadable", message.topic)
                continue
            if message.topic.matches(self._topic(self.node_id, "commands")):
                self._take_command(client, handler, message.topic, body)
            else:
                self._take_reply(message.topic, body)

    def _take_command(self, client: aiomqtt.Client, handler: Handler, topic: object,
                      body: dict[str, Any]) -> None:
        wait = body.get("wait")
        reason: str | None
        if isinstance(wait, int | float) and not isinstance(wait, bool) \
                and 0 < wait <= MAX_WAIT:
            reason = self._check("command", body, float(wait))
        else:  # a good signature over a bad window is malformed; else say what is wrong
            reason = self._check("command", body, 0.0) or "malformed"
            if reason == "stale":
                reason = "malformed"
        if reason is None and body.get("reply_to") != body.get("from"):
            reason = "malformed"
        if reason is None:
            now = time.time()
            if len(self._served) >= MAX_SERVED:
                self._served = {k: t for k, t in self._served.items() if t > now}
            if body["id"] in self._served:
                reason = "replayed"
            elif len(self._served) >= MAX_SERVED:
                reason = "too-many"
        opened = unseal(self.secret, body) if reason is None else None
        if reason is None and opened is None:
            reason = "unreadable"
        if reason is not None:
            self._drop(reason, topic, body)
            return
        assert isinstance(wait, int | float) and opened is not None
        body = opened
        # kept until the command would be stale anyway
        until = float(body["sent_at"]) + float(wait) + CLOCK_SKEW
        self._served[body["id"]] = until
        task = asyncio.create_task(self._serve(client, handler, body, until))
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    def _take_reply(self, topic: object, body: dict[str, Any]) -> None:
        reason = self._check("reply", body, MAX_WAIT)
        if reason is None:
            asked = self._waiting.get(body["id"])
            if asked is None or asked[1].done():
                reason = "unexpected-reply"
            elif body["from"] != asked[0]:
                reason = "wrong-node"
            elif str(topic).rsplit("/", 1)[-1] != topic_level(body["id"]):
                reason = "malformed"
            else:
                opened = unseal(self.secret, body)
                try:
                    if opened is None:
                        raise ValueError("sealed fields unreadable")
                    answer = (int(opened["status"]), dict(opened["result"]))
                except (KeyError, TypeError, ValueError):
                    reason = "malformed"
                else:
                    asked[1].set_result(answer)
                    return
        self._drop(reason, topic, body)

    async def _claim(self, request_id: str, until: float) -> bool:
        """Record in the database that this node takes ``request_id`` (until ``until``):
        False when it took it before, in this process or an earlier one."""
        if self.repo is None:
            return True
        node, now = self.node_id, datetime.now(UTC)
        kept = datetime.fromtimestamp(until, UTC)
        # the expired ids go now and then, not at every command (a claim takes an expired
        # id over by itself)
        at = time.monotonic()
        sweep = self._swept_at is None or at - self._swept_at >= SWEEP_SECONDS

        async def work(tx: Tx) -> bool:
            if sweep:
                await tx.drop_expired_bus_commands(now)
            return await tx.claim_bus_command(node, request_id, kept, now)

        taken = await self.repo.unit(work)
        if sweep:
            self._swept_at = at
        return taken

    async def _serve(self, client: aiomqtt.Client, handler: Handler,
                     body: dict[str, Any], until: float) -> None:
        try:
            first = await self._claim(str(body["id"]), until)
        except Exception as exc:  # not run: it could not be told from a replay later
            # (a database error, or any other: the asking node is answered, not left to
            # wait out its timeout)
            log.warning("! command %s for %s not run: its request id could not be recorded"
                        " (%s)", body.get("command"), body.get("station_id"), exc)
            first = None
        if first is False:
            self._drop("replayed", self._topic(self.node_id, "commands"), body)
            return
        if first is None:
            status, result = 503, {"error": f"node {self.node_id} could not record the"
                                   " command and did not run it (its database is"
                                   " unavailable); send it again"}
        else:
            try:
                status, result = await handler(
                    str(body["station_id"]), str(body["command"]),
                    dict(body.get("args") or {}), body.get("timeout"))
            except Exception as exc:  # the asking node still gets an answer
                log.exception("! command %s for %s failed", body.get("command"),
                              body.get("station_id"))
                status, result = 500, {"error": f"node {self.node_id} failed: {exc}"}
        asker = str(body["from"])
        reply = sign(self.secret, {"kind": "reply", "id": body["id"], "from": self.node_id,
                                   "to": asker, "sent_at": time.time(), "status": status,
                                   "result": result})
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(self._topic(asker, "replies", topic_level(str(body["id"]))),
                                 dumps(reply).encode(), qos=1)

    async def request(self, node: str, station_id: str, command: str, args: dict[str, Any],
                      timeout: float | None, wait: float) -> tuple[int, dict[str, Any]]:
        """Run a command on ``node`` and return its (status, result) within ``wait`` s."""
        client = self._client
        if client is None:
            raise NodeUnavailable("the MQTT broker is not connected")
        request_id = uuid.uuid4().hex
        future: asyncio.Future[tuple[int, dict[str, Any]]] = \
            asyncio.get_running_loop().create_future()
        self._waiting[request_id] = (node, future)
        try:
            body = sign(self.secret, {
                "kind": "command", "id": request_id, "from": self.node_id, "to": node,
                "sent_at": time.time(), "wait": min(float(wait), MAX_WAIT),
                "reply_to": self.node_id, "station_id": station_id, "command": command,
                "args": args, "timeout": timeout})
            try:
                await client.publish(self._topic(node, "commands"), dumps(body).encode(), qos=1)
            except aiomqtt.MqttError as exc:
                raise NodeUnavailable(f"the MQTT broker refused the command: {exc}") from None
            try:
                async with asyncio.timeout(wait):
                    return await future
            except TimeoutError:
                raise NodeUnavailable(f"node {node} did not answer in {wait:g} s") from None
        finally:
            self._waiting.pop(request_id, None)
