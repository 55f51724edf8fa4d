"""Commands between nodes over a real Mosquitto: round trip, silence, failures."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from csms.bus import commands
from csms.bus.commands import CommandBus, NodeUnavailable
from csms.storage import open_repository
from support import require_service

URL = "mqtt://127.0.0.1:1883"

Handler = Callable[[str, str, dict[str, Any], float | None], Awaitable[tuple[int, dict[str, Any]]]]


@contextlib.asynccontextmanager
async def asker_and_holder(on_holder: Handler) -> AsyncIterator[tuple[CommandBus, CommandBus]]:
    """Two nodes' command buses on the real broker, both subscribed: the asker's own
    commands answer 500, the holder's go to ``on_holder``."""
    require_service("Mosquitto", "127.0.0.1", 1883)
    run = secrets.token_hex(4)
    asker, holder = CommandBus(URL, f"a-{run}"), CommandBus(URL, f"b-{run}")

    async def on_asker(*_: Any) -> tuple[int, dict[str, Any]]:
        return 500, {}

    stop = asyncio.Event()
    tasks = [asyncio.create_task(holder.run(on_holder, stop)),
             asyncio.create_task(asker.run(on_asker, stop))]
    try:
        async with asyncio.timeout(10):
            await holder.connected.wait()
            await asker.connected.wait()
        yield asker, holder
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def test_round_trip_timeout_and_failure() -> None:
    seen: list[tuple[str, str, dict[str, Any], float | None]] = []

    async def on_holder(station_id: str, command: str, args: dict[str, Any],
                        timeout: float | None) -> tuple[int, dict[str, Any]]:
        seen.append((station_id, command, args, timeout))
        if command == "explode":
            raise RuntimeError("boom")
        return 200, {"status": "Accepted", "echo": args}

    async with asker_and_holder(on_holder) as (asker, holder):
        status, result = await asker.request(holder.node_id, "CP1", "trigger",
                                             {"message": "Heartbeat"}, 7.0, wait=5)
        assert (status, result) == (200, {"status": "Accepted",
                                          "echo": {"message": "Heartbeat"}})
        assert seen == [("CP1", "trigger", {"message": "Heartbeat"}, 7.0)]
        status, result = await asker.request(holder.node_id, "CP1", "explode", {}, None, 5)
        assert status == 500 and "boom" in result["error"]
        with pytest.raises(NodeUnavailable, match=r"did not answer in 0\.5 s"):
            await asker.request(f"gone-{secrets.token_hex(4)}", "CP1", "trigger", {}, None,
                                wait=0.5)


async def test_a_forwarded_command_carries_integers_beyond_64_bits_exactly() -> None:
    """An operator's argument of 2**70 (the admin API reads it exactly) reaches the node
    that holds the station as 2**70, and its answer comes back as exactly: not an error,
    not a float."""
    seen: list[dict[str, Any]] = []

    async def on_holder(station_id: str, command: str, args: dict[str, Any],
                        timeout: float | None) -> tuple[int, dict[str, Any]]:
        seen.append(args)
        return 200, {"echo": args, "more": 2**70 + 1}

    async with asker_and_holder(on_holder) as (asker, holder):
        status, result = await asker.request(holder.node_id, "CP1", "data_transfer",
                                             {"vendor": "V", "value": 2**70}, 7.0, wait=5)
        assert seen == [{"vendor": "V", "value": 2**70}]
        assert type(seen[0]["value"]) is int
        assert (status, result) == (200, {"echo": {"vendor": "V", "value": 2**70},
                                          "more": 2**70 + 1})


def _served(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT request_id FROM bus_served")}


async def test_a_node_sweeps_expired_command_ids_now_and_then(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ids a node served are kept in the database until their window ends (a restarted
    node refuses a replay); the expired ones are swept at most every SWEEP_SECONDS, not at
    every command, and they still go."""
    db = tmp_path / "c.sqlite3"
    repo = await open_repository(str(db))
    bus = CommandBus(URL, "n1", repo=repo)
    old = datetime.now(UTC) - timedelta(hours=1)

    async def stale(request_id: str) -> None:
        await repo.unit(lambda tx: tx.claim_bus_command("n1", request_id, old, old))

    try:
        await stale("stale-1")
        assert await bus._claim("a", time.time() + 60)  # the first claim sweeps
        assert _served(db) == {"a"}
        await stale("stale-2")
        assert await bus._claim("b", time.time() + 60)  # within SWEEP_SECONDS: no sweep
        assert _served(db) == {"a", "b", "stale-2"}
        monkeypatch.setattr(commands, "SWEEP_SECONDS", 0.0)
        assert await bus._claim("c", time.time() + 60)
        assert _served(db) == {"a", "b", "c"}
        assert not await bus._claim("a", time.time() + 60)  # a replay, still refused
    finally:
        await repo.close()
