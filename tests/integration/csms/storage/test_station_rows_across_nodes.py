"""Two nodes (``csms serve --workers``) on one database, a station moving between them:
the connection bookkeeping of the node it left never keeps the other node waiting.

On PostgreSQL a batch holds the rows its units locked until it commits, while its later
units run. Node A's teardown of the station's old connection, or its "last seen" write,
used to lock the station's row inside such a batch; node B, where the station just
connected again, then waited for A's whole batch (and A's batch, as often as not, for
one of B's: under reconnection churn four workers stalled on each other). Here A's
batch is held open by a unit that waits on the test, as a slow or blocked batch would
be: B's connection must be recorded while A's batch is still open.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from conftest import POSTGRES_URL

from csms.service.charging import ChargingService, new_station
from csms.service.cluster import beat
from csms.service.ports import Repository, Tx
from csms.storage import open_repository

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


class Nodes:
    """Two nodes' repositories and services on one database."""

    def __init__(self, a: Repository, b: Repository) -> None:
        self.repo_a, self.repo_b = a, b
        ticks = iter(T0 + timedelta(milliseconds=i) for i in range(10_000))
        clock = lambda: next(ticks)  # noqa: E731 - both nodes read one clock
        self.a = ChargingService(a, clock=clock)
        self.b = ChargingService(b, clock=clock)

    async def where(self, station_id: str) -> tuple[str | None, datetime | None]:
        async def work(tx: Tx) -> tuple[str | None, datetime | None]:
            st = await tx.get_station(station_id)
            assert st is not None
            return st.connected_node, st.last_seen_at

        return await self.repo_b.read(work)


@pytest.fixture
async def nodes(db: str) -> AsyncIterator[Nodes]:
    """Both backends (SQLite: two processes' repositories on one file)."""
    async for pair in _nodes(db):
        yield pair


@pytest.fixture
async def pg_nodes(postgres_url: str) -> AsyncIterator[Nodes]:
    """PostgreSQL only: row locks (on SQLite one writer at a time holds the whole file,
    and the test's open batch would hold it)."""
    async for pair in _nodes(postgres_url):
        yield pair


async def _nodes(db: str) -> AsyncIterator[Nodes]:
    a = await open_repository(db)
    b = await open_repository(db)

    async def register(tx: Tx) -> None:
        await tx.insert_station(new_station("CP-MOVING"))

    await a.unit(register)
    try:
        yield Nodes(a, b)
    finally:
        await a.close()
        await b.close()


async def _held_open(repo: Repository) -> tuple[asyncio.Event, asyncio.Event, asyncio.Task[None]]:
    """A unit that keeps its batch open until the returned ``release`` is set."""
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(tx: Tx) -> None:
        started.set()
        await release.wait()

    return started, release, asyncio.ensure_future(repo.unit(slow))


async def test_a_closed_connection_does_not_keep_the_new_node_waiting(
    pg_nodes: Nodes,
) -> None:
    nodes = pg_nodes
    since = await nodes.a.connection_changed("CP-MOVING", True, "1.6", "node-a")
    assert (await nodes.where("CP-MOVING"))[0] == "node-a"
    # A tears the old connection down; a unit queued with it holds A's batch open
    teardown = asyncio.ensure_future(
        nodes.a.connection_changed("CP-MOVING", False, "1.6", "node-a", since))
    started, release, slow = await _held_open(nodes.repo_a)
    await started.wait()
    try:
        # the station is already connected to B: recorded while A's batch is open
        await nodes.b.connection_changed("CP-MOVING", True, "1.6", "node-b")
        assert not slow.done()
        assert (await nodes.where("CP-MOVING"))[0] == "node-b"
    finally:
        release.set()
        await slow
        await teardown
    # A's teardown, late or not, leaves B's connection alone
    await nodes.a.flush_seen()
    assert (await nodes.where("CP-MOVING"))[0] == "node-b"


async def test_last_seen_skips_a_row_another_node_holds_and_writes_it_later(
    pg_nodes: Nodes,
) -> None:
    nodes = pg_nodes
    # B's batch must hold the row when its slow unit starts: unit by unit, its first
    # unit's write is sent before the next unit starts (in rounds it would wait for it)
    nodes.repo_b.in_rounds = False  # type: ignore[attr-defined]
    await nodes.a.connection_changed("CP-MOVING", True, "1.6", "node-a")
    seen_at = await nodes.a.heartbeat("CP-MOVING")
    # B holds the station's row in an open batch (its new connection, then a slow unit)
    connect = asyncio.ensure_future(
        nodes.b.connection_changed("CP-MOVING", True, "1.6", "node-b"))
    started, release, slow = await _held_open(nodes.repo_b)
    await started.wait()
    try:
        await nodes.a.flush_seen()  # returns: the locked row is not waited for
        assert not slow.done()
        assert nodes.a._seen == {"CP-MOVING": seen_at}  # kept for the next flush
    finally:
        release.set()
        await slow
        await connect
    await nodes.a.flush_seen()
    assert nodes.a._seen == {}
    node, last_seen = await nodes.where("CP-MOVING")
    assert node == "node-b"
    assert last_seen is not None and last_seen >= seen_at


async def test_an_old_connection_on_the_same_node_does_not_clear_the_new_one(
    nodes: Nodes,
) -> None:
    first = await nodes.a.connection_changed("CP-MOVING", True, "1.6", "node-a")
    await nodes.a.connection_changed("CP-MOVING", True, "1.6", "node-a")  # again
    await nodes.a.connection_changed("CP-MOVING", False, "1.6", "node-a", first)
    assert (await nodes.where("CP-MOVING"))[0] == "node-a"
    # and another node's teardown never clears it
    await nodes.b.connection_changed("CP-MOVING", False, "1.6", "node-b", first)
    assert (await nodes.where("CP-MOVING"))[0] == "node-a"


async def test_the_end_of_a_connection_the_station_left_publishes_no_offline_event(
    nodes: Nodes,
) -> None:
    """The station moved to B before A noticed its old connection was dead (a ping that
    timed out, tens of seconds later): A's late teardown must not tell subscribers that a
    connected station went offline. It stays in the station's events, marked; every
    event carries the time its connection was recorded, to order them by."""
    nodes.a.publish_events = nodes.b.publish_events = True
    first = await nodes.a.connection_changed("CP-MOVING", True, "1.6", "node-a")
    second = await nodes.b.connection_changed("CP-MOVING", True, "1.6", "node-b")
    await nodes.a.connection_changed("CP-MOVING", False, "1.6", "node-a", first)
    assert (await nodes.where("CP-MOVING"))[0] == "node-b"
    await nodes.b.connection_changed("CP-MOVING", False, "1.6", "node-b", second)
    assert (await nodes.where("CP-MOVING"))[0] is None

    def body(payload: str | dict[str, Any]) -> dict[str, Any]:
        data = json.loads(payload) if isinstance(payload, str) else dict(payload)
        data.pop("event_id", None)  # the outbox's own
        return data

    async def recorded(tx: Tx) -> tuple[list[tuple[str, dict[str, Any]]], list[Any]]:
        published = [(e["topic"], body(e["payload"])) for e in await tx.pending_outbox(100)]
        events = await tx.list_station_events("CP-MOVING", "offline")
        return published, [body(e["payload"]) for e in events]

    published, offline = await nodes.repo_b.read(recorded)
    assert published == [
        ("voltledger/CP-MOVING/online", {"ocpp_version": "1.6",
                                         "connected_at": first.isoformat()}),
        ("voltledger/CP-MOVING/online", {"ocpp_version": "1.6",
                                         "connected_at": second.isoformat()}),
        ("voltledger/CP-MOVING/offline", {"ocpp_version": "1.6",
                                          "connected_at": second.isoformat()}),
    ]
    assert offline == [  # newest first
        {"ocpp_version": "1.6", "connected_at": second.isoformat()},
        {"ocpp_version": "1.6", "connected_at": first.isoformat(), "superseded": True},
    ]


async def _beat(repo: Repository, node: str, at: datetime) -> None:
    async def work(tx: Tx) -> None:
        await beat(tx, node, at)

    await repo.unit(work)


async def _replaced_events(repo: Repository) -> list[dict[str, Any]]:
    async def work(tx: Tx) -> list[dict[str, Any]]:
        return [dict(e["payload"]) for e in await tx.list_station_events("CP-MOVING",
                                                                         "security")
                if e["payload"].get("type") == "ConnectionReplaced"]

    return await repo.read(work)


async def test_a_connection_over_another_live_nodes_names_it_and_stores_the_event(
    nodes: Nodes,
) -> None:
    """The station connects on B while its row names A's connection and A beats: A may
    still hold a socket for it (a cloned station, a reconnection through the balancer).
    B learns which connection it took over, to have A close it, and a ConnectionReplaced
    event names both nodes."""
    await _beat(nodes.repo_a, "node-a", datetime.now(UTC))
    first = await nodes.a.connection_opened("CP-MOVING", "1.6", "node-a")
    assert (first.replaced_node, first.replaced_at) == (None, None)
    second = await nodes.b.connection_opened("CP-MOVING", "1.6", "node-b", "10.0.0.9")
    assert (second.replaced_node, second.replaced_at) == ("node-a", first.since)
    assert (await nodes.where("CP-MOVING"))[0] == "node-b"
    assert await _replaced_events(nodes.repo_b) == [{
        "type": "ConnectionReplaced", "remote": "10.0.0.9", "node": "node-b",
        "previous_node": "node-a", "previous_connected_at": first.since.isoformat()}]
    # the same node again: the server replaces its own connection (and says so)
    third = await nodes.b.connection_opened("CP-MOVING", "1.6", "node-b")
    assert third.replaced_node is None
    assert len(await _replaced_events(nodes.repo_b)) == 1


async def test_a_stale_row_of_a_dead_node_is_taken_over_silently(nodes: Nodes) -> None:
    """A node killed with -9 leaves its stations' rows naming it; once it stopped beating
    it holds no socket: the station's new connection is recorded as any other, with no
    event and nothing to ask of the dead node."""
    await _beat(nodes.repo_a, "node-dead", datetime.now(UTC) - timedelta(minutes=5))
    await nodes.a.connection_opened("CP-MOVING", "1.6", "node-dead")
    opened = await nodes.b.connection_opened("CP-MOVING", "1.6", "node-b")
    assert (opened.replaced_node, opened.replaced_at) == (None, None)
    assert (await nodes.where("CP-MOVING"))[0] == "node-b"
    assert await _replaced_events(nodes.repo_b) == []


async def _waiting_for_a_row_lock(*texts: str) -> bool:
    """Whether statements holding one of ``texts`` wait for a lock in the test database
    (a held write is sent as a prepared statement's EXECUTE with its values)."""
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        return bool(await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND EXISTS (SELECT FROM unnest($1::text[]) t WHERE strpos(query, t) > 0)",
            list(texts)))
    finally:
        await conn.close()


async def test_two_nodes_recording_a_station_at_once_see_each_other(
    pg_nodes: Nodes,
) -> None:
    """Two devices with one identity connect on A and B at the same moment: B's look at
    the row waits for A's transaction and sees A's connection (a plain read would see
    the row as before A, and neither node would know of the other)."""
    nodes = pg_nodes
    nodes.repo_a.in_rounds = False  # type: ignore[attr-defined]  # A's write sent at once
    await _beat(nodes.repo_a, "node-a", datetime.now(UTC))
    opening = asyncio.ensure_future(nodes.a.connection_opened("CP-MOVING", "1.6", "node-a"))
    started, release, slow = await _held_open(nodes.repo_a)
    await started.wait()
    try:
        other = asyncio.ensure_future(nodes.b.connection_opened("CP-MOVING", "1.6", "node-b"))
        async with asyncio.timeout(10):
            # B, on A's row: its read of it, or (a plain read) its write
            while not await _waiting_for_a_row_lock("connected_node", "'CP-MOVING'"):
                assert not other.done(), await other
                await asyncio.sleep(0.02)
    finally:
        release.set()
        await slow
        first = await opening
    second = await other
    assert (second.replaced_node, second.replaced_at) == ("node-a", first.since)
    assert (await nodes.where("CP-MOVING"))[0] == "node-b"


async def test_many_stations_connecting_in_one_batch(db: str) -> None:
    """A fleet reconnecting at once: their connections recorded in one node's batches
    (in rounds on PostgreSQL, their locked reads of the rows in one statement)."""
    repo = await open_repository(db)
    ids = [f"CP-{i}" for i in range(40)]
    try:
        async def register(tx: Tx) -> None:
            for sid in ids:
                await tx.insert_station(new_station(sid))
                await tx.set_station_connection(sid, "node-gone", T0)

        await repo.unit(register)
        service = ChargingService(repo)
        opened = await asyncio.gather(*(service.connection_opened(sid, "1.6", "node-a")
                                        for sid in ids))
        assert [o.replaced_node for o in opened] == [None] * len(ids)  # never beat

        async def where(tx: Tx) -> set[str | None]:
            return {s.connected_node for s in await tx.list_stations()}

        assert await repo.read(where) == {"node-a"}
    finally:
        await repo.close()
