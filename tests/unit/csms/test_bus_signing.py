"""The command bus takes only signed, fresh, first-seen messages meant for its node."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from csms.bus.commands import CLOCK_SKEW, CommandBus, _canonical, sign, unseal
from csms.service.cluster import bus_secret
from csms.storage import open_repository
from support.memory import MemoryRepository

KEY = b"k" * 32
URL = "mqtt://127.0.0.1:1883"


class FakeClient:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def publish(self, topic: str, payload: bytes, qos: int) -> None:
        self.sent.append((topic, payload))


def command(**over: Any) -> dict[str, Any]:
    body = {"kind": "command", "id": "r1", "from": "a", "to": "b", "sent_at": time.time(),
            "wait": 10.0, "reply_to": "a", "station_id": "CP1", "command": "reset",
            "args": {}, "timeout": 5}
    return {**body, **over}


async def test_commands_dropped_for_each_reason() -> None:
    bus = CommandBus(URL, "b", secret=KEY)
    ran: list[str] = []

    async def handler(station_id: str, cmd: str, args: dict[str, Any],
                      timeout: float | None) -> tuple[int, dict[str, Any]]:
        ran.append(cmd)
        return 200, {"status": "Accepted"}

    client: Any = FakeClient()
    now = time.time()
    cases = {
        "unsigned": command(),
        "bad-signature": sign(b"x" * 32, command()),
        "other-node": sign(KEY, command(to="c")),
        "stale": sign(KEY, command(sent_at=now - 10 - CLOCK_SKEW - 1)),
        "malformed": sign(KEY, command(wait=10_000)),
    }
    for reason, body in cases.items():
        bus._take_command(client, handler, "t", body)
        assert bus.dropped[reason] == 1, reason
    tampered = sign(KEY, command(id="r2"))
    tampered["args"] = {"password": "changed"}
    bus._take_command(client, handler, "t", tampered)
    assert bus.dropped["bad-signature"] == 2
    # sealed arguments are bound to their request id: moved under another id by a signer,
    # they are not opened
    moved = sign(KEY, command(id="r3", args={"password": "p"}))
    moved["id"] = "r4"
    moved["sig"] = hmac.new(KEY, _canonical(moved), hashlib.sha256).hexdigest()
    bus._take_command(client, handler, "t", moved)
    assert bus.dropped["unreadable"] == 1
    good = sign(KEY, command())
    assert "args" not in good and "sealed" in good
    bus._take_command(client, handler, "t", good)
    bus._take_command(client, handler, "t", dict(good))
    await asyncio.gather(*bus._serving)
    assert ran == ["reset"] and bus.dropped["replayed"] == 1
    topic, _ = client.sent[0]
    assert topic == "voltledger/nodes/a/replies/r1"


async def test_replies_only_from_the_node_asked() -> None:
    bus = CommandBus(URL, "a", secret=KEY)
    future: asyncio.Future[tuple[int, dict[str, Any]]] = \
        asyncio.get_running_loop().create_future()
    bus._waiting["r1"] = ("b", future)

    def reply(**over: Any) -> dict[str, Any]:
        return {**{"kind": "reply", "id": "r1", "from": "b", "to": "a",
                   "sent_at": time.time(), "status": 200, "result": {"ok": 1}}, **over}

    topic = "voltledger/nodes/a/replies/r1"
    bus._take_reply(topic, reply())
    bus._take_reply(topic, sign(KEY, reply(**{"from": "c"})))
    bus._take_reply(topic, sign(KEY, reply(kind="command")))
    bus._take_reply(topic, sign(KEY, reply(id="r9")))
    assert not future.done()
    assert bus.dropped == {"unsigned": 1, "wrong-node": 1, "wrong-kind": 1,
                           "unexpected-reply": 1}
    bus._take_reply(topic, sign(KEY, reply()))
    assert future.result() == (200, {"ok": 1})


async def test_the_cluster_secret_is_made_once(tmp_path: Path) -> None:
    repo = MemoryRepository()
    keys = [await repo.unit(bus_secret) for _ in range(2)]
    assert len(keys[0]) == 32 and keys[1] == keys[0]
    db = await open_repository(str(tmp_path / "csms.sqlite3"))
    try:
        first, again = await asyncio.gather(db.unit(bus_secret), db.unit(bus_secret))
        assert len(first) == 32 and again == first
        assert await db.unit(bus_secret) == first
    finally:
        await db.close()


async def test_a_restarted_node_refuses_a_command_its_last_run_served(tmp_path: Path) -> None:
    """The served ids outlive the node's process in the database it shares: the same
    command published again to the node started anew is dropped as replayed."""
    repo = await open_repository(str(tmp_path / "csms.sqlite3"))
    ran: list[str] = []

    async def handler(station_id: str, cmd: str, args: dict[str, Any],
                      timeout: float | None) -> tuple[int, dict[str, Any]]:
        ran.append(cmd)
        return 200, {"status": "Unlocked"}

    try:
        captured = sign(KEY, command(command="unlock"))
        for _ in range(2):  # the node, then the node after its restart
            bus = CommandBus(URL, "b", secret=KEY, repo=repo)
            client: Any = FakeClient()
            bus._take_command(client, handler, "t", dict(captured))
            await asyncio.gather(*bus._serving)
        assert ran == ["unlock"] and bus.dropped == {"replayed": 1}
        assert client.sent == []  # the replay is not answered either
    finally:
        await repo.close()


async def test_a_command_whose_id_cannot_be_kept_is_not_run_and_answered_503(
    tmp_path: Path,
) -> None:
    repo = await open_repository(str(tmp_path / "csms.sqlite3"))
    await repo.close()  # the database is gone
    ran: list[str] = []

    async def handler(station_id: str, cmd: str, args: dict[str, Any],
                      timeout: float | None) -> tuple[int, dict[str, Any]]:
        ran.append(cmd)
        return 200, {}

    bus = CommandBus(URL, "b", secret=KEY, repo=repo)
    client: Any = FakeClient()
    bus._take_command(client, handler, "t", sign(KEY, command()))
    await asyncio.gather(*bus._serving)
    assert ran == []
    (topic, payload), = client.sent
    reply = unseal(KEY, orjson.loads(payload))
    assert topic == "voltledger/nodes/a/replies/r1" and reply is not None
    assert reply["status"] == 503 and "send it again" in reply["result"]["error"]


async def test_node_topics_are_valid_and_never_another_nodes() -> None:
    """Node ids are the operator's, but a worker's holds '/' (<node>/<k>): before, '/',
    '+' and '#' all became '_', so nodes "a/0", "a+0" and "a_0" shared one topic."""
    topics = {CommandBus(URL, node)._topic(node, "commands")
              for node in ("a/0", "a+0", "a#0", "a_0", "a%2F0")}
    assert topics == {"voltledger/nodes/a%2F0/commands", "voltledger/nodes/a%2B0/commands",
                      "voltledger/nodes/a%230/commands", "voltledger/nodes/a_0/commands",
                      "voltledger/nodes/a%252F0/commands"}


def test_dropped_messages_are_logged_first_and_every_thousandth(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counted: list[str] = []
    bus = CommandBus(URL, "b", secret=KEY, on_dropped=counted.append)
    caplog.set_level("WARNING", logger="csms.bus")
    for i in range(2500):
        bus._take_reply("t", {"id": f"j{i}"})
    bus._take_reply("t", sign(KEY, {"kind": "reply", "id": "r1", "from": "c", "to": "b",
                                    "sent_at": time.time(), "status": 200, "result": {}}))
    lines = [r.getMessage() for r in caplog.records]
    assert bus.dropped == {"unsigned": 2500, "unexpected-reply": 1} and len(counted) == 2501
    # each reason's first is logged: junk does not hide the one unexpected reply
    assert len(lines) == 4 and "unexpected-reply" in lines[-1]
    assert "1000 dropped" in lines[1] and "2000 dropped" in lines[2]
